import { describe, expect, it } from 'vitest';
import { makeRng } from '@goe/tf';
import { GeometryInputError } from './errors.js';
import { squaredDistanceTransform, surfaceDistance, surfaceVoxels } from './surface.js';

type Shape = [number, number, number];

/** Coordinates of the set voxels. */
function coords(m: Uint8Array, [, h, w]: Shape): [number, number, number][] {
  const out: [number, number, number][] = [];
  m.forEach((v, i) => {
    if (v) out.push([Math.floor(i / (h * w)), Math.floor(i / w) % h, i % w]);
  });
  return out;
}

/** Brute force: every pair, in float64. */
function bruteDistances(from: Uint8Array, to: Uint8Array, shape: Shape, sp: Shape): number[] {
  const b = coords(to, shape);
  return coords(from, shape).map(([z, y, x]) =>
    Math.sqrt(Math.min(...b.map(([z2, y2, x2]) => ((z - z2) * sp[0]) ** 2 + ((y - y2) * sp[1]) ** 2 + ((x - x2) * sp[2]) ** 2))),
  );
}

/** A mask of a few random balls. */
function blobs(shape: Shape, seed: number, count: number): Uint8Array {
  const rng = makeRng(seed);
  const [d, h, w] = shape;
  const balls = Array.from({ length: count }, () => [rng.next() * d, rng.next() * h, rng.next() * w, 1 + rng.next() * 2.5]);
  return Uint8Array.from({ length: d * h * w }, (_, i) => {
    const [z, y, x] = [Math.floor(i / (h * w)), Math.floor(i / w) % h, i % w];
    return balls.some(([bz, by, bx, r]) => (z - bz!) ** 2 + (y - by!) ** 2 + (x - bx!) ** 2 <= r! ** 2) ? 1 : 0;
  });
}

describe('surface distances', () => {
  it('boundary voxels: a solid box keeps only its faces; the volume edge counts as outside', () => {
    const shape: Shape = [5, 5, 5];
    const box = Uint8Array.from({ length: 125 }, (_, i) => {
      const [z, y, x] = [Math.floor(i / 25), Math.floor(i / 5) % 5, i % 5];
      return z >= 1 && z <= 3 && y >= 1 && y <= 3 && x >= 1 && x <= 3 ? 1 : 0;
    });
    const s = surfaceVoxels(box, shape);
    expect(s.reduce((a, b) => a + b, 0)).toBe(27 - 1); // all but the centre
    expect(s[2 * 25 + 2 * 5 + 2]).toBe(0);
    const full = surfaceVoxels(new Uint8Array(125).fill(1), shape);
    expect(full.reduce((a, b) => a + b, 0)).toBe(125 - 27); // the volume's own faces
  });

  it('the distance transform equals brute force on random seeds, with anisotropic spacing', () => {
    for (const [seed, sp] of [[1, [1, 1, 1]], [2, [2.5, 1, 0.7]], [3, [1, 3, 1]]] as [number, Shape][]) {
      const shape: Shape = [6, 7, 9];
      const rng = makeRng(seed);
      const seeds = Uint8Array.from({ length: 6 * 7 * 9 }, () => (rng.next() < 0.04 ? 1 : 0));
      seeds[seed] = 1;
      const got = squaredDistanceTransform(seeds, shape, sp);
      const all = new Uint8Array(seeds.length).fill(1);
      const want = bruteDistances(all, seeds, shape, sp);
      want.forEach((dist, i) => expect(Math.sqrt(got[i]!)).toBeCloseTo(dist, 9));
    }
    expect(squaredDistanceTransform(new Uint8Array(8), [2, 2, 2]).every((v) => v === Infinity)).toBe(true);
  });

  it('mean, 95th percentile and maximum equal brute force on random blob masks', () => {
    const shape: Shape = [10, 12, 11];
    for (const seed of [4, 5, 6]) {
      const pred = blobs(shape, seed, 3);
      const target = blobs(shape, seed + 100, 3);
      const sp: Shape = seed === 6 ? [2, 1, 1] : [1, 1, 1];
      const got = surfaceDistance(pred, target, shape, { spacing: sp });
      const ps = surfaceVoxels(pred, shape);
      const ts = surfaceVoxels(target, shape);
      const a = bruteDistances(ps, ts, shape, sp);
      const b = bruteDistances(ts, ps, shape, sp);
      const pct = (xs: number[]) => {
        const s = [...xs].sort((u, v) => u - v);
        const pos = (s.length - 1) * 0.95;
        const lo = Math.floor(pos);
        return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (pos - lo);
      };
      expect(got.predSurface).toBe(a.length);
      expect(got.targetSurface).toBe(b.length);
      expect(got.mean).toBeCloseTo([...a, ...b].reduce((u, v) => u + v, 0) / (a.length + b.length), 9);
      expect(got.p95).toBeCloseTo(Math.max(pct(a), pct(b)), 9);
      expect(got.max).toBeCloseTo(Math.max(...a, ...b), 9);
    }
  });

  it('two parallel sheets three voxels apart are three voxels apart; identical masks are zero apart', () => {
    const shape: Shape = [8, 6, 6];
    const sheet = (z0: number) => Uint8Array.from({ length: 288 }, (_, i) => (Math.floor(i / 36) === z0 ? 1 : 0));
    const r = surfaceDistance(sheet(2), sheet(5), shape);
    expect([r.mean, r.p95, r.max]).toEqual([3, 3, 3]);
    const same = surfaceDistance(sheet(2), sheet(2), shape);
    expect([same.mean, same.p95, same.max]).toEqual([0, 0, 0]);
    // Probabilities are thresholded; an empty prediction against a sheet is infinitely far.
    expect(surfaceDistance(new Float32Array(288).fill(0.4), sheet(1), shape).mean).toBe(Infinity);
    expect(surfaceDistance(new Float32Array(288), new Float32Array(288), shape).mean).toBe(0);
  });

  it('bad sizes and spacing are typed errors naming the input', () => {
    expect(() => surfaceDistance([0, 1], [0, 1, 0], [1, 1, 2])).toThrow(GeometryInputError);
    expect(() => surfaceDistance([0, 1], [0, 1, 0], [1, 1, 2])).toThrow(/target/);
    expect(() => surfaceDistance([0, 1, 1], [0, 1], [1, 1, 2])).toThrow(/pred/);
    expect(() => surfaceDistance([0, 1], [0, 1], [1, 1, 2], { spacing: [1, 0, 1] })).toThrow(/spacing/);
  });
});
