/**
 * Sharded Zarr v3 reading against hand-written shards (fixtures/make_sharded_fixtures.py lays out the
 * `sharding_indexed` bytes itself: inner chunks, then the (offset, nbytes) index and its CRC-32C).
 * Every voxel is checked against the closed form the script wrote, including an empty inner chunk
 * (index entry 2^64-1) and an absent shard file, both of which must read as the fill value.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ChunkCache } from './cache.js';
import { openVolume } from './ome.js';
import type { Region } from './region.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'sharded-v3.zarr');
const SHAPE = [10, 9, 11];

type Box = { lo: number[]; hi: number[] };
interface Case {
  name: string;
  fill: number;
  value: (z: number, y: number, x: number) => number;
  /** Voxels that hold the fill value: an empty inner chunk or an absent shard. */
  holes: Box[];
}

const v = (z: number, y: number, x: number) => (z * 131 + y * 17 + x * 3) % 251;
const CASES: Case[] = [
  { name: 'u2_gzip', fill: 7, value: (z, y, x) => v(z, y, x) * 211, holes: [{ lo: [4, 6, 4], hi: [8, 9, 8] }] },
  {
    name: 'f4_zstd',
    fill: -1.5,
    value: (z, y, x) => Math.fround(v(z, y, x) / 7 - 10),
    holes: [
      { lo: [0, 3, 0], hi: [4, 6, 4] },
      { lo: [8, 6, 8], hi: [10, 9, 11] },
    ],
  },
  { name: 'u1_raw', fill: 0, value: (z, y, x) => (v(z, y, x) * 211) & 0xff, holes: [] },
];

function expected(c: Case, z: number, y: number, x: number): number {
  const outside = z >= SHAPE[0] || y >= SHAPE[1] || x >= SHAPE[2] || z < 0 || y < 0 || x < 0;
  if (outside) return c.fill;
  const inHole = c.holes.some((h) => z >= h.lo[0] && z < h.hi[0] && y >= h.lo[1] && y < h.hi[1] && x >= h.lo[2] && x < h.hi[2]);
  return inHole ? c.fill : c.value(z, y, x);
}

function check(c: Case, region: Region, data: ArrayLike<number>) {
  const [D, H, W] = region.shape;
  expect(data.length).toBe(D * H * W);
  let bad = 0;
  let first = '';
  for (let z = 0; z < D; z++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const want = expected(c, region.offset[0] + z, region.offset[1] + y, region.offset[2] + x);
        const got = data[(z * H + y) * W + x];
        if (got !== want) {
          if (bad === 0) first = `at ${[region.offset[0] + z, region.offset[1] + y, region.offset[2] + x]}: ${got} != ${want}`;
          bad++;
        }
      }
  expect(first).toBe('');
  expect(bad).toBe(0);
}

describe('sharded Zarr v3 (hand-written shards)', () => {
  for (const c of CASES) {
    it(`${c.name}: whole array and unaligned regions across shard and inner-chunk edges match the formula`, async () => {
      const vol = await openVolume(join(FIXTURES, c.name), { cache: new ChunkCache(1 << 20) });
      expect(vol.shape).toEqual(SHAPE);
      expect(vol.chunks).toEqual([4, 3, 4]);
      expect(vol.zarrFormat).toBe(3);
      expect(vol.fillValue).toBe(c.fill);
      const regions: Region[] = [
        { offset: [0, 0, 0], shape: SHAPE },
        // Crosses the shard edge on every axis (8, 6, 8) and inner-chunk edges (4, 3, 4).
        { offset: [3, 2, 5], shape: [6, 6, 5] },
        // Straddles the empty inner chunk / absent shard and runs past the array end.
        { offset: [5, 5, 7], shape: [7, 6, 6] },
        { offset: [-2, -1, 9], shape: [4, 3, 3] },
        { offset: [9, 8, 10], shape: [1, 1, 1] },
      ];
      for (const r of regions) check(c, r, (await vol.read(r)).data);
    });
  }

  it('the fixture really holds an empty inner chunk and an absent shard (the fill checks are not vacuous)', async () => {
    const u2 = await openVolume(join(FIXTURES, 'u2_gzip'), { cache: new ChunkCache(0) });
    const hole = await u2.read({ offset: [4, 6, 4], shape: [4, 3, 4] });
    expect(Array.from(hole.data).every((x) => x === 7)).toBe(true);
    // Its neighbour in the same shard holds data.
    const next = await u2.read({ offset: [4, 6, 0], shape: [1, 1, 1] });
    expect(next.data[0]).toBe(v(4, 6, 0) * 211);
    const f4 = await openVolume(join(FIXTURES, 'f4_zstd'), { cache: new ChunkCache(0) });
    const gone = await f4.read({ offset: [8, 6, 8], shape: [2, 3, 3] });
    expect(Array.from(gone.data).every((x) => x === -1.5)).toBe(true);
  });
});
