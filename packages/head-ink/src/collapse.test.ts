import { describe, expect, it } from 'vitest';
import { backendsUnderTest, expectNoLeak, makeRng, maxAbsDiff, tf, useBackend } from '@goe/tf';
import { DEPTH_COLLAPSE_DEFAULTS, InkInputError, collapseDepth, inkLoss, resolveDepthCollapse, type DepthCollapseInput } from './index.js';
import { collapseRef, lossRef } from './test-helpers.js';

const SHAPE: [number, number, number, number] = [2, 5, 3, 4]; // [B, D, H, W]
const N = SHAPE.reduce((a, b) => a * b, 1);
const COLS = SHAPE[0] * SHAPE[2] * SHAPE[3];

/** Each mode with the float64 reference's arguments. */
const MODES: Array<{ input: DepthCollapseInput; mode: string; tau: number }> = [
  { input: 'max', mode: 'max', tau: 1 },
  { input: 'mean', mode: 'mean', tau: 1 },
  { input: 'logsumexp', mode: 'logsumexp', tau: 1 },
  { input: { mode: 'logsumexp', temperature: 0.1 }, mode: 'logsumexp', tau: 0.1 },
];
const label = (m: DepthCollapseInput): string => JSON.stringify(m);

const rng = makeRng(11);
// Distinct logits with a few large ones (|x| up to 40): at τ = 0.1 exp(x/τ) overflows float32 unless
// the column max is taken out first.
const X = Float32Array.from({ length: N }, (_, i) => (i % 13 === 0 ? 40 * (rng.next() - 0.5) * 2 : 3 * rng.normal()));
// Moderate logits for the loss: a saturated sigmoid (|x| ≳ 17 in float32) has an exactly zero gradient.
const XL = Float32Array.from({ length: N }, () => 2 * rng.normal());
const Y = Float32Array.from({ length: COLS }, () => (rng.next() < 0.4 ? 1 : 0));
const MASK = Float32Array.from({ length: COLS }, (_, i) => (i % 5 === 2 ? 0 : 1));
const WEIGHTS = { bce: 0.7, dice: 1.3, smooth: 1 };

/** Central finite differences of a float64 function at `x0`, one element at a time. */
function finiteDifferences(f: (x: Float64Array) => number, x0: Float32Array, h = 1e-4): Float64Array {
  const g = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const xp = Float64Array.from(x0);
    const xm = Float64Array.from(x0);
    xp[i]! += h;
    xm[i]! -= h;
    g[i] = (f(xp) - f(xm)) / (2 * h);
  }
  return g;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, atol = 1e-4, rtol = 1e-3): void {
  for (let i = 0; i < want.length; i++) {
    const w = want[i] as number;
    expect(Math.abs((got[i] as number) - w), `${what} [${i}]: ${got[i]} vs ${w}`).toBeLessThan(atol + rtol * Math.abs(w));
  }
}

describe('collapseDepth', () => {
  it('equals the float64 reference for every mode on every backend, without leaks', async () => {
    for (const backend of await backendsUnderTest()) {
      await useBackend(backend);
      await expectNoLeak(async () => {
        const x = tf.tensor4d(X, SHAPE);
        for (const { input, mode, tau } of MODES) {
          const y = collapseDepth(x, input);
          expect(y.shape).toEqual([SHAPE[0], SHAPE[2], SHAPE[3]]);
          expectClose(await y.data(), collapseRef(X, SHAPE, mode, tau), `${label(input)} on ${backend}`, 1e-4, 1e-5);
          y.dispose();
        }
        const dflt = collapseDepth(x);
        expect(maxAbsDiff(await dflt.data(), collapseRef(X, SHAPE, 'max'))).toBe(0);
        tf.dispose([x, dflt]);
      }, `collapseDepth on ${backend}`);
    }
  });

  it('the smooth max lies between the mean (τ → ∞) and the max (τ → 0) and keeps a constant column', async () => {
    // Checks the formula itself, not only its agreement with the reference written beside it.
    await useBackend('cpu');
    const x = tf.tensor4d(X, SHAPE);
    const mean = collapseRef(X, SHAPE, 'mean');
    const max = collapseRef(X, SHAPE, 'max');
    const hot = collapseDepth(x, { mode: 'logsumexp', temperature: 1e4 });
    const cold = collapseDepth(x, { mode: 'logsumexp', temperature: 0.01 });
    const mid = collapseDepth(x, 'logsumexp');
    const [h, c, m] = [await hot.data(), await cold.data(), await mid.data()];
    for (let i = 0; i < COLS; i++) {
      expect(Math.abs(h[i]! - mean[i]!)).toBeLessThan(0.05);
      expect(c[i]!).toBeLessThanOrEqual(max[i]! + 1e-4);
      expect(c[i]!).toBeGreaterThan(max[i]! - 0.01 * Math.log(SHAPE[1]) - 1e-4);
      expect(m[i]!).toBeGreaterThanOrEqual(mean[i]! - 1e-4);
      expect(m[i]!).toBeLessThanOrEqual(max[i]! + 1e-4);
    }
    const flat = tf.fill(SHAPE, 2.5);
    for (const { input } of MODES) {
      const y = collapseDepth(flat, input);
      expect(maxAbsDiff(await y.data(), new Float32Array(COLS).fill(2.5))).toBeLessThan(1e-5);
      y.dispose();
    }
    tf.dispose([x, hot, cold, mid, flat]);
  });

  it('gradients match finite differences of the float64 reference on every backend (max: all to the arg-max layer)', async () => {
    const wr = makeRng(12);
    const W = Float32Array.from({ length: COLS }, () => wr.normal());
    for (const { input, mode, tau } of MODES) {
      const fd = finiteDifferences((x) => collapseRef(x, SHAPE, mode, tau).reduce((s, v, i) => s + v * W[i]!, 0), X);
      for (const backend of await backendsUnderTest()) {
        await useBackend(backend);
        await expectNoLeak(async () => {
          const x = tf.tensor4d(X, SHAPE);
          const w = tf.tensor3d(W, [SHAPE[0], SHAPE[2], SHAPE[3]]);
          const g = tf.grad((z: tf.Tensor) => tf.sum(tf.mul(collapseDepth(z, input), w)))(x);
          const gv = await g.data();
          expectClose(gv, fd, `d collapse ${label(input)} on ${backend}`);
          if (mode === 'max') {
            // Exactly w at the column's arg-max, exactly 0 on every other layer.
            const [B, D, H, Wd] = SHAPE;
            for (let b = 0; b < B; b++)
              for (let p = 0; p < H * Wd; p++) {
                let arg = 0;
                for (let d = 1; d < D; d++) if (X[(b * D + d) * H * Wd + p]! > X[(b * D + arg) * H * Wd + p]!) arg = d;
                for (let d = 0; d < D; d++) {
                  const v = gv[(b * D + d) * H * Wd + p]!;
                  if (d === arg) expect(v).toBe(W[b * H * Wd + p]);
                  else expect(Math.abs(v)).toBe(0);
                }
              }
          }
          tf.dispose([x, w, g]);
        }, `collapse gradient on ${backend}`);
      }
    }
  });
});

describe('inkLoss on depth-collapsed logits', () => {
  it('equals the float64 loss of the collapsed map, its gradient matches finite differences, masked columns get none', async () => {
    for (const { input, mode, tau } of MODES) {
      const ref = (x: ArrayLike<number>) => lossRef(collapseRef(x, SHAPE, mode, tau), Y, MASK, WEIGHTS).total;
      const want = ref(XL);
      const fd = finiteDifferences(ref, XL);
      for (const backend of await backendsUnderTest()) {
        await useBackend(backend);
        await expectNoLeak(async () => {
          const x = tf.tensor4d(XL, SHAPE);
          const y = tf.tensor3d(Y, [SHAPE[0], SHAPE[2], SHAPE[3]]);
          const m = tf.tensor3d(MASK, [SHAPE[0], SHAPE[2], SHAPE[3]]);
          const opts = { collapse: input, mask: m, bceWeight: WEIGHTS.bce, diceWeight: WEIGHTS.dice };
          const l = inkLoss(x, y, opts);
          expect((await l.total.data())[0]).toBeCloseTo(want, 5);
          // The same loss when the caller collapses first and hands `[B, H, W]` logits in.
          const col = collapseDepth(x, input);
          const l2 = inkLoss(col, y, { ...opts, collapse: undefined });
          expect((await l2.total.data())[0]).toBeCloseTo(want, 5);
          const g = tf.grad((z: tf.Tensor) => inkLoss(z, y, opts).total)(x);
          const gv = await g.data();
          expectClose(gv, fd, `d loss ${label(input)} on ${backend}`);
          const [B, D, H, W] = SHAPE;
          let live = 0;
          for (let b = 0; b < B; b++)
            for (let d = 0; d < D; d++)
              for (let p = 0; p < H * W; p++) {
                const v = gv[(b * D + d) * H * W + p]!;
                expect(Number.isFinite(v)).toBe(true);
                if (!MASK[b * H * W + p]) expect(v, `masked column ${b}, ${p}, layer ${d}`).toBe(0);
                else if (v !== 0) live++;
              }
          // max: one live layer per labelled column; mean and the smooth max: all of them.
          const labelled = MASK.reduce((s, v) => s + v, 0);
          expect(live).toBe(mode === 'max' ? labelled : labelled * D);
          tf.dispose([x, y, m, l.total, l.bce, l.dice, col, l2.total, l2.bce, l2.dice, g]);
        }, `collapsed inkLoss on ${backend}`);
      }
    }
  });
});

describe('depth collapse input checks', () => {
  it('resolves a mode name or a config over the defaults', () => {
    expect(resolveDepthCollapse()).toEqual(DEPTH_COLLAPSE_DEFAULTS);
    expect(resolveDepthCollapse('mean')).toEqual({ mode: 'mean', temperature: 1 });
    expect(resolveDepthCollapse({ mode: 'logsumexp', temperature: 0.3 })).toEqual({ mode: 'logsumexp', temperature: 0.3 });
  });

  it('throws InkInputError naming the argument, and leaks nothing', async () => {
    await useBackend('cpu');
    const x = tf.zeros([2, 3, 4, 4]);
    const y3 = tf.zeros([2, 4, 4]);
    const empty = tf.zeros([2, 0, 4, 4]);
    const bad: Array<[() => unknown, RegExp]> = [
      [() => collapseDepth(y3), /'logits'.*\[2, 4, 4\]/],
      [() => collapseDepth(empty), /'logits'/],
      [() => collapseDepth(x, 'median' as never), /'mode'.*median/],
      [() => collapseDepth(x, { mode: 'logsumexp', temperature: 0 }), /'temperature'/],
      [() => collapseDepth(x, { mode: 'logsumexp', temperature: Number.NaN }), /'temperature'.*NaN/],
      [() => collapseDepth(x, { mode: 'max', temperature: 0.5 }), /'temperature'.*only 'logsumexp'/],
      [() => collapseDepth(x, { mode: 'max', tau: 1 } as never), /tau/],
      [() => inkLoss(x, x, { collapse: 'max' }), /'target'.*\[2, 4, 4\]/],
      [() => inkLoss(x, y3, { collapse: 'max', mask: x }), /'mask'/],
      [() => inkLoss(y3, y3, { collapse: 'max' }), /'logits'/],
      [() => inkLoss(x, y3, { collapse: 'min' as never }), /'mode'/],
    ];
    for (const [fn, message] of bad) {
      const before = tf.memory().numTensors;
      expect(fn).toThrow(InkInputError);
      expect(fn).toThrow(message);
      expect(tf.memory().numTensors).toBe(before);
    }
    tf.dispose([x, y3, empty]);
  });
});
