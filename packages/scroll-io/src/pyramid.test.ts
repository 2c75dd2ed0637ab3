import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkCache } from './cache.js';
import { configureDecoding, decodingStats } from './codecs.js';
import { allocate, type Dtype } from './dtype.js';
import { ScrollIoOptionError } from './errors.js';
import { createOmeLabel, createOmeZarr, openVolume } from './ome.js';
import { buildPyramid, reduceBlocks } from './pyramid.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-pyramid-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Float64 host reference: 2x2x2 reduction of a C-order [D, H, W] volume, ceil sizes, edge blocks partial. */
function hostDownsample(v: Float64Array, s: number[], method: 'mean' | 'max' | 'mode', round: boolean) {
  const o = s.map((x) => Math.ceil(x / 2));
  const out = new Float64Array(o[0] * o[1] * o[2]);
  for (let z = 0; z < o[0]; z++)
    for (let y = 0; y < o[1]; y++)
      for (let x = 0; x < o[2]; x++) {
        const vals: number[] = [];
        for (let dz = 0; dz < 2; dz++)
          for (let dy = 0; dy < 2; dy++)
            for (let dx = 0; dx < 2; dx++) {
              const Z = 2 * z + dz;
              const Y = 2 * y + dy;
              const X = 2 * x + dx;
              if (Z < s[0] && Y < s[1] && X < s[2]) vals.push(v[(Z * s[1] + Y) * s[2] + X]);
            }
        let r: number;
        if (method === 'mean') {
          r = vals.reduce((a, b) => a + b, 0) / vals.length;
          if (round) r = Math.round(r);
        } else if (method === 'max') r = Math.max(...vals);
        else {
          const counts = new Map<number, number>();
          for (const x of vals) counts.set(x, (counts.get(x) ?? 0) + 1);
          r = [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
        }
        out[(z * o[1] + y) * o[2] + x] = r;
      }
  return { data: out, shape: o };
}

function randomVolume(dtype: Dtype, n: number, max: number, seed: number) {
  const rng = makeRng(seed);
  const a = allocate(dtype, n);
  for (let i = 0; i < n; i++) a[i] = rng.int(max);
  return a;
}

async function build(name: string, dtype: Dtype, shape: number[], chunks: number[], max: number, zarrFormat: 2 | 3) {
  const path = join(dir, name);
  const img = await createOmeZarr(path, { shape, chunks, dtype, voxelSize: [2, 3, 4], levels: 1, zarrFormat, compressor: zarrFormat === 2 ? 'blosc-lz4' : 'gzip' });
  const data = randomVolume(dtype, shape[0] * shape[1] * shape[2], max, shape[2] * 7 + max);
  // Written in two unaligned slabs so level 0 itself goes through partial-chunk merges.
  const cut = 3;
  await img.levels[0].write({ offset: [0, 0, 0], shape: [cut, shape[1], shape[2]] }, data.subarray(0, cut * shape[1] * shape[2]));
  await img.levels[0].write({ offset: [cut, 0, 0], shape: [shape[0] - cut, shape[1], shape[2]] }, data.subarray(cut * shape[1] * shape[2]));
  return { path, img, data: Float64Array.from(data) };
}

describe('buildPyramid', () => {
  for (const [dtype, max, zarrFormat] of [
    ['uint8', 256, 2],
    ['uint16', 65536, 3],
  ] as const) {
    it(`mean pyramid of ${dtype} (v${zarrFormat}, odd unaligned sizes) equals a float64 host downsample per level`, async () => {
      const shape = [11, 13, 9];
      const { path, data } = await build(`mean-${dtype}.zarr`, dtype, shape, [4, 5, 3], max, zarrFormat);
      const res = await buildPyramid(path, { levels: 4, method: 'mean' });
      expect(res.shapes).toEqual([[11, 13, 9], [6, 7, 5], [3, 4, 3], [2, 2, 2]]);
      let ref = { data, shape };
      for (let l = 1; l < 4; l++) {
        ref = hostDownsample(ref.data, ref.shape, 'mean', true);
        const vol = await openVolume(path, { level: l });
        expect(vol.shape).toEqual(ref.shape);
        expect(vol.voxelSize).toEqual([2 * 2 ** l, 3 * 2 ** l, 4 * 2 ** l]);
        const got = await vol.read({ offset: [0, 0, 0], shape: ref.shape });
        expect(Array.from(got.data)).toEqual(Array.from(ref.data));
        // The reference must itself differ between levels for the check to mean something.
        expect(new Set(Array.from(ref.data)).size).toBeGreaterThan(1);
      }
    });
  }

  it('max pyramid matches the host reference and refills existing empty levels', async () => {
    const shape = [7, 6, 5];
    const path = join(dir, 'max.zarr');
    const img = await createOmeZarr(path, { shape, chunks: [4, 4, 4], dtype: 'uint8', levels: 3 });
    const data = randomVolume('uint8', 7 * 6 * 5, 256, 5);
    await img.levels[0].write({ offset: [0, 0, 0], shape }, data);
    const res = await buildPyramid(img.group, { method: 'max' });
    expect(res.shapes.length).toBe(3);
    let ref = { data: Float64Array.from(data), shape };
    for (let l = 1; l < 3; l++) {
      ref = hostDownsample(ref.data, ref.shape, 'max', false);
      const got = await (await openVolume(path, { level: l })).read({ offset: [0, 0, 0], shape: ref.shape });
      expect(Array.from(got.data)).toEqual(Array.from(ref.data));
    }
  });

  it('label pyramids (mode by default) hold only original label values and match the host mode', async () => {
    const shape = [9, 10, 7];
    const path = join(dir, 'img-for-labels.zarr');
    await createOmeZarr(path, { shape, chunks: [4, 4, 4], dtype: 'uint8' });
    const lab = await createOmeLabel(path, 'ink', { dtype: 'uint16' });
    // Sparse labels 0, 7, 300, 4000: a mean would produce values in between.
    const values = [0, 7, 300, 4000];
    const rng = makeRng(11);
    const data = allocate('uint16', product(shape));
    for (let i = 0; i < data.length; i++) data[i] = values[rng.int(4)];
    await lab.levels[0].write({ offset: [0, 0, 0], shape }, data);
    await expect(buildPyramid(lab.group, { method: 'mean' })).rejects.toBeInstanceOf(ScrollIoOptionError);
    const res = await buildPyramid(lab.group, { levels: 3 });
    expect(res.method).toBe('mode');
    let ref = { data: Float64Array.from(data), shape };
    for (let l = 1; l < 3; l++) {
      ref = hostDownsample(ref.data, ref.shape, 'mode', false);
      const got = await (await openVolume(lab.group.path, { level: l })).read({ offset: [0, 0, 0], shape: ref.shape });
      expect(Array.from(got.data)).toEqual(Array.from(ref.data));
      for (const v of got.data) expect(values).toContain(v);
    }
  });

  it.each([false, true])('streams: every source chunk is loaded once per level, whatever the volume holds (compiled reader %s)', async (nativeReader) => {
    const shape = [16, 16, 16];
    const { path } = await build(`stream-${nativeReader}.zarr`, 'uint8', shape, [4, 4, 4], 256, 2);
    await configureDecoding({ nativeReader });
    try {
      // A cache with no budget still de-duplicates concurrent zarrita loads, and its misses count
      // them; the compiled reader counts the chunks it reads.
      const cache = new ChunkCache(0);
      const before = decodingStats().compiled;
      const res = await buildPyramid(path, { levels: 3, method: 'mean', cache });
      // Level 0 has 4^3 chunks, level 1 has 2^3: each is read exactly once to build the next level.
      expect(nativeReader ? decodingStats().compiled - before : cache.stats().misses).toBe(64 + 8);
      expect(res.chunksWritten).toEqual([8, 1]);
    } finally {
      await configureDecoding();
    }
  });

  it('writes v2 metadata and chunks that zarr-python reads back exactly at every level', async (ctx) => {
    const probe = (() => {
      try {
        execFileSync('/usr/bin/python3', ['-c', 'import zarr'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    })();
    if (!probe) ctx.skip();
    const shape = [9, 7, 11];
    const { path, data } = await build('zp.zarr', 'uint16', shape, [4, 3, 5], 65536, 2);
    await buildPyramid(path, { levels: 3 });
    const attrs = JSON.parse(await readFile(join(path, '.zattrs'), 'utf8'));
    expect(attrs.multiscales[0].datasets.map((d: { path: string }) => d.path)).toEqual(['0', '1', '2']);
    const script = [
      'import sys, json, zarr, numpy as np',
      'g = zarr.open_group(sys.argv[1], mode="r")',
      'print(json.dumps([g[d["path"]][...].astype("f8").ravel().tolist() for d in g.attrs["multiscales"][0]["datasets"]]))',
    ].join('\n');
    const out = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script, path], { encoding: 'utf8', maxBuffer: 1 << 26 })) as number[][];
    expect(out.length).toBe(3);
    let ref = { data, shape };
    expect(out[0]).toEqual(Array.from(ref.data));
    for (let l = 1; l < 3; l++) {
      ref = hostDownsample(ref.data, ref.shape, 'mean', true);
      expect(out[l]).toEqual(Array.from(ref.data));
    }
  });

  it('reduceBlocks: the generic n-D path (a channel axis kept at factor 1) equals the host reference per channel', () => {
    const s = [5, 7, 3];
    const per = s[0] * s[1] * s[2];
    const a = randomVolume('uint16', 2 * per, 1000, 3);
    for (const method of ['mean', 'max', 'mode'] as const) {
      const got = reduceBlocks(a, [2, ...s], [2, 3, 4, 2], [1, 2, 2, 2], method, { dtype: 'uint16' });
      for (let c = 0; c < 2; c++) {
        const ref = hostDownsample(Float64Array.from(a.subarray(c * per, (c + 1) * per)), s, method, true);
        expect(Array.from(got.subarray(c * 24, (c + 1) * 24))).toEqual(Array.from(ref.data));
        // The 3-D fast path agrees with the generic one.
        const fast = reduceBlocks(a.subarray(c * per, (c + 1) * per), s, ref.shape, [2, 2, 2], method, { dtype: 'uint16' });
        expect(Array.from(fast)).toEqual(Array.from(ref.data));
      }
    }
  });

  it('rejects unknown options and bad values naming the field', async () => {
    await expect(buildPyramid(join(dir, 'mean-uint8.zarr'), { levls: 2 } as never)).rejects.toMatchObject({ field: 'levls' });
    await expect(buildPyramid(join(dir, 'mean-uint8.zarr'), { method: 'median' as never })).rejects.toMatchObject({ field: 'method' });
    await expect(buildPyramid(join(dir, 'mean-uint8.zarr'), { levels: 0 })).rejects.toMatchObject({ field: 'levels' });
  });
});

/** Seeded test generator (mulberry32): integers in [0, n). */
function makeRng(seed: number) {
  let a = seed >>> 0;
  return {
    int(n: number) {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
    },
  };
}

function product(s: number[]) {
  return s.reduce((a, b) => a * b, 1);
}
