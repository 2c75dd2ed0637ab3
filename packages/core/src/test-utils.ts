/**
 * Helpers shared by this package's tests (not exported from the package): host copies of weights,
 * seeded inputs, weight copies.
 */
import { makeRng, tf, type Adam, type Module } from '@goe/tf';
import type { GoeLayer } from './layer.js';
import type { HostArray } from './reference.js';

/** Every variable of `layer` copied to the host (async read: works on every backend). */
export async function hostWeights(layer: GoeLayer): Promise<Map<string, HostArray>> {
  const out = new Map<string, HostArray>();
  for (const [name, v] of layer.variables()) out.set(name, { data: await v.data(), shape: v.shape });
  return out;
}

/** Seeded normal values, `size` of them, scaled. */
export function normals(size: number, seed: number, scale = 1): Float32Array {
  const rng = makeRng(seed);
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = rng.normal() * scale;
  return out;
}

/** Copies every variable of `from` into the same-named variable of `to` (same shapes). */
export function copyWeights(from: GoeLayer, to: GoeLayer): void {
  const dst = to.variables();
  for (const [name, v] of from.variables()) {
    const t = dst.get(name);
    if (t) t.assign(v);
  }
}


/**
 * One Adam step on every trainable variable of `module` (@goe/tf's Adam: state keyed by parameter
 * name, so an expert that got no token this step is skipped rather than misaligning the moments).
 */
export function adamStep(module: Module, adam: Adam, loss: () => tf.Scalar, lr: number): void {
  adam.minimize(module, loss, lr).dispose();
}
