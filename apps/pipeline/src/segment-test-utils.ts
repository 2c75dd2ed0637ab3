/**
 * Test helpers for segmentation: a briefly trained model with a phantom volume to segment, and the
 * segmentation of a volume computed apart from the engine, in float64 (every window of the grid run
 * alone through the predictor and blended with the same Gaussian weights).
 */
import { resolvePhantomConfig, writePhantom } from '@goe/phantom';
import { gaussianWeights, openVolume, product, tileRegion } from '@goe/scroll-io';
import { initBackend } from '@goe/tf';
import { join } from 'node:path';
import { normaliseIntensity } from './model.js';
import { volumePredictor, type WindowPredictor } from './predictor.js';
import { loadVolumeModel } from './segment.js';
import { smallTrainConfig } from './small-config.js';
import { train } from './train.js';
import type { VolumeHeadName } from './spec.js';

/**
 * Trains a small model (window 8x16x16) for 2 steps on wasm into `root/run` and writes an easy
 * phantom of `shape` into `root/vol`: a real checkpoint and a real volume for the engine to run on.
 */
export async function trainedSegmentFixture(
  root: string,
  o: { shape: [number, number, number]; seed: number; heads?: VolumeHeadName[] },
): Promise<{ runDir: string; image: string; predictor: WindowPredictor }> {
  await initBackend({ backend: 'wasm' });
  const model = { patch: [8, 16, 16] as [number, number, number], ...(o.heads ? { heads: o.heads } : {}) };
  const r = await train(smallTrainConfig(join(root, 'run'), { steps: 2, validationPatches: 1, model }), { progressStream: null });
  const { image } = await writePhantom(join(root, 'vol'), resolvePhantomConfig({ shape: o.shape, seed: o.seed, preset: 'easy' }));
  const { model: loaded, restored } = await loadVolumeModel(r.runDir, 'test');
  return { runDir: r.runDir, image, predictor: volumePredictor(loaded, restored.config.model.patch) };
}

/**
 * @returns per output the blended values `[C, V]` (C the output's channels, V the volume's voxels, C order)
 */
export async function referenceBlend(predictor: WindowPredictor, image: string, shape: readonly [number, number, number], overlap: readonly number[]): Promise<Record<string, Float64Array>> {
  const window = predictor.window;
  const per = shape.map((s, k) => tileRegion([s], [window[k]!], overlap[k]!).map((o) => o[0]!));
  const w = gaussianWeights([...window]);
  const n = product(window);
  const V = product(shape);
  const acc: Record<string, Float64Array> = Object.fromEntries(predictor.outputs.map((o) => [o.name, new Float64Array(o.channels * V)]));
  const wsum = new Float64Array(V);
  const src = await openVolume(image);
  for (const z of per[0]!)
    for (const y of per[1]!)
      for (const x of per[2]!) {
        const tile = await src.read({ offset: [z, y, x], shape: [...window] });
        const p = await predictor.predict(Float32Array.from(tile.data as Uint8Array, (v) => normaliseIntensity(v)), 1);
        for (let i = 0; i < n; i++) {
          const [dz, dy, dx] = [Math.floor(i / (window[1] * window[2])), Math.floor(i / window[2]) % window[1], i % window[2]];
          const v = ((z + dz) * shape[1] + y + dy) * shape[2] + x + dx;
          wsum[v] += w[i]!;
          for (const o of predictor.outputs) for (let c = 0; c < o.channels; c++) acc[o.name]![c * V + v] += w[i]! * p[o.name]![c * n + i]!;
        }
      }
  for (const a of Object.values(acc)) for (let j = 0; j < a.length; j++) a[j]! /= wsum[j % V]!;
  return acc;
}
