/**
 * Fast tensor paths the models use: 3-D patch (un)tokenisation, 3-D convolution as im2col + one rank-2
 * matMul, and scaled dot-product attention on rank-3 batched matMuls.
 *
 * Why these exist (FACTS.md and bench/bench.ts, measured on this stack): tfjs' wasm backend runs
 * rank-5/6 slicing and transposes ~100x slower than rank-2 ones, its conv3d is off the XNNPACK fast
 * path, and only rank-2 matMul reaches the SIMD ceiling. So every op here works on views of rank <= 4:
 * data moves by rank-4 slices/pads/transposes or by a gather of rows with indices precomputed on the
 * host (cached per geometry), and the arithmetic is one matMul. Each op has more than one
 * implementation because the fastest differs per backend (a gather is cheap on WebGPU but checks every
 * index in JavaScript on cpu and wasm); `method: 'auto'` takes the measured winner. Gathers and the
 * slice-based im2col carry their own gradients (an inverse permutation, a col2im gather, per-tap pads):
 * tfjs' gather gradient is UnsortedSegmentSum, which some backends lack, and its slice/concat gradients
 * copy whole tensors out of the wasm heap once per slice.
 *
 * Layout legend: B batch, D/H/W volume depth/height/width (z, y, x), C channels (last, NDHWC as tfjs
 * conv3d), p = [pz, py, px] patch size, g = [gz, gy, gx] = [D/pz, H/py, W/px] token grid,
 * N = gz*gy*gx tokens (z-major), K = kz*ky*kx kernel taps.
 */
import * as tf from '@tensorflow/tfjs-core';

/** Three sizes in (z, y, x) order. */
export type Triple = readonly [number, number, number];

/** A shape or argument that an op cannot accept; names the op and what arrived. */
export class OpArgumentError extends Error {
  override readonly name = 'OpArgumentError';
  constructor(
    readonly op: string,
    message: string,
  ) {
    super(`${op}: ${message}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Host-side index cache. Index tables depend only on the geometry, so they are built once; tensors are
// made from them per call (a cached *tensor* would show up as a leak in every numTensors check and is
// tied to one backend). Bounded by bytes so that large volumes do not pin memory.

const INDEX_CACHE_BYTES = 256 * 1024 * 1024;
const indexCache = new Map<string, Int32Array>();
let indexCacheBytes = 0;

function cachedIndex(key: string, build: () => Int32Array): Int32Array {
  const hit = indexCache.get(key);
  if (hit) {
    // Re-insert: Map iteration order is insertion order, so this makes the cache LRU.
    indexCache.delete(key);
    indexCache.set(key, hit);
    return hit;
  }
  const idx = build();
  indexCache.set(key, idx);
  indexCacheBytes += idx.byteLength;
  for (const [k, v] of indexCache) {
    if (indexCacheBytes <= INDEX_CACHE_BYTES || k === key) break;
    indexCache.delete(k);
    indexCacheBytes -= v.byteLength;
  }
  return idx;
}

/** Drops every cached host index table (they are rebuilt on demand). */
export function clearOpIndexCache(): void {
  indexCache.clear();
  indexCacheBytes = 0;
}

function triple(op: string, name: string, v: number | Triple): [number, number, number] {
  const t: [number, number, number] = typeof v === 'number' ? [v, v, v] : [v[0], v[1], v[2]];
  if (t.length !== 3 || t.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new OpArgumentError(op, `${name} must be a positive integer or three of them, got ${JSON.stringify(v)}`);
  }
  return t;
}

function shape5(op: string, name: string, x: tf.Tensor): [number, number, number, number, number] {
  if (x.rank !== 5) throw new OpArgumentError(op, `${name} must be rank 5, got shape [${x.shape.join(', ')}]`);
  return x.shape as [number, number, number, number, number];
}

// ---------------------------------------------------------------------------------------------------
// Patchify / unpatchify

/** How `patchify3d`/`unpatchify3d` move data: one gather of rows, or two rank-4 transposes. */
export type PatchMethod = 'auto' | 'gather' | 'transpose';

export interface PatchOptions {
  /** Implementation; `auto` (default) picks the one measured fastest on the active backend. */
  method?: PatchMethod;
}

interface PatchGeometry {
  B: number;
  D: number;
  H: number;
  W: number;
  C: number;
  pz: number;
  py: number;
  px: number;
  gz: number;
  gy: number;
  gx: number;
}

function patchGeometry(op: string, volume: [number, number, number, number, number], p: number | Triple): PatchGeometry {
  const [B, D, H, W, C] = volume;
  const [pz, py, px] = triple(op, 'patch size', p);
  if (D % pz || H % py || W % px) {
    throw new OpArgumentError(op, `volume [${D}, ${H}, ${W}] is not divisible by patch [${pz}, ${py}, ${px}]`);
  }
  return { B, D, H, W, C, pz, py, px, gz: D / pz, gy: H / py, gx: W / px };
}

/**
 * Gather table for patchify on the row views: source `[B*D*H*gx, px*C]` (one row = px consecutive
 * voxels along x with their channels), destination `[B*N*pz*py, px*C]` in (b, tz, ty, tx, dz, dy) order.
 * It is a permutation (the cells tile the volume), so its inverse is unpatchify's table.
 */
function patchIndex(g: PatchGeometry, inverse: boolean): Int32Array {
  const key = `patch:${inverse ? 'inv' : 'fwd'}:${g.B},${g.D},${g.H},${g.W}:${g.pz},${g.py},${g.px}`;
  return cachedIndex(key, () => {
    const { B, D, H, pz, py, gz, gy, gx } = g;
    const n = B * gz * gy * gx * pz * py;
    const idx = new Int32Array(n);
    let dst = 0;
    for (let b = 0; b < B; b++)
      for (let tz = 0; tz < gz; tz++)
        for (let ty = 0; ty < gy; ty++)
          for (let tx = 0; tx < gx; tx++)
            for (let dz = 0; dz < pz; dz++)
              for (let dy = 0; dy < py; dy++) {
                const src = ((b * D + tz * pz + dz) * H + ty * py + dy) * gx + tx;
                if (inverse) idx[src] = dst++;
                else idx[dst++] = src;
              }
    return idx;
  });
}

/** Gather of rows by a permutation, with the inverse permutation as its gradient. */
function permuteRows(rows: tf.Tensor2D, fwd: Int32Array, inv: Int32Array): tf.Tensor2D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const x = args[0] as tf.Tensor;
    const value = tf.tidy(() => tf.gather(x, tf.tensor1d(fwd, 'int32'))); // [rows, width]
    return { value, gradFunc: (dy: tf.Tensor) => tf.tidy(() => tf.gather(dy, tf.tensor1d(inv, 'int32'))) };
  });
  return f(rows) as tf.Tensor2D;
}

/** Which patch method `auto` resolves to on a backend (see packages/tf/README.md for the timings). */
export function preferredPatchMethod(backend: string = tf.getBackend()): 'gather' | 'transpose' {
  return PATCH_PREFERENCE[backend] ?? 'gather';
}

/** Measured winners (bench/bench.ts, `patchify` rows). */
const PATCH_PREFERENCE: Record<string, 'gather' | 'transpose'> = {
  cpu: 'gather',
  wasm: 'transpose',
  webgpu: 'transpose',
  tensorflow: 'transpose',
};

/**
 * Cuts a volume into non-overlapping cells and flattens each cell into one token (the tokeniser of a
 * ViT-style 3-D patch embedding; Dosovitskiy et al. 2021, extended to volumes). Token order is z-major
 * over the grid; features inside a token are ordered (dz, dy, dx, c).
 *
 * @param x `[B, D, H, W, C]`, with D, H, W divisible by the patch size
 * @param p patch size `[pz, py, px]` (or one number for a cube)
 * @returns `[B, N, pz*py*px*C]` with N = (D/pz)(H/py)(W/px)
 */
export function patchify3d(x: tf.Tensor, p: number | Triple, options: PatchOptions = {}): tf.Tensor3D {
  const g = patchGeometry('patchify3d', shape5('patchify3d', 'x', x), p);
  const { B, C, pz, py, px, gz, gy, gx } = g;
  const N = gz * gy * gx;
  const method = options.method === undefined || options.method === 'auto' ? preferredPatchMethod() : options.method;
  return tf.tidy(() => {
    if (method === 'gather') {
      const rows = tf.reshape(x, [-1, px * C]) as tf.Tensor2D; // [B*D*H*gx, px*C]
      const out = permuteRows(rows, patchIndex(g, false), patchIndex(g, true)); // [B*N*pz*py, px*C]
      return tf.reshape(out, [B, N, pz * py * px * C]);
    }
    // Two rank-4 transposes instead of one rank-8 one (rank-5+ data movement is slow on wasm).
    const a = tf.reshape(x, [B * gz, pz, gy, py * gx * px * C]); // [B*gz, pz, gy, py*gx*px*C]
    const b = tf.transpose(a, [0, 2, 1, 3]); // [B*gz, gy, pz, py*gx*px*C]
    const c = tf.reshape(b, [B * gz * gy, pz * py, gx, px * C]); // [B*gz*gy, pz*py, gx, px*C]
    const d = tf.transpose(c, [0, 2, 1, 3]); // [B*gz*gy, gx, pz*py, px*C]
    return tf.reshape(d, [B, N, pz * py * px * C]);
  });
}

/**
 * Inverse of `patchify3d`: scatters tokens back into their cells (the output layer of an upsampling
 * decoder that predicts a whole cell per token).
 *
 * @param tokens `[B, N, pz*py*px*C]` in `patchify3d`'s order
 * @param p patch size `[pz, py, px]`
 * @param volume output size `[D, H, W]` (N must equal (D/pz)(H/py)(W/px))
 * @returns `[B, D, H, W, C]`
 */
export function unpatchify3d(
  tokens: tf.Tensor,
  p: number | Triple,
  volume: Triple,
  options: PatchOptions = {},
): tf.Tensor5D {
  const op = 'unpatchify3d';
  if (tokens.rank !== 3) throw new OpArgumentError(op, `tokens must be rank 3, got [${tokens.shape.join(', ')}]`);
  const [B, N, F] = tokens.shape as [number, number, number];
  const [pz, py, px] = triple(op, 'patch size', p);
  const [D, H, W] = triple(op, 'volume', volume);
  const cell = pz * py * px;
  if (F % cell) throw new OpArgumentError(op, `token width ${F} is not a multiple of the cell size ${cell}`);
  const C = F / cell;
  const g = patchGeometry(op, [B, D, H, W, C], [pz, py, px]);
  const { gz, gy, gx } = g;
  if (N !== gz * gy * gx) {
    throw new OpArgumentError(op, `${N} tokens do not fill a ${gz}x${gy}x${gx} grid (volume [${D}, ${H}, ${W}])`);
  }
  const method = options.method === undefined || options.method === 'auto' ? preferredPatchMethod() : options.method;
  return tf.tidy(() => {
    if (method === 'gather') {
      const rows = tf.reshape(tokens, [-1, px * C]) as tf.Tensor2D; // [B*N*pz*py, px*C]
      const out = permuteRows(rows, patchIndex(g, true), patchIndex(g, false)); // [B*D*H*gx, px*C]
      return tf.reshape(out, [B, D, H, W, C]);
    }
    const d = tf.reshape(tokens, [B * gz * gy, gx, pz * py, px * C]); // [B*gz*gy, gx, pz*py, px*C]
    const c = tf.transpose(d, [0, 2, 1, 3]); // [B*gz*gy, pz*py, gx, px*C]
    const b = tf.reshape(c, [B * gz, gy, pz, py * gx * px * C]); // [B*gz, gy, pz, py*gx*px*C]
    const a = tf.transpose(b, [0, 2, 1, 3]); // [B*gz, pz, gy, py*gx*px*C]
    return tf.reshape(a, [B, D, H, W, C]);
  });
}

// ---------------------------------------------------------------------------------------------------
// conv3d as im2col + matMul

/**
 * How `conv3dFast` builds its columns. `slices`: im2col from rank <= 4 slices; `gather`: im2col as one
 * gather with a precomputed index table; `patch`: patchify + matMul (only when stride = kernel over a
 * divisible volume); `native`: tf.conv3d; `auto`: the measured fastest correct one for the backend.
 */
export type Conv3dMethod = 'auto' | 'slices' | 'gather' | 'patch' | 'native';

export interface Conv3dFastOptions {
  method?: Conv3dMethod;
}

interface ConvGeometry {
  B: number;
  D: number;
  H: number;
  W: number;
  Cin: number;
  Cout: number;
  kz: number;
  ky: number;
  kx: number;
  sz: number;
  sy: number;
  sx: number;
  /** Padding before each axis ('same' puts the odd one after, as TensorFlow does). */
  padZ: number;
  padY: number;
  padX: number;
  Do: number;
  Ho: number;
  Wo: number;
}

function convGeometry(
  x: tf.Tensor,
  w: tf.Tensor,
  strides: number | Triple,
  padding: 'same' | 'valid',
): ConvGeometry {
  const op = 'conv3dFast';
  const [B, D, H, W, Cin] = shape5(op, 'x', x);
  const [kz, ky, kx, wCin, Cout] = shape5(op, 'w', w);
  if (wCin !== Cin) throw new OpArgumentError(op, `w has ${wCin} input channels, x has ${Cin}`);
  const [sz, sy, sx] = triple(op, 'strides', strides);
  if (padding !== 'same' && padding !== 'valid') {
    throw new OpArgumentError(op, `padding must be 'same' or 'valid', got ${JSON.stringify(padding)}`);
  }
  // TensorFlow's convention (tf.nn.conv3d, tfjs computeConv3DInfo): 'same' gives ceil(in / s) outputs
  // and splits the total padding with the extra voxel after.
  const axis = (n: number, k: number, s: number): [number, number] => {
    if (padding === 'valid') {
      if (n < k) throw new OpArgumentError(op, `input size ${n} is smaller than kernel ${k} with 'valid' padding`);
      return [Math.floor((n - k) / s) + 1, 0];
    }
    const out = Math.ceil(n / s);
    const total = Math.max(0, (out - 1) * s + k - n);
    return [out, Math.floor(total / 2)];
  };
  const [Do, padZ] = axis(D, kz, sz);
  const [Ho, padY] = axis(H, ky, sy);
  const [Wo, padX] = axis(W, kx, sx);
  return { B, D, H, W, Cin, Cout, kz, ky, kx, sz, sy, sx, padZ, padY, padX, Do, Ho, Wo };
}

function geometryKey(g: ConvGeometry): string {
  return `${g.B},${g.D},${g.H},${g.W}:${g.kz},${g.ky},${g.kx}:${g.sz},${g.sy},${g.sx}:${g.padZ},${g.padY},${g.padX}`;
}

/**
 * im2col table: entry m*K + t is the row of the `[B*D*H*W + 1, Cin]` input view that output voxel m
 * reads at tap t, or the appended zero row (index B*D*H*W) where the tap falls into the padding.
 */
function im2colIndex(g: ConvGeometry): Int32Array {
  return cachedIndex(`im2col:${geometryKey(g)}`, () => {
    const { B, D, H, W, kz, ky, kx, sz, sy, sx, padZ, padY, padX, Do, Ho, Wo } = g;
    const K = kz * ky * kx;
    const zero = B * D * H * W;
    const idx = new Int32Array(B * Do * Ho * Wo * K);
    let i = 0;
    for (let b = 0; b < B; b++)
      for (let oz = 0; oz < Do; oz++)
        for (let oy = 0; oy < Ho; oy++)
          for (let ox = 0; ox < Wo; ox++)
            for (let a = 0; a < kz; a++) {
              const iz = oz * sz + a - padZ;
              for (let c = 0; c < ky; c++) {
                const iy = oy * sy + c - padY;
                for (let e = 0; e < kx; e++) {
                  const ix = ox * sx + e - padX;
                  idx[i++] =
                    iz < 0 || iz >= D || iy < 0 || iy >= H || ix < 0 || ix >= W
                      ? zero
                      : ((b * D + iz) * H + iy) * W + ix;
                }
              }
            }
    return idx;
  });
}

/**
 * col2im table, the adjoint of im2col as a gather: entry p*K + t is the row of the
 * `[M*K + 1, Cin]` column-gradient view that input voxel p receives from tap t (the output voxel whose
 * window puts tap t on p), or the zero row M*K when no output does. Summing over t gives dL/dx.
 */
function col2imIndex(g: ConvGeometry): Int32Array {
  return cachedIndex(`col2im:${geometryKey(g)}`, () => {
    const { B, D, H, W, kz, ky, kx, sz, sy, sx, padZ, padY, padX, Do, Ho, Wo } = g;
    const K = kz * ky * kx;
    const zero = B * Do * Ho * Wo * K;
    const idx = new Int32Array(B * D * H * W * K);
    // Output coordinate whose tap `t` lands on input `i` along one axis, or -1.
    const src = (i: number, t: number, pad: number, s: number, n: number): number => {
      const num = i + pad - t;
      if (num < 0 || num % s !== 0) return -1;
      const o = num / s;
      return o < n ? o : -1;
    };
    let i = 0;
    for (let b = 0; b < B; b++)
      for (let z = 0; z < D; z++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++)
            for (let a = 0; a < kz; a++) {
              const oz = src(z, a, padZ, sz, Do);
              for (let c = 0; c < ky; c++) {
                const oy = src(y, c, padY, sy, Ho);
                for (let e = 0; e < kx; e++) {
                  const ox = src(x, e, padX, sx, Wo);
                  idx[i++] =
                    oz < 0 || oy < 0 || ox < 0 ? zero : (((b * Do + oz) * Ho + oy) * Wo + ox) * K + (a * ky + c) * kx + e;
                }
              }
            }
    return idx;
  });
}

/**
 * im2col as a differentiable op: `[B, D, H, W, Cin]` -> columns `[M, K*Cin]` (M = B*Do*Ho*Wo), with the
 * col2im gather as its gradient. A separate op from the matMul so that tfjs' autodiff skips col2im
 * when x needs no gradient (the first layer on input data).
 */
function im2colGather(x: tf.Tensor, g: ConvGeometry): tf.Tensor2D {
  const { Cin, kz, ky, kx } = g;
  const K = kz * ky * kx;
  const M = g.B * g.Do * g.Ho * g.Wo;
  const P = g.B * g.D * g.H * g.W;
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xIn = args[0] as tf.Tensor;
    const value = tf.tidy(() => {
      const rows = tf.reshape(xIn, [P, Cin]); // [P, Cin]
      const padded = tf.concat([rows, tf.zeros([1, Cin])], 0); // [P+1, Cin]: last row is the padding
      const cols = tf.gather(padded, tf.tensor1d(im2colIndex(g), 'int32')); // [M*K, Cin]
      return tf.reshape(cols, [M, K * Cin]); // [M, K*Cin]
    });
    const gradFunc = (dy: tf.Tensor) =>
      tf.tidy(() => {
        const dRows = tf.reshape(dy, [M * K, Cin]); // [M*K, Cin]
        const padded = tf.concat([dRows, tf.zeros([1, Cin])], 0); // [M*K+1, Cin]
        const gathered = tf.gather(padded, tf.tensor1d(col2imIndex(g), 'int32')); // [P*K, Cin]
        const dx =
          Cin === 1
            ? tf.sum(tf.reshape(gathered, [P, K]), 1) // [P]
            : tf.sum(tf.reshape(gathered, [P, K, Cin]), 1); // [P, Cin]
        return tf.reshape(dx, xIn.shape);
      });
    return { value, gradFunc };
  });
  return f(x) as tf.Tensor2D;
}

/**
 * Sum of same-shape tensors. tf.addN binds every input at once, and WebGPU allows only 8 storage
 * buffers per shader stage (tfjs' AddN fails validation above 7 inputs there), so sum in groups.
 */
function sumAll(list: tf.Tensor[]): tf.Tensor {
  let level = list;
  while (level.length > 1) {
    const next: tf.Tensor[] = [];
    for (let i = 0; i < level.length; i += 6) {
      const group = level.slice(i, i + 6);
      next.push(group.length === 1 ? (group[0] as tf.Tensor) : tf.addN(group));
    }
    level = next;
  }
  return level[0] as tf.Tensor;
}

/**
 * The padded input split into its stride phases: `[S, B*Dq*Hq*Wq*Cin]` with S = sz*sy*sx, where row
 * (rz, ry, rx) holds the voxels whose padded coordinates are congruent to (rz, ry, rx) modulo the
 * strides. Every tap of a strided convolution then reads a contiguous box of one phase.
 */
function toPhases(padded: tf.Tensor, g: ConvGeometry, grid: Triple): tf.Tensor2D {
  const { B, Cin, sz, sy, sx } = g;
  const S = sz * sy * sx;
  const [Dq, Hq, Wq] = grid;
  if (S === 1) return tf.reshape(padded, [1, -1]) as tf.Tensor2D; // [1, B*Dt*Ht*Wt*Cin]
  const v5 = tf.reshape(padded, [B, Dq * sz, Hq * sy, Wq * sx, Cin]); // [B, Dt, Ht, Wt, Cin]
  const cells = tf.reshape(patchify3d(v5, [sz, sy, sx]), [-1, S, Cin]); // [B*Dq*Hq*Wq, S, Cin]
  return tf.reshape(tf.transpose(cells, [1, 0, 2]), [S, -1]) as tf.Tensor2D; // [S, B*Dq*Hq*Wq*Cin]
}

/** Inverse of `toPhases`: `[S, B*Dq*Hq*Wq*Cin]` -> padded volume `[B, Dt, Ht, Wt*Cin]`. */
function fromPhases(phases: tf.Tensor, g: ConvGeometry, grid: Triple): tf.Tensor4D {
  const { B, Cin, sz, sy, sx } = g;
  const S = sz * sy * sx;
  const [Dq, Hq, Wq] = grid;
  if (S === 1) return tf.reshape(phases, [B, Dq, Hq, Wq * Cin]) as tf.Tensor4D; // [B, Dt, Ht, Wt*Cin]
  const cells = tf.transpose(tf.reshape(phases, [S, -1, Cin]), [1, 0, 2]); // [B*Dq*Hq*Wq, S, Cin]
  const tokens = tf.reshape(cells, [B, Dq * Hq * Wq, S * Cin]); // [B, N, S*Cin]
  const v5 = unpatchify3d(tokens, [sz, sy, sx], [Dq * sz, Hq * sy, Wq * sx]); // [B, Dt, Ht, Wt, Cin]
  return tf.reshape(v5, [B, Dq * sz, Hq * sy, Wq * sx * Cin]) as tf.Tensor4D; // [B, Dt, Ht, Wt*Cin]
}

/**
 * conv3d as im2col from slices + one matMul, with its own gradient.
 *
 * Forward: pad the volume once (rank 4), split it into stride phases, cut each tap's window out of its
 * phase with one rank-4 slice, and stack the windows as columns `[M, K*Cin]` for `cols @ w`.
 * Backward: dL/dw = cols^T dy; dL/dx is col2im done per tap: the tap's share of the column gradient is
 * `dy @ w_t^T` (a small matMul, so the `[M, K*Cin]` column gradient never exists and no column block
 * has to be cut out of it), placed back with one rank-4 pad and summed per phase.
 *
 * Why not tfjs' autodiff of slices and concat: on wasm every slice (and SplitV, concat's gradient)
 * first copies its whole input out of the heap, so K slices of the column gradient cost K^2 copies.
 */
function conv3dSlices(x: tf.Tensor, w: tf.Tensor, g: ConvGeometry): tf.Tensor5D {
  const { B, D, H, W, Cin, Cout, kz, ky, kx, sz, sy, sx, padZ, padY, padX, Do, Ho, Wo } = g;
  const K = kz * ky * kx;
  const M = B * Do * Ho * Wo;
  // Phase-grid extents: tap a reads padded rows (oz + floor(a/sz)) * sz + a % sz for oz < Do.
  const grid: [number, number, number] = [
    Do + Math.floor((kz - 1) / sz),
    Ho + Math.floor((ky - 1) / sy),
    Wo + Math.floor((kx - 1) / sx),
  ];
  const [Dq, Hq, Wq] = grid;
  const [Dt, Ht, Wt] = [Dq * sz, Hq * sy, Wq * sx];
  // Voxels past the last window ('valid' leftovers) are cropped; the rest is padded up to the grid.
  const [cZ, cY, cX] = [Math.min(D, Dt - padZ), Math.min(H, Ht - padY), Math.min(W, Wt - padX)];
  const tapPhase = (a: number, c: number, e: number): number => ((a % sz) * sy + (c % sy)) * sx + (e % sx);
  const tapOrigin = (a: number, c: number, e: number): [number, number, number, number] => [
    0,
    Math.floor(a / sz),
    Math.floor(c / sy),
    Math.floor(e / sx) * Cin,
  ];

  // Cin = 1 (a first layer on raw intensities): the taps stack into cols^T `[K, M]`, which is kept for
  // dL/dw = cols^T dy (a plain matMul), and the tap shares of dL/dx are `w_t^T dy^T` rows. Wider inputs
  // keep row-major columns `[M, K*Cin]`. Either way the big operand of every product is on the left:
  // wasm's XNNPACK packs the right-hand operand on every call unless it is the same tensor again.
  const transposed = Cin === 1;

  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xIn, wIn, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const w2 = tf.reshape(wIn, [K * Cin, Cout]); // [K*Cin, Cout], rows in (a, c, e, ci) order
    const stacked = tf.tidy(() => {
      let v = tf.reshape(xIn, [B, D, H, W * Cin]); // [B, D, H, W*Cin]
      if (cZ < D || cY < H || cX < W) v = tf.slice(v, [0, 0, 0, 0], [B, cZ, cY, cX * Cin]); // [B, cZ, cY, cX*Cin]
      v = tf.pad(v, [
        [0, 0],
        [padZ, Dt - padZ - cZ],
        [padY, Ht - padY - cY],
        [padX * Cin, (Wt - padX - cX) * Cin],
      ]); // [B, Dt, Ht, Wt*Cin]
      const phases = toPhases(v, g, grid); // [S, B*Dq*Hq*Wq*Cin]
      const phaseVols =
        phases.shape[0] === 1
          ? [tf.reshape(phases, [B, Dq, Hq, Wq * Cin])]
          : tf.unstack(phases).map((p) => tf.reshape(p, [B, Dq, Hq, Wq * Cin])); // S x [B, Dq, Hq, Wq*Cin]
      const taps: tf.Tensor[] = [];
      for (let a = 0; a < kz; a++)
        for (let c = 0; c < ky; c++)
          for (let e = 0; e < kx; e++) {
            const vol = phaseVols[tapPhase(a, c, e)] as tf.Tensor;
            const win = tf.slice(vol, tapOrigin(a, c, e), [B, Do, Ho, Wo * Cin]); // [B, Do, Ho, Wo*Cin]
            taps.push(tf.reshape(win, [1, M * Cin])); // [1, M*Cin]
          }
      return tf.concat(taps, 0); // [K, M*Cin]
    });
    const cols = transposed
      ? tf.transpose(stacked) // [M, K]
      : tf.reshape(tf.transpose(tf.reshape(stacked, [K, M, Cin]), [1, 0, 2]), [M, K * Cin]); // [M, K*Cin]
    const y = tf.matMul(cols, w2); // [M, Cout]
    save([transposed ? stacked : cols, w2]);
    // The layout not kept for the backward pass can go now rather than at the end of the caller's tidy.
    (transposed ? cols : stacked).dispose();
    const value = tf.reshape(y, [B, Do, Ho, Wo, Cout]);
    const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [colsS, w2S] = saved as [tf.Tensor2D, tf.Tensor2D];
      return tf.tidy(() => {
        const dy2 = tf.reshape(dy, [M, Cout]); // [M, Cout]
        const dw2 = transposed ? tf.matMul(colsS, dy2) : tf.matMul(colsS, dy2, true, false); // [K*Cin, Cout]
        const dyT = transposed ? tf.transpose(dy2) : undefined; // [Cout, M]
        const w2T = transposed ? undefined : tf.transpose(w2S); // [Cout, K*Cin]
        // Per-tap column gradients, each placed back where its window was read and summed per phase.
        const S = sz * sy * sx;
        const acc: tf.Tensor[][] = Array.from({ length: S }, () => []);
        let t = 0;
        for (let a = 0; a < kz; a++)
          for (let c = 0; c < ky; c++)
            for (let e = 0; e < kx; e++, t++) {
              const share = dyT
                ? tf.matMul(tf.slice(w2S, [t, 0], [1, Cout]), dyT) // [1, M]
                : tf.matMul(dy2, tf.slice(w2T as tf.Tensor, [0, t * Cin], [Cout, Cin])); // [M, Cin]
              const piece = tf.reshape(share, [B, Do, Ho, Wo * Cin]); // [B, Do, Ho, Wo*Cin]
              const [, oz, oy, ox] = tapOrigin(a, c, e);
              (acc[tapPhase(a, c, e)] as tf.Tensor[]).push(
                tf.pad(piece, [
                  [0, 0],
                  [oz, Dq - Do - oz],
                  [oy, Hq - Ho - oy],
                  [ox, (Wq - Wo) * Cin - ox],
                ]), // [B, Dq, Hq, Wq*Cin]
              );
            }
        const phaseGrads = acc.map((list) =>
          list.length === 0 ? tf.zeros([1, B * Dq * Hq * Wq * Cin]) : tf.reshape(sumAll(list), [1, -1]),
        ); // S x [1, B*Dq*Hq*Wq*Cin]
        const dPadded = fromPhases(S === 1 ? (phaseGrads[0] as tf.Tensor) : tf.concat(phaseGrads, 0), g, grid); // [B, Dt, Ht, Wt*Cin]
        let dx = tf.slice(dPadded, [0, padZ, padY, padX * Cin], [B, cZ, cY, cX * Cin]); // [B, cZ, cY, cX*Cin]
        if (cZ < D || cY < H || cX < W) {
          dx = tf.pad(dx, [[0, 0], [0, D - cZ], [0, H - cY], [0, (W - cX) * Cin]]); // [B, D, H, W*Cin]
        }
        return [tf.reshape(dx, xIn.shape), tf.reshape(dw2, wIn.shape)];
      });
    };
    return { value, gradFunc };
  });
  return f(x, w) as tf.Tensor5D;
}

/** What `preferredConv3dMethod` needs to know about a convolution. */
export interface Conv3dChoiceInput {
  kernel: Triple;
  strides: Triple;
  volume: Triple;
}

/**
 * Measured winners per backend (bench/bench.ts `conv3d` and `patch-embed` rows; packages/tf/README.md
 * holds the table). On WebGPU (lavapipe) tf.conv3d and the gather variant trade places from run to
 * run; tf.conv3d needs no [M, K*Cin] columns, whose size a GPU buffer limits (128 MiB on lavapipe).
 */
const CONV_PREFERENCE: Record<string, { general: Exclude<Conv3dMethod, 'auto'>; tiled: Exclude<Conv3dMethod, 'auto'> }> = {
  cpu: { general: 'native', tiled: 'native' },
  wasm: { general: 'slices', tiled: 'patch' },
  webgpu: { general: 'native', tiled: 'patch' },
  tensorflow: { general: 'native', tiled: 'native' },
};

/** Which conv3d method `auto` resolves to for a geometry on a backend (default: the active one). */
export function preferredConv3dMethod(
  geometry: Conv3dChoiceInput,
  backend: string = tf.getBackend(),
): Exclude<Conv3dMethod, 'auto'> {
  const { kernel, strides, volume } = geometry;
  // Stride = kernel over a divisible volume: the windows tile it and 'same' pads nothing either.
  const tiles = kernel.every((k, i) => k === strides[i]) && volume.every((n, i) => n % (kernel[i] as number) === 0);
  const pref = CONV_PREFERENCE[backend] ?? { general: 'slices', tiled: 'patch' };
  return tiles ? pref.tiled : pref.general;
}

/**
 * 3-D convolution (cross-correlation, as tf.conv3d: channels last, no dilation, TensorFlow's padding)
 * built from ops that are fast on the backend at hand, with gradients that are right on every backend.
 * The im2col variants compute `cols[M, K*Cin] @ w[K*Cin, Cout]` as one rank-2 matMul:
 *
 * - `slices` (wasm): windows cut with rank-4 slices, own gradient (see conv3dSlices).
 * - `gather`: columns gathered with a cached index table; dL/dx by a col2im gather (slow on cpu and
 *   wasm, whose gather kernels check every index in JavaScript).
 * - `patch` (stride = kernel, e.g. a ViT patch embedding): `patchify3d` + matMul, no duplication.
 * - `native`: tf.conv3d (cpu and WebGPU; on wasm its backward runs on cpu kernels, see wasm-kernels.ts).
 *
 * Memory of the im2col variants: the columns hold M*K*Cin floats (27x the input for a 3^3 kernel at
 * stride 1). 'same' follows TensorFlow, out = ceil(in / s), total padding max(0, (out-1)s + k - in),
 * the smaller half in front; tfjs' own conv3d omits the max(0, ·) (a kernel smaller than the stride),
 * and the native variant is steered around that case.
 *
 * @param x `[B, D, H, W, Cin]`
 * @param w `[kz, ky, kx, Cin, Cout]`
 * @param strides one stride or `[sz, sy, sx]`
 * @param padding `'same'` or `'valid'`
 * @returns `[B, Do, Ho, Wo, Cout]`
 */
export function conv3dFast(
  x: tf.Tensor,
  w: tf.Tensor,
  strides: number | Triple = 1,
  padding: 'same' | 'valid' = 'same',
  options: Conv3dFastOptions = {},
): tf.Tensor5D {
  const g = convGeometry(x, w, strides, padding);
  const { B, D, H, W, Cin, Cout, kz, ky, kx, sz, sy, sx, Do, Ho, Wo } = g;
  const K = kz * ky * kx;
  const M = B * Do * Ho * Wo;
  const tiles = kz === sz && ky === sy && kx === sx && D % kz === 0 && H % ky === 0 && W % kx === 0;
  let method = options.method ?? 'auto';
  if (method === 'auto') {
    method = preferredConv3dMethod({ kernel: [kz, ky, kx], strides: [sz, sy, sx], volume: [D, H, W] });
  }
  if (method === 'patch' && !tiles) {
    if (options.method === 'patch') {
      throw new OpArgumentError('conv3dFast', `method 'patch' needs stride = kernel over a divisible volume`);
    }
    method = 'slices';
  }
  // tfjs' 'same' is TensorFlow's only where no axis would need negative padding; where every such
  // axis' windows start at 0, 'valid' is the same convolution; otherwise no native call matches.
  let nativePadding: 'same' | 'valid' = padding;
  if (method === 'native' && padding === 'same') {
    const raw = [
      [D, kz, sz, Do],
      [H, ky, sy, Ho],
      [W, kx, sx, Wo],
    ].map(([n, k, s, o]) => ((o as number) - 1) * (s as number) + (k as number) - (n as number));
    if (raw.every((r) => r <= 0)) nativePadding = 'valid';
    else if (raw.some((r) => r < 0)) method = 'slices';
  }
  return tf.tidy(() => {
    if (method === 'native') return tf.conv3d(x as tf.Tensor5D, w as tf.Tensor5D, [sz, sy, sx], nativePadding);
    if (method === 'slices') return conv3dSlices(x, w, g);
    const w2 = tf.reshape(w, [K * Cin, Cout]); // [K*Cin, Cout]: rows in (a, c, e, ci) order, as the columns
    const cols =
      method === 'patch'
        ? tf.reshape(patchify3d(x, [kz, ky, kx]), [M, K * Cin]) // [M, K*Cin]
        : im2colGather(x, g); // [M, K*Cin]
    const y = tf.matMul(cols, w2); // [M, Cout]
    return tf.reshape(y, [B, Do, Ho, Wo, Cout]);
  });
}

// ---------------------------------------------------------------------------------------------------
// Attention

export interface AttentionOptions {
  /**
   * Which keys each query may attend to: 1/true = attend, 0/false = masked. Rank 4, broadcastable to
   * `[B, heads, Nq, Nk]` (each of the first three dims 1 or full), e.g. `[B, 1, 1, Nk]` for key padding.
   */
  mask?: tf.Tensor;
  /** Query i attends to keys j <= i + (Nk - Nq) (aligned at the end, as in incremental decoding). */
  causal?: boolean;
  /** Score scale; defaults to 1/sqrt(dh). */
  scale?: number;
}

/** Added to masked scores: far below any real score, yet finite so that gradients stay finite. */
const MASKED = -1e9;

/**
 * Scaled dot-product attention (Vaswani et al. 2017, eq. 1): `softmax(q k^T / sqrt(dh) + bias) v`,
 * computed on rank-3 views `[B*heads, N, dh]` so that both products are plain batched matMuls
 * (no broadcast batch dims, which tfjs cannot differentiate, and the layout the backends' batched
 * fast paths take). The softmax runs in float32 and subtracts the row max (tfjs' softmax kernels do,
 * on every backend; the tests check logits of 1e3 stay finite).
 *
 * A query whose keys are all masked gets a uniform-shifted softmax of its raw scores (the finite bias
 * cancels); mask such rows downstream.
 *
 * @param q `[B, heads, Nq, dh]`
 * @param k `[B, heads, Nk, dh]`
 * @param v `[B, heads, Nk, dv]`
 * @returns `[B, heads, Nq, dv]`
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: AttentionOptions = {}): tf.Tensor4D {
  const op = 'attention';
  for (const [name, t] of [['q', q], ['k', k], ['v', v]] as const) {
    if (t.rank !== 4) throw new OpArgumentError(op, `${name} must be rank 4 [B, heads, N, d], got [${t.shape.join(', ')}]`);
  }
  const [B, Hh, Nq, dh] = q.shape as [number, number, number, number];
  const [kB, kH, Nk, kd] = k.shape as [number, number, number, number];
  const [vB, vH, vN, dv] = v.shape as [number, number, number, number];
  if (kB !== B || kH !== Hh || kd !== dh) {
    throw new OpArgumentError(op, `k [${k.shape.join(', ')}] does not match q [${q.shape.join(', ')}]`);
  }
  if (vB !== B || vH !== Hh || vN !== Nk) {
    throw new OpArgumentError(op, `v [${v.shape.join(', ')}] does not match k [${k.shape.join(', ')}]`);
  }
  const { mask, causal = false } = options;
  const scale = options.scale ?? 1 / Math.sqrt(dh);
  if (mask) {
    const ok =
      mask.rank === 4 &&
      [B, Hh, Nq].every((n, i) => mask.shape[i] === 1 || mask.shape[i] === n) &&
      mask.shape[3] === Nk;
    if (!ok) {
      throw new OpArgumentError(op, `mask [${mask.shape.join(', ')}] is not broadcastable to [${B}, ${Hh}, ${Nq}, ${Nk}]`);
    }
  }
  return tf.tidy(() => {
    const BH = B * Hh;
    // Scaling q (BH*Nq*dh values) is cheaper than scaling the scores (BH*Nq*Nk).
    const q3 = tf.mul(tf.reshape(q, [BH, Nq, dh]), scale); // [B*heads, Nq, dh]
    const k3 = tf.reshape(k, [BH, Nk, dh]); // [B*heads, Nk, dh]
    const v3 = tf.reshape(v, [BH, Nk, dv]); // [B*heads, Nk, dv]
    let scores: tf.Tensor = tf.matMul(q3, k3, false, true); // [B*heads, Nq, Nk]
    let bias: tf.Tensor | undefined;
    if (mask) {
      const [mB, mH, mQ] = mask.shape as [number, number, number, number];
      let m = tf.reshape(tf.cast(mask, 'float32'), [mB * mH, mQ, Nk]); // [mB*mH, mQ, Nk]
      if (mQ !== Nq) m = tf.tile(m, [1, Nq, 1]); // [mB*mH, Nq, Nk]
      bias = tf.reshape(tf.mul(tf.sub(1, m), MASKED), [mB, mH, Nq * Nk]); // [mB, mH, Nq*Nk]
    }
    if (causal) {
      const c = new Float32Array(Nq * Nk);
      const shift = Nk - Nq;
      for (let i = 0; i < Nq; i++) for (let j = i + shift + 1; j < Nk; j++) if (j >= 0) c[i * Nk + j] = MASKED;
      const cb = tf.tensor3d(c, [1, 1, Nq * Nk]); // [1, 1, Nq*Nk]
      bias = bias ? tf.add(bias, cb) : cb;
    }
    if (bias) {
      // Rank-3 broadcast add (rank-4 element-wise ops are slow on wasm).
      scores = tf.reshape(tf.add(tf.reshape(scores, [B, Hh, Nq * Nk]), bias), [BH, Nq, Nk]); // [B*heads, Nq, Nk]
    }
    const probs = tf.softmax(scores); // [B*heads, Nq, Nk]
    const out = tf.matMul(probs, v3); // [B*heads, Nq, dv]
    return tf.reshape(out, [B, Hh, Nq, dv]);
  });
}
