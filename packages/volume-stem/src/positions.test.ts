import { describe, expect, it } from 'vitest';
import { makeTokenGrid, positionalWavelengths, sinusoidalPositions3d, tokenCentresUm } from './index.js';

describe('sinusoidal 3-D positions in physical units', () => {
  const grid = makeTokenGrid([4, 8, 8], [2, 4, 4]); // 2 x 2 x 2 tokens
  const opts = { voxelSizeUm: [1, 2, 3] as const, pyramidLevel: 1, minWavelengthUm: 10, maxWavelengthUm: 1000 };

  it('token centres are cell centres times the level-scaled voxel size', () => {
    const c = tokenCentresUm(grid, 1, opts);
    // token 0: level-1 voxel centre (0.5, 1.5, 1.5) = level-0 coordinate (c + ½)·2 − ½ = (1.5, 3.5, 3.5),
    // times the level-0 voxel size (1, 2, 3) µm.
    expect(Array.from(c.subarray(0, 3))).toEqual([1.5 * 1, 3.5 * 2, 3.5 * 3]);
    // token 7 = (1, 1, 1): level-1 centre (2.5, 5.5, 5.5) -> level 0 (5.5, 11.5, 11.5).
    expect(Array.from(c.subarray(21, 24))).toEqual([5.5 * 1, 11.5 * 2, 11.5 * 3]);
    // a per-sample origin shifts by origin voxels (of level 1).
    const o = tokenCentresUm(grid, 2, { ...opts, origin: [[0, 0, 0], [10, 0, 1]] });
    expect(o[24]).toBeCloseTo(((10 + 0.5 + 0.5) * 2 - 0.5) * 1, 12);
    expect(o[26]).toBeCloseTo(((1 + 1.5 + 0.5) * 2 - 0.5) * 3, 12);
  });

  it('wavelengths are log-spaced from min to max', () => {
    const l = positionalWavelengths(18, 10, 1000); // 3 frequencies
    expect(Array.from(l)).toEqual([10, 100, 1000].map((v, i) => (i === 1 ? expect.closeTo(v, 9) : v)));
  });

  it('values are sin / cos of 2π u / λ per axis, zero beyond 6·⌊d/6⌋', () => {
    const d = 14; // 2 frequencies (λ = 10, 1000), two zero channels
    const p = sinusoidalPositions3d(grid, 1, { d, ...opts });
    expect(p.length).toBe(8 * d);
    const t = 7;
    const u = [5.5, 23, 34.5]; // µm, token 7
    const lam = [10, 1000];
    for (let a = 0; a < 3; a++)
      for (let k = 0; k < 2; k++) {
        expect(p[t * d + a * 4 + k]).toBeCloseTo(Math.sin((2 * Math.PI * u[a]!) / lam[k]!), 6);
        expect(p[t * d + a * 4 + 2 + k]).toBeCloseTo(Math.cos((2 * Math.PI * u[a]!) / lam[k]!), 6);
      }
    expect(p[t * d + 12]).toBe(0);
    expect(p[t * d + 13]).toBe(0);
  });

  it('a level-1 token and the level-0 token at the same place get the same encoding', () => {
    const g1 = makeTokenGrid([2, 2, 2], [2, 2, 2]);
    const g0 = makeTokenGrid([4, 4, 4], [4, 4, 4]);
    const common = { d: 24, voxelSizeUm: [7.91, 7.91, 7.91] as const, minWavelengthUm: 64, maxWavelengthUm: 1e5 };
    const p1 = sinusoidalPositions3d(g1, 1, { ...common, pyramidLevel: 1 });
    const p0 = sinusoidalPositions3d(g0, 1, { ...common, pyramidLevel: 0 });
    // a level-1 cell of 2 voxels covers the level-0 cell of 4 voxels: both centres at 1.5·7.91 µm.
    for (let i = 0; i < 24; i++) expect(p1[i]).toBeCloseTo(p0[i]!, 5);
  });
});
