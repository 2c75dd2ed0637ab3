/**
 * The training configuration: one typed object, every default in `DEFAULT_TRAIN_CONFIG`, validated by
 * `resolveTrainConfig` with messages that name the field, what was expected and what arrived. The
 * model sub-configs are validated by their own packages' `resolve…Config`.
 */
import { PHANTOM_PRESETS, type PhantomPreset } from '@goe/phantom';
import { DEPTH_COLLAPSE_MODES, type DepthCollapseMode } from '@goe/head-ink';
import { ConfigError } from './errors.js';
import { resolveRegionSpec } from './region.js';
import { STEM_KINDS, VOLUME_HEADS, resolveModelSpec, type StemKind, type VolumeHeadName } from './spec.js';

/** Text for the sequence stem's masked-byte modelling task. */
export interface TextDataConfig {
  /**
   * UTF-8 text files to train on. Empty (the default): the project's own documentation, found at run
   * time (the repository's README.md, packages/*\/README.md and apps/*\/README.md).
   */
  files: string[];
  /** Fraction of each window's bytes that are masked and predicted. */
  maskFraction: number;
}

/** Where training patches (volume stem) or windows (sequence stem) come from. */
export interface DataConfig {
  /**
   * Volume stem only. `phantom`: generate the synthetic scroll into the run folder; `zarr`: read
   * `volume` and the labels of the heads (`inkLabels`, `papyrusLabels`, `fibreField`, `normalField`);
   * `fragment`: a Kaggle / segment fragment folder (`fragment`; empty: a phantom fragment generated
   * into the run folder), ink head only, trained on its 2D ink labels through the depth collapse.
   */
  source: 'phantom' | 'zarr' | 'fragment';
  /**
   * Fragment folder (`surface_volume/00.tif …` or `layers/…`, `inklabels.png`, optional `mask.png`).
   * Patches take the middle `model.patch[0]` layers (around the papyrus surface); validation holds out
   * the bottom `validationFraction` of the rows.
   */
  fragment: string;
  /**
   * How a fragment patch's voxel ink logits become the 2D map its labels score (@goe/head-ink
   * `collapseDepth`): `max`, `mean` or `logsumexp` (smooth max at `temperature`). The smooth max is
   * the default: with `max` only each column's arg-max layer gets a gradient, and on a phantom
   * fragment training sat at the constant-prediction loss for ~50 steps before it moved, where the
   * smooth max left it after 20-40 (packages/head-ink/README.md).
   */
  collapse: { mode: DepthCollapseMode; temperature: number };
  /** Phantom size `[D, H, W]` in voxels (source `phantom`). */
  phantomShape: [number, number, number];
  /** Phantom preset name (source `phantom`). */
  phantomPreset: PhantomPreset;
  /** Path of a Zarr / OME-Zarr volume (source `zarr`). */
  volume: string;
  /** Path of the ink label array beside it (source `zarr`, ink head). */
  inkLabels: string;
  /** Path of the papyrus (sheet) label array, uint8 0/1 (source `zarr`, geometry head). */
  papyrusLabels: string;
  /** Path of the fibre direction field `[3, D, H, W]` float32 (source `zarr`, fibre head). */
  fibreField: string;
  /** Path of the sheet normal field `[3, D, H, W]` float32 (source `zarr`, geometry head's normals). */
  normalField: string;
  /**
   * Fraction held out for validation, so that training and validation never overlap. Volumes: the top
   * of the z extent (the scroll axis): training patches come from z < (1 - f) D, validation patches
   * from the slab above. Text: the last f of every file's bytes.
   */
  validationFraction: number;
  /**
   * Explicit training and validation boxes, `z0:z1,y0:y1,x0:x1` (half-open voxel ranges; for fragments
   * `layer0:layer1,y0:y1,x0:x1`), instead of the `validationFraction` split: both or neither, inside the
   * volume, each at least one patch in size, and disjoint (checked when the data is opened).
   */
  trainRegion: string;
  valRegion: string;
  /** Patches read ahead of the training step (volume stem). */
  prefetch: number;
  /** Sequence stem only: the text and its masking. */
  text: TextDataConfig;
}

/** The model: stem kind, input size and each package's partial config (validated by that package). */
export interface ModelConfig {
  /**
   * `volume`: volume stem -> encoder -> GoE layer -> ink head, on scroll patches; `sequence`: sequence
   * stem -> the same encoder and GoE layer -> byte head, on masked-byte modelling of text.
   */
  stemKind: StemKind;
  /** Patch shape `[D, H, W]` in voxels fed to the volume stem. */
  patch: [number, number, number];
  /** Bytes per window fed to the sequence stem (one token per byte). */
  sequenceLength: number;
  /** Token width d shared by stem, encoder, core and head. */
  width: number;
  /** Aux routing-feature width da. */
  auxWidth: number;
  /**
   * Volume stem: the task heads trained together on the shared tokens (`--heads ink,fiber,geometry`);
   * each needs its labels (ink: `inkLabels`; fiber: `fibreField`; geometry: `papyrusLabels`, and
   * `normalField` when the head predicts normals). The phantom source has them all.
   */
  heads: VolumeHeadName[];
  /** Weight of each head's loss in the total (multi-task). */
  lossWeights: Record<VolumeHeadName, number>;
  /**
   * Hand the fibre head each token's sheet-frame features beside its tokens (@goe/head-fiber
   * `sheetFrameFeatures`: outward sheet normal, the recto direction axis x n, a recto/verso face score,
   * computed from the patch on the host). With them the head tells recto from verso fibres; without
   * it settles on one direction (packages/head-fiber/README.md).
   */
  fiberSheetFrame: boolean;
  /** The chosen stem's config (`@goe/volume-stem` or `@goe/sequence-stem`). */
  stem: Record<string, unknown>;
  encoder: Record<string, unknown>;
  core: Record<string, unknown>;
  inkHead: Record<string, unknown>;
  fiberHead: Record<string, unknown>;
  geometryHead: Record<string, unknown>;
  byteHead: Record<string, unknown>;
  /** Weight of the router's auxiliary losses in the total. */
  auxLossWeight: number;
}

/** Adam with linear warm-up, cosine decay and global-norm gradient clipping. */
export interface OptimConfig {
  lr: number;
  warmupSteps: number;
  /** Final learning rate as a fraction of `lr` at the end of the cosine. */
  minLrFraction: number;
  /** Clip the global gradient norm to this value (0 = off). */
  clipNorm: number;
  beta1: number;
  beta2: number;
}

export interface TrainConfig {
  data: DataConfig;
  model: ModelConfig;
  optim: OptimConfig;
  batch: number;
  steps: number;
  seed: number;
  /** Backend name or `auto` (best available). */
  backend: string;
  /** Run folder. */
  out: string;
  /** Log a `metrics.jsonl` line (and the progress line) every N steps. */
  logEvery: number;
  /** Validate every N steps (0 = only at the end). */
  validateEvery: number;
  /** Validation patches per validation. */
  validationPatches: number;
  /** Write a checkpoint every N steps (0 = only at the end). */
  checkpointEvery: number;
}

export type DeepPartial<T> = {
  [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K];
};

/** Every default, in one place. Small enough to train a few hundred steps in minutes on 2 cores. */
export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  data: {
    source: 'phantom',
    phantomShape: [48, 64, 64],
    phantomPreset: 'easy',
    fragment: '',
    collapse: { mode: 'logsumexp', temperature: 1 },
    volume: '',
    inkLabels: '',
    papyrusLabels: '',
    fibreField: '',
    normalField: '',
    validationFraction: 1 / 3,
    trainRegion: '',
    valRegion: '',
    prefetch: 4,
    text: { files: [], maskFraction: 0.15 },
  },
  model: {
    stemKind: 'volume',
    patch: [16, 32, 32],
    sequenceLength: 128,
    width: 32,
    auxWidth: 8,
    heads: ['ink'],
    lossWeights: { ink: 1, fiber: 1, geometry: 1 },
    fiberSheetFrame: true,
    stem: {},
    encoder: {},
    core: {},
    inkHead: {},
    fiberHead: {},
    geometryHead: {},
    byteHead: {},
    auxLossWeight: 1,
  },
  optim: { lr: 3e-3, warmupSteps: 20, minLrFraction: 0.1, clipNorm: 1, beta1: 0.9, beta2: 0.999 },
  batch: 4,
  steps: 300,
  seed: 0,
  backend: 'auto',
  out: 'runs/latest',
  logEvery: 10,
  validateEvery: 100,
  validationPatches: 8,
  checkpointEvery: 100,
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : JSON.stringify(v);
}

/**
 * Merges `partial` over the defaults, checking every key against the default's type. Objects under
 * `model.{stem,encoder,core,inkHead,byteHead}` pass through (their packages validate them).
 */
function merge(defaults: unknown, partial: unknown, path: string): unknown {
  if (partial === undefined) return defaults;
  if (isPlainObject(defaults)) {
    if (!isPlainObject(partial)) throw new ConfigError(path, `expected an object, got ${describe(partial)}`);
    const opaque = /^model\.(stem|encoder|core|inkHead|fiberHead|geometryHead|byteHead)$/.test(path);
    if (opaque) return { ...partial };
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(partial)) {
      if (!(key in defaults)) {
        throw new ConfigError(
          path ? `${path}.${key}` : key,
          `unknown key; expected one of ${Object.keys(defaults).join(', ')}`,
        );
      }
    }
    for (const [k, dv] of Object.entries(defaults)) out[k] = merge(dv, partial[k], path ? `${path}.${k}` : k);
    return out;
  }
  if (path === 'data.text.files') {
    if (!Array.isArray(partial) || !partial.every((x) => typeof x === 'string' && x.length > 0)) {
      throw new ConfigError(path, `expected a list of file paths, got ${describe(partial)}`);
    }
    return [...partial];
  }
  if (path === 'model.heads') return parseHeads(partial, path);
  if (Array.isArray(defaults)) {
    if (
      !Array.isArray(partial) ||
      partial.length !== defaults.length ||
      !partial.every((x) => typeof x === 'number' && Number.isInteger(x) && x > 0)
    ) {
      throw new ConfigError(path, `expected ${defaults.length} positive integers, got ${describe(partial)}`);
    }
    return [...partial];
  }
  if (typeof partial !== typeof defaults) {
    throw new ConfigError(path, `expected a ${typeof defaults}, got ${describe(partial)}`);
  }
  if (typeof partial === 'number' && !Number.isFinite(partial)) {
    throw new ConfigError(path, `expected a finite number, got ${describe(partial)}`);
  }
  return partial;
}

/** A list of distinct head names (or the `--heads` spelling `ink,fiber`). */
export function parseHeads(v: unknown, field: string): VolumeHeadName[] {
  const list = typeof v === 'string' ? v.split(',').map((h) => h.trim()) : v;
  if (!Array.isArray(list) || list.length === 0) {
    throw new ConfigError(field, `expected a non-empty list of heads (${VOLUME_HEADS.join(', ')}), got ${describe(v)}`);
  }
  for (const h of list) {
    if (!VOLUME_HEADS.includes(h as VolumeHeadName)) throw new ConfigError(field, `unknown head ${describe(h)}; expected ${VOLUME_HEADS.join(', ')}`);
  }
  if (new Set(list).size !== list.length) throw new ConfigError(field, `a head is listed twice: ${describe(v)}`);
  return VOLUME_HEADS.filter((h) => list.includes(h));
}

function positiveInt(v: number, field: string, allowZero = false): void {
  if (!Number.isInteger(v) || v < (allowZero ? 0 : 1)) {
    throw new ConfigError(field, `expected a ${allowZero ? 'non-negative' : 'positive'} integer, got ${v}`);
  }
}

/** Fills defaults and validates; throws `ConfigError` naming the field. */
export function resolveTrainConfig(partial: DeepPartial<TrainConfig> | Record<string, unknown> = {}): TrainConfig {
  const c = merge(DEFAULT_TRAIN_CONFIG, partial, '') as TrainConfig;
  positiveInt(c.steps, 'steps');
  positiveInt(c.batch, 'batch');
  if (!Number.isInteger(c.seed)) throw new ConfigError('seed', `expected an integer, got ${c.seed}`);
  positiveInt(c.logEvery, 'logEvery');
  positiveInt(c.validateEvery, 'validateEvery', true);
  positiveInt(c.validationPatches, 'validationPatches');
  positiveInt(c.checkpointEvery, 'checkpointEvery', true);
  positiveInt(c.data.prefetch, 'data.prefetch', true);
  positiveInt(c.model.width, 'model.width');
  positiveInt(c.model.auxWidth, 'model.auxWidth');
  positiveInt(c.model.sequenceLength, 'model.sequenceLength');
  if (!STEM_KINDS.includes(c.model.stemKind)) {
    throw new ConfigError('model.stemKind', `expected one of ${STEM_KINDS.join(', ')}, got ${describe(c.model.stemKind)}`);
  }
  if (!(c.data.text.maskFraction > 0 && c.data.text.maskFraction <= 1)) {
    throw new ConfigError('data.text.maskFraction', `expected a number in (0, 1], got ${c.data.text.maskFraction}`);
  }
  if (!['phantom', 'zarr', 'fragment'].includes(c.data.source)) {
    throw new ConfigError('data.source', `expected 'phantom', 'zarr' or 'fragment', got ${describe(c.data.source)}`);
  }
  if (!DEPTH_COLLAPSE_MODES.includes(c.data.collapse.mode)) {
    throw new ConfigError('data.collapse.mode', `expected one of ${DEPTH_COLLAPSE_MODES.join(', ')}, got ${describe(c.data.collapse.mode)}`);
  }
  if (!(c.data.collapse.temperature > 0)) throw new ConfigError('data.collapse.temperature', `expected > 0, got ${c.data.collapse.temperature}`);
  if (c.model.stemKind === 'volume' && c.data.source === 'fragment' && c.model.heads.join() !== 'ink') {
    throw new ConfigError('model.heads', `a fragment has 2D ink labels only; train the ink head alone on it (got ${c.model.heads.join(', ')})`);
  }
  if (!Object.prototype.hasOwnProperty.call(PHANTOM_PRESETS, c.data.phantomPreset)) {
    throw new ConfigError(
      'data.phantomPreset',
      `expected one of ${Object.keys(PHANTOM_PRESETS).join(', ')}, got ${describe(c.data.phantomPreset)}`,
    );
  }
  for (const h of VOLUME_HEADS) {
    const w = c.model.lossWeights[h];
    if (!(w >= 0)) throw new ConfigError(`model.lossWeights.${h}`, `expected a number >= 0, got ${w}`);
  }
  if (c.model.stemKind === 'volume' && c.data.source === 'zarr') {
    if (!c.data.volume) throw new ConfigError('data.volume', `source 'zarr' needs data.volume`);
    const need: Record<VolumeHeadName, keyof DataConfig> = { ink: 'inkLabels', fiber: 'fibreField', geometry: 'papyrusLabels' };
    for (const h of c.model.heads) {
      const key = need[h];
      if (!c.data[key]) throw new ConfigError(`data.${key}`, `source 'zarr' with the ${h} head needs data.${key}`);
    }
  }
  if (!c.data.trainRegion !== !c.data.valRegion) {
    throw new ConfigError(c.data.trainRegion ? 'data.valRegion' : 'data.trainRegion', 'give both data.trainRegion and data.valRegion, or neither (then data.validationFraction splits the volume)');
  }
  for (const key of ['trainRegion', 'valRegion'] as const) {
    if (c.data[key]) resolveRegionSpec(c.data[key], undefined, { field: `data.${key}` });
  }
  if (!(c.data.validationFraction > 0 && c.data.validationFraction < 1)) {
    throw new ConfigError('data.validationFraction', `expected a number in (0, 1), got ${c.data.validationFraction}`);
  }
  if (!(c.optim.lr > 0)) throw new ConfigError('optim.lr', `expected > 0, got ${c.optim.lr}`);
  positiveInt(c.optim.warmupSteps, 'optim.warmupSteps', true);
  if (!(c.optim.minLrFraction >= 0 && c.optim.minLrFraction <= 1)) {
    throw new ConfigError('optim.minLrFraction', `expected a number in [0, 1], got ${c.optim.minLrFraction}`);
  }
  if (!(c.optim.clipNorm >= 0)) throw new ConfigError('optim.clipNorm', `expected >= 0, got ${c.optim.clipNorm}`);
  const [pd, ph, pw] = c.model.patch;
  const [sd, sh, sw] = c.data.phantomShape;
  const valD = Math.floor(sd * c.data.validationFraction);
  if (c.model.stemKind === 'volume' && c.data.source === 'phantom' && !c.data.trainRegion && (pd > valD || pd > sd - valD || ph > sh || pw > sw)) {
    throw new ConfigError(
      'model.patch',
      `patch ${c.model.patch.join('x')} does not fit the phantom ${c.data.phantomShape.join('x')} ` +
        `split into ${sd - valD} training and ${valD} validation slices along z`,
    );
  }
  // Every part's own checks, now, so that a bad stem or encoder field stops before anything is written.
  const spec = resolveModelSpec(c.model);
  if (spec.stemKind === 'volume' && spec.geometryHead?.normals && c.data.source === 'zarr' && !c.data.normalField) {
    throw new ConfigError('data.normalField', `source 'zarr' with the geometry head's normals needs data.normalField (or model.geometryHead.normals: false)`);
  }
  return c;
}

/** Learning rate at `step` (0-based): linear warm-up, then cosine decay to `minLrFraction * lr`. */
export function learningRate(o: OptimConfig, step: number, totalSteps: number): number {
  if (step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  const span = Math.max(1, totalSteps - o.warmupSteps);
  const t = Math.min(1, (step - o.warmupSteps) / span);
  const floor = o.lr * o.minLrFraction;
  return floor + (o.lr - floor) * 0.5 * (1 + Math.cos(Math.PI * t));
}
