/**
 * Segmentation over scroll chunks: the volume is cut into model-sized tiles, each read on its own
 * (never the whole volume), run through the trained ink model, and written as uint8 ink probability
 * (0-255) into a Zarr array of the same shape, chunked like the tiles. The output is built in a
 * temporary folder and renamed into place at the end, so a failed run leaves no partial output.
 */
import { initBackend, tf, type BackendChoice } from '@goe/tf';
import { createVolume, openVolume, replaceDirectory } from '@goe/scroll-io';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { loadModel } from './checkpoint.js';
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

function dtypeMax(dtype: string): number {
  if (dtype === 'uint8') return 255;
  if (dtype === 'uint16') return 65535;
  if (dtype === 'float32' || dtype === 'float64') return 1;
  throw new ConfigError('--volume', `unsupported dtype '${dtype}' (expected uint8, uint16 or float32)`);
}

/** Writes an ink-probability volume for `volume` with the model in `checkpoint`. */
export async function segment(o: SegmentOptions): Promise<SegmentResult> {
  const backend = await initBackend({ backend: o.backend });
  const restored = await loadModel(o.checkpoint);
  const { config } = restored;
  if (!(restored.model instanceof InkModel)) {
    restored.model.dispose();
    throw new ConfigError('--checkpoint', `${o.checkpoint} holds a ${restored.spec.stemKind}-stem model; segmentation needs a volume-stem (ink) model`);
  }
  const model = restored.model;

  const vol = await openVolume(o.volume);
  if (vol.shape.length !== 3) {
    throw new ConfigError('--volume', `${o.volume} has ${vol.shape.length} dimensions; expected 3 (z, y, x)`);
  }
  const scale = dtypeMax(vol.dtype);
  const patch = config.model.patch;
  const out = resolve(o.out);
  if (existsSync(out) && !o.overwrite) throw new ConfigError('--out', `${out} exists (pass --overwrite to replace it)`);
  const tmp = `${out}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });

  const shape = vol.shape as [number, number, number];
  const tilesPerAxis = shape.map((s, i) => Math.ceil(s / (patch[i] as number)));
  const origins: number[][] = [];
  for (let z = 0; z < (tilesPerAxis[0] as number); z++)
    for (let y = 0; y < (tilesPerAxis[1] as number); y++)
      for (let x = 0; x < (tilesPerAxis[2] as number); x++) origins.push([z * patch[0], y * patch[1], x * patch[2]]);

  const batch = o.batch ?? 4;
  const n = patch[0] * patch[1] * patch[2];
  const progress =
    o.progressStream === null
      ? undefined
      : new Progress({
          total: origins.length,
          label: 'tile',
          unit: 'voxels',
          perStep: n,
          every: Math.max(1, Math.ceil(origins.length / 20)),
          stream: o.progressStream,
        });
  const t0 = performance.now();
  try {
    const dst = await createVolume(tmp, {
      shape: [...shape],
      chunks: [...patch],
      dtype: 'uint8',
      fillValue: 0,
      attributes: { goe: { kind: 'ink-probability', scale: '0-255', checkpoint: resolve(restored.dir), source: resolve(o.volume) } },
    });
    for (let i = 0; i < origins.length; i += batch) {
      const group = origins.slice(i, i + batch);
      const x = new Float32Array(group.length * n);
      const reads = await Promise.all(group.map((origin) => vol.read({ offset: origin, shape: [...patch] })));
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
        // Only the part inside the volume is written; edge tiles were padded with the fill value.
        const inside = patch.map((s, a) => Math.min(s, (shape[a] as number) - (origin[a] as number)));
        const tile = new Uint8Array(inside[0]! * inside[1]! * inside[2]!);
        let k = 0;
        for (let z = 0; z < inside[0]!; z++)
          for (let y = 0; y < inside[1]!; y++)
            for (let xx = 0; xx < inside[2]!; xx++) {
              const v = p[b * n + (z * patch[1] + y) * patch[2] + xx] as number;
              tile[k++] = Math.round(v * 255);
            }
        await dst.write({ offset: origin, shape: inside }, tile);
      }
      progress?.update(Math.min(i + batch, origins.length), {});
    }
    progress?.done();
    await replaceDirectory(tmp, out);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    model.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    out,
    shape: [...shape],
    tiles: origins.length,
    seconds,
    voxelsPerSecond: (shape[0] * shape[1] * shape[2]) / seconds,
    backend,
  };
}
