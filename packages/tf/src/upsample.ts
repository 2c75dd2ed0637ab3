/**
 * From token rows back to voxels, shared by the heads that predict per voxel (ink, sheet geometry): the
 * learned "unpatchify" decoder's data movement, and a learned separable 3-tap smoothing. Both on rank-2/3/4 views (rank-5+ ops are slow on wasm and
 * some are wrong on WebGPU, FACTS.md).
 *
 * Legend: B batch, [gd, gh, gw] token grid, [cz, cy, cx] cell, N tokens, cv = cz·cy·cx,
 * D/H/W = volume size (z, y, x).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Module } from './module.js';
import type { Rng } from './rng.js';
import type { ConfigChecks } from './config-checks.js';

/** How a `[B, D, H, W]` volume is cut into `N = gd * gh * gw` tokens (the volume stem's grid). */
export interface TokenGrid {
  /** Tokens per axis `[gd, gh, gw]`. */
  dims: [number, number, number];
  /** Voxels per token `[cz, cy, cx]`. */
  cell: [number, number, number];
  /** The volume the grid tiles, `[D, H, W]` voxels. */
  inputShape: [number, number, number];
}

/**
 * Per-token cell values back into the volume: the inverse of the stem's cell tokenisation, by two
 * rank-4 transposes (differentiable everywhere; no gather, whose gradient some backends lack).
 *
 * @param cells `[B*N, cv]`, values of each token's cell in (dz, dy, dx) order, tokens z-major
 * @returns `[B, D, H, W]`
 */
export function unpatchifyCells(cells: tf.Tensor2D, batch: number, grid: TokenGrid): tf.Tensor4D {
  const [gd, gh, gw] = grid.dims;
  const [cz, cy, cx] = grid.cell;
  return tf.tidy(() => {
    const d = tf.reshape(cells, [batch * gd * gh, gw, cz * cy, cx]); // [B*gd*gh, gw, cz*cy, cx]
    const c = tf.transpose(d, [0, 2, 1, 3]); // [B*gd*gh, cz*cy, gw, cx]
    const b = tf.reshape(c, [batch * gd, gh, cz, cy * gw * cx]); // [B*gd, gh, cz, cy*gw*cx]
    const a = tf.transpose(b, [0, 2, 1, 3]); // [B*gd, cz, gh, cy*gw*cx]
    return tf.reshape(a, [batch, gd * cz, gh * cy, gw * cx]) as tf.Tensor4D; // [B, D, H, W]
  });
}

/**
 * `[3, n*n]` shift matrices (previous, same, next voxel with replicated edges): for taps t,
 * `x @ reshape(t @ E, [n, n])` gives y[j] = t0·x[j−1] + t1·x[j] + t2·x[j+1] along the last axis.
 */
function shiftBasis(n: number): tf.Tensor2D {
  const e = new Float32Array(3 * n * n);
  for (let j = 0; j < n; j++) {
    e[0 * n * n + Math.max(j - 1, 0) * n + j] += 1;
    e[1 * n * n + j * n + j] += 1;
    e[2 * n * n + Math.min(j + 1, n - 1) * n + j] += 1;
  }
  return tf.tensor2d(e, [3, n * n]);
}

/** 3-tap filter along the last axis of `[rows, n]` with learned taps `[1, 3]`, as one rank-2 matMul. */
function filterLastAxis(x: tf.Tensor2D, taps: tf.Tensor): tf.Tensor2D {
  const n = x.shape[1];
  const band = tf.reshape(tf.matMul(tf.reshape(taps, [1, 3]), shiftBasis(n)), [n, n]); // [n, n] banded
  return tf.matMul(x, band) as tf.Tensor2D; // [rows, n]
}

/**
 * Learned separable smoothing: a 3-tap filter along x, then y, then z (a rank-1 3x3x3 kernel,
 * 9 weights), edges replicated. Starts as the identity (taps [0, 1, 0]).
 */
export class SeparableSmoothing extends Module {
  /** `[3, 3]`: rows z, y, x; columns previous, same, next. */
  readonly taps: tf.Variable;
  constructor(rng: Rng) {
    super();
    this.taps = this.param('taps', [3, 3], { kind: 'zeros' }, rng);
    // In a tidy: the assigned value is a copy the variable keeps; the literal would otherwise leak.
    tf.tidy(() => this.taps.assign(tf.tensor2d([0, 1, 0, 0, 1, 0, 0, 1, 0], [3, 3])));
  }

  /** @param x `[B, D, H, W]` @returns `[B, D, H, W]` */
  apply(x: tf.Tensor4D): tf.Tensor4D {
    const [B, D, H, W] = x.shape;
    return tf.tidy(() => {
      const [tz, ty, tx] = tf.split(this.taps, 3, 0) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
      // x: last axis already.
      let v = filterLastAxis(tf.reshape(x, [B * D * H, W]) as tf.Tensor2D, tx); // [B*D*H, W]
      // y: bring H last with a rank-3 transpose.
      let t = tf.transpose(tf.reshape(v, [B * D, H, W]), [0, 2, 1]); // [B*D, W, H]
      v = filterLastAxis(tf.reshape(t, [B * D * W, H]) as tf.Tensor2D, ty); // [B*D*W, H]
      t = tf.transpose(tf.reshape(v, [B * D, W, H]), [0, 2, 1]); // [B*D, H, W]
      // z: bring D last.
      t = tf.transpose(tf.reshape(t, [B, D, H * W]), [0, 2, 1]); // [B, H*W, D]
      v = filterLastAxis(tf.reshape(t, [B * H * W, D]) as tf.Tensor2D, tz); // [B*H*W, D]
      t = tf.transpose(tf.reshape(v, [B, H * W, D]), [0, 2, 1]); // [B, D, H*W]
      return tf.reshape(t, [B, D, H, W]) as tf.Tensor4D;
    });
  }
}

/** The settings every voxel head's decoder shares (ink, geometry): tokens -> per-cell voxel logits. */
export interface VoxelDecoderConfig {
  /** Token width d. */
  d: number;
  /** Voxels per token `[cz, cy, cx]`; must equal the stem's cell (checked against the grid at apply). */
  cell: [number, number, number];
  /** LayerNorm on the tokens before the decoder. */
  norm: boolean;
  /** Width of one GELU hidden layer before the per-cell logits; 0 = a single Linear d -> cell voxels. */
  hidden: number;
  /**
   * Learned separable 3-tap smoothing of the voxel logits along z, y and x (identity at start), so
   * that neighbouring cells can agree across their shared faces.
   */
  smoothing: boolean;
}

/** Defaults of the shared decoder settings (`cell` matches the volume stem's default). */
export const VOXEL_DECODER_DEFAULTS: Readonly<VoxelDecoderConfig> = Object.freeze({
  d: 64,
  cell: [4, 4, 4] as [number, number, number],
  norm: true,
  hidden: 0,
  smoothing: true,
});

/** Validates the shared decoder fields of a merged head config with that head's checks. */
export function resolveVoxelDecoderFields(check: ConfigChecks, p: Record<string, unknown>): VoxelDecoderConfig {
  const cell = check.triple('cell', p['cell'], (f, v) => check.int(f, v, 1), '[cz, cy, cx]');
  return {
    d: check.int('d', p['d'], 1),
    cell,
    norm: check.bool('norm', p['norm']),
    hidden: check.int('hidden', p['hidden'], 0),
    smoothing: check.bool('smoothing', p['smoothing']),
  };
}
