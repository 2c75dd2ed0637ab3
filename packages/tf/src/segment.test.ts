/**
 * Segment products against a float64 reference written here, on every backend (cpu and wasm run their
 * kernels, others the composed product), forward and backward, with empty segments, transposed
 * weights, weight updates between calls (the wasm transpose cache) and no leaks.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from './backend.js';
import { OpArgumentError } from './ops.js';
import { makeRng } from './rng.js';
import { segmentMatMul } from './segment.js';
import { backendsUnderTest, expectNoLeak, maxAbsDiff } from './testing.js';
import { heldTransposedWeights } from './wasm-kernels.js';
import './grads.js';

function rand(n: number, seed: number): Float64Array {
  const rng = makeRng(seed);
  return Float64Array.from({ length: n }, () => rng.next() * 2 - 1);
}

/** out[i, j] = Σ_k a[i, k] · B[k, j] with B = w `[K, N]`, or wᵀ (w `[N, K]`), in float64. */
function refProduct(a: Float64Array, aOff: number, rows: number, K: number, w: Float64Array, N: number, transposeB: boolean): Float64Array {
  const out = new Float64Array(rows * N);
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (a[aOff + i * K + k] as number) * (transposeB ? (w[j * K + k] as number) : (w[k * N + j] as number));
      out[i * N + j] = s;
    }
  return out;
}

interface Case {
  K: number;
  N: number;
  counts: number[];
  transposeB: boolean;
}

const CASES: Case[] = [
  { K: 16, N: 24, counts: [5, 0, 9, 1, 13], transposeB: false },
  { K: 16, N: 24, counts: [5, 0, 9, 1, 13], transposeB: true },
  { K: 64, N: 128, counts: [40, 64, 1, 23], transposeB: false },
  { K: 1, N: 8, counts: [3, 4], transposeB: false },
  { K: 12, N: 1, counts: [0, 6, 2], transposeB: true },
];

/** The reference y, dx and dW_g of loss = Σ y ⊙ c. */
function reference(c: Case, x: Float64Array, ws: Float64Array[], cot: Float64Array) {
  const { K, N, counts, transposeB } = c;
  const R = counts.reduce((a, b) => a + b, 0);
  const y = new Float64Array(R * N);
  const dx = new Float64Array(R * K);
  const dws = ws.map(() => new Float64Array(K * N));
  let o = 0;
  for (const [g, n] of counts.entries()) {
    const w = ws[g] as Float64Array;
    y.set(refProduct(x, o * K, n, K, w, N, transposeB), o * N);
    // dx = c · Bᵀ: with B = w [K, N] that is c · wᵀ; with B = wᵀ it is c · w.
    dx.set(refProduct(cot, o * N, n, N, w, K, !transposeB), o * K);
    const dw = dws[g] as Float64Array;
    for (let r = o; r < o + n; r++)
      for (let k = 0; k < K; k++)
        for (let j = 0; j < N; j++) {
          const v = (x[r * K + k] as number) * (cot[r * N + j] as number);
          if (transposeB) dw[j * K + k] = (dw[j * K + k] as number) + v;
          else dw[k * N + j] = (dw[k * N + j] as number) + v;
        }
    o += n;
  }
  return { y, dx, dws };
}

describe('segmentMatMul', async () => {
  const backends = await backendsUnderTest();
  it.each(backends)('matches the float64 reference forward and backward on %s', async (backend) => {
    await useBackend(backend);
    for (const [ci, c] of CASES.entries()) {
      const { K, N, counts, transposeB } = c;
      const R = counts.reduce((a, b) => a + b, 0);
      const wShape: [number, number] = transposeB ? [N, K] : [K, N];
      const x = rand(R * K, 10 + ci);
      const ws = counts.map((_, g) => rand(K * N, 100 * ci + g));
      const cot = rand(R * N, 50 + ci);
      const ref = reference(c, x, ws, cot);
      await expectNoLeak(async () => {
        const xt = tf.tensor2d(Float32Array.from(x), [R, K]);
        const wt = ws.map((w) => tf.tensor2d(Float32Array.from(w), wShape));
        const ct = tf.tensor2d(Float32Array.from(cot), [R, N]);
        const f = (xi: tf.Tensor, ...wi: tf.Tensor[]) => tf.sum(tf.mul(segmentMatMul(xi as tf.Tensor2D, wi as tf.Tensor2D[], counts, { transposeB }), ct));
        const y = segmentMatMul(xt, wt, counts, { transposeB });
        expect(y.shape).toEqual([R, N]);
        const grads = tf.grads(f)([xt, ...wt]);
        const tol = 2e-5 * Math.max(K, N);
        expect(maxAbsDiff(await y.data(), ref.y), `case ${ci} y`).toBeLessThan(tol);
        expect(maxAbsDiff(await (grads[0] as tf.Tensor).data(), ref.dx), `case ${ci} dx`).toBeLessThan(tol);
        for (const [g, n] of counts.entries()) {
          const dw = await (grads[g + 1] as tf.Tensor).data();
          expect((grads[g + 1] as tf.Tensor).shape).toEqual(wShape);
          if (n === 0) expect(Array.from(dw).every((v) => v === 0), `case ${ci} empty segment ${g} gets exactly zero`).toBe(true);
          expect(maxAbsDiff(dw, ref.dws[g] as Float64Array), `case ${ci} dW${g}`).toBeLessThan(tol * 4);
        }
        tf.dispose([xt, ...wt, ct, y, ...grads]);
      }, `case ${ci}`);
    }
  });

  it.each(backends)('follows a weight variable across updates, and keeps nothing once it is gone (%s)', async (backend) => {
    await useBackend(backend);
    const [K, N, counts] = [8, 6, [3, 4]];
    const x = tf.tensor2d(Float32Array.from(rand(7 * K, 1)), [7, K]);
    const held = heldTransposedWeights();
    const vs = [2, 3].map((seed) => tf.tidy(() => tf.variable(tf.tensor2d(Float32Array.from(rand(N * K, seed)), [N, K]))));
    for (let step = 0; step < 3; step++) {
      // Two uses per step, as a layer's cycles make: the second must reuse what the first kept.
      for (let use = 0; use < 2; use++) {
        const y = segmentMatMul(x, vs as tf.Tensor2D[], counts, { transposeB: true });
        const xs = Float64Array.from(await x.data());
        const w0 = Float64Array.from(await (vs[0] as tf.Variable).data());
        const w1 = Float64Array.from(await (vs[1] as tf.Variable).data());
        const want = new Float64Array(7 * N);
        want.set(refProduct(xs, 0, 3, K, w0, N, true), 0);
        want.set(refProduct(xs, 3 * K, 4, K, w1, N, true), 3 * N);
        expect(maxAbsDiff(await y.data(), want), `step ${step} use ${use}`).toBeLessThan(1e-5);
        y.dispose();
      }
      for (const [i, v] of vs.entries()) tf.tidy(() => v.assign(tf.add(v, tf.scalar(0.5 * (i + 1))))); // the old data is freed
    }
    tf.dispose([x, ...vs]);
    expect(heldTransposedWeights()).toBe(held);
  });

  it('refuses arguments that do not fit, naming them', async () => {
    await useBackend('cpu');
    const x = tf.zeros([5, 4]) as tf.Tensor2D;
    const w = tf.zeros([4, 3]) as tf.Tensor2D;
    expect(() => segmentMatMul(x, [w, w], [5])).toThrow(OpArgumentError);
    expect(() => segmentMatMul(x, [w, w], [2, 2])).toThrow(/sum to 4, but x has 5 rows/);
    expect(() => segmentMatMul(x, [w], [5], { transposeB: true })).toThrow(/weights are \[4, 3\] \(transposed\)/);
    const narrow = tf.zeros([4, 2]) as tf.Tensor2D;
    expect(() => segmentMatMul(x, [w, narrow], [2, 3])).toThrow(/weight 1 is \[4, 2\]/);
    expect(() => segmentMatMul(x, [], [])).toThrow(/at least one/);
    tf.dispose([x, w, narrow]);
  });
});
