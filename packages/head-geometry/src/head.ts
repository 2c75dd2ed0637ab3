/**
 * The geometry head: the papyrus sheet (surface) mask per voxel, decoded from the token grid by the same
 * learned per-token "unpatchify" as the ink head, and optionally one sign-free sheet normal per token.
 * Its loss: BCE + soft Dice on the sheet mask over labelled voxels, plus 1 − (n·t)² on the normals.
 *
 * Legend: B batch, N tokens, d width, cv voxels per cell, D/H/W volume.
 */
import { LayerNorm, Linear, Module, SeparableSmoothing, gelu, tf, unpatchifyCells, type Rng, type TokenGrid } from '@goe/tf';
import type { GeometryHeadConfig } from './config.js';
import { GeometryInputError } from './errors.js';

export interface GeometryOutput {
  /** `[B, D, H, W]` sheet-mask logits. */
  sheetLogits: tf.Tensor4D;
  /** `[B, N, 3]` unit sheet normals (z, y, x), sign arbitrary (only with `normals`). */
  normals?: tf.Tensor3D;
}

export class GeometryHead extends Module {
  readonly norm: LayerNorm | undefined;
  readonly hidden: Linear | undefined;
  readonly toCell: Linear;
  readonly toNormal: Linear | undefined;
  readonly smoothing: SeparableSmoothing | undefined;

  constructor(
    readonly config: GeometryHeadConfig,
    rng: Rng,
  ) {
    super();
    const { d, cell, hidden } = config;
    const width = hidden > 0 ? hidden : d;
    this.norm = config.norm ? this.child('norm', new LayerNorm(d, rng)) : undefined;
    this.hidden = hidden > 0 ? this.child('hidden', new Linear(d, hidden, rng)) : undefined;
    this.toCell = this.child('toCell', new Linear(width, cell[0] * cell[1] * cell[2], rng));
    this.toNormal = config.normals ? this.child('toNormal', new Linear(width, 3, rng)) : undefined;
    this.smoothing = config.smoothing ? this.child('smoothing', new SeparableSmoothing(rng)) : undefined;
  }

  /**
   * @param tokens `[B, N, d]`, z-major over `grid`
   * @param grid the stem's token grid (its `cell` must equal the config's)
   * @returns sheet logits `[B, D, H, W]` and normals `[B, N, 3]`
   * @throws GeometryInputError when tokens, grid and config do not fit together
   */
  apply(tokens: tf.Tensor3D, grid: TokenGrid): GeometryOutput {
    const { d, cell } = this.config;
    if (grid.cell.some((c, i) => c !== cell[i])) {
      throw new GeometryInputError('grid.cell', `[${cell.join(', ')}] (the head's cell)`, `[${grid.cell.join(', ')}]`);
    }
    const N = grid.dims[0] * grid.dims[1] * grid.dims[2];
    if (tokens.rank !== 3 || tokens.shape[1] !== N || tokens.shape[2] !== d) {
      throw new GeometryInputError('tokens', `[B, ${N}, ${d}]`, `[${tokens.shape.join(', ')}]`);
    }
    const B = tokens.shape[0];
    const out = tf.tidy(() => {
      let x = tf.reshape(tokens, [B * N, d]); // [B*N, d]
      if (this.norm) x = this.norm.apply(x);
      if (this.hidden) x = gelu(this.hidden.apply(x));
      let sheet = unpatchifyCells(this.toCell.apply(x) as tf.Tensor2D, B, grid); // [B, D, H, W]
      if (this.smoothing) sheet = this.smoothing.apply(sheet);
      const res: Record<string, tf.Tensor> = { sheetLogits: sheet };
      if (this.toNormal) {
        const v = this.toNormal.apply(x); // [B*N, 3]
        const n = tf.mul(v, tf.rsqrt(tf.add(tf.sum(tf.square(v), 1, true), 1e-8))); // [B*N, 3]
        res['normals'] = tf.reshape(n, [B, N, 3]);
      }
      return res;
    });
    return {
      sheetLogits: out['sheetLogits'] as tf.Tensor4D,
      ...(out['normals'] ? { normals: out['normals'] as tf.Tensor3D } : {}),
    };
  }
}

export interface GeometryTargets {
  /** `[B, D, H, W]` sheet mask 0/1. */
  sheet: tf.Tensor;
  /** `[B, D, H, W]` 1 = labelled voxel (optional). */
  sheetMask?: tf.Tensor;
  /** `[B, N, 3]` sheet normals; zero vectors = unlabelled (optional). */
  normals?: tf.Tensor;
  /** `[B, N]` 1 = labelled token (optional). */
  normalMask?: tf.Tensor;
}

export interface GeometryLoss {
  /** sheetWeight·(bce + dice) + normalWeight·normal */
  total: tf.Scalar;
  sheetBce: tf.Scalar;
  sheetDice: tf.Scalar;
  /** mean 1 − (n̂·t̂)² over labelled tokens (0 without normals). */
  normal: tf.Scalar;
}

/**
 * @param out the head's output
 * @param targets sheet mask (and optionally normals)
 * @returns total and parts (scalars; the caller disposes)
 * @throws GeometryInputError when shapes differ
 */
export function geometryLoss(
  out: GeometryOutput,
  targets: GeometryTargets,
  weights: { sheet?: number; normal?: number; diceSmooth?: number } = {},
): GeometryLoss {
  const logits = out.sheetLogits;
  if (targets.sheet.shape.join() !== logits.shape.join()) {
    throw new GeometryInputError('sheet', `[${logits.shape.join(', ')}]`, `[${targets.sheet.shape.join(', ')}]`);
  }
  if (targets.sheetMask && targets.sheetMask.size !== logits.size) {
    throw new GeometryInputError('sheetMask', `${logits.size} values`, `[${targets.sheetMask.shape.join(', ')}]`);
  }
  if (targets.normals && out.normals && targets.normals.shape.join() !== out.normals.shape.join()) {
    throw new GeometryInputError('normals', `[${out.normals.shape.join(', ')}]`, `[${targets.normals.shape.join(', ')}]`);
  }
  const ws = weights.sheet ?? 1;
  const wn = weights.normal ?? 1;
  const smooth = weights.diceSmooth ?? 1;
  const W = logits.shape[3];
  return tf.tidy(() => {
    const x = tf.reshape(logits, [-1, W]); // [rows, W]
    const valid = targets.sheetMask ? tf.reshape(tf.cast(targets.sheetMask, 'float32'), [-1, W]) : tf.onesLike(x);
    const y = tf.mul(tf.reshape(tf.cast(targets.sheet, 'float32'), [-1, W]), valid);
    // Stable BCE with logits: max(x, 0) − x·y + log(1 + exp(−|x|)).
    const per = tf.add(tf.sub(tf.relu(x), tf.mul(x, y)), tf.log1p(tf.exp(tf.neg(tf.abs(x)))));
    const sheetBce = tf.div(tf.sum(tf.mul(per, valid)), tf.maximum(tf.sum(valid), 1)) as tf.Scalar;
    const p = tf.mul(tf.sigmoid(x), valid);
    const sheetDice = tf.sub(
      1,
      tf.div(tf.add(tf.mul(tf.sum(tf.mul(p, y)), 2), smooth), tf.add(tf.add(tf.sum(p), tf.sum(y)), smooth)),
    ) as tf.Scalar;
    let normal = tf.scalar(0);
    if (out.normals && targets.normals) {
      const rows = out.normals.size / 3;
      const v = tf.reshape(out.normals, [rows, 3]);
      const t = tf.reshape(targets.normals, [rows, 3]);
      const t2 = tf.sum(tf.square(t), 1, true); // [rows, 1]
      let m: tf.Tensor = tf.cast(tf.greater(t2, 0), 'float32');
      if (targets.normalMask) m = tf.mul(m, tf.reshape(tf.cast(targets.normalMask, 'float32'), [rows, 1]));
      const vn = tf.mul(v, tf.rsqrt(tf.add(tf.sum(tf.square(v), 1, true), 1e-8)));
      const cos = tf.sum(tf.mul(vn, tf.mul(t, tf.rsqrt(tf.add(t2, 1e-8)))), 1, true); // [rows, 1]
      normal = tf.div(tf.sum(tf.mul(tf.sub(1, tf.square(cos)), m)), tf.maximum(tf.sum(m), 1)) as tf.Scalar;
    }
    const total = tf.add(tf.mul(tf.add(sheetBce, sheetDice), ws), tf.mul(normal, wn)) as tf.Scalar;
    return { total, sheetBce, sheetDice, normal };
  });
}
