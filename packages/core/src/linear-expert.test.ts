import { backendsUnderTest, directionalGradCheck, expectNoLeak, makeRng, maxAbsDiff, refMatMul, tf, useBackend, type BackendName } from '@goe/tf';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveGoeConfig } from './config.js';
import { LinearExpert, expertRegistry } from './experts.js';
import { GoeLayer, disposeGoeOutput } from './layer.js';
import { normals } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');

describe.each(BACKENDS)('linear expert on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  it('computes x W against a float64 product, and its gradient against finite differences', async () => {
    const dim = 6;
    const n = 9;
    const e = new LinearExpert(dim, makeRng(3));
    const xs = normals(n * dim, 4);
    const x = tf.tensor2d(xs, [n, dim]);
    const wv = await e.w.data();
    const ref = refMatMul({ data: Float64Array.from(xs), shape: [n, dim] }, { data: Float64Array.from(wv), shape: [dim, dim] });
    const y = e.apply(x);
    expect(y.shape).toEqual([n, dim]);
    expect(maxAbsDiff(await y.data(), ref.data)).toBeLessThan(1e-5);
    expect(e.flopsPerRow()).toBe(dim * dim);
    // A loss that is not linear in W, so that finite differences test more than a constant slope.
    const target = tf.tensor2d(normals(n * dim, 5), [n, dim]);
    const loss = (): tf.Scalar => tf.tidy(() => tf.mean(tf.square(tf.sub(e.apply(x), target))) as tf.Scalar);
    const { value, grads } = tf.variableGrads(loss, [e.w]);
    const g = await (grads[e.w.name] as tf.Tensor).data();
    expect(g.every(Number.isFinite)).toBe(true);
    expect(g.some((v) => v !== 0)).toBe(true);
    const { analytic, numeric } = await directionalGradCheck(e.w, g, loss, makeRng(6), 1e-2);
    expect(Math.abs(numeric - analytic)).toBeLessThan(2e-2 * Math.max(Math.abs(analytic), 1e-2));
    tf.dispose([x, y, target, value, ...Object.values(grads)]);
    e.dispose();
  });

  it("is the registry's 'linear' kind: a layer of them dispatches exactly as densely, trains every expert and leaks nothing", async () => {
    expect(expertRegistry.keys()).toContain('linear');
    const cfg = (dispatch: 'exact' | 'dense') =>
      resolveGoeConfig({ d: 5, da: 0, experts: 4, k: 2, cycles: 2, expert: 'linear', expertDim: 7, haltEps: 0, dispatch });
    const exact = new GoeLayer(cfg('exact'), makeRng(8));
    const dense = new GoeLayer(cfg('dense'), makeRng(8));
    const tokens = tf.tensor3d(normals(2 * 30 * 5, 9), [2, 30, 5]);
    const a = exact.apply({ tokens });
    const b = dense.apply({ tokens });
    expect(maxAbsDiff(await a.tokens.data(), await b.tokens.data())).toBeLessThan(1e-5);
    // Every token reaches two experts, so every expert's W gets a finite, non-zero gradient.
    const load = await a.stats.load.data();
    expect(Array.from(load).every((v) => v > 0)).toBe(true);
    disposeGoeOutput(a);
    disposeGoeOutput(b);
    await expectNoLeak(async () => {
      const ws = [0, 1, 2, 3].map((m) => exact.variables().get(`experts.${m}.w`) as tf.Variable);
      const { value, grads } = tf.variableGrads(
        () =>
          tf.tidy(() => {
            const out = exact.apply({ tokens }, { training: true });
            return tf.add(tf.mean(tf.square(out.tokens)), out.losses.total) as tf.Scalar;
          }),
        ws,
      );
      for (const w of ws) {
        const g = await (grads[w.name] as tf.Tensor).data();
        expect(g.every(Number.isFinite)).toBe(true);
        expect(g.some((v) => v !== 0)).toBe(true);
      }
      tf.dispose([value, ...Object.values(grads)]);
    }, 'linear expert gradients');
    tokens.dispose();
    exact.dispose();
    dense.dispose();
  });
});
