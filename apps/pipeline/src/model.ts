/**
 * Wiring, not modelling: a model is the packages' modules in a row — one stem, the shared trunk
 * (encoder -> Graph-of-Experts layer) and its heads — with one token width `d` and one aux width `da`
 * handed to every part (GoE draft §3.1: every stem emits tokens `[B, N, d]` and aux `[B, N, da]`, and
 * nothing after the stem looks at the modality):
 *
 *   volume:   volume stem   -> encoder -> GoE layer -> ink, fibre and/or geometry heads   (patches `[B, D, H, W, 1]`)
 *   sequence: sequence stem -> encoder -> GoE layer -> byte head  (bytes `[B, N]`)
 *
 * The trunk can be handed in, so one encoder and one GoE layer can be trained behind either stem.
 */
import { Module, tf, type Rng } from '@goe/tf';
import { makeTokenGrid, tokenCellVoxels, VolumeStem, type TokenGrid } from '@goe/volume-stem';
import { SequenceStem, ByteHead, byteLoss } from '@goe/sequence-stem';
import { Encoder } from '@goe/encoder';
import { GoeLayer, readProvenance, type GoeOutput, type GoeProvenance, type ProvenanceArrays } from '@goe/core';
import { InkHead, inkLoss, type DepthCollapseInput } from '@goe/head-ink';
import { FiberHead, fiberTargetsFromVoxels, sheetFrameFeatures } from '@goe/head-fiber';
import { GeometryHead, geometryLoss, type GeometryOutput } from '@goe/head-geometry';
import { ConfigError } from './errors.js';
import { volumeHeads, type ModelSpec, type SequenceModelSpec, type VolumeHeadName, type VolumeModelSpec } from './spec.js';

/** One batch of patches as tensors, with the targets of every head the model carries. */
export interface PatchBatch {
  /** `[B, D, H, W, 1]` intensities scaled to about [-1, 1]. */
  x: tf.Tensor5D;
  /** `[B, D, H, W]` ink labels (0/1) (ink head). */
  ink?: tf.Tensor4D;
  /** `[B, N, 3]` per-token fibre directions and `[B, N]` labelled mask (fibre head). */
  fiber?: { target: tf.Tensor3D; mask: tf.Tensor2D };
  /** `[B, D, H, W]` sheet (papyrus) mask, and `[B, N, 3]` / `[B, N]` normals and their mask (geometry head). */
  geometry?: { sheet: tf.Tensor4D; normals?: tf.Tensor3D; normalMask?: tf.Tensor2D };
  /** Host copies, for metrics and pictures: intensities `[B*D*H*W]` and per-head labels. */
  image: Float32Array;
  inkLabels?: Uint8Array;
  sheetLabels?: Uint8Array;
  /** `[B*N*3]` and `[B*N]`. */
  fiberTargets?: { target: Float32Array; mask: Uint8Array };
  normalTargets?: { target: Float32Array; mask: Uint8Array };
  /**
   * Fragments: one ink label per (y, x) column instead of per voxel. The ink head's voxel logits are
   * collapsed over the layer axis (`collapse`, @goe/head-ink `collapseDepth`) and scored against
   * `target` `[B, H, W]` where `mask` `[B, H, W]` is 1 (the fragment's mask.png).
   */
  inkColumns?: { target: tf.Tensor3D; mask: tf.Tensor3D; collapse: DepthCollapseInput };
  /** Host copies of the column labels and mask, `[B*H*W]`. */
  inkColumnLabels?: Uint8Array;
  inkColumnMask?: Uint8Array;
  /** `[B, N, K]` the fibre head's per-token sheet-frame features, when it takes them (`VolumeModel.fiberFeatures`). */
  fiberSkip?: tf.Tensor3D;
}

/** How `patchBatch` builds a batch. */
export interface PatchBatchOptions {
  /** Heads whose targets to build (default ink only). */
  heads?: readonly VolumeHeadName[];
  /** The stem's token grid over the patch (needed for per-token targets: fibres, normals). */
  grid?: TokenGrid;
  /** Largest intensity of the volume's dtype (255 for uint8, 65535 for uint16, 1 for float). */
  scale?: number;
  /**
   * Fragments: the ink labels (and the `mask` label, if present) are per column, the same on every
   * layer; the batch then carries `inkColumns` (layer 0 of each) collapsed with this mode, not voxel labels.
   */
  columns?: DepthCollapseInput;
}

/** One sampled patch: image voxels, label voxels by name, and vector fields `[3, D, H, W]` by name. */
export interface RawPatch {
  image: ArrayLike<number>;
  labels: Record<string, ArrayLike<number>>;
  fields?: Record<string, ArrayLike<number>>;
}

/** uint8 CT intensities to about [-1, 1]; the scale is fixed so that train and segment agree. */
export function normaliseIntensity(v: number, dtypeMax = 255): number {
  return (v / dtypeMax) * 2 - 1;
}

/**
 * Per-token sign-free targets from a field stored components first (`[3, D, H, W]` per patch, as the
 * phantom writes it): the fibre head's `fiberTargetsFromVoxels` (the principal direction of the cell's
 * outer products; zero vectors are unlabelled), used for fibres and sheet normals alike.
 */
export function fieldTokenTargets(fields: ArrayLike<number>[], grid: TokenGrid): { target: Float32Array; mask: Uint8Array } {
  const n = grid.inputShape[0] * grid.inputShape[1] * grid.inputShape[2];
  const last = new Float32Array(fields.length * n * 3);
  fields.forEach((f, b) => {
    if (f.length !== 3 * n) throw new Error(`field patch has ${f.length} values; expected [3, ${grid.inputShape.join(', ')}]`);
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) last[(b * n + i) * 3 + c] = f[c * n + i] as number;
  });
  const t = fiberTargetsFromVoxels(last, grid, fields.length);
  return { target: t.target, mask: t.mask };
}

/** Stacks sampler patches into a batch with the targets of `o.heads`. */
export function patchBatch(patches: RawPatch[], patch: [number, number, number], o: PatchBatchOptions = {}): PatchBatch {
  const { heads = ['ink'], grid, scale = 255 } = o;
  const n = patch[0] * patch[1] * patch[2];
  const B = patches.length;
  const x = new Float32Array(B * n);
  patches.forEach((p, b) => {
    for (let i = 0; i < n; i++) x[b * n + i] = normaliseIntensity(p.image[i] as number, scale);
  });
  const binary = (name: string): Uint8Array => {
    const out = new Uint8Array(B * n);
    patches.forEach((p, b) => {
      const src = p.labels[name];
      if (!src) throw new Error(`patch has no ${name} labels`);
      for (let i = 0; i < n; i++) out[b * n + i] = (src[i] as number) > 0 ? 1 : 0;
    });
    return out;
  };
  const field = (name: string): ArrayLike<number>[] =>
    patches.map((p) => {
      const f = p.fields?.[name];
      if (!f) throw new Error(`patch has no ${name} field`);
      return f;
    });
  const needGrid = (): TokenGrid => {
    if (!grid) throw new Error('per-token targets need the token grid');
    return grid;
  };
  const batch: PatchBatch = { x: tf.tensor5d(x, [B, ...patch, 1]), image: x };
  const N = grid ? grid.dims[0] * grid.dims[1] * grid.dims[2] : 0;
  if (heads.includes('ink') && o.columns !== undefined) {
    // Layer 0 of each patch: the column labels are the same on every layer.
    const plane = patch[1] * patch[2];
    const layer0 = (name: string, fallback: number): Uint8Array => {
      const out = new Uint8Array(B * plane).fill(fallback);
      patches.forEach((p, b) => {
        const src = p.labels[name];
        if (src) for (let i = 0; i < plane; i++) out[b * plane + i] = (src[i] as number) > 0 ? 1 : 0;
        else if (name === 'ink') throw new Error('patch has no ink labels');
      });
      return out;
    };
    batch.inkColumnLabels = layer0('ink', 0);
    batch.inkColumnMask = layer0('mask', 1);
    batch.inkColumns = {
      target: tf.tensor3d(Float32Array.from(batch.inkColumnLabels), [B, patch[1], patch[2]]),
      mask: tf.tensor3d(Float32Array.from(batch.inkColumnMask), [B, patch[1], patch[2]]),
      collapse: o.columns,
    };
  } else if (heads.includes('ink')) {
    batch.inkLabels = binary('ink');
    batch.ink = tf.tensor4d(Float32Array.from(batch.inkLabels), [B, ...patch]);
  }
  if (heads.includes('fiber')) {
    batch.fiberTargets = fieldTokenTargets(field('fibre'), needGrid());
    batch.fiber = {
      target: tf.tensor3d(batch.fiberTargets.target, [B, N, 3]),
      mask: tf.tensor2d(Float32Array.from(batch.fiberTargets.mask), [B, N]),
    };
  }
  // Host papyrus labels whenever the patches carry them (they also class tokens for the routing report).
  if (patches[0]?.labels['papyrus']) batch.sheetLabels = binary('papyrus');
  if (heads.includes('geometry')) {
    batch.sheetLabels = batch.sheetLabels ?? binary('papyrus');
    batch.geometry = { sheet: tf.tensor4d(Float32Array.from(batch.sheetLabels), [B, ...patch]) };
    if (patches[0]?.fields?.['normal']) {
      batch.normalTargets = fieldTokenTargets(field('normal'), needGrid());
      batch.geometry.normals = tf.tensor3d(batch.normalTargets.target, [B, N, 3]);
      batch.geometry.normalMask = tf.tensor2d(Float32Array.from(batch.normalTargets.mask), [B, N]);
    }
  }
  return batch;
}

/** Every tensor of `b`. */
export function batchTensors(b: PatchBatch): tf.Tensor[] {
  const all: (tf.Tensor | undefined)[] = [
    b.x,
    b.ink,
    b.inkColumns?.target,
    b.inkColumns?.mask,
    b.fiber?.target,
    b.fiber?.mask,
    b.fiberSkip,
    b.geometry?.sheet,
    b.geometry?.normals,
    b.geometry?.normalMask,
  ];
  return all.filter((t): t is tf.Tensor => t !== undefined);
}

/** The modality-agnostic part every stem feeds: encoder -> Graph-of-Experts layer. */
export interface Trunk {
  encoder: Encoder;
  core: GoeLayer;
}

/** Builds the trunk of `spec` (encoder first, then the GoE layer, from `rng`). */
export function buildTrunk(spec: ModelSpec, rng: Rng): Trunk {
  return { encoder: new Encoder(spec.encoder, rng), core: new GoeLayer(spec.core, rng) };
}

interface StemOutput {
  /** `[B, N, d]` */
  tokens: tf.Tensor3D;
  /** `[B, N, da]` */
  aux: tf.Tensor3D;
}

function disposeProvenance(g: GoeOutput): void {
  tf.dispose([g.provenance.experts, g.provenance.gates, g.provenance.haltedAt].filter(Boolean) as tf.Tensor[]);
}

/**
 * Router health of one forward pass, for the progress line and `metrics.jsonl` (not losses: nothing
 * is differentiated through them):
 * - `balance`: M · the largest expert's share of the dispatched slots, averaged over cycles (1 = every
 *   expert equally loaded, M = all on one expert);
 * - `entropy`: mean router entropy over active tokens (nats; ln M = uniform routing);
 * - `cycles`: mean cycles a token ran before halting (GoE draft §3.1.5; K when nothing halts).
 */
export type RouterHealth = { balance: tf.Scalar; entropy: tf.Scalar; cycles: tf.Scalar };

function routerHealth(g: GoeOutput): RouterHealth {
  return tf.tidy(() => {
    const M = g.stats.load.shape[1];
    return {
      balance: tf.mul(tf.mean(tf.max(g.stats.load, 1)), M) as tf.Scalar,
      entropy: tf.mean(g.stats.routerEntropy) as tf.Scalar,
      cycles: tf.clone(g.stats.meanHaltCycle),
    };
  });
}

/** The names `RouterHealth` is logged under. */
export const ROUTER_HEALTH_KEYS = ['balance', 'entropy', 'cycles'] as const;

/**
 * Stem -> trunk, for any stem whose input is `X`; subclasses add their heads after the trunk (so the
 * random draws go stem, encoder, GoE layer, heads).
 */
abstract class StemModel<X extends tf.Tensor, S extends Module> extends Module {
  readonly stem: S;
  readonly encoder: Encoder;
  readonly core: GoeLayer;

  protected constructor(
    readonly spec: ModelSpec,
    parts: { stem: (rng: Rng) => S },
    rng: Rng,
    trunk?: Trunk,
  ) {
    super();
    this.stem = this.child('stem', parts.stem(rng));
    const t = trunk ?? buildTrunk(spec, rng);
    if (trunk) {
      // A shared trunk must be the one this spec describes, or the model would silently differ from its config.
      if (JSON.stringify(trunk.encoder.config) !== JSON.stringify(spec.encoder)) {
        throw new ConfigError('model.encoder', 'the shared encoder was built from another config');
      }
      if (JSON.stringify(trunk.core.config) !== JSON.stringify(spec.core)) {
        throw new ConfigError('model.core', 'the shared GoE layer was built from another config');
      }
    }
    this.encoder = this.child('encoder', t.encoder);
    this.core = this.child('core', t.core);
  }

  /** Frees the variables that are this model's own: everything but a shared trunk's encoder and GoE layer. */
  disposeOwnParts(): void {
    const trunk = new Set([...this.encoder.variables().values(), ...this.core.variables().values()]);
    for (const v of this.variables().values()) if (!trunk.has(v)) v.dispose();
  }

  /** The stem's tokens and aux routing features for `x`. */
  protected abstract tokens(x: X, training: boolean): StemOutput;

  /** `x` through stem, encoder and GoE layer. @returns the GoE layer's output (tokens `[B, N, d]`). */
  protected trunkApply(s: StemOutput, training: boolean): GoeOutput {
    const e = this.encoder.apply({ tokens: s.tokens, aux: s.aux }, { training });
    return this.core.apply({ tokens: e.tokens, aux: e.aux }, { training });
  }

  /**
   * The GoE layer's path provenance on `x` (evaluation mode), read to the host: which experts every
   * token visited in every cycle, with gates, halting and the expert graph A.
   */
  async routing(x: X): Promise<ProvenanceArrays> {
    const kept = tf.tidy(() => ({ ...this.trunkApply(this.tokens(x, false), false).provenance }) as Record<string, tf.Tensor>);
    try {
      return await readProvenance(kept as unknown as GoeProvenance);
    } finally {
      tf.dispose(Object.values(kept));
    }
  }
}

export interface VolumeForward {
  /** `[B, D, H, W]` ink logits (ink head). */
  logits?: tf.Tensor4D;
  /** `[B, N, 3]` unit fibre directions, sign arbitrary (fibre head). */
  fiber?: tf.Tensor3D;
  /** Sheet logits `[B, D, H, W]` and normals `[B, N, 3]` (geometry head). */
  geometry?: GeometryOutput;
  /** The router's auxiliary loss total. */
  routerLoss: tf.Scalar;
  health: RouterHealth;
  grid: TokenGrid;
}

/** Named predictions of the volume model's heads (see `VolumeModel.predict`). */
export interface VolumePredictions {
  /** `[B, D, H, W]` ink probability. */
  ink?: tf.Tensor4D;
  /** `[B, N, 3]` unit fibre directions. */
  fiber?: tf.Tensor3D;
  /** `[B, D, H, W]` sheet probability. */
  sheet?: tf.Tensor4D;
  /** `[B, N, 3]` unit sheet normals. */
  normals?: tf.Tensor3D;
}

/** Loss parts of the volume model: the total, each present head's parts, and the router's. */
export type VolumeLossParts = { total: tf.Scalar; router: tf.Scalar } & RouterHealth & Partial<
  Record<'bce' | 'dice' | 'ink' | 'fiber' | 'geometry' | 'sheetBce' | 'sheetDice' | 'normal', tf.Scalar>
>;

/**
 * volume stem -> encoder -> GoE layer -> the task heads of the spec (ink, fibre, geometry), all reading
 * the same tokens `T''` (GoE draft §3.1.6: pluggable task heads on one shared trunk). The ink head is
 * the child `head` (the name single-head checkpoints use); the others `fiberHead`, `geometryHead`.
 */
export class VolumeModel extends StemModel<tf.Tensor5D, VolumeStem> {
  declare readonly spec: VolumeModelSpec;
  readonly heads: VolumeHeadName[];
  readonly inkHead: InkHead | undefined;
  readonly fiberHead: FiberHead | undefined;
  readonly geometryHead: GeometryHead | undefined;

  constructor(spec: VolumeModelSpec, rng: Rng, trunk?: Trunk) {
    super(spec, { stem: (r) => new VolumeStem(spec.stem, r) }, rng, trunk);
    this.heads = volumeHeads(spec);
    this.inkHead = spec.head ? this.child('head', new InkHead(spec.head, rng)) : undefined;
    this.fiberHead = spec.fiberHead ? this.child('fiberHead', new FiberHead(spec.fiberHead, rng)) : undefined;
    this.geometryHead = spec.geometryHead ? this.child('geometryHead', new GeometryHead(spec.geometryHead, rng)) : undefined;
  }

  protected tokens(x: tf.Tensor5D, training: boolean): StemOutput {
    const s = this.stem.apply(x, { training });
    return { tokens: s.tokens, aux: s.aux };
  }

  /**
   * The fibre head's per-token features for host intensities `image` `[B*D*H*W]` (any scale), when it
   * takes them (`model.fiberSheetFrame`): @goe/head-fiber's `sheetFrameFeatures` over the stem's token
   * grid. Computed on the host, in float64, so every backend gets the same features.
   * @returns `[B, N, K]`, or undefined when the model has no fibre head or it takes no features
   */
  fiberFeatures(image: ArrayLike<number>, batch: number, patch: readonly [number, number, number]): tf.Tensor3D | undefined {
    const k = this.fiberHead?.config.skip ?? 0;
    if (k === 0) return undefined;
    const grid = makeTokenGrid(patch, tokenCellVoxels(this.spec.stem));
    const N = grid.dims[0] * grid.dims[1] * grid.dims[2];
    return tf.tensor3d(sheetFrameFeatures(image, grid, batch).features, [batch, N, k]);
  }

  /**
   * @param x `[B, D, H, W, 1]`
   * @param opts.fiberSkip the fibre head's features (`fiberFeatures`), required when it takes them
   * @returns each head's output and the router loss.
   */
  forward(x: tf.Tensor5D, opts: { training: boolean; fiberSkip?: tf.Tensor3D }): VolumeForward {
    const s = this.stem.apply(x, opts);
    const g = this.trunkApply(s, opts.training);
    const out: VolumeForward = { routerLoss: g.losses.total, health: routerHealth(g), grid: s.grid };
    if (this.inkHead) out.logits = this.inkHead.apply(g.tokens, s.grid);
    if (this.fiberHead) out.fiber = this.fiberHead.apply(g.tokens, opts.fiberSkip);
    if (this.geometryHead) out.geometry = this.geometryHead.apply(g.tokens, s.grid);
    disposeProvenance(g);
    return out;
  }

  /**
   * Every head's prediction for `x` in evaluation mode, named: ink and sheet probabilities
   * `[B, D, H, W]`, fibre directions and sheet normals `[B, N, 3]` (unit, sign arbitrary); only the
   * heads the model carries. Call inside `tf.tidy` (or dispose the tensors).
   */
  predict(x: tf.Tensor5D, fiberSkip?: tf.Tensor3D): VolumePredictions {
    return this.predictionsOf(this.forward(x, { training: false, fiberSkip }));
  }

  /** The named predictions of a forward pass (see `predict`). */
  predictionsOf(f: VolumeForward): VolumePredictions {
    const out: VolumePredictions = {};
    if (f.logits) out.ink = tf.sigmoid(f.logits);
    if (f.fiber) out.fiber = f.fiber;
    if (f.geometry) {
      out.sheet = tf.sigmoid(f.geometry.sheetLogits);
      if (f.geometry.normals) out.normals = f.geometry.normals;
    }
    return out;
  }

  /**
   * The loss the optimiser sees and its parts: the weighted sum of the heads' losses (ink BCE + Dice;
   * fibre `1 - (v.t)^2`; geometry sheet BCE + Dice + normals), plus the router's auxiliary total.
   */
  loss(f: VolumeForward, target: tf.Tensor4D | PatchBatch): VolumeLossParts {
    const b: Partial<PatchBatch> = target instanceof tf.Tensor ? { ink: target } : target;
    const w = this.spec.lossWeights;
    const router = f.routerLoss;
    let total: tf.Scalar = tf.mul(router, this.spec.auxLossWeight);
    const parts: Partial<VolumeLossParts> = {};
    if (f.logits) {
      if (!b.ink && !b.inkColumns) throw new Error('the ink head needs ink labels in the batch');
      const l = b.inkColumns
        ? inkLoss(f.logits, b.inkColumns.target, { collapse: b.inkColumns.collapse, mask: b.inkColumns.mask })
        : inkLoss(f.logits, b.ink as tf.Tensor4D);
      Object.assign(parts, { bce: l.bce, dice: l.dice, ink: l.total });
      total = tf.add(total, tf.mul(l.total, w.ink));
    }
    if (f.fiber) {
      if (!b.fiber) throw new Error('the fibre head needs fibre targets in the batch');
      const l = (this.fiberHead as FiberHead).loss(f.fiber, b.fiber.target, b.fiber.mask);
      parts.fiber = l;
      total = tf.add(total, tf.mul(l, w.fiber));
    }
    if (f.geometry) {
      if (!b.geometry) throw new Error('the geometry head needs sheet labels in the batch');
      const l = geometryLoss(f.geometry, b.geometry);
      Object.assign(parts, { geometry: l.total, sheetBce: l.sheetBce, sheetDice: l.sheetDice, normal: l.normal });
      total = tf.add(total, tf.mul(l.total, w.geometry));
    }
    return { ...parts, total, router, ...f.health } as VolumeLossParts;
  }
}

export interface ByteForward {
  /** `[B, N, 256]` byte logits at every position. */
  logits: tf.Tensor3D;
  /** The router's auxiliary loss total. */
  routerLoss: tf.Scalar;
  health: RouterHealth;
}

/** sequence stem -> encoder -> GoE layer -> byte head. */
export class ByteModel extends StemModel<tf.Tensor2D, SequenceStem> {
  declare readonly spec: SequenceModelSpec;
  readonly head: ByteHead;

  constructor(spec: SequenceModelSpec, rng: Rng, trunk?: Trunk) {
    super(spec, { stem: (r) => new SequenceStem(spec.stem, r) }, rng, trunk);
    this.head = this.child('head', new ByteHead(spec.head, rng));
  }

  protected tokens(bytes: tf.Tensor2D): StemOutput {
    // The byte range is checked where the batches are made (host side), not with a device read per step.
    const s = this.stem.apply(bytes, { checkRange: false });
    return { tokens: s.tokens, aux: s.aux };
  }

  /** @param bytes `[B, N]` int32 0–255 @returns logits `[B, N, 256]` and the router loss. */
  forward(bytes: tf.Tensor2D, opts: { training: boolean }): ByteForward {
    const s = this.stem.apply(bytes, { checkRange: false });
    tf.dispose(s.positions);
    const g = this.trunkApply(s, opts.training);
    const logits = this.head.apply(g.tokens);
    disposeProvenance(g);
    return { logits, routerLoss: g.losses.total, health: routerHealth(g) };
  }

  /**
   * The loss the optimiser sees and its parts: the byte cross-entropy at the weighted positions (nats;
   * `bpb` is the same in bits), plus the router's auxiliary total.
   * @param target `[B, N]` int32 @param weight `[B, N]` float32
   */
  loss(f: ByteForward, target: tf.Tensor2D, weight: tf.Tensor2D): { total: tf.Scalar; ce: tf.Scalar; bpb: tf.Scalar; router: tf.Scalar } & RouterHealth {
    const l = byteLoss(f.logits, target, weight);
    const router = f.routerLoss;
    const total = tf.add(l.ce, tf.mul(router, this.spec.auxLossWeight)) as tf.Scalar;
    return { total, ce: l.ce, bpb: l.bitsPerByte, router, ...f.health };
  }
}

/** Either model; `spec.stemKind` tells which. */
export type PipelineModel = VolumeModel | ByteModel;

/** Builds the model `spec` describes, optionally around a given trunk. */
export function buildModel(spec: ModelSpec, rng: Rng, trunk?: Trunk): PipelineModel {
  return spec.stemKind === 'sequence' ? new ByteModel(spec, rng, trunk) : new VolumeModel(spec, rng, trunk);
}
