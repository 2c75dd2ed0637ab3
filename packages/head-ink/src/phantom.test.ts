/**
 * Trained alone (the only head) behind a volume stem on phantom patches for a short run, the ink head
 * must clearly beat its untrained self on held-out patches, measured by the competition metric.
 */
import { describe, expect, it } from 'vitest';
import { Adam, adamStepOn, makeRng, tf, useBackend, type Rng } from '@goe/tf';
import { phantomRegion, resolvePhantomConfig, type PhantomConfig } from '@goe/phantom';
import { VolumeStem, resolveVolumeStemConfig } from '@goe/volume-stem';
import { InkHead, inkLoss, inkMetrics, resolveInkHeadConfig } from './index.js';

const PATCH: [number, number, number] = [8, 32, 32];

/** `n` patches with some ink, corners with z in [z0, z1): image in [0, 1] and 0/1 ink, `[n, D, H, W]`. */
function inkPatches(cfg: PhantomConfig, rng: Rng, n: number, z0: number, z1: number): { x: Float32Array; ink: Float32Array } {
  const v = PATCH[0] * PATCH[1] * PATCH[2];
  const x = new Float32Array(n * v);
  const ink = new Float32Array(n * v);
  for (let b = 0; b < n; ) {
    const offset = [z0 + rng.int(z1 - z0 - PATCH[0] + 1), rng.int(cfg.shape[1] - PATCH[1] + 1), rng.int(cfg.shape[2] - PATCH[2] + 1)];
    const r = phantomRegion(cfg, { offset, shape: PATCH });
    if (r.ink.reduce((s, i) => s + i, 0) < 0.01 * v) continue;
    r.image.forEach((p, i) => (x[b * v + i] = p / 255));
    r.ink.forEach((p, i) => (ink[b * v + i] = p));
    b++;
  }
  return { x, ink };
}

describe('ink head trained alone on phantom patches', () => {
  it('beats the untrained head clearly on held-out patches (AUC and F0.5)', async () => {
    await useBackend('wasm');
    const cfg = resolvePhantomConfig({ preset: 'easy', shape: [32, 96, 96], seed: 2 });
    const rng = makeRng(3);
    const stem = new VolumeStem(resolveVolumeStemConfig({ d: 32, da: 8 }), rng);
    const head = new InkHead(resolveInkHeadConfig({ d: 32, hidden: 32 }), rng);
    const val = inkPatches(cfg, makeRng(4), 6, 24, 32);
    const score = async () => {
      const x = tf.tensor5d(val.x, [6, ...PATCH, 1]);
      const s = stem.apply(x);
      const p = tf.sigmoid(head.apply(s.tokens, s.grid));
      const prob = await p.data();
      tf.dispose([x, s.tokens, s.aux, p, ...(s.positions ? [s.positions] : [])]);
      return inkMetrics(prob, val.ink);
    };
    const before = await score();

    const adam = new Adam();
    const trainRng = makeRng(5);
    for (let step = 0; step < 60; step++) {
      const b = inkPatches(cfg, trainRng, 4, 0, 24);
      const x = tf.tensor5d(b.x, [4, ...PATCH, 1]);
      const y = tf.tensor4d(b.ink, [4, ...PATCH]);
      await adamStepOn({ stem, head }, adam, () => {
        const s = stem.apply(x);
        return inkLoss(head.apply(s.tokens, s.grid), y).total;
      }, 5e-3);
      tf.dispose([x, y]);
    }
    const after = await score();
    expect(before.positives).toBeGreaterThan(100);
    expect(after.auc).toBeGreaterThan(before.auc + 0.15);
    expect(after.auc).toBeGreaterThan(0.75); // 0.83 measured
    expect(after.f05).toBeGreaterThan(before.f05 + 0.1);
    adam.dispose();
  }, 60_000);
});
