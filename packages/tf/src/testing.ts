/**
 * Test helpers shared by every package: which backends to run a suite on, and a tensor-leak check.
 */
import * as tf from '@tensorflow/tfjs-core';
import { availableBackends, type BackendName } from './backend.js';

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
