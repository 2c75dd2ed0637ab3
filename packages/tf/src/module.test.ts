import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { LayerNorm, Linear, Module, gelu, initValues } from './module.js';
import { makeRng } from './rng.js';

class Two extends Module {
  readonly a: Linear;
  readonly n: LayerNorm;
  constructor() {
    super();
    const rng = makeRng(1);
    this.a = this.child('a', new Linear(3, 2, rng));
    this.n = this.child('n', new LayerNorm(2, rng));
  }
}

describe('Module', () => {
  it('names parameters by dotted path, counts them, and leaks nothing when built and disposed', () => {
    const before = tf.memory().numTensors;
    const m = new Two();
    expect([...m.variables().keys()]).toEqual(['a.w', 'a.b', 'n.gain', 'n.bias']);
    expect(m.parameterCount()).toBe(3 * 2 + 2 + 2 + 2);
    expect(tf.memory().numTensors).toBe(before + 4);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('the same seed gives the same weights; glorot stays within its bound', () => {
    const a = initValues([64, 32], { kind: 'glorot' }, makeRng(7));
    const b = initValues([64, 32], { kind: 'glorot' }, makeRng(7));
    expect(Array.from(a)).toEqual(Array.from(b));
    const lim = Math.sqrt(6 / 96);
    expect(Math.max(...Array.from(a, Math.abs))).toBeLessThanOrEqual(lim);
    expect(Math.max(...Array.from(a, Math.abs))).toBeGreaterThan(0.9 * lim);
  });

  it('Linear, LayerNorm and gelu match float64 formulas', async () => {
    const rng = makeRng(2);
    const lin = new Linear(3, 2, rng);
    const x = tf.tensor2d([[1, -2, 0.5], [0.25, 3, -1]]);
    const w = (await lin.w.data()) as Float32Array;
    const y = (await lin.apply(x).data()) as Float32Array;
    const xv = [[1, -2, 0.5], [0.25, 3, -1]];
    for (let r = 0; r < 2; r++)
      for (let c = 0; c < 2; c++) {
        let s = 0;
        for (let k = 0; k < 3; k++) s += xv[r]![k]! * w[k * 2 + c]!;
        expect(y[r * 2 + c]).toBeCloseTo(s, 5);
      }
    const ln = new LayerNorm(3, rng);
    const z = (await ln.apply(x).data()) as Float32Array;
    for (let r = 0; r < 2; r++) {
      const row = xv[r]!;
      const mean = row.reduce((a, b) => a + b) / 3;
      const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / 3;
      row.forEach((v, i) => expect(z[r * 3 + i]).toBeCloseTo((v - mean) / Math.sqrt(variance + 1e-5), 4));
    }
    const g = (await gelu(tf.tensor1d([-2, -0.5, 0, 1, 3])).data()) as Float32Array;
    [-2, -0.5, 0, 1, 3].forEach((v, i) => {
      const ref = 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
      expect(g[i]).toBeCloseTo(ref, 5);
    });
    lin.dispose();
    ln.dispose();
    x.dispose();
  });
});
