/**
 * Float64 helpers shared by the stem's tests (not part of the package API).
 */
import { expect } from 'vitest';
import { directionalGradCheck, hostGradients, makeRng, tf, type Rng } from '@goe/tf';
import type { StemActivation } from './config.js';
import type { VolumeStem } from './stem.js';

/** Index clamped into [0, n): edge replication. */
export const clamp = (v: number, n: number): number => Math.min(n - 1, Math.max(0, v));

/** The stem's activations in float64 (GELU in its tanh form, as `gelu` of @goe/tf). */
export function activationRef(v: number, act: StemActivation): number {
  if (act === 'silu') return v / (1 + Math.exp(-v));
  if (act === 'gelu') return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  return Math.max(0, v);
}

/** A tensor's values as float64. */
export async function values(v: tf.Tensor): Promise<Float64Array> {
  return Float64Array.from(await v.data());
}

/** `[B, D, H, W]` intensities in (-1, 1), reproducible from `seed`. */
export function randomVolume(shape: [number, number, number, number], seed: number): Float32Array {
  const rng = makeRng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, () => Math.tanh(rng.normal()));
}

/** Largest absolute difference over the largest reference magnitude (at least 1). */
export function maxRelErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let err = 0;
  let scale = 1;
  for (let i = 0; i < ref.length; i++) {
    err = Math.max(err, Math.abs((got[i] as number) - (ref[i] as number)));
    scale = Math.max(scale, Math.abs(ref[i] as number));
  }
  return err / scale;
}

/**
 * Gradients of a random projection of the stem's tokens and aux, `sum(tokens·r1) + sum(aux·r2)`, with
 * respect to every variable, taken without leaks; asserts each is present, finite and non-zero, and
 * that the gradient of each of `fdVars` matches a directional finite difference.
 * @param x `[B, D, H, W, 1]`
 */
export async function expectStemGradients(
  stem: VolumeStem,
  x: tf.Tensor5D,
  rng: Rng,
  fdVars: readonly tf.Variable[],
): Promise<void> {
  const probe = stem.apply(x);
  const [tShape, aShape] = [probe.tokens.shape, probe.aux.shape];
  tf.dispose([probe.tokens, probe.aux]);
  const random = (shape: number[]): tf.Tensor =>
    tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.normal()), shape);
  const r1 = random(tShape);
  const r2 = random(aShape);
  const lossFn = (): tf.Scalar =>
    tf.tidy(() => {
      const o = stem.apply(x, { training: true });
      return tf.add(tf.sum(tf.mul(o.tokens, r1)), tf.sum(tf.mul(o.aux, r2))) as tf.Scalar;
    });
  const grads = await hostGradients(lossFn);
  const vars = stem.variables();
  expect(grads.size).toBe(vars.size);
  for (const [path, v] of vars) {
    const g = grads.get(v.name);
    expect(g, path).toBeDefined();
    expect(g!.every(Number.isFinite), path).toBe(true);
    expect(g!.some((e) => e !== 0), path).toBe(true);
  }
  for (const w of fdVars) {
    const { analytic, numeric } = await directionalGradCheck(w, grads.get(w.name)!, lossFn, rng);
    expect(Math.abs(numeric - analytic), w.name).toBeLessThan(2e-2 * Math.max(1, Math.abs(analytic)));
  }
  tf.dispose([r1, r2]);
}
