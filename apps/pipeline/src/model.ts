/**
 * Wiring, not modelling: a model is the packages' modules in a row — one stem, the shared trunk
 * (encoder -> Graph-of-Experts layer) and one head — with one token width `d` and one aux width `da`
 * handed to every part (GoE draft §3.1: every stem emits tokens `[B, N, d]` and aux `[B, N, da]`, and
 * nothing after the stem looks at the modality):
 *
 *   volume:   volume stem   -> encoder -> GoE layer -> ink head   (patches `[B, D, H, W, 1]`)
 *   sequence: sequence stem -> encoder -> GoE layer -> byte head  (bytes `[B, N]`)
 *
 * The trunk can be handed in, so one encoder and one GoE layer can be trained behind either stem.
 */
import { Module, tf, type Rng } from '@goe/tf';
import { VolumeStem, type TokenGrid } from '@goe/volume-stem';
import { SequenceStem, ByteHead, byteLoss } from '@goe/sequence-stem';
import { Encoder } from '@goe/encoder';
import { GoeLayer, readProvenance, type GoeOutput, type GoeProvenance, type ProvenanceArrays } from '@goe/core';
import { InkHead, inkLoss } from '@goe/head-ink';
import { ConfigError } from './errors.js';
import type { ModelSpec, SequenceModelSpec, VolumeModelSpec } from './spec.js';

/** One batch of patches as tensors, plus the host copy of the labels for metrics. */
export interface PatchBatch {
  /** `[B, D, H, W, 1]` intensities scaled to about [-1, 1]. */
  x: tf.Tensor5D;
  /** `[B, D, H, W]` ink labels (0/1). */
  ink: tf.Tensor4D;
  /** Host copies, for metrics and pictures. */
  image: Float32Array;
  inkLabels: Uint8Array;
}

interface RawPatch {
  image: ArrayLike<number>;
  labels: Record<string, ArrayLike<number>>;
}

/** uint8 CT intensities to about [-1, 1]; the scale is fixed so that train and segment agree. */
export function normaliseIntensity(v: number, dtypeMax = 255): number {
  return (v / dtypeMax) * 2 - 1;
}

/** Stacks sampler patches into a batch. */
export function patchBatch(patches: RawPatch[], patch: [number, number, number]): PatchBatch {
  const n = patch[0] * patch[1] * patch[2];
  const x = new Float32Array(patches.length * n);
  const ink = new Uint8Array(patches.length * n);
  patches.forEach((p, b) => {
    const inkSrc = p.labels['ink'];
    if (!inkSrc) throw new Error('patch has no ink labels');
    for (let i = 0; i < n; i++) {
      x[b * n + i] = normaliseIntensity(p.image[i] as number);
      ink[b * n + i] = (inkSrc[i] as number) > 0 ? 1 : 0;
    }
  });
  const B = patches.length;
  return {
    x: tf.tensor5d(x, [B, patch[0], patch[1], patch[2], 1]),
    ink: tf.tensor4d(Float32Array.from(ink), [B, patch[0], patch[1], patch[2]]),
    image: x,
    inkLabels: ink,
  };
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

/** Stem -> trunk -> head, for any stem whose input is `X`. */
abstract class StemModel<X extends tf.Tensor, S extends Module, H extends Module> extends Module {
  readonly stem: S;
  readonly encoder: Encoder;
  readonly core: GoeLayer;
  readonly head: H;

  protected constructor(
    readonly spec: ModelSpec,
    parts: { stem: (rng: Rng) => S; head: (rng: Rng) => H },
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
    this.head = this.child('head', parts.head(rng));
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

export interface InkForward {
  /** `[B, D, H, W]` ink logits. */
  logits: tf.Tensor4D;
  /** The router's auxiliary loss total. */
  routerLoss: tf.Scalar;
  grid: TokenGrid;
}

/** volume stem -> encoder -> GoE layer -> ink head. */
export class InkModel extends StemModel<tf.Tensor5D, VolumeStem, InkHead> {
  declare readonly spec: VolumeModelSpec;

  constructor(spec: VolumeModelSpec, rng: Rng, trunk?: Trunk) {
    super(spec, { stem: (r) => new VolumeStem(spec.stem, r), head: (r) => new InkHead(spec.head, r) }, rng, trunk);
  }

  protected tokens(x: tf.Tensor5D, training: boolean): StemOutput {
    const s = this.stem.apply(x, { training });
    return { tokens: s.tokens, aux: s.aux };
  }

  /** @param x `[B, D, H, W, 1]` @returns logits `[B, D, H, W]` and the router loss. */
  forward(x: tf.Tensor5D, opts: { training: boolean }): InkForward {
    const s = this.stem.apply(x, opts);
    const g = this.trunkApply(s, opts.training);
    const logits = this.head.apply(g.tokens, s.grid);
    disposeProvenance(g);
    return { logits, routerLoss: g.losses.total, grid: s.grid };
  }

  /** The loss the optimiser sees and its parts: ink BCE + Dice, plus the router's auxiliary total. */
  loss(f: InkForward, target: tf.Tensor4D): { total: tf.Scalar; bce: tf.Scalar; dice: tf.Scalar; router: tf.Scalar } {
    const l = inkLoss(f.logits, target);
    const router = f.routerLoss;
    const total = tf.add(l.total, tf.mul(router, this.spec.auxLossWeight)) as tf.Scalar;
    return { total, bce: l.bce, dice: l.dice, router };
  }
}

export interface ByteForward {
  /** `[B, N, 256]` byte logits at every position. */
  logits: tf.Tensor3D;
  /** The router's auxiliary loss total. */
  routerLoss: tf.Scalar;
}

/** sequence stem -> encoder -> GoE layer -> byte head. */
export class ByteModel extends StemModel<tf.Tensor2D, SequenceStem, ByteHead> {
  declare readonly spec: SequenceModelSpec;

  constructor(spec: SequenceModelSpec, rng: Rng, trunk?: Trunk) {
    super(spec, { stem: (r) => new SequenceStem(spec.stem, r), head: (r) => new ByteHead(spec.head, r) }, rng, trunk);
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
    return { logits, routerLoss: g.losses.total };
  }

  /**
   * The loss the optimiser sees and its parts: the byte cross-entropy at the weighted positions (nats;
   * `bpb` is the same in bits), plus the router's auxiliary total.
   * @param target `[B, N]` int32 @param weight `[B, N]` float32
   */
  loss(f: ByteForward, target: tf.Tensor2D, weight: tf.Tensor2D): { total: tf.Scalar; ce: tf.Scalar; bpb: tf.Scalar; router: tf.Scalar } {
    const l = byteLoss(f.logits, target, weight);
    const router = f.routerLoss;
    const total = tf.add(l.ce, tf.mul(router, this.spec.auxLossWeight)) as tf.Scalar;
    return { total, ce: l.ce, bpb: l.bitsPerByte, router };
  }
}

/** Either model; `spec.stemKind` tells which. */
export type PipelineModel = InkModel | ByteModel;

/** Builds the model `spec` describes, optionally around a given trunk. */
export function buildModel(spec: ModelSpec, rng: Rng, trunk?: Trunk): PipelineModel {
  return spec.stemKind === 'sequence' ? new ByteModel(spec, rng, trunk) : new InkModel(spec, rng, trunk);
}
