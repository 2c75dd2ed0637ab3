/**
 * Helpers shared by this package's tests (not part of the package API): a float64 LayerNorm row, the
 * finite-difference check of a loss's gradient against its float64 definition, and the check that a
 * head's every variable gets a gradient and a short training lowers its loss.
 */
import { expect } from 'vitest';
import { hostGradients, tf, type Module } from '@goe/tf';

/** float64 LayerNorm of one row (ε 1e-5, as @goe/tf's LayerNorm), then gain and bias. */
export function layerNormRef(row: ArrayLike<number>, gain: ArrayLike<number>, bias: ArrayLike<number>): number[] {
  const r = Array.from(row);
  const mean = r.reduce((s, v) => s + v, 0) / r.length;
  const vr = r.reduce((s, v) => s + (v - mean) ** 2, 0) / r.length;
  return r.map((v, i) => ((v - mean) / Math.sqrt(vr + 1e-5)) * (gain[i] as number) + (bias[i] as number));
}

/**
 * Asserts that tfjs's gradient of `loss` at `x` (shape `shape`) equals central finite differences of
 * the float64 `ref`, coordinate by coordinate, and is not all zero.
 */
export async function expectGradMatchesFloat64(
  loss: (x: tf.Tensor) => tf.Scalar,
  ref: (x: Float64Array) => number,
  x: Float32Array,
  shape: number[],
): Promise<void> {
  const xt = tf.tensor(x, shape);
  const g = tf.grad(loss)(xt);
  const gv = await g.data();
  tf.dispose([xt, g]);
  expect(gv.some((e) => e !== 0)).toBe(true);
  const h = 1e-6;
  for (let i = 0; i < x.length; i++) {
    const a = Float64Array.from(x);
    const b = Float64Array.from(x);
    a[i]! += h;
    b[i]! -= h;
    const fd = (ref(a) - ref(b)) / (2 * h);
    expect(Math.abs(gv[i]! - fd)).toBeLessThan(1e-4 + 1e-3 * Math.abs(fd));
  }
}

/**
 * Asserts that every variable of `head` gets a finite, non-zero gradient of `loss`, and that `steps`
 * Adam steps at `lr` at least halve the loss.
 */
export async function expectHeadTrains(head: Module, loss: () => tf.Scalar, steps: number, lr = 2e-2): Promise<void> {
  const lossFn = (): tf.Scalar => tf.tidy(loss);
  const byName = await hostGradients(lossFn);
  for (const [path, v] of head.variables()) {
    const gv = byName.get(v.name);
    expect(gv, path).toBeDefined();
    expect(gv!.every(Number.isFinite), path).toBe(true);
    expect(gv!.some((e) => e !== 0), path).toBe(true);
  }
  const l0 = lossFn();
  const first = (await l0.data())[0]!;
  l0.dispose();
  const opt = tf.train.adam(lr);
  for (let i = 0; i < steps; i++) opt.minimize(lossFn, true)?.dispose();
  opt.dispose();
  const l = lossFn();
  expect((await l.data())[0]!).toBeLessThan(0.5 * first);
  l.dispose();
}
