/**
 * The model spec: every part's config resolved by its own package (`resolve…Config`), with the shared
 * widths filled in. It is what a model is built from and what a checkpoint stores beside the weights,
 * so a checkpoint rebuilds exactly the model it was written from, whatever the defaults of the
 * packages have become since.
 */
import { resolveGoeConfig, type GoeConfig } from '@goe/core';
import { resolveEncoderConfig, type EncoderConfig } from '@goe/encoder';
import { resolveInkHeadConfig, type InkHeadConfig } from '@goe/head-ink';
import { resolveFiberHeadConfig, SHEET_FEATURE_WIDTH, type FiberHeadConfig } from '@goe/head-fiber';
import { resolveGeometryHeadConfig, type GeometryHeadConfig } from '@goe/head-geometry';
import { resolveByteHeadConfig, resolveSequenceStemConfig, type ByteHeadConfig, type SequenceStemConfig } from '@goe/sequence-stem';
import { ConfigFieldError } from '@goe/tf';
import { resolveVolumeStemConfig, tokenCellVoxels, type VolumeStemConfig } from '@goe/volume-stem';
import type { ModelConfig } from './config.js';
import { CheckpointError, ConfigError } from './errors.js';

/** Which stem reads the input; the encoder, GoE layer and training loop are the same for both. */
export type StemKind = 'volume' | 'sequence';
export const STEM_KINDS: readonly StemKind[] = ['volume', 'sequence'];

interface SpecCommon {
  encoder: EncoderConfig;
  core: GoeConfig;
  /** Weight of the router's auxiliary losses in the total. */
  auxLossWeight: number;
}

/** The task heads a volume model can carry (`--heads ink,fiber,geometry`). */
export type VolumeHeadName = 'ink' | 'fiber' | 'geometry';
export const VOLUME_HEADS: readonly VolumeHeadName[] = ['ink', 'fiber', 'geometry'];

/**
 * Volume stem -> encoder -> GoE layer -> one or more task heads on the same tokens (multi-task: the
 * loss is the weighted sum of the heads' losses). A head is present when its config is; the ink head
 * keeps the name `head` that single-head checkpoints have always used.
 */
export interface VolumeModelSpec extends SpecCommon {
  stemKind: 'volume';
  stem: VolumeStemConfig;
  /** The ink head (per-voxel ink logits). */
  head?: InkHeadConfig;
  /** The fibre head (a sign-free direction per token). */
  fiberHead?: FiberHeadConfig;
  /** The geometry head (sheet mask per voxel, normals per token). */
  geometryHead?: GeometryHeadConfig;
  /** Weight of each head's loss in the total. */
  lossWeights: Record<VolumeHeadName, number>;
}

/** The heads `spec` carries, in `VOLUME_HEADS` order. */
export function volumeHeads(spec: VolumeModelSpec): VolumeHeadName[] {
  const has = { ink: spec.head, fiber: spec.fiberHead, geometry: spec.geometryHead };
  return VOLUME_HEADS.filter((h) => has[h] !== undefined);
}

/** Loss weights of older checkpoints, which carried the ink head alone. */
export const DEFAULT_LOSS_WEIGHTS: Readonly<Record<VolumeHeadName, number>> = Object.freeze({ ink: 1, fiber: 1, geometry: 1 });

/** Sequence stem -> encoder -> GoE layer -> byte head. */
export interface SequenceModelSpec extends SpecCommon {
  stemKind: 'sequence';
  stem: SequenceStemConfig;
  head: ByteHeadConfig;
}

export type ModelSpec = VolumeModelSpec | SequenceModelSpec;

/** Runs a package's resolver, reporting its field errors under the training-config path `prefix`. */
function resolvePart<T>(prefix: string, resolve: () => T): T {
  try {
    return resolve();
  } catch (err) {
    if (err instanceof ConfigFieldError) {
      const field = err.field === '(config)' ? prefix : `${prefix}.${err.field}`;
      throw new ConfigError(field, `must be ${err.expected}; got ${JSON.stringify(err.received)}`, { cause: err });
    }
    throw err;
  }
}

/**
 * Resolves every part of `m` with its package's resolver; one width `d` and one aux width `da` go to
 * every part.
 * @throws ConfigError naming the field as a training-config path (e.g. `model.stem.kernel`)
 */
export function resolveModelSpec(m: ModelConfig): ModelSpec {
  const d = m.width;
  const da = m.auxWidth;
  const encoder = resolvePart('model.encoder', () => resolveEncoderConfig({ ...m.encoder, d, da }));
  const core = resolvePart('model.core', () => resolveGoeConfig({ ...m.core, d, da }));
  const common = { encoder, core, auxLossWeight: m.auxLossWeight };
  if (m.stemKind === 'sequence') {
    const stem = resolvePart('model.stem', () => resolveSequenceStemConfig({ ...m.stem, d, da }));
    const head = resolvePart('model.byteHead', () => resolveByteHeadConfig({ ...m.byteHead, d }));
    return { stemKind: 'sequence', stem, head, ...common };
  }
  const stem = resolvePart('model.stem', () => resolveVolumeStemConfig({ ...m.stem, d, da }));
  const cell = tokenCellVoxels(stem);
  const heads = new Set(m.heads);
  return {
    stemKind: 'volume',
    stem,
    ...(heads.has('ink') ? { head: resolvePart('model.inkHead', () => resolveInkHeadConfig({ ...m.inkHead, d, cell })) } : {}),
    ...(heads.has('fiber') ? { fiberHead: resolveFiberHead(m) } : {}),
    ...(heads.has('geometry') ? { geometryHead: resolvePart('model.geometryHead', () => resolveGeometryHeadConfig({ ...m.geometryHead, d, cell })) } : {}),
    lossWeights: { ...m.lossWeights },
    ...common,
  };
}

/**
 * The fibre head's config: its skip width is the sheet-frame features' (`model.fiberSheetFrame`) or 0,
 * the only features the pipeline computes.
 */
function resolveFiberHead(m: ModelConfig): FiberHeadConfig {
  if (m.fiberHead['skip'] !== undefined) {
    throw new ConfigError('model.fiberHead.skip', `is set by model.fiberSheetFrame (${SHEET_FEATURE_WIDTH} sheet-frame features, or none); got ${JSON.stringify(m.fiberHead['skip'])}`);
  }
  const c = resolvePart('model.fiberHead', () => resolveFiberHeadConfig({ ...m.fiberHead, d: m.width, skip: m.fiberSheetFrame ? SHEET_FEATURE_WIDTH : 0 }));
  // Validation, eval and segmentation read unit directions; the tensor output (which measured no
  // better on the hard phantom, packages/head-fiber/README.md) would need its own read-out in each.
  if (c.output !== 'vector') throw new ConfigError('model.fiberHead.output', `the pipeline trains the 'vector' output; got '${c.output}'`);
  return c;
}

/**
 * Checks a spec read from a checkpoint: each part must pass its package's resolver with every saved
 * field unchanged (a resolved config resolves to itself), so a hand-edited or foreign manifest is
 * refused, not half used.
 * @throws CheckpointError naming `where` and the part
 */
export function restoreModelSpec(saved: unknown, where: string): ModelSpec {
  const s = saved as Partial<Record<keyof VolumeModelSpec, unknown>>;
  if (typeof saved !== 'object' || saved === null || !STEM_KINDS.includes(s.stemKind as StemKind)) {
    throw new CheckpointError(where, `model spec has no stemKind of ${STEM_KINDS.join(' or ')}`);
  }
  const part = <T>(name: string, resolve: (v: never) => T): T => {
    const given = s[name as keyof VolumeModelSpec] as unknown as Record<string, unknown>;
    if (typeof given !== 'object' || given === null) throw new CheckpointError(where, `model spec has no part '${name}'`);
    let out: T;
    try {
      out = resolve(given as never);
    } catch (err) {
      throw new CheckpointError(where, `model spec part '${name}' is not valid: ${(err as Error).message}`, { cause: err });
    }
    // A saved field must come back as it was; a field the package has gained since takes its default.
    for (const [k, v] of Object.entries(given)) {
      if (JSON.stringify((out as Record<string, unknown>)[k]) !== JSON.stringify(v)) {
        throw new CheckpointError(where, `model spec field '${name}.${k}' does not resolve to itself`);
      }
    }
    return out;
  };
  if (typeof s.auxLossWeight !== 'number' || !Number.isFinite(s.auxLossWeight)) {
    throw new CheckpointError(where, `model spec has no finite auxLossWeight`);
  }
  const common = { encoder: part('encoder', resolveEncoderConfig), core: part('core', resolveGoeConfig), auxLossWeight: s.auxLossWeight };
  if (s.stemKind === 'sequence') {
    return { stemKind: 'sequence', stem: part('stem', resolveSequenceStemConfig), head: part('head', resolveByteHeadConfig), ...common };
  }
  const optional = <T>(name: 'head' | 'fiberHead' | 'geometryHead', resolve: (v: never) => T): Record<string, T> =>
    s[name] === undefined ? {} : { [name]: part(name, resolve) };
  const spec: VolumeModelSpec = {
    stemKind: 'volume',
    stem: part('stem', resolveVolumeStemConfig),
    ...optional('head', resolveInkHeadConfig),
    ...optional('fiberHead', resolveFiberHeadConfig),
    ...optional('geometryHead', resolveGeometryHeadConfig),
    lossWeights: restoreLossWeights(s.lossWeights, where),
    ...common,
  };
  if (volumeHeads(spec).length === 0) throw new CheckpointError(where, 'model spec has no task head');
  return spec;
}

function restoreLossWeights(saved: unknown, where: string): Record<VolumeHeadName, number> {
  if (saved === undefined) return { ...DEFAULT_LOSS_WEIGHTS };
  const w = saved as Record<string, unknown>;
  if (typeof saved !== 'object' || saved === null || !VOLUME_HEADS.every((h) => typeof w[h] === 'number' && Number.isFinite(w[h]) && (w[h] as number) >= 0)) {
    throw new CheckpointError(where, `model spec lossWeights must give ${VOLUME_HEADS.join(', ')} as finite numbers >= 0`);
  }
  return Object.fromEntries(VOLUME_HEADS.map((h) => [h, w[h] as number])) as Record<VolumeHeadName, number>;
}
