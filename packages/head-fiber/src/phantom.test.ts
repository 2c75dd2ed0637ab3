/**
 * Trained alone (the only head) behind a volume stem on phantom patches for a short run, the fibre
 * head must clearly beat its untrained self on held-out patches, by the sign-free angular error.
 */
import { describe, expect, it } from 'vitest';
import { Adam, adamStepOn, makeRng, tf, useBackend, type Rng, type TokenGrid } from '@goe/tf';
import { phantomRegion, resolvePhantomConfig, type PhantomConfig } from '@goe/phantom';
import { VolumeStem, resolveVolumeStemConfig } from '@goe/volume-stem';
import { FiberHead, fiberErrorByFace, fiberLoss, fiberTargetsFromVoxels, resolveFiberHeadConfig } from './index.js';

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
  return { x, ...fiberTargetsFromVoxels(dirs, GRID, n), n };
}

describe('fibre head trained alone on phantom patches', () => {
  it('beats the untrained head clearly on held-out patches (angular error)', async () => {
    await useBackend('wasm');
    const cfg = resolvePhantomConfig({ preset: 'easy', shape: [32, 96, 96], seed: 2 });
    const rng = makeRng(3);
    const stem = new VolumeStem(resolveVolumeStemConfig({ d: 32, da: 8 }), rng);
    const head = new FiberHead(resolveFiberHeadConfig({ d: 32, hidden: 32 }), rng);
    const val = fibrePatches(cfg, makeRng(4), 6, 24, 32);
    const N = GRID.dims[0] * GRID.dims[1] * GRID.dims[2];
    const score = async () => {
      const x = tf.tensor5d(val.x, [val.n, ...PATCH, 1]);
      const s = stem.apply(x);
      const p = head.apply(s.tokens);
      const pred = await p.data();
      tf.dispose([x, s.tokens, s.aux, p, ...(s.positions ? [s.positions] : [])]);
      return fiberErrorByFace(pred, val.target, val.mask);
    };
    const before = await score();

    const adam = new Adam();
    const trainRng = makeRng(5);
    for (let step = 0; step < 60; step++) {
      const b = fibrePatches(cfg, trainRng, 4, 0, 24);
      const x = tf.tensor5d(b.x, [b.n, ...PATCH, 1]);
      const t = tf.tensor3d(b.target, [b.n, N, 3]);
      const m = tf.tensor2d(b.mask, [b.n, N], 'float32');
      await adamStepOn({ stem, head }, adam, () => fiberLoss(head.apply(stem.apply(x).tokens), t, m), 5e-3);
      tf.dispose([x, t, m]);
    }
    const after = await score();
    // Measured: 56.8° -> 47.5° overall; vertical fibres 54.5° -> 17.7°, horizontal ones 58.8° -> 73.4°
    // (the head settles on one direction first; README.md, "Learned head against the structure tensor").
    expect(after.all.count).toBeGreaterThan(100);
    expect(after.all.mean).toBeLessThan(before.all.mean - 5);
    expect(after.vertical.mean).toBeLessThan(before.vertical.mean - 20);
    adam.dispose();
  }, 60_000);
});
