import { describe, expect, it } from 'vitest';
import { backendsUnderTest, expectNoLeak, makeRng, tf, useBackend } from '@goe/tf';
import { InkInputError, inkLoss } from './index.js';
import { lossRef } from './test-helpers.js';

describe('inkLoss', () => {
  const shape: [number, number, number, number] = [2, 2, 3, 4];
  const n = 48;
  const rng = makeRng(1);
  const x = Float32Array.from({ length: n }, () => 3 * rng.normal());
  const y = Float32Array.from({ length: n }, () => (rng.next() < 0.3 ? 1 : 0));
  const mask = Float32Array.from({ length: n }, () => (rng.next() < 0.8 ? 1 : 0));

  it('equals the float64 definition on every backend, with a mask, an ignore value and weights', async () => {
    const withIgnore = y.map((v, i) => (i % 7 === 0 ? 255 : v));
    const validIgnore = mask.map((m, i) => (i % 7 === 0 ? 0 : m));
    const refPlain = lossRef(x, y, new Float32Array(n).fill(1));
    const refMasked = lossRef(x, withIgnore.map((v) => (v === 255 ? 0 : v)), validIgnore, { bce: 0.3, dice: 2, smooth: 0.5 });
    for (const backend of await backendsUnderTest()) {
      await useBackend(backend);
      await expectNoLeak(async () => {
        const lt = tf.tensor4d(x, shape);
        const yt = tf.tensor4d(y, shape);
        const yi = tf.tensor4d(withIgnore, shape);
        const mt = tf.tensor4d(mask, shape);
        const a = inkLoss(lt, yt);
        const b = inkLoss(lt, yi, { mask: mt, ignoreValue: 255, bceWeight: 0.3, diceWeight: 2, diceSmooth: 0.5 });
        const [ab, ad, at, bb, bd, bt] = await Promise.all([a.bce, a.dice, a.total, b.bce, b.dice, b.total].map(async (t) => (await t.data())[0]!));
        expect(ab).toBeCloseTo(refPlain.bce, 5);
        expect(ad).toBeCloseTo(refPlain.dice, 5);
        expect(at).toBeCloseTo(refPlain.total, 5);
        expect(bb).toBeCloseTo(refMasked.bce, 5);
        expect(bd).toBeCloseTo(refMasked.dice, 5);
        expect(bt).toBeCloseTo(refMasked.total, 5);
        tf.dispose([lt, yt, yi, mt, a.bce, a.dice, a.total, b.bce, b.dice, b.total]);
      }, `inkLoss on ${backend}`);
    }
  });

  it('stays finite for huge logits (stable BCE) and masked voxels get zero gradient', async () => {
    await useBackend('cpu');
    const big = tf.tensor4d([200, -200, 200, -200], [1, 1, 2, 2]);
    const tgt = tf.tensor4d([0, 1, 1, 0], [1, 1, 2, 2]);
    const l = inkLoss(big, tgt, { diceWeight: 0 });
    expect((await l.bce.data())[0]).toBeCloseTo(100, 4); // (200 + 200 + 0 + 0) / 4
    const m = tf.tensor4d([1, 1, 0, 0], [1, 1, 2, 2]);
    const g = tf.grad((z: tf.Tensor) => inkLoss(z, tgt, { mask: m }).total)(tf.tensor4d([0.5, -1, 3, 2], [1, 1, 2, 2]));
    const gv = await g.data();
    expect(gv[2]).toBe(0);
    expect(gv[3]).toBe(0);
    expect(Math.abs(gv[0]!)).toBeGreaterThan(0);
    tf.dispose([big, tgt, l.total, l.bce, l.dice, m, g]);
  });

  it('gradient matches central finite differences of the float64 loss', async () => {
    await useBackend('cpu');
    const lt = tf.tensor4d(x, shape);
    const yt = tf.tensor4d(y, shape);
    const mt = tf.tensor4d(mask, shape);
    const g = tf.grad((z: tf.Tensor) => inkLoss(z, yt, { mask: mt, bceWeight: 0.7, diceWeight: 1.3 }).total)(lt);
    const gv = await g.data();
    const w = { bce: 0.7, dice: 1.3, smooth: 1 };
    const h = 1e-5;
    for (let i = 0; i < n; i++) {
      const xp = Float64Array.from(x);
      const xm = Float64Array.from(x);
      xp[i]! += h;
      xm[i]! -= h;
      const fd = (lossRef(xp, y, mask, w).total - lossRef(xm, y, mask, w).total) / (2 * h);
      expect(Math.abs(gv[i]! - fd)).toBeLessThan(1e-4 + 1e-3 * Math.abs(fd));
    }
    tf.dispose([lt, yt, mt, g]);
  });

  it('rejects mismatched shapes', async () => {
    await useBackend('cpu');
    const a = tf.zeros([1, 2, 2, 2]);
    const b = tf.zeros([1, 2, 2, 3]);
    expect(() => inkLoss(a, b)).toThrow(InkInputError);
    expect(() => inkLoss(a, a, { mask: b })).toThrow(/mask/);
    tf.dispose([a, b]);
  });
});
