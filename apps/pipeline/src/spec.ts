/**
 * The model spec: every part's config resolved by its own package (`resolve…Config`), with the shared
 * widths filled in. It is what a model is built from and what a checkpoint stores beside the weights,
 * so a checkpoint rebuilds exactly the model it was written from, whatever the defaults of the
 * packages have become since.
 */
import { resolveGoeConfig, type GoeConfig } from '@goe/core';
import { resolveEncoderConfig, type EncoderConfig } from '@goe/encoder';
import { resolveInkHeadConfig, type InkHeadConfig } from '@goe/head-ink';
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

/** Volume stem -> encoder -> GoE layer -> ink head. */
export interface VolumeModelSpec extends SpecCommon {
  stemKind: 'volume';
  stem: VolumeStemConfig;
  head: InkHeadConfig;
}

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
  const head = resolvePart('model.inkHead', () => resolveInkHeadConfig({ ...m.inkHead, d, cell: tokenCellVoxels(stem) }));
  return { stemKind: 'volume', stem, head, ...common };
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
    const given = s[name as keyof VolumeModelSpec] as Record<string, unknown>;
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
  return { stemKind: 'volume', stem: part('stem', resolveVolumeStemConfig), head: part('head', resolveInkHeadConfig), ...common };
}
