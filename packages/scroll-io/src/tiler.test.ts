import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScrollIoOptionError } from './errors.js';
import { gaussianWeights, Tiler, tileRegion } from './tiler.js';
import { createVolume, type Volume } from './volume.js';

/** Checks coverage, overlap and flush edges of `origins` along one axis of extent `s` (from `lo`). */
function checkAxis(starts: number[], lo: number, s: number, t: number, ov: number) {
  const u = [...new Set(starts)].sort((a, b) => a - b);
  expect(u[0]).toBe(lo);
  if (s <= t) {
    expect(u).toEqual([lo]);
    return;
  }
  expect(u.at(-1)! + t).toBe(lo + s); // last tile flush with the edge
  for (let k = 1; k < u.length; k++) {
    const shared = u[k - 1] + t - u[k];
    expect(shared).toBeGreaterThanOrEqual(ov); // overlap honoured
    if (k < u.length - 1) expect(shared).toBe(ov); // exactly the stride except at the flush end
  }
  // Exactly ceil((s - t) / (t - ov)) + 1 tiles: no more than needed.
  expect(u.length).toBe(Math.ceil((s - t) / (t - ov)) + 1);
}

describe('tileRegion', () => {
  it('covers the box exactly, honours the overlap, ends flush, in C order', () => {
    const cases: [number[], number[], number[], number[]][] = [
      [[0, 0, 0], [10, 23, 17], [4, 8, 8], [1, 2, 3]],
      [[5, 2, 9], [7, 8, 40], [4, 8, 16], [0, 0, 5]],
      [[0, 0], [3, 100], [8, 32], [2, 16]],
      [[0], [64], [16], [0]],
    ];
    for (const [offset, shape, tile, ov] of cases) {
      const origins = tileRegion({ offset, shape }, tile, ov);
      const n = shape.length;
      for (let d = 0; d < n; d++) checkAxis(origins.map((o) => o[d]), offset[d], shape[d], tile[d], ov[d]);
      // Cartesian product in C order: count, uniqueness, sortedness.
      const perAxis = shape.map((_, d) => new Set(origins.map((o) => o[d])).size);
      expect(origins.length).toBe(perAxis.reduce((a, b) => a * b, 1));
      const keys = origins.map((o) => o.join(','));
      expect(new Set(keys).size).toBe(keys.length);
      for (let k = 1; k < origins.length; k++) {
        const a = origins[k - 1];
        const b = origins[k];
        const first = a.findIndex((v, i) => v !== b[i]);
        expect(b[first]).toBeGreaterThan(a[first]);
      }
      // Every voxel of the box is covered by at least one tile (brute force).
      const covered = new Uint8Array(shape.reduce((a, b) => a * b, 1));
      for (const o of origins) {
        const idx = new Array<number>(n).fill(0);
        for (;;) {
          const v = idx.map((k, i) => o[i] + k - offset[i]);
          if (v.every((x, i) => x >= 0 && x < shape[i])) covered[v.reduce((acc, x, i) => acc * shape[i] + x, 0)] = 1;
          let d = n - 1;
          for (; d >= 0; d--) {
            if (++idx[d] < tile[d]) break;
            idx[d] = 0;
          }
          if (d < 0) break;
        }
      }
      expect(covered.every((c) => c === 1)).toBe(true);
    }
    expect(tileRegion([10, 10], [4, 4], 0)).toHaveLength(9); // 0, 4, 6 per axis
    expect(tileRegion([10, 10], [4, 4], 0).map((o) => o[1]).slice(0, 3)).toEqual([0, 4, 6]);
    expect(tileRegion([3, 0], [4, 4])).toEqual([]);
  });

  it('rejects bad tiles and overlaps by name', () => {
    const field = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(ScrollIoOptionError);
        return (e as ScrollIoOptionError).field;
      }
      return undefined;
    };
    expect(field(() => tileRegion([10, 10], [4], 0))).toBe('tile');
    expect(field(() => tileRegion([10, 10], [4, 0], 0))).toBe('tile');
    expect(field(() => tileRegion([10, 10], [4, 4], 4))).toBe('overlap');
    expect(field(() => tileRegion([10, 10], [4, 4], [1, -1]))).toBe('overlap');
    expect(field(() => gaussianWeights([4, 4], 0))).toBe('sigmaFraction');
  });
});

describe('gaussianWeights', () => {
  it('matches the separable Gaussian formula, peaks at 1 in the centre, is symmetric', () => {
    const tile = [5, 8, 6];
    const f = 0.25;
    const w = gaussianWeights(tile, f);
    expect(w.length).toBe(240);
    let k = 0;
    let max = 0;
    for (let z = 0; z < 5; z++)
      for (let y = 0; y < 8; y++)
        for (let x = 0; x < 6; x++, k++) {
          const g = (i: number, t: number) => Math.exp(-((i - (t - 1) / 2) ** 2) / (2 * (f * t) ** 2));
          expect(w[k]).toBeCloseTo(g(z, 5) * g(y, 8) * g(x, 6), 6);
          expect(w[k]).toBeCloseTo(w[((4 - z) * 8 + (7 - y)) * 6 + (5 - x)], 7);
          max = Math.max(max, w[k]);
        }
    expect(w[(2 * 8 + 3) * 6 + 2]).toBeLessThan(1); // even extents: the peak lies between voxels
    expect(gaussianWeights([5], 0.125)[2]).toBe(1);
    expect(max).toBeLessThanOrEqual(1);
    // Tiny sigma underflows float32 at the border: clamped to the smallest positive weight, never 0.
    const sharp = gaussianWeights([64], 0.01);
    expect(Math.min(...sharp)).toBeGreaterThan(0);
  });

  it('normalised blending of overlapped tiles reproduces a field exactly', () => {
    // Each tile "predicts" the true field; weighted sum / weight sum must return it unchanged.
    const shape = [9, 21];
    const tile = [4, 8];
    const w = gaussianWeights(tile);
    const field = (y: number, x: number) => Math.sin(y) + x * 0.5;
    const sum = new Float64Array(9 * 21);
    const wsum = new Float64Array(9 * 21);
    for (const [oy, ox] of tileRegion(shape, tile, [1, 3]))
      for (let y = 0; y < 4; y++)
        for (let x = 0; x < 8; x++) {
          const i = (oy + y) * 21 + ox + x;
          sum[i] += w[y * 8 + x] * field(oy + y, ox + x);
          wsum[i] += w[y * 8 + x];
        }
    for (let y = 0; y < 9; y++) for (let x = 0; x < 21; x++) expect(sum[y * 21 + x] / wsum[y * 21 + x]).toBeCloseTo(field(y, x), 9);
  });
});

describe('Tiler', () => {
  let dir: string;
  let vol: Volume;
  const shape = [7, 19, 13];
  const value = (z: number, y: number, x: number) => (z * 17 + y * 5 + x * 3) % 251;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'scroll-io-tiler-'));
    const v = await createVolume(join(dir, 'a.zarr'), { shape, chunks: [4, 8, 8], dtype: 'uint16', fillValue: 999 });
    const data = new Uint16Array(7 * 19 * 13);
    let i = 0;
    for (let z = 0; z < 7; z++) for (let y = 0; y < 19; y++) for (let x = 0; x < 13; x++) data[i++] = value(z, y, x);
    await v.write({ offset: [0, 0, 0], shape }, data);
    vol = v;
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads every tile in order with its voxels (outside the volume: fill value)', async () => {
    const tiler = new Tiler({ volume: vol, labels: { same: vol }, tile: [4, 8, 16], overlap: [1, 2, 0], prefetch: 3 });
    expect(tiler.origins).toEqual(tileRegion(shape, [4, 8, 16], [1, 2, 0]));
    let n = 0;
    for await (const t of tiler) {
      expect(t.index).toBe(n);
      expect(t.origin).toEqual(tiler.origins[n]);
      let k = 0;
      for (let z = 0; z < 4; z++)
        for (let y = 0; y < 8; y++)
          for (let x = 0; x < 16; x++, k++) {
            const [gz, gy, gx] = [t.origin[0] + z, t.origin[1] + y, t.origin[2] + x];
            expect(t.image[k]).toBe(gx < 13 ? value(gz, gy, gx) : 999);
          }
      expect(Array.from(t.labels.same)).toEqual(Array.from(t.image));
      n++;
    }
    expect(n).toBe(tiler.count);
    expect(n).toBe(2 * 3 * 1);
    await expect(tiler.next()).rejects.toThrow(ScrollIoOptionError);
  });

  it('returns null after the last tile and reports a failed read when its tile is asked for', async () => {
    const broken: Volume = { ...vol, path: 'broken', read: () => Promise.reject(new Error('disk gone')) } as Volume;
    const t = new Tiler({ volume: broken, tile: [7, 19, 13], prefetch: 2 });
    await expect(t.next()).rejects.toThrow('disk gone');
    expect(await t.next()).toBeNull();
    await t.close();
  });
});
