import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { ChunkCache } from './cache.js';
import { configureDecoding, decodingStats, zstdFrameContentSize } from './codecs.js';
import type { Compressor } from './metadata.js';
import { openVolume } from './ome.js';
import { BufferRecycler, chunkBuffers } from './store.js';
import { createVolume } from './volume.js';

describe('ChunkCache.getOrLoadOwned', () => {
  it('reports ownership only for a load no one joined and the cache did not keep', async () => {
    const none = new ChunkCache(0);
    const a = await none.getOrLoadOwned('a', async () => new Uint8Array(8));
    expect(a.owned).toBe(true);
    // Two callers of one load: neither owns the data.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const first = none.getOrLoadOwned('b', async () => {
      await gate;
      return new Uint8Array(8);
    });
    const second = none.getOrLoad('b', async () => new Uint8Array(8));
    release();
    const [f, s] = await Promise.all([first, second]);
    expect(f.owned).toBe(false);
    expect(f.data).toBe(s);
    // A cache that keeps the chunk keeps ownership.
    const keep = new ChunkCache(1024);
    expect((await keep.getOrLoadOwned('c', async () => new Uint8Array(8))).owned).toBe(false);
    expect((await keep.getOrLoadOwned('c', async () => new Uint8Array(8))).owned).toBe(false);
    expect((await none.getOrLoadOwned('d', async () => null)).owned).toBe(false);
  });
});

describe('zstdFrameContentSize', () => {
  it('reads the size a zstd frame declares, for every field width', () => {
    const zstd = createRequire(import.meta.url)('zstd-napi') as { compress(b: Uint8Array): Uint8Array };
    for (const n of [0, 1, 255, 256, 300, 65_791, 70_000, 1 << 20, 5_000_000]) {
      expect(zstdFrameContentSize(zstd.compress(new Uint8Array(n).fill(n & 255)))).toBe(n);
    }
    expect(zstdFrameContentSize(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]))).toBe(-1);
  });
});

describe('BufferRecycler', () => {
  it('reuses only registered buffers, best fit within 2x, within its bounds', () => {
    const r = new BufferRecycler(2, 1000);
    const a = r.take(400);
    expect(a.byteLength).toBe(400);
    r.give(a);
    r.give(new ArrayBuffer(300)); // never registered: ignored
    expect(r.bytes).toBe(400);
    expect(r.take(500)).not.toBe(a); // too small
    expect(r.take(100)).not.toBe(a); // more than twice the request
    expect(r.take(250)).toBe(a);
    expect(r.bytes).toBe(0);
    const b = r.take(600);
    const c = r.take(500);
    r.give(b);
    r.give(c); // would pass maxBytes: dropped
    expect(r.bytes).toBe(600);
    expect(r.takeExact(599)).toBeUndefined();
    expect(r.takeExact(600)).toBe(b);
  });
});

// The zarrita read path (sharded, remote and gzip/zlib arrays; every array when the compiled reader
// is off or not built) recycles chunk buffers; these tests pin that path.
describe('reads with recycled chunk buffers', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'scroll-io-recycle-'));
    await configureDecoding({ nativeReader: false });
  });
  afterAll(async () => {
    await configureDecoding();
    await rm(dir, { recursive: true, force: true });
  });

  const value = (z: number, y: number, x: number) => (z * 31 + y * 7 + x * 3 + ((z * y) >> 2)) & 255;

  // Small chunks decode in this thread, 128 KiB ones on the decode workers (into recycled outputs).
  const cases: Array<[Compressor, number[], number[]]> = [
    ['none', [48, 40, 72], [16, 16, 32]],
    ['blosc-lz4', [48, 40, 72], [16, 16, 32]],
    ['zstd', [48, 40, 72], [16, 16, 32]],
    ['blosc-lz4', [64, 96, 128], [32, 64, 64]],
    ['zstd', [64, 96, 128], [32, 64, 64]],
  ];
  for (const [compressor, [D, H, W], chunks] of cases) {
    it(`returns the right voxels on every one of many overlapping concurrent reads (${compressor}, chunks ${chunks.join('x')})`, async () => {
      const path = join(dir, `${compressor}-${chunks.join('x')}.zarr`);
      const pooledBefore = decodingStats().pooled;
      const v = await createVolume(path, { shape: [D, H, W], chunks, dtype: 'uint8', compressor });
      const all = new Uint8Array(D * H * W);
      for (let z = 0; z < D; z++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) all[(z * H + y) * W + x] = value(z, y, x);
      await v.write({ offset: [0, 0, 0], shape: [D, H, W] }, all);
      const vol = await openVolume(path, { cache: new ChunkCache(0) });
      let seed = 3;
      const rand = (m: number) => {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        return Math.floor((seed / 2 ** 32) * m);
      };
      for (let round = 0; round < 6; round++) {
        // Several reads at once over the same chunks: a buffer recycled by one must not be in use by another.
        const regions = Array.from({ length: 6 }, () => {
          const shape = [1 + rand(D), 1 + rand(H), 1 + rand(W)];
          return { offset: shape.map((s, i) => rand([D, H, W][i] - s + 1)), shape };
        });
        const results = await Promise.all(regions.map((r) => vol.read(r)));
        results.forEach(({ data }, k) => {
          const { offset: o, shape: s } = regions[k];
          let bad = 0;
          for (let z = 0; z < s[0]; z++)
            for (let y = 0; y < s[1]; y++)
              for (let x = 0; x < s[2]; x++) if (data[(z * s[1] + y) * s[2] + x] !== value(o[0] + z, o[1] + y, o[2] + x)) bad++;
          expect(bad).toBe(0);
        });
      }
      expect(chunkBuffers.bytes).toBeGreaterThan(0); // the reads did recycle buffers
      if (chunks[0] === 32 && compressor !== 'none') expect(decodingStats().pooled).toBeGreaterThan(pooledBefore);
    });
  }
});

describe('reads of exactly one chunk', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'scroll-io-onechunk-'));
    await configureDecoding({ nativeReader: false });
  });
  afterAll(async () => {
    await configureDecoding();
    await rm(dir, { recursive: true, force: true });
  });

  it('return the chunk voxels, absent chunks as fill, and never expose a cached chunk to the caller', async () => {
    const path = join(dir, 'a.zarr');
    const v = await createVolume(path, { shape: [32, 32, 40], chunks: [16, 16, 20], dtype: 'uint16', compressor: 'zstd', fillValue: 7 });
    const value = (z: number, y: number, x: number) => z * 1000 + y * 40 + x;
    const part = new Uint16Array(16 * 32 * 40);
    for (let z = 0; z < 16; z++) for (let y = 0; y < 32; y++) for (let x = 0; x < 40; x++) part[(z * 32 + y) * 40 + x] = value(z, y, x);
    await v.write({ offset: [0, 0, 0], shape: [16, 32, 40] }, part); // chunks with z >= 16 stay absent
    const expectChunk = (data: ArrayLike<number>, o: number[]) => {
      let bad = 0;
      for (let z = 0; z < 16; z++)
        for (let y = 0; y < 16; y++)
          for (let x = 0; x < 20; x++) if (data[(z * 16 + y) * 20 + x] !== value(o[0] + z, o[1] + y, o[2] + x)) bad++;
      expect(bad).toBe(0);
    };
    for (const cache of [new ChunkCache(0), new ChunkCache(1 << 20)]) {
      const vol = await openVolume(path, { cache });
      for (let rep = 0; rep < 2; rep++) {
        const r = await vol.read({ offset: [0, 16, 20], shape: [16, 16, 20] });
        expect(r.shape).toEqual([16, 16, 20]);
        expect(r.data).toBeInstanceOf(Uint16Array);
        expectChunk(r.data, [0, 16, 20]);
        (r.data as Uint16Array).fill(0); // the caller owns what it got: later reads must not see this
      }
      const absent = await vol.read({ offset: [16, 0, 0], shape: [16, 16, 20] });
      expect(Array.from(new Set(absent.data))).toEqual([7]);
    }
  });
});
