/**
 * Data movement of the stem on rank-2/3/4 views (rank-5+ ops are ~100x slower on wasm and some are
 * wrong on WebGPU, FACTS.md):
 *
 * - `neighbourhoodColumns`: the 3x3x3 neighbourhood of every voxel with edge-replicated borders, as
 *   `[B*D*H*W, 27]` (im2col for a 1-channel volume). Built with two convolutions by fixed one-hot
 *   filters, conv2d over (y, x) then over z, both on XNNPACK's fast path on wasm: ~30 ms for
 *   [4, 32, 32, 32] where a gather of the same 3.5 M values took ~420 ms and tf.conv3d ~200 ms.
 *   The columns are data (no gradient flows into the input volume), so neither convolution is
 *   differentiated.
 * - `patchifyRows` / `cellMean`: from voxel rows to token rows by two rank-4 transposes or three
 *   rank-3 reductions.
 *
 * Legend: B batch, D/H/W volume (z, y, x), R = B*D*H*W voxel rows (z-major), [gd, gh, gw] token grid,
 * [cz, cy, cx] cell, N = gd*gh*gw tokens, cv = cz*cy*cx voxels per token.
 */
import { tf } from '@goe/tf';
import type { TokenGrid } from './grid.js';

/**
 * Column of the neighbourhood matrix that holds the voxel at offset (dz, dy, dx) ∈ {-1, 0, 1}³.
 * The (y, x) convolution puts tap (dy, dx) in channel (dy+1)*3 + (dx+1); the z convolution then
 * appends dz+1 as the fastest index.
 */
export function tapColumn(dz: number, dy: number, dx: number): number {
  return ((dy + 1) * 3 + (dx + 1)) * 3 + (dz + 1);
}

function oneHotFilter(taps: number, shape: [number, number, number, number]): tf.Tensor4D {
  const v = new Float32Array(taps * taps);
  for (let t = 0; t < taps; t++) v[t * taps + t] = 1;
  return tf.tensor4d(v, shape);
}

/**
 * The 3x3x3 neighbourhood of every voxel, borders replicated (a patch is a crop of a larger volume,
 * so zero padding would invent edges at its faces).
 *
 * @param x `[B, D, H, W]`
 * @returns `[B*D*H*W, 27]`, rows z-major, column `tapColumn(dz, dy, dx)`
 */
export function neighbourhoodColumns(x: tf.Tensor4D): tf.Tensor2D {
  const [B, D, H, W] = x.shape;
  return tf.tidy(() => {
    // 'symmetric' mirror padding by one voxel repeats the edge voxel: edge replication.
    const padded = tf.mirrorPad(x, [[0, 0], [1, 1], [1, 1], [1, 1]], 'symmetric'); // [B, D+2, H+2, W+2]
    const planes = tf.reshape(padded, [B * (D + 2), H + 2, W + 2, 1]) as tf.Tensor4D; // [B*(D+2), H+2, W+2, 1]
    const yx = tf.conv2d(planes, oneHotFilter(9, [3, 3, 1, 9]), 1, 'valid'); // [B*(D+2), H, W, 9]
    const slabs = tf.reshape(yx, [B, D + 2, H * W * 9, 1]) as tf.Tensor4D; // [B, D+2, H*W*9, 1]
    const z = tf.conv2d(slabs, oneHotFilter(3, [3, 1, 1, 3]), 1, 'valid'); // [B, D, H*W*9, 3]
    return tf.reshape(z, [B * D * H * W, 27]) as tf.Tensor2D; // [R, 27]
  });
}

/**
 * Voxel rows to token rows: the features of each cell, concatenated in (dz, dy, dx, channel) order.
 * Two rank-4 transposes instead of one rank-8 one.
 *
 * @param rows `[B*D*H*W, C]` voxel rows, z-major
 * @returns `[B*N, cv*C]`
 */
export function patchifyRows(rows: tf.Tensor2D, batch: number, grid: TokenGrid): tf.Tensor2D {
  const [gd, gh, gw] = grid.dims;
  const [cz, cy, cx] = grid.cell;
  const C = rows.shape[1];
  return tf.tidy(() => {
    const a = tf.reshape(rows, [batch * gd, cz, gh, cy * gw * cx * C]); // [B*gd, cz, gh, cy*gw*cx*C]
    const b = tf.transpose(a, [0, 2, 1, 3]); // [B*gd, gh, cz, cy*gw*cx*C]
    const c = tf.reshape(b, [batch * gd * gh, cz * cy, gw, cx * C]); // [B*gd*gh, cz*cy, gw, cx*C]
    const d = tf.transpose(c, [0, 2, 1, 3]); // [B*gd*gh, gw, cz*cy, cx*C]
    return tf.reshape(d, [batch * gd * gh * gw, cz * cy * cx * C]) as tf.Tensor2D; // [B*N, cv*C]
  });
}

/**
 * Mean of voxel features over each token's cell, by three reductions over a middle axis of rank-3
 * views (x within cell, then y, then z), which leave the rows in token order without a transpose.
 *
 * @param rows `[B*D*H*W, F]` voxel rows, z-major
 * @returns `[B*N, F]`
 */
export function cellMean(rows: tf.Tensor2D, batch: number, grid: TokenGrid): tf.Tensor2D {
  const [gd, gh, gw] = grid.dims;
  const [cz, cy, cx] = grid.cell;
  const [D, H] = grid.inputShape;
  const F = rows.shape[1];
  return tf.tidy(() => {
    const sx = tf.sum(tf.reshape(rows, [batch * D * H * gw, cx, F]), 1); // [B*D*H*gw, F]
    const sy = tf.sum(tf.reshape(sx, [batch * D * gh, cy, gw * F]), 1); // [B*D*gh, gw*F]
    const sz = tf.sum(tf.reshape(sy, [batch * gd, cz, gh * gw * F]), 1); // [B*gd, gh*gw*F]
    return tf.reshape(tf.div(sz, cz * cy * cx), [batch * gd * gh * gw, F]) as tf.Tensor2D; // [B*N, F]
  });
}

/**
 * The rows of every s-th voxel per axis (voxels 0, s, 2s, …), by three slices of rank-3 views. Used on
 * the neighbourhood columns, which are data, so this never needs a gradient.
 *
 * @param rows `[B*D*H*W, F]` voxel rows, z-major; D, H, W multiples of the stride
 * @param stride `[sz, sy, sx]`
 * @returns `[B*(D/sz)*(H/sy)*(W/sx), F]`, z-major
 */
export function strideRows(
  rows: tf.Tensor2D,
  batch: number,
  shape: readonly [number, number, number],
  stride: readonly [number, number, number],
): tf.Tensor2D {
  const [D, H, W] = shape;
  const [sz, sy, sx] = stride;
  const [Do, Ho, Wo] = [D / sz, H / sy, W / sx];
  const F = rows.shape[1];
  return tf.tidy(() => {
    const z = tf.slice(tf.reshape(rows, [batch * Do, sz, H * W * F]), [0, 0, 0], [-1, 1, -1]); // [B*Do, 1, H*W*F]
    const y = tf.slice(tf.reshape(z, [batch * Do * Ho, sy, W * F]), [0, 0, 0], [-1, 1, -1]); // [B*Do*Ho, 1, W*F]
    const x = tf.slice(tf.reshape(y, [batch * Do * Ho * Wo, sx * F]), [0, 0], [-1, F]); // [B*Do*Ho*Wo, F]
    return x as tf.Tensor2D;
  });
}
