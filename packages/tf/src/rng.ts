/**
 * Seeded random numbers on the host. Weights and samples are drawn here, not with tfjs' random ops,
 * so that the same seed gives the same numbers on every backend.
 */

/** A seeded generator of uniform floats in [0, 1) (SplitMix32 stream; fast, good enough for ML init). */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** The generator's state, to save in a checkpoint and restore with `makeRng(0, state)`. */
  state(): number;
}

/** Creates a generator from a seed (any integer), or resumes one from a saved `state()`. */
export function makeRng(seed: number, state?: number): Rng {
  let s = state ?? (Math.imul(seed | 0, 0x9e3779b9) ^ 0x85ebca6b) >>> 0;
  let spare: number | undefined;
  const next = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z ^= z >>> 16;
    return (z >>> 0) / 4294967296;
  };
  return {
    next,
    normal() {
      if (spare !== undefined) {
        const v = spare;
        spare = undefined;
        return v;
      }
      let u = 0;
      while (u === 0) u = next();
      const v = next();
      const r = Math.sqrt(-2 * Math.log(u));
      spare = r * Math.sin(2 * Math.PI * v);
      return r * Math.cos(2 * Math.PI * v);
    },
    int(n: number) {
      return Math.floor(next() * n);
    },
    state() {
      return s;
    },
  };
}
