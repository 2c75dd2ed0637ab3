/**
 * Segmentation over scroll chunks: the volume is cut into model-sized tiles, each read on its own
 * (never the whole volume), run through the trained ink model, and written as uint8 ink probability
 * (0-255) into a Zarr array of the same shape, chunked like the tiles. The output is built in a
 * temporary folder and renamed into place at the end, so a failed run leaves no partial output.
 */
import { initBackend, tf, type BackendChoice } from '@goe/tf';
import { createVolume, openVolume, replaceDirectory, type Region, type Volume } from '@goe/scroll-io';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadModel, type RestoredModel } from './checkpoint.js';
import { ConfigError } from './errors.js';
import { InkModel, normaliseIntensity } from './model.js';
import { Progress } from './progress.js';

export interface SegmentOptions {
  /** A run folder (holding `checkpoint/`) or a checkpoint folder. */
  checkpoint: string;
  /** Input volume: a Zarr array or OME-Zarr group. */
  volume: string;
  /** Output Zarr array path (must not exist unless `overwrite`). */
  out: string;
  backend?: string;
  /** Tiles per forward pass. */
  batch?: number;
  overwrite?: boolean;
  progressStream?: NodeJS.WriteStream | null;
}

export interface SegmentResult {
  out: string;
  shape: number[];
  tiles: number;
  seconds: number;
  voxelsPerSecond: number;
  backend: BackendChoice;
}

/** Largest intensity of a volume dtype: the scale `normaliseIntensity` divides by. */
export function dtypeMax(dtype: string, flag = '--volume'): number {
  if (dtype === 'uint8') return 255;
  if (dtype === 'uint16') return 65535;
  if (dtype === 'float32' || dtype === 'float64') return 1;
  throw new ConfigError(flag, `unsupported dtype '${dtype}' (expected uint8, uint16 or float32)`);
}

/**
 * Loads a checkpoint's model and checks that it is a volume-stem (ink) model; `what` says what it is
 * needed for, in the error.
 */
export async function loadInkModel(checkpoint: string, what: string): Promise<{ model: InkModel; restored: RestoredModel }> {
  const restored = await loadModel(checkpoint);
  if (!(restored.model instanceof InkModel)) {
    restored.model.dispose();
    throw new ConfigError('--checkpoint', `${checkpoint} holds a ${restored.spec.stemKind}-stem model; ${what} needs a volume-stem (ink) model`);
  }
  return { model: restored.model, restored };
}

/** One model tile's prediction, cut to the part inside the requested region. */
export interface TilePrediction {
  /** The voxels predicted: the tile clipped to the region (and so to the volume). */
  box: Region;
  /** Ink probability `[box.shape[0] * box.shape[1] * box.shape[2]]`, C order, float32. */
  prob: Float32Array;
}

export interface PredictRegionOptions {
  model: InkModel;
  volume: Volume;
  /** Model input `[D, H, W]`. */
  patch: readonly [number, number, number];
  /** Voxels to predict; default the whole volume. Must lie inside the volume. */
  region?: Region;
  /** Tiles per forward pass (default 4). */
  batch?: number;
  /** Called with the number of tiles done after each forward pass. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * The model's ink probability over `region`, tile by tile, handed to `onTile` in tile order (memory is
 * one batch of tiles whatever the region). Tiles sit on the volume's fixed grid (multiples of the patch
 * from voxel 0), whatever the region: a voxel's prediction then does not depend on the region asked for,
 * so a sub-region's output is exactly that region cut from a whole-volume run. Tiles over the volume's
 * edge are padded with its fill value, as the sampler pads training patches.
 * @returns the number of tiles run
 */
export async function predictRegion(o: PredictRegionOptions, onTile: (t: TilePrediction) => Promise<void> | void): Promise<number> {
  const { model, volume, patch } = o;
  const shape = volume.shape as [number, number, number];
  const region = o.region ?? { offset: [0, 0, 0], shape: [...shape] };
  const scale = dtypeMax(volume.dtype);
  const lo = region.offset.map((v, a) => Math.floor(v / patch[a]!) * patch[a]!);
  const hi = region.offset.map((v, a) => v + region.shape[a]!);
  const origins: number[][] = [];
  if (region.shape.every((s) => s > 0)) {
    for (let z = lo[0]!; z < hi[0]!; z += patch[0])
      for (let y = lo[1]!; y < hi[1]!; y += patch[1]) for (let x = lo[2]!; x < hi[2]!; x += patch[2]) origins.push([z, y, x]);
  }
  const batch = o.batch ?? 4;
  const n = patch[0] * patch[1] * patch[2];
  for (let i = 0; i < origins.length; i += batch) {
    const group = origins.slice(i, i + batch);
    const x = new Float32Array(group.length * n);
    const reads = await Promise.all(group.map((origin) => volume.read({ offset: origin, shape: [...patch] })));
    reads.forEach((r, b) => {
      for (let j = 0; j < n; j++) x[b * n + j] = normaliseIntensity(r.data[j] as number, scale);
    });
    const prob = tf.tidy(() => {
      const input = tf.tensor5d(x, [group.length, patch[0], patch[1], patch[2], 1]);
      return tf.sigmoid(model.forward(input, { training: false }).logits);
    });
    const p = (await prob.data()) as Float32Array;
    prob.dispose();
    for (let b = 0; b < group.length; b++) {
      const origin = group[b] as number[];
      // Only the part inside the region is handed on; the rest of the tile was context or padding.
      const start = origin.map((v, a) => Math.max(v, region.offset[a]!));
      const size = origin.map((v, a) => Math.min(v + patch[a]!, hi[a]!) - start[a]!);
      const out = new Float32Array(size[0]! * size[1]! * size[2]!);
      const [dz, dy, dx] = start.map((v, a) => v - origin[a]!) as [number, number, number];
      let k = 0;
      for (let z = 0; z < size[0]!; z++)
        for (let y = 0; y < size[1]!; y++) {
          const row = b * n + ((z + dz) * patch[1] + y + dy) * patch[2] + dx;
          out.set(p.subarray(row, row + size[2]!), k);
          k += size[2]!;
        }
      await onTile({ box: { offset: start, shape: size }, prob: out });
    }
    o.onProgress?.(Math.min(i + batch, origins.length), origins.length);
  }
  return origins.length;
}

/** Writes an ink-probability volume for `volume` with the model in `checkpoint`. */
export async function segment(o: SegmentOptions): Promise<SegmentResult> {
  const backend = await initBackend({ backend: o.backend });
  const { model, restored } = await loadInkModel(o.checkpoint, 'segmentation');
  const patch = restored.config.model.patch;
  let tiles = 0;
  let shape: [number, number, number] = [0, 0, 0];
  const t0 = performance.now();
  try {
    const vol = await openVolume(o.volume);
    if (vol.shape.length !== 3) {
      throw new ConfigError('--volume', `${o.volume} has ${vol.shape.length} dimensions; expected 3 (z, y, x)`);
    }
    dtypeMax(vol.dtype);
    const out = resolve(o.out);
    if (existsSync(out) && !o.overwrite) throw new ConfigError('--out', `${out} exists (pass --overwrite to replace it)`);
    const tmp = `${out}.tmp-${process.pid}`;
    await rm(tmp, { recursive: true, force: true });
    shape = vol.shape as [number, number, number];
    const total = shape.reduce((a, s, i) => a * Math.ceil(s / patch[i]!), 1);
    const progress =
      o.progressStream === null
        ? undefined
        : new Progress({
            total,
            label: 'tile',
            unit: 'voxels',
            perStep: patch[0] * patch[1] * patch[2],
            every: Math.max(1, Math.ceil(total / 20)),
            stream: o.progressStream,
          });
    try {
      const dst = await createVolume(tmp, {
        shape: [...shape],
        chunks: [...patch],
        dtype: 'uint8',
        fillValue: 0,
        attributes: { goe: { kind: 'ink-probability', scale: '0-255', checkpoint: resolve(restored.dir), source: resolve(o.volume) } },
      });
      tiles = await predictRegion(
        { model, volume: vol, patch, batch: o.batch, onProgress: (done) => progress?.update(done, {}) },
        (t) => dst.write(t.box, Uint8Array.from(t.prob, (v) => Math.round(v * 255))),
      );
      progress?.done();
      await replaceDirectory(tmp, out);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  } finally {
    model.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    out: resolve(o.out),
    shape: [...shape],
    tiles,
    seconds,
    voxelsPerSecond: (shape[0] * shape[1] * shape[2]) / seconds,
    backend,
  };
}
