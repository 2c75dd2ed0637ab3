/**
 * Wiring, not modelling: the ink model is the packages' modules in a row —
 * volume stem -> shared encoder -> Graph-of-Experts layer -> ink head — with one token width `d` and
 * one aux width `da` handed to every part.
 */
import { Module, tf, type Rng } from '@goe/tf';
import { VolumeStem, resolveVolumeStemConfig, type TokenGrid } from '@goe/volume-stem';
import { Encoder, resolveEncoderConfig } from '@goe/encoder';
import { GoeLayer, readProvenance, resolveGoeConfig, type GoeProvenance, type ProvenanceArrays } from '@goe/core';
import { InkHead, inkLoss, resolveInkHeadConfig } from '@goe/head-ink';
import type { ModelConfig } from './config.js';

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

export interface InkForward {
  /** `[B, D, H, W]` ink logits. */
  logits: tf.Tensor4D;
  /** The router's auxiliary loss total. */
  routerLoss: tf.Scalar;
  grid: TokenGrid;
}

/** volume stem -> encoder -> GoE layer -> ink head. */
export class InkModel extends Module {
  readonly stem: VolumeStem;
  readonly encoder: Encoder;
  readonly core: GoeLayer;
  readonly head: InkHead;

  constructor(
    readonly config: ModelConfig,
    rng: Rng,
  ) {
    super();
    const d = config.width;
    const da = config.auxWidth;
    const stemConfig = resolveVolumeStemConfig({ ...config.stem, d, da });
    this.stem = this.child('stem', new VolumeStem(stemConfig, rng));
    this.encoder = this.child('encoder', new Encoder(resolveEncoderConfig({ ...config.encoder, d, da }), rng));
    this.core = this.child('core', new GoeLayer(resolveGoeConfig({ ...config.core, d, da }), rng));
    this.head = this.child('head', new InkHead(resolveInkHeadConfig({ ...config.inkHead, d, cell: stemConfig.cell }), rng));
  }

  /** @param x `[B, D, H, W, 1]` @returns logits `[B, D, H, W]` and the router loss. */
  forward(x: tf.Tensor5D, opts: { training: boolean }): InkForward {
    const s = this.stem.apply(x, opts);
    const e = this.encoder.apply({ tokens: s.tokens, aux: s.aux }, opts);
    const g = this.core.apply({ tokens: e.tokens, aux: e.aux }, opts);
    const logits = this.head.apply(g.tokens, s.grid);
    tf.dispose([g.provenance.experts, g.provenance.gates, g.provenance.haltedAt].filter(Boolean) as tf.Tensor[]);
    return { logits, routerLoss: g.losses.total, grid: s.grid };
  }

  /**
   * The GoE layer's path provenance on `x` (evaluation mode), read to the host: which experts every
   * token visited in every cycle, with gates, halting and the expert graph A.
   * @param x `[B, D, H, W, 1]`
   */
  async routing(x: tf.Tensor5D): Promise<ProvenanceArrays> {
    const kept = tf.tidy(() => {
      const s = this.stem.apply(x, { training: false });
      const e = this.encoder.apply({ tokens: s.tokens, aux: s.aux }, { training: false });
      const g = this.core.apply({ tokens: e.tokens, aux: e.aux }, { training: false });
      return { ...g.provenance } as Record<string, tf.Tensor>;
    });
    try {
      return await readProvenance(kept as unknown as GoeProvenance);
    } finally {
      tf.dispose(Object.values(kept));
    }
  }

  /** The loss the optimiser sees and its parts: ink BCE + Dice, plus the router's auxiliary total. */
  loss(f: InkForward, target: tf.Tensor4D): { total: tf.Scalar; bce: tf.Scalar; dice: tf.Scalar; router: tf.Scalar } {
    const l = inkLoss(f.logits, target);
    const router = f.routerLoss;
    const total = tf.add(l.total, tf.mul(router, this.config.auxLossWeight)) as tf.Scalar;
    return { total, bce: l.bce, dice: l.dice, router };
  }
}
