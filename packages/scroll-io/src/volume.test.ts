import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkCache } from './cache.js';
import { allocate, type Dtype, type VolumeArray } from './dtype.js';
import {
  ScrollIoOptionError,
  ZarrChunkError,
  ZarrDtypeError,
  ZarrExistsError,
  ZarrNotFoundError,
  ZarrRegionError,
  ZarrShapeMismatchError,
} from './errors.js';
import { type Compressor } from './metadata.js';
import { openVolume } from './ome.js';
import { createVolume, openWritableVolume } from './volume.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-volume-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A tiny deterministic generator for test data (independent of the code under test). */
function lcg(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function randomValues(dtype: Dtype, n: number, rand: () => number): VolumeArray {
  const a = allocate(dtype, n);
  for (let i = 0; i < n; i++) a[i] = dtype.startsWith('float') ? (rand() - 0.5) * 1000 : Math.floor(rand() * 250) + 1;
  return a;
}

/** Dense reference of a 3-D array, updated and read by plain index arithmetic. */
class Dense {
  readonly data: Float64Array;
  constructor(readonly shape: number[], fill: number) {
    this.data = new Float64Array(shape[0] * shape[1] * shape[2]).fill(fill);
  }
  write(offset: number[], shape: number[], values: ArrayLike<number>) {
    let k = 0;
    for (let z = 0; z < shape[0]; z++)
      for (let y = 0; y < shape[1]; y++)
        for (let x = 0; x < shape[2]; x++) {
          const [Z, Y, X] = [offset[0] + z, offset[1] + y, offset[2] + x];
          this.data[(Z * this.shape[1] + Y) * this.shape[2] + X] = values[k++];
        }
  }
  read(offset: number[], shape: number[], fill: number): number[] {
    const out: number[] = [];
    for (let z = 0; z < shape[0]; z++)
      for (let y = 0; y < shape[1]; y++)
        for (let x = 0; x < shape[2]; x++) {
          const [Z, Y, X] = [offset[0] + z, offset[1] + y, offset[2] + x];
          const inside = Z >= 0 && Y >= 0 && X >= 0 && Z < this.shape[0] && Y < this.shape[1] && X < this.shape[2];
          out.push(inside ? this.data[(Z * this.shape[1] + Y) * this.shape[2] + X] : fill);
        }
    return out;
  }
}

const cases: { dtype: Dtype; compressor: Compressor; zarrFormat: 2 | 3; fill: number }[] = [
  { dtype: 'uint8', compressor: 'blosc-lz4', zarrFormat: 2, fill: 0 },
  { dtype: 'uint16', compressor: 'zlib', zarrFormat: 2, fill: 7 },
  { dtype: 'float32', compressor: 'zstd', zarrFormat: 2, fill: -1.5 },
  { dtype: 'float32', compressor: 'none', zarrFormat: 2, fill: 0 },
  { dtype: 'int16', compressor: 'gzip', zarrFormat: 2, fill: -3 },
  { dtype: 'uint8', compressor: 'blosc-zstd', zarrFormat: 3, fill: 3 },
  { dtype: 'float32', compressor: 'gzip', zarrFormat: 3, fill: 0 },
  { dtype: 'uint16', compressor: 'none', zarrFormat: 3, fill: 0 },
];

describe('createVolume / write / read', () => {
  for (const c of cases) {
    it(`round-trips unaligned writes and reads: ${c.dtype}, ${c.compressor}, v${c.zarrFormat}, fill ${c.fill}`, async () => {
      const shape = [11, 13, 10];
      const path = join(dir, `rt-${c.dtype}-${c.compressor}-v${c.zarrFormat}`);
      const cache = new ChunkCache(1 << 20);
      const vol = await createVolume(path, { shape, chunks: [4, 5, 3], dtype: c.dtype, compressor: c.compressor, zarrFormat: c.zarrFormat, fillValue: c.fill, cache });
      const ref = new Dense(shape, c.fill);
      const rand = lcg(42);
      // Unaligned, overlapping writes, some touching the array edge, then an aligned one.
      const writes = [
        { offset: [1, 2, 3], shape: [5, 6, 4] },
        { offset: [0, 0, 0], shape: [3, 13, 10] },
        { offset: [7, 9, 8], shape: [4, 4, 2] },
        { offset: [4, 5, 3], shape: [4, 5, 3] },
        { offset: [2, 1, 0], shape: [1, 1, 1] },
      ];
      for (const w of writes) {
        const vals = randomValues(c.dtype, w.shape[0] * w.shape[1] * w.shape[2], rand);
        await vol.write(w, vals);
        ref.write(w.offset, w.shape, vals);
      }
      // Regions: whole, unaligned interior, partly outside on both sides, wholly outside, empty.
      const reads = [
        { offset: [0, 0, 0], shape },
        { offset: [3, 4, 2], shape: [5, 3, 7] },
        { offset: [-2, -3, 5], shape: [6, 20, 9] },
        { offset: [20, 0, 0], shape: [2, 2, 2] },
        { offset: [1, 1, 1], shape: [0, 3, 3] },
      ];
      for (const vol2 of [vol, await openVolume(path, { cache: new ChunkCache(0) })]) {
        expect(vol2.shape).toEqual(shape);
        expect(vol2.chunks).toEqual([4, 5, 3]);
        expect(vol2.dtype).toBe(c.dtype);
        expect(vol2.fillValue).toBe(c.fill);
        for (const r of reads) {
          const got = await vol2.read(r);
          expect(got.shape).toEqual(r.shape);
          expect(got.data.constructor).toBe(allocate(c.dtype, 0).constructor);
          const want = ref.read(r.offset, r.shape, c.fill);
          // float32 storage rounds the float64 reference exactly once.
          const wantTyped = Array.from(allocate(c.dtype, want.length).map((_, i) => want[i]));
          expect(Array.from(got.data)).toEqual(wantTyped);
        }
      }
      // Every chunk file was renamed into place: no temporary files remain.
      const files = await readdir(path, { recursive: true });
      expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    });
  }

  it('reads absent chunks as the fill value and does not store chunks that are all fill', async () => {
    const path = join(dir, 'sparse');
    const vol = await createVolume(path, { shape: [8, 8], chunks: [4, 4], dtype: 'uint8', fillValue: 5 });
    await vol.write({ offset: [0, 0], shape: [4, 4] }, new Uint8Array(16).fill(5)); // all fill: not stored
    await vol.write({ offset: [4, 4], shape: [4, 4] }, new Uint8Array(16).fill(1));
    const files = (await readdir(path, { recursive: true })).filter((f) => !f.startsWith('.') && !f.endsWith('.zarray'));
    expect(files.sort()).toEqual(['1', '1/1'].sort());
    const all = await vol.read({ offset: [0, 0], shape: [8, 8] });
    for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) expect(all.data[y * 8 + x]).toBe(y >= 4 && x >= 4 ? 1 : 5);
    // Overwriting the stored chunk with fill deletes its file.
    await vol.write({ offset: [4, 4], shape: [4, 4] }, new Uint8Array(16).fill(5));
    const after = (await readdir(join(path, '1'))).filter((f) => !f.startsWith('.'));
    expect(after).toEqual([]);
  });

  it('serves repeated reads from the shared cache and drops stale chunks on write', async () => {
    const cache = new ChunkCache(1 << 20);
    const path = join(dir, 'cached');
    const vol = await createVolume(path, { shape: [8, 8, 8], chunks: [4, 4, 4], dtype: 'uint8', cache });
    await vol.write({ offset: [0, 0, 0], shape: [8, 8, 8] }, new Uint8Array(512).fill(2));
    const reader = await openVolume(path, { cache });
    await reader.read({ offset: [0, 0, 0], shape: [8, 8, 8] });
    const s1 = cache.stats();
    expect(s1.entries).toBe(8);
    expect(s1.bytes).toBe(8 * 64);
    await reader.read({ offset: [1, 1, 1], shape: [6, 6, 6] });
    const s2 = cache.stats();
    expect(s2.misses).toBe(s1.misses);
    expect(s2.hits - s1.hits).toBe(8);
    // A write through another handle on the same cache invalidates the chunks it touched.
    await vol.write({ offset: [3, 3, 3], shape: [2, 2, 2] }, new Uint8Array(8).fill(9));
    const r = await reader.read({ offset: [3, 3, 3], shape: [2, 2, 2] });
    expect(Array.from(r.data)).toEqual(new Array(8).fill(9));
  });

  it('resumes writing an existing array with openWritableVolume', async () => {
    const path = join(dir, 'resume');
    const a = await createVolume(path, { shape: [4, 6], chunks: [2, 4], dtype: 'float32', compressor: 'zstd' });
    await a.write({ offset: [0, 0], shape: [2, 6] }, new Float32Array(12).fill(1.25));
    const b = await openWritableVolume(path);
    await b.write({ offset: [1, 2], shape: [3, 3] }, new Float32Array(9).fill(-2));
    const r = await (await openVolume(path)).read({ offset: [0, 0], shape: [4, 6] });
    const want = Array.from({ length: 24 }, (_, i) => {
      const [y, x] = [Math.floor(i / 6), i % 6];
      if (y >= 1 && x >= 2 && x < 5) return -2;
      return y < 2 ? 1.25 : 0;
    });
    expect(Array.from(r.data)).toEqual(want);
  });
});

describe('typed errors', () => {
  it('names the metadata files looked for when there is no array', async () => {
    const p = join(dir, 'nothing-here');
    const err = await openVolume(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZarrNotFoundError);
    expect((err as ZarrNotFoundError).path).toBe(p);
    expect((err as Error).message).toContain(join(p, '.zarray'));
    expect((err as Error).message).toContain(join(p, 'zarr.json'));
  });

  it('names the chunk key of a corrupt chunk', async () => {
    const path = join(dir, 'corrupt');
    const vol = await createVolume(path, { shape: [8, 8], chunks: [4, 4], dtype: 'uint16', compressor: 'blosc-lz4' });
    await vol.write({ offset: [0, 0], shape: [8, 8] }, new Uint16Array(64).fill(300));
    await writeFile(join(path, '1', '0'), new Uint8Array([1, 2, 3, 4, 5, 6, 7]));
    const reader = await openVolume(path, { cache: new ChunkCache(0) });
    const err = await reader.read({ offset: [0, 0], shape: [8, 8] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZarrChunkError);
    expect((err as ZarrChunkError).chunkKey).toBe('1/0');
    expect((err as Error).message).toContain(path);
    // Chunks that are fine still read.
    const ok = await reader.read({ offset: [0, 4], shape: [4, 4] });
    expect(Array.from(ok.data)).toEqual(new Array(16).fill(300));
  });

  it('rejects regions of the wrong rank, dtype and shape mismatches, and writes outside the array', async () => {
    const path = join(dir, 'errors');
    const vol = await createVolume(path, { shape: [4, 4, 4], chunks: [2, 2, 2], dtype: 'uint8' });
    await expect(vol.read({ offset: [0, 0], shape: [1, 1] })).rejects.toThrow(ZarrRegionError);
    await expect(vol.read({ offset: [0, 0, 0.5], shape: [1, 1, 1] })).rejects.toThrow(ZarrRegionError);
    await expect(vol.read({ offset: [0, 0, 0], shape: [1, -1, 1] })).rejects.toThrow(ZarrRegionError);
    const dt = await vol.write({ offset: [0, 0, 0], shape: [1, 1, 2] }, new Float32Array(2)).catch((e: unknown) => e);
    expect(dt).toBeInstanceOf(ZarrDtypeError);
    expect((dt as ZarrDtypeError).expected).toBe('uint8');
    expect((dt as ZarrDtypeError).received).toBe('float32');
    const sm = await vol.write({ offset: [0, 0, 0], shape: [1, 2, 2] }, new Uint8Array(3)).catch((e: unknown) => e);
    expect(sm).toBeInstanceOf(ZarrShapeMismatchError);
    expect((sm as ZarrShapeMismatchError).expected).toBe(4);
    await expect(vol.write({ offset: [3, 0, 0], shape: [2, 1, 1] }, new Uint8Array(2))).rejects.toThrow(ZarrRegionError);
  });

  it('refuses to create over an existing array unless asked, and validates options by name', async () => {
    const path = join(dir, 'exists');
    await createVolume(path, { shape: [2], chunks: [2], dtype: 'uint8' });
    await expect(createVolume(path, { shape: [2], chunks: [2], dtype: 'uint8' })).rejects.toThrow(ZarrExistsError);
    const v = await createVolume(path, { shape: [3], chunks: [2], dtype: 'uint8', overwrite: true });
    expect(v.shape).toEqual([3]);
    const bad = await createVolume(join(dir, 'bad'), { shape: [2], chunks: [2], dtype: 'uint8', fillValue: 300 }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(ScrollIoOptionError);
    expect((bad as ScrollIoOptionError).field).toBe('fillValue');
    const bad2 = await createVolume(join(dir, 'bad2'), { shape: [2, 2], chunks: [2], dtype: 'uint8' }).catch((e: unknown) => e);
    expect((bad2 as ScrollIoOptionError).field).toBe('chunks');
  });
});
