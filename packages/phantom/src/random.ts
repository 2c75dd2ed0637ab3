/**
 * Stateless randomness for the phantom: every random quantity is a hash of (seed, integer
 * coordinates), so any chunk can be computed alone and equals the same voxels of any larger region.
 */

/** One round of MurmurHash3's 32-bit block mixing. */
function mix(h: number, k: number): number {
  k = Math.imul(k | 0, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3's finaliser: full avalanche of a 32-bit state. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A uint32 hash of a seed and up to three integers. */
export function hash(seed: number, a: number, b = 0, c = 0): number {
  return fmix(mix(mix(mix(seed | 0, a), b), c) ^ 12);
}

/** Uniform in [0, 1) from a hash. */
export function uniform(seed: number, a: number, b = 0, c = 0): number {
  return hash(seed, a, b, c) / 4294967296;
}

/** Standard normal from two hashes of the same coordinates (Box-Muller). */
export function gaussian(seed: number, a: number, b: number, c: number): number {
  const u1 = (hash(seed, a, b, c) + 0.5) / 4294967296;
  const u2 = hash(seed ^ 0x5bd1e995, a, b, c) / 4294967296;
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}

/** Salts that separate the independent random streams drawn from one seed. */
export const SALT = {
  waviness: 0x1f3a,
  fibreRecto: 0x2b71,
  fibreVerso: 0x3c05,
  wrapPhase: 0x4d9e,
  ink: 0x5e22,
  noise: 0x6f48,
  thickness: 0x7a13,
  compression: 0x8b27,
  tear: 0x9c3d,
  meander: 0xad51,
} as const;
