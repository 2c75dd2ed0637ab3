import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { makeRng } from './rng.js';
import { directionalGradCheck } from './testing.js';

describe('directionalGradCheck', () => {
  it('agrees with the true gradient of sum(w^3), disagrees with a wrong one, and restores w', async () => {
    await tf.setBackend('cpu');
    const w0 = [0.5, -1, 2, 0.25];
    const w = tf.variable(tf.tensor1d(w0));
    const loss = () => tf.tidy(() => tf.sum(tf.pow(w, 3)) as tf.Scalar);
    const right = w0.map((v) => 3 * v * v);
    const good = await directionalGradCheck(w, right, loss, makeRng(1), 1e-2);
    expect(Math.abs(good.numeric - good.analytic)).toBeLessThan(1e-3 * Math.max(1, Math.abs(good.analytic)));
    const wrong = right.map((g, i) => (i === 2 ? g * 1.1 : g));
    const bad = await directionalGradCheck(w, wrong, loss, makeRng(1), 1e-2);
    expect(Math.abs(bad.numeric - bad.analytic)).toBeGreaterThan(0.1);
    expect(Array.from(await w.data())).toEqual(w0);
    w.dispose();
  });
});
