/**
 * What the segmentation engine needs from a model, and nothing more: a window size, the named outputs
 * with their channel counts, a batched forward pass on host arrays, and how a blended output is stored.
 * The engine (segment.ts) tiles, blends, masks, shards and writes; it never sees a tensor, so a model
 * with more heads (fibre, geometry) plugs in by implementing this interface.
 *
 * Legend: B windows in a batch, C channels of one output, D, H, W the window's extent (z, y, x),
 * V voxels of a blended block.
 */
import { tf } from '@goe/tf';
// The orientation tensor's 6 entries in symmetricEigen3's order: zz, yy, xx, zy, zx, yx.
import { SYMMETRIC_ENTRIES, symmetricEigen3 } from '@goe/head-fiber';
import { makeTokenGrid, tokenCellVoxels, type TokenGrid } from '@goe/volume-stem';
import type { VolumeModel } from './model.js';

/** One named output of a predictor. */
export interface PredictorOutput {
  name: string;
  /** Channels the predictor returns per voxel (before `encode`). */
  channels: number;
}

export interface WindowPredictor {
  /** Model input `[D, H, W]`. */
  readonly window: [number, number, number];
  /** The outputs this model was trained for, e.g. `[{ name: 'ink', channels: 1 }]`. */
  readonly outputs: readonly PredictorOutput[];
  /**
   * @param inputs `[B, D, H, W]` float32, intensities normalised as in training (`normaliseIntensity`)
   * @param count B
   * @returns per output `[B, C, D, H, W]` float32: values that may be blended linearly (probabilities;
   *   for directions, orientation tensors rather than sign-ambiguous vectors)
   */
  predict(inputs: Float32Array, count: number): Promise<Record<string, Float32Array>>;
  /**
   * How a blended output is stored.
   * @param blended `[C, V]` float32
   * @returns `[C', V]` uint8 and C'
   */
  encode(name: string, blended: Float32Array, voxels: number): { data: Uint8Array; channels: number };
  dispose(): void;
}

/** A probability in [0, 1] as the byte round(p * 255) (values outside are clamped). */
export function probabilityByte(p: number): number {
  return p <= 0 ? 0 : p >= 1 ? 255 : Math.round(p * 255);
}

/**
 * Fibre directions are stored per voxel as five uint8 channels: |x|, |y|, |z| of the unit direction
 * times 255 (a colour picture as is: red across the scroll, green, blue along its axis), the sign bits
 * of the sign-free direction put in the form z >= 0 (1: x < 0, 2: y < 0; with z = 0, y >= 0), and its
 * coherence (λ1 − λ2) / λ1 of the blended orientation tensor times 255 (0: no dominant direction, 1:
 * every window agrees).
 */
export const FIBER_CHANNELS = ['absX', 'absY', 'absZ', 'signs', 'coherence'] as const;

/**
 * Per-token unit directions `[B, N, 3]` as per-voxel orientation tensors `[B, 6, D, H, W]` (each voxel
 * takes its token's v vᵀ): a sign-free quantity that averages (GoE windows overlap, and v and −v
 * must blend to the same direction, not cancel).
 */
export function tokenTensorsToVoxels(dirs: Float32Array, count: number, grid: TokenGrid): Float32Array {
  const [gd, gh, gw] = grid.dims;
  const [cz, cy, cx] = grid.cell;
  const [D, H, W] = grid.inputShape;
  const V = D * H * W;
  const N = gd * gh * gw;
  const out = new Float32Array(count * 6 * V);
  for (let b = 0; b < count; b++)
    for (let z = 0; z < D; z++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          const t = b * N + (Math.floor(z / cz) * gh + Math.floor(y / cy)) * gw + Math.floor(x / cx);
          const v = [dirs[3 * t] as number, dirs[3 * t + 1] as number, dirs[3 * t + 2] as number];
          const i = (z * H + y) * W + x;
          SYMMETRIC_ENTRIES.forEach(([p, q], e) => (out[(b * 6 + e) * V + i] = (v[p] as number) * (v[q] as number)));
        }
  return out;
}

/**
 * Blended orientation tensors `[6, V]` to the stored fibre channels (see {@link FIBER_CHANNELS}): the
 * principal eigenvector of each voxel's tensor (@goe/head-fiber `symmetricEigen3`) and its coherence.
 */
export function encodeFiber(blended: Float32Array, voxels: number): Uint8Array {
  const out = new Uint8Array(5 * voxels);
  const m = new Float64Array(6);
  for (let i = 0; i < voxels; i++) {
    for (let e = 0; e < 6; e++) m[e] = blended[e * voxels + i] as number;
    // symmetricEigen3 takes [a00, a11, a22, a01, a02, a12].
    const eig = symmetricEigen3(m);
    let [z, y, x] = eig.vectors[0] as [number, number, number];
    const n = Math.hypot(z, y, x);
    if (!(n > 0) || !(eig.values[0]! > 0)) continue; // no direction (all-zero tensor): 0 everywhere
    if (z < 0 || (z === 0 && y < 0)) [z, y, x] = [-z, -y, -x];
    out[i] = probabilityByte(Math.abs(x) / n);
    out[voxels + i] = probabilityByte(Math.abs(y) / n);
    out[2 * voxels + i] = probabilityByte(Math.abs(z) / n);
    out[3 * voxels + i] = (x < 0 ? 1 : 0) | (y < 0 ? 2 : 0);
    out[4 * voxels + i] = probabilityByte((eig.values[0]! - eig.values[1]!) / eig.values[0]!);
  }
  return out;
}

/**
 * A volume model behind the {@link WindowPredictor} interface, one output per head it carries:
 * - `ink`: the voxel ink probability (1 channel; stored as round(p · 255));
 * - `fiber`: per-voxel orientation tensors of the per-token fibre directions (6 channels, blended
 *   linearly), stored as the 5 channels of {@link FIBER_CHANNELS};
 * - `geometry`: the sheet probability (1 channel; stored as round(p · 255)). Its per-token normals are
 *   scored by `goe eval`, not stored.
 * Probabilities and orientation tensors are what may be averaged over overlapping windows.
 * @param window the model's patch `[D, H, W]` (the input size it was trained on)
 */
export function volumePredictor(model: VolumeModel, window: readonly [number, number, number]): WindowPredictor {
  const [D, H, W] = window;
  const grid = makeTokenGrid([D, H, W], tokenCellVoxels(model.spec.stem));
  const outputs: PredictorOutput[] = [];
  if (model.inkHead) outputs.push({ name: 'ink', channels: 1 });
  if (model.fiberHead) outputs.push({ name: 'fiber', channels: 6 });
  if (model.geometryHead) outputs.push({ name: 'geometry', channels: 1 });
  const probability = (blended: Float32Array, voxels: number) => {
    const data = new Uint8Array(voxels);
    for (let i = 0; i < voxels; i++) data[i] = probabilityByte(blended[i]!);
    return { data, channels: 1 };
  };
  return {
    window: [D, H, W],
    outputs,
    async predict(inputs: Float32Array, count: number): Promise<Record<string, Float32Array>> {
      if (inputs.length !== count * D * H * W) throw new RangeError(`predict: ${inputs.length} inputs for ${count} windows of ${D}x${H}x${W}`);
      const skip = model.fiberFeatures(inputs, count, [D, H, W]);
      const p = tf.tidy(() => ({ ...model.predict(tf.tensor5d(inputs, [count, D, H, W, 1]), skip) }) as Record<string, tf.Tensor>);
      skip?.dispose();
      const out: Record<string, Float32Array> = {};
      try {
        // [B, D, H, W] is [B, 1, D, H, W] in memory: one channel.
        if (p['ink']) out['ink'] = (await p['ink'].data()) as Float32Array;
        if (p['fiber']) out['fiber'] = tokenTensorsToVoxels((await p['fiber'].data()) as Float32Array, count, grid);
        if (p['sheet']) out['geometry'] = (await p['sheet'].data()) as Float32Array;
      } finally {
        tf.dispose(Object.values(p));
      }
      return out;
    },
    encode(name: string, blended: Float32Array, voxels: number) {
      if (name === 'fiber' && model.fiberHead) return { data: encodeFiber(blended, voxels), channels: 5 };
      if ((name === 'ink' && model.inkHead) || (name === 'geometry' && model.geometryHead)) return probability(blended, voxels);
      throw new RangeError(`encode: this model has no output '${name}'`);
    },
    dispose() {
      model.dispose();
    },
  };
}
