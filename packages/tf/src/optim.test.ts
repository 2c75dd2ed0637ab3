import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Adam } from './optim.js';
import { Linear } from './module.js';
import { makeRng } from './rng.js';
// Registers the gradients (tfjs-core's Node entry point ships none), as importing @goe/tf does.
import './grads.js';

/** Float64 Adam on the host, the textbook update. */
function adamRef(p: number[], grads: number[][], lr: number, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const x = p.slice();
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < x.length; i++) {
      m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
      v[i] = b2 * v[i]! + (1 - b2) * g[i]! ** 2;
      const mh = m[i]! / (1 - b1 ** t);
      const vh = v[i]! / (1 - b2 ** t);
      x[i] = x[i]! - (lr * mh) / (Math.sqrt(vh) + eps) - lr * wd * x[i]!;
    }
  });
  return x;
}

describe('Adam keyed by name', () => {
  it('matches a float64 reference over several steps, with and without weight decay', async () => {
    await tf.setBackend('cpu');
    for (const wd of [0, 0.01]) {
      const p0 = [0.5, -1.25, 2];
      const grads = [
        [0.1, -0.2, 0.3],
        [1.5, 0.25, -0.75],
        [-0.3, 0.9, 0.05],
      ];
      const w = tf.variable(tf.tensor1d(p0));
      const opt = new Adam({ weightDecay: wd });
      for (const g of grads) {
        const gt = tf.tensor1d(g);
        opt.apply(new Map([['w', w]]), new Map([['w', gt]]), 0.01);
        gt.dispose();
      }
      const want = adamRef(p0, grads, 0.01, 0.9, 0.999, 1e-8, wd);
      const got = Array.from(await w.data());
      got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 6));
      opt.dispose();
      w.dispose();
    }
  });

  it('parameters of several shapes, updated together, each match the float64 reference', async () => {
    await tf.setBackend('cpu');
    const shapes = [[2, 3], [4], [], [1, 2, 1]];
    const init = shapes.map((s, k) => Array.from({ length: s.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(3 * k + i)));
    const gradsOf = (k: number, step: number) => init[k]!.map((_, i) => Math.cos(step + 2 * k + 0.7 * i));
    const vars = new Map(shapes.map((s, k) => [`p${k}`, tf.variable(tf.tensor(init[k]!, s))]));
    const opt = new Adam({ weightDecay: 0.02 });
    for (let step = 0; step < 4; step++) {
      const grads = new Map(shapes.map((s, k) => [`p${k}`, tf.tensor(gradsOf(k, step), s)]));
      opt.apply(vars, grads, 0.05);
      tf.dispose([...grads.values()]);
    }
    for (let k = 0; k < shapes.length; k++) {
      const want = adamRef(init[k]!, [0, 1, 2, 3].map((step) => gradsOf(k, step)), 0.05, 0.9, 0.999, 1e-8, 0.02);
      const got = Array.from(await vars.get(`p${k}`)!.data());
      expect(vars.get(`p${k}`)!.shape).toEqual(shapes[k]);
      got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 6));
    }
    const wrong = tf.zeros([5]);
    expect(() => opt.apply(vars, new Map([['p1', wrong]]), 0.1)).toThrow(/'p1' has shape \[5\], the parameter \[4\]/);
    wrong.dispose();
    opt.dispose();
    tf.dispose([...vars.values()]);
  });

  it('minimize takes and applies the gradients of a module (or a record of modules) by parameter name, without leaks', async () => {
    await tf.setBackend('cpu');
    const build = () => new Linear(3, 2, makeRng(4));
    const [a, b] = [build(), build()];
    const x = tf.tensor2d([0.5, -1, 2, 1, 0.25, -0.5], [2, 3]);
    const loss = (m: Linear) => () => tf.sum(tf.square(m.apply(x))) as tf.Scalar;
    const [optA, optB] = [new Adam(), new Adam()];
    for (let step = 0; step < 3; step++) {
      const v = optA.minimize(a, loss(a), 0.05);
      expect(v.shape).toEqual([]);
      v.dispose();
      // The same step by hand, on the twin module under a record key.
      const params = new Map([...b.variables('lin.')].filter(([, p]) => p.trainable));
      const byId = new Map([...params].map(([n, p]) => [p.name, n]));
      const { value, grads } = tf.variableGrads(loss(b), [...params.values()]);
      optB.apply(params, new Map(Object.entries(grads).map(([id, g]) => [byId.get(id)!, g])), 0.05);
      tf.dispose([value, ...Object.values(grads)]);
    }
    for (const [name, p] of a.variables()) expect(Array.from(await p.data()), name).toEqual(Array.from(await b.variables().get(name)!.data()));
    expect(Object.keys(optB.state().steps).every((k) => k.startsWith('lin.'))).toBe(true);
    const before = tf.memory().numTensors;
    optA.minimize({ lin: a }, loss(a), 0.05).dispose();
    optA.minimize({ lin: a }, loss(a), 0.05).dispose();
    // The record form names parameters under its key: new moments once, then nothing more.
    const afterFirst = tf.memory().numTensors;
    optA.minimize({ lin: a }, loss(a), 0.05).dispose();
    expect(tf.memory().numTensors).toBe(afterFirst);
    expect(afterFirst).toBeGreaterThanOrEqual(before);
    tf.dispose([x]);
    [optA, optB].forEach((o) => o.dispose());
    [a, b].forEach((m) => m.dispose());
  });

  it('a parameter without a gradient is untouched and keeps its own step count', async () => {
    const a = tf.variable(tf.tensor1d([1, 2]));
    const b = tf.variable(tf.tensor1d([3]));
    const params = new Map([['a', a], ['b', b]]);
    const opt = new Adam();
    const ga = tf.tensor1d([0.5, -0.5]);
    const gb = tf.tensor1d([2]);
    opt.apply(params, new Map<string, tf.Tensor>([['a', ga], ['b', gb]]), 0.1);
    opt.apply(params, new Map<string, tf.Tensor>([['a', ga]]), 0.1);
    const bAfterOne = adamRef([3], [[2]], 0.1);
    expect((await b.data())[0]).toBeCloseTo(bAfterOne[0]!, 6);
    const aRef = adamRef([1, 2], [[0.5, -0.5], [0.5, -0.5]], 0.1);
    Array.from(await a.data()).forEach((x, i) => expect(x).toBeCloseTo(aRef[i]!, 6));
    expect(opt.state().steps).toEqual({ a: 2, b: 1 });
    tf.dispose([ga, gb, a, b]);
    opt.dispose();
  });

  it('state round-trips: a restored optimizer continues exactly', async () => {
    const mk = () => tf.variable(tf.tensor1d([0.3, -0.7]));
    const g1 = tf.tensor1d([0.2, 0.4]);
    const g2 = tf.tensor1d([-0.1, 0.8]);
    const w1 = mk();
    const o1 = new Adam();
    o1.apply(new Map([['w', w1]]), new Map([['w', g1]]), 0.05);
    const saved = o1.state();
    const values = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [k, t] of saved.tensors) values.set(k, { shape: t.shape, data: (await t.data()) as Float32Array });
    const w2 = tf.variable(w1.clone());
    const o2 = new Adam();
    o2.restore(values, saved.steps);
    o1.apply(new Map([['w', w1]]), new Map([['w', g2]]), 0.05);
    o2.apply(new Map([['w', w2]]), new Map([['w', g2]]), 0.05);
    expect(Array.from(await w2.data())).toEqual(Array.from(await w1.data()));
    const before = tf.memory().numTensors;
    o2.apply(new Map([['w', w2]]), new Map([['w', g2]]), 0.05);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([g1, g2, w1, w2]);
    o1.dispose();
    o2.dispose();
  });

  it('a fresh parameter costs exactly its two moment variables, and dispose frees them', () => {
    const w = tf.variable(tf.tensor2d([[1, 2], [3, 4]]));
    const g = tf.tensor2d([[0.1, -0.2], [0.3, 0.4]]);
    const opt = new Adam();
    const before = tf.memory().numTensors;
    opt.apply(new Map([['w', w]]), new Map([['w', g]]), 0.01);
    expect(tf.memory().numTensors).toBe(before + 2);
    opt.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([w, g]);
  });
});
