/**
 * Test helpers shared by every package: which backends to run a suite on, and a tensor-leak check.
 */
import * as tf from '@tensorflow/tfjs-core';
import { availableBackends, type BackendName } from './backend.js';
import type { Rng } from './rng.js';
import type { Module } from './module.js';
import type { Adam } from './optim.js';

/**
 * The backends a conformance-style test should cover: every available one, or the comma-separated
 * list in `GOE_TEST_BACKENDS` (names not available here are dropped, so CI without lavapipe still runs).
 */
export async function backendsUnderTest(): Promise<BackendName[]> {
  const avail = await availableBackends();
  const want = process.env['GOE_TEST_BACKENDS'];
  if (!want) return avail;
  const names = want.split(',').map((s) => s.trim());
  return avail.filter((b) => names.includes(b));
}

/**
 * Runs `fn` and returns its result, throwing if the number of live tensors grew (a leak).
 * `fn` must dispose of what it returns, or return plain data.
 */
export async function expectNoLeak<T>(fn: () => T | Promise<T>, label = 'block'): Promise<T> {
  const before = tf.memory().numTensors;
  const out = await fn();
  const after = tf.memory().numTensors;
  if (after !== before) {
    throw new Error(`${label} leaked ${after - before} tensor(s) (${before} -> ${after}) on ${tf.getBackend()}`);
  }
  return out;
}

/** Largest absolute difference between two equal-length arrays (NaN if a value is NaN). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (Number.isNaN(d)) return NaN;
    if (d > m) m = d;
  }
  return m;
}

/**
 * Directional finite-difference check of a variable's gradient: compares `<dir, grad>` with the
 * central difference `(L(w + h dir) - L(w - h dir)) / 2h` along a random direction drawn from `rng`,
 * then restores the variable. `loss` must return a fresh scalar (it is disposed here).
 * @param grad the analytic gradient of `loss` with respect to `variable`, same size as it
 * @returns both numbers, for the caller's tolerance
 */
export async function directionalGradCheck(
  variable: tf.Variable,
  grad: ArrayLike<number>,
  loss: () => tf.Scalar,
  rng: Rng,
  h = 1e-2,
): Promise<{ analytic: number; numeric: number }> {
  const dir = Float64Array.from({ length: variable.size }, () => rng.normal());
  let analytic = 0;
  for (let i = 0; i < dir.length; i++) analytic += (dir[i] as number) * (grad[i] as number);
  const w0 = (await variable.data()) as Float32Array;
  const at = async (sign: number): Promise<number> => {
    tf.tidy(() => variable.assign(tf.tensor(w0.map((v, i) => v + sign * h * (dir[i] as number)), variable.shape)));
    const l = loss();
    const v = (await l.data())[0] as number;
    l.dispose();
    return v;
  };
  try {
    const numeric = ((await at(1)) - (await at(-1))) / (2 * h);
    return { analytic, numeric };
  } finally {
    tf.tidy(() => variable.assign(tf.tensor(w0, variable.shape)));
  }
}

/**
 * One Adam step on every trainable variable of `modules` (checkpoint-style names under each key) for
 * the scalar `loss`; returns the loss value. For training runs in tests that must show a model learns.
 */
export async function adamStepOn(modules: Record<string, Module>, adam: Adam, loss: () => tf.Scalar, lr: number): Promise<number> {
  const value = adam.minimize(modules, loss, lr);
  const out = (await value.data())[0] as number;
  value.dispose();
  return out;
}

/**
 * Gradients of `loss` with respect to every trainable variable (or `vars`), read to the host by the
 * engine's variable name; asserts that taking them leaks no tensor.
 */
export async function hostGradients(loss: () => tf.Scalar, vars?: tf.Variable[]): Promise<Map<string, Float32Array>> {
  return expectNoLeak(async () => {
    const { value, grads } = tf.variableGrads(loss, vars);
    const out = new Map<string, Float32Array>();
    for (const [k, g] of Object.entries(grads)) out.set(k, (await g.data()) as Float32Array);
    tf.dispose([value, ...Object.values(grads)]);
    return out;
  }, 'gradient step');
}
