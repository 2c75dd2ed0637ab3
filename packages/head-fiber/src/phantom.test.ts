/**
 * Trained alone (the only head) behind a volume stem on phantom patches for a short run, the fibre
 * head (orientation-tensor output, with the sheet-frame features of its patch) must clearly beat its
 * untrained self on held-out patches, by the sign-free angular error, on both faces' fibres.
 */
import { describe, expect, it } from 'vitest';
import { Adam, adamStepOn, makeRng, tf, useBackend, type Rng, type TokenGrid } from '@goe/tf';
import { phantomRegion, resolvePhantomConfig, type PhantomConfig } from '@goe/phantom';
import { VolumeStem, resolveVolumeStemConfig } from '@goe/volume-stem';
import { FiberHead, SHEET_FEATURE_WIDTH, fiberErrorByFace, fiberTargetsFromVoxels, resolveFiberHeadConfig, sheetFrameFeatures } from './index.js';

const PATCH: [number, number, number] = [8, 32, 32];
const GRID: TokenGrid = { inputShape: PATCH, cell: [4, 4, 4], dims: [2, 8, 8] };

/** `n` patches with at least 10% papyrus, corners at z in [z0, z1): image in [0, 1] and token targets. */
function fibrePatches(cfg: PhantomConfig, rng: Rng, n: number, z0: number, z1: number) {
  const v = PATCH[0] * PATCH[1] * PATCH[2];
  const x = new Float32Array(n * v);
  const dirs = new Float32Array(n * v * 3);
  for (let b = 0; b < n; ) {
    const offset = [z0 + rng.int(z1 - z0 - PATCH[0] + 1), rng.int(cfg.shape[1] - PATCH[1] + 1), rng.int(cfg.shape[2] - PATCH[2] + 1)];
    const r = phantomRegion(cfg, { offset, shape: PATCH });
    if (r.papyrus.reduce((s, p) => s + p, 0) < 0.1 * v) continue;
    for (let i = 0; i < v; i++) {
      x[b * v + i] = (r.image[i] as number) / 255;
      // Components first in the phantom ([3, d, h, w]), last in the targets' input.
      for (let c = 0; c < 3; c++) dirs[(b * v + i) * 3 + c] = r.fibre[c * v + i] as number;
    }
    b++;
  }
  return { x, ...fiberTargetsFromVoxels(dirs, GRID, n), skip: sheetFrameFeatures(x, GRID, n).features, n };
}

describe('fibre head trained alone on phantom patches', () => {
  it('beats the untrained head clearly on held-out patches (angular error)', async () => {
    await useBackend('wasm');
    const cfg = resolvePhantomConfig({ preset: 'easy', shape: [32, 96, 96], seed: 2 });
    const rng = makeRng(3);
    const stem = new VolumeStem(resolveVolumeStemConfig({ d: 32, da: 8 }), rng);
    const head = new FiberHead(resolveFiberHeadConfig({ d: 32, hidden: 32, output: 'tensor', skip: SHEET_FEATURE_WIDTH }), rng);
    const val = fibrePatches(cfg, makeRng(4), 6, 24, 32);
    const N = GRID.dims[0] * GRID.dims[1] * GRID.dims[2];
    const forward = (b: { x: Float32Array; skip: Float32Array; n: number }): tf.Tensor3D =>
      tf.tidy(() => head.apply(stem.apply(tf.tensor5d(b.x, [b.n, ...PATCH, 1])).tokens, tf.tensor3d(b.skip, [b.n, N, SHEET_FEATURE_WIDTH])));
    const score = async () => {
      const p = forward(val);
      const pred = head.directions(await p.data());
      p.dispose();
      return fiberErrorByFace(pred, val.target, val.mask);
    };
    const before = await score();

    const adam = new Adam();
    const trainRng = makeRng(5);
    for (let step = 0; step < 60; step++) {
      const b = fibrePatches(cfg, trainRng, 4, 0, 24);
      const t = tf.tensor3d(b.target, [b.n, N, 3]);
      const m = tf.tensor2d(b.mask, [b.n, N], 'float32');
      await adamStepOn({ stem, head }, adam, () => head.loss(forward(b), t, m), 5e-3);
      tf.dispose([t, m]);
    }
    const after = await score();
    // Measured: 54.5° -> 30.1° overall; horizontal (recto) fibres 62.0° -> 31.7°, vertical (verso) ones
    // 45.7° -> 28.2°. Both faces improve: the head does not settle on one direction. With the
    // direction output ('vector') and the same features, these 60 steps still settle on the axis
    // (61.7° -> 47.5°; horizontal 58.5° -> 73.5°, vertical 65.4° -> 17.5°); README.md, "Learned head
    // against the structure tensor".
    expect(after.all.count).toBeGreaterThan(100);
    expect(after.all.mean).toBeLessThan(before.all.mean - 15);
    expect(after.horizontal.mean).toBeLessThan(before.horizontal.mean - 15);
    expect(after.vertical.mean).toBeLessThan(before.vertical.mean - 10);
    adam.dispose();
  }, 60_000);
});
