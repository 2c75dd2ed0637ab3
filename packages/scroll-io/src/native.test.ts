/**
 * The compiled chunk reader (native/reader.c) against the zarrita path and against the array that was
 * written: every codec it reads, several dtypes, unaligned, partly-outside and whole-chunk regions,
 * absent chunks with a fill value, the chunk cache, recycled output memory, and argument checks that
 * keep a wrong call from touching memory outside its buffers.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkCache } from './cache.js';
import { configureDecoding, decodingStats } from './codecs.js';
import { allocate, type Dtype, type VolumeArray } from './dtype.js';
import type { Compressor } from './metadata.js';
import { NATIVE_CODEC, NATIVE_READER_FILE, nativeReaderBinding, nativeReaderLoadError } from './native.js';
import { openVolume } from './ome.js';
import type { Region } from './region.js';
import { createVolume } from './volume.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-native-'));
});
afterAll(async () => {
  await configureDecoding();
  await rm(dir, { recursive: true, force: true });
});

/** A value per voxel that differs between neighbours, for every dtype. */
function valueAt(dtype: Dtype, z: number, y: number, x: number): number {
  const v = z * 131 + y * 17 + x * 3 + ((z * x) % 11);
  if (dtype === 'float32') return v / 8 - 40.25;
  if (dtype === 'uint16') return (v * 37) % 65536;
  return v % 256;
}

function filled(dtype: Dtype, shape: number[]): VolumeArray {
  const a = allocate(dtype, shape[0] * shape[1] * shape[2]);
  for (let z = 0; z < shape[0]; z++) for (let y = 0; y < shape[1]; y++) for (let x = 0; x < shape[2]; x++) a[(z * shape[1] + y) * shape[2] + x] = valueAt(dtype, z, y, x);
  return a;
}

/** The expected voxels of `region`: written values inside `written`, else `fill`. */
function expected(dtype: Dtype, shape: number[], written: (z: number, y: number, x: number) => boolean, fill: number, r: Region): VolumeArray {
  const out = allocate(dtype, r.shape[0] * r.shape[1] * r.shape[2]);
  for (let z = 0; z < r.shape[0]; z++)
    for (let y = 0; y < r.shape[1]; y++)
      for (let x = 0; x < r.shape[2]; x++) {
        const Z = z + r.offset[0], Y = y + r.offset[1], X = x + r.offset[2];
        const inside = Z >= 0 && Y >= 0 && X >= 0 && Z < shape[0] && Y < shape[1] && X < shape[2];
        out[(z * r.shape[1] + y) * r.shape[2] + x] = inside && written(Z, Y, X) ? valueAt(dtype, Z, Y, X) : fill;
      }
  return out;
}

function sameBytes(a: VolumeArray, b: VolumeArray): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

async function readWith(nativeReader: boolean, path: string, region: Region, cache = new ChunkCache(0)): Promise<VolumeArray> {
  await configureDecoding({ nativeReader });
  try {
    return (await (await openVolume(path, { cache })).read(region)).data;
  } finally {
    await configureDecoding();
  }
}

const gc = (() => {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

describe('compiled chunk reader', () => {
  it('is built and finds the system codec libraries', () => {
    const b = nativeReaderBinding();
    expect(b, `build it with \`npm rebuild @goe/scroll-io\` (needs a C compiler): ${nativeReaderLoadError()}`).not.toBeNull();
    expect(b!.codecs()).toMatchObject({ blosc: true, zstd: true, bloscBlocks: true });
  });

  const shape = [40, 37, 45];
  const chunks = [16, 16, 32];
  const regions: Region[] = [
    { offset: [0, 0, 0], shape: [40, 37, 45] }, // whole array, edge chunks partial
    { offset: [3, 5, 7], shape: [20, 17, 30] }, // unaligned inside
    { offset: [-4, 30, 40], shape: [10, 12, 9] }, // partly outside
    { offset: [16, 0, 0], shape: [16, 16, 32] }, // exactly one chunk (decoded in place)
    { offset: [0, 0, 0], shape: [16, 37, 45] }, // whole-row slab
    { offset: [50, 0, 0], shape: [2, 2, 2] }, // wholly outside
  ];
  const cases: Array<[Compressor, Dtype, 2 | 3]> = [
    ['blosc-lz4', 'uint8', 2],
    ['blosc-zstd', 'uint16', 2],
    ['zstd', 'float32', 2],
    ['none', 'uint16', 2],
    ['blosc-lz4', 'float32', 3],
    ['zstd', 'uint8', 3],
    ['none', 'uint8', 3],
  ];

  it.each(cases)('%s %s v%s: same voxels as zarrita and as written, for every kind of region', async (compressor, dtype, zarrFormat) => {
    const path = join(dir, `${compressor}-${dtype}-v${zarrFormat}`);
    const v = await createVolume(path, { shape, chunks, dtype, compressor, zarrFormat });
    await v.write({ offset: [0, 0, 0], shape }, filled(dtype, shape));
    const before = decodingStats().compiled;
    for (const region of regions) {
      const want = expected(dtype, shape, () => true, 0, region);
      const compiled = await readWith(true, path, region);
      const zarrita = await readWith(false, path, region);
      expect(sameBytes(compiled, want), `${JSON.stringify(region)} compiled`).toBe(true);
      expect(sameBytes(zarrita, want), `${JSON.stringify(region)} zarrita`).toBe(true);
      // And through a cache that keeps chunks: the first read fills it, the second copies from it.
      const cache = new ChunkCache(64 << 20);
      expect(sameBytes(await readWith(true, path, region, cache), want)).toBe(true);
      expect(sameBytes(await readWith(true, path, region, cache), want)).toBe(true);
    }
    expect(decodingStats().compiled - before).toBeGreaterThan(0);
  });

  it('reads absent chunks as the fill value, also into recycled output memory', async () => {
    const big = [64, 128, 256];
    const path = join(dir, 'sparse');
    const v = await createVolume(path, { shape: big, chunks: [32, 64, 64], dtype: 'uint8', compressor: 'blosc-lz4', fillValue: 7 });
    // Only the first z slab of chunks exists.
    await v.write({ offset: [0, 0, 0], shape: [32, 128, 256] }, (filled('uint8', big) as Uint8Array).subarray(0, 32 * 128 * 256));
    const written = (z: number) => z < 32;
    const region = { offset: [-3, 0, 0], shape: [64, 128, 256] }; // 2 MiB: a recycled huge-page output
    const b = nativeReaderBinding()!;
    // Fill the output pool with memory holding other data, so that a missed fill would show.
    for (let i = 0; i < 4; i++) new Uint8Array(b.allocOutput(64 * 128 * 256, true)).fill(0xee);
    gc();
    await new Promise((r) => setTimeout(r, 10));
    const reusedBefore = b.poolStats().reused;
    for (let rep = 0; rep < 3; rep++) {
      const got = await readWith(true, path, region);
      expect(sameBytes(got, expected('uint8', big, written, 7, region)), `rep ${rep}`).toBe(true);
      const inside = await readWith(true, path, { offset: [0, 0, 0], shape: big });
      expect(sameBytes(inside, expected('uint8', big, written, 7, { offset: [0, 0, 0], shape: big }))).toBe(true);
    }
    expect(b.poolStats().reused).toBeGreaterThan(reusedBefore);
  });

  it('recycles dropped outputs within the pool limit', async () => {
    const b = nativeReaderBinding()!;
    b.setPoolLimit(8 << 20);
    try {
      for (let i = 0; i < 6; i++) new Uint8Array(b.allocOutput(3 << 20, false)).fill(i + 1);
      gc();
      // Finalizers of external buffers run after the collection, from the event loop: wait for them
      // (a fixed 20 ms was not always enough on a loaded machine).
      for (let waited = 0; b.poolStats().blocks === 0 && waited < 2000; waited += 10) await new Promise((r) => setTimeout(r, 10));
      const s = b.poolStats();
      // 3 MiB outputs are 4 MiB mappings: at most two fit under 8 MiB.
      expect(s.bytes).toBeLessThanOrEqual(8 << 20);
      expect(s.blocks).toBeGreaterThan(0);
      const again = new Uint8Array(b.allocOutput(3 << 20, true));
      expect(b.poolStats().reused).toBe(s.reused + 1);
      // `zero` clears recycled memory.
      expect(again.every((x) => x === 0)).toBe(true);
    } finally {
      b.setPoolLimit(256 << 20);
    }
  });

  it('lets V8 reclaim dropped outputs with young-generation collections, not full ones', () => {
    // In a fresh process, so that no other test's heap or external memory sets off collections:
    // 200 outputs of 2 MiB, each dropped at once, as a loop of single-chunk reads drops them.
    const script = `
      import { createRequire } from 'node:module';
      import { PerformanceObserver, constants } from 'node:perf_hooks';
      const b = createRequire(import.meta.url)(${JSON.stringify(NATIVE_READER_FILE)});
      const kinds = [];
      new PerformanceObserver((l) => { for (const e of l.getEntries()) kinds.push(e.detail.kind); }).observe({ entryTypes: ['gc'] });
      for (let i = 0; i < 200; i++) {
        new Uint8Array(b.allocOutput(2 << 20, false))[0] = i;
        await new Promise((r) => setImmediate(r));
      }
      await new Promise((r) => setTimeout(r, 20));
      const count = (k) => kinds.filter((x) => x === k).length;
      console.log(JSON.stringify({ minor: count(constants.NODE_PERFORMANCE_GC_MINOR), major: count(constants.NODE_PERFORMANCE_GC_MAJOR), mapped: b.poolStats().mapped }));
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    const got = JSON.parse(run.stdout) as { minor: number; major: number; mapped: number };
    // Without the one-byte V8 allocation after each output, V8 never considers a scavenge for these
    // buffers and reclaims them only by full collections (about one per 16 outputs).
    expect(got.minor).toBeGreaterThan(0);
    expect(got.major).toBe(0);
    // Reclaimed along the way: far fewer fresh mappings than outputs.
    expect(got.mapped).toBeLessThan(100);
  });

  it('refuses arguments that would reach outside its buffers', () => {
    const b = nativeReaderBinding()!;
    const out = new Uint8Array(64);
    const call = (extent: number[], dst: number[], outShape = [4, 4, 4], keep: Uint8Array | null = null) =>
      b.readChunk('/nonexistent', NATIVE_CODEC.raw, 1, 64, 1, [4, 4, 4], out, outShape, [0, 0, 0], dst, extent, keep, false, false);
    expect(() => call([4, 4, 5], [0, 0, 0])).toThrow(/extent/);
    expect(() => call([4, 4, 4], [0, 0, 1])).toThrow(/extent/);
    expect(() => call([4, 4, 4], [0, 0, 0], [4, 4, 5])).toThrow(/out/);
    expect(() => call([4, 4, 4], [0, 0, 0], [4, 4, 4], new Uint8Array(63))).toThrow(/keep/);
    expect(() => b.readChunk('/x', 7, 1, 64, 1, [4, 4, 4], out, [4, 4, 4], [0, 0, 0], [0, 0, 0], [4, 4, 4], null, false, false)).toThrow(/codec/);
    expect(() => b.readChunk('/x', 0, 1, 65, 1, [4, 4, 4], out, [4, 4, 4], [0, 0, 0], [0, 0, 0], [4, 4, 4], null, false, false)).toThrow(/chunkBytes/);
  });

  it('reports a missing file as absent and an unreadable one as an error', async () => {
    const b = nativeReaderBinding()!;
    const out = new Uint8Array(64);
    await expect(b.readChunk(join(dir, 'nope'), 0, 1, 64, 1, [4, 4, 4], out, [4, 4, 4], [0, 0, 0], [0, 0, 0], [4, 4, 4], null, false, false)).resolves.toBe(1);
    await expect(b.readChunk(dir, 0, 1, 64, 1, [4, 4, 4], out, [4, 4, 4], [0, 0, 0], [0, 0, 0], [4, 4, 4], null, false, false)).rejects.toMatchObject({ corrupt: false });
  });
});

describe('lone chunk reads run by the event loop thread while it would otherwise sleep', () => {
  const shape = [64, 64, 128];
  const chunks = [32, 32, 64]; // 64 KiB chunks, 16 of them
  const coords = [...Array(16).keys()].map((i) => [i >> 3, (i >> 2) & 1, (i >> 1) & 1].map((c, d) => c * chunks[d]));
  const loopJobs = () => nativeReaderBinding()!.codecs().loopJobs;

  async function written(compressor: Compressor, name: string, fillValue = 0) {
    const path = join(dir, `loop-${name}`);
    const v = await createVolume(path, { shape, chunks, dtype: 'uint16', compressor, fillValue });
    await v.write({ offset: [0, 0, 0], shape }, filled('uint16', shape));
    return path;
  }

  /** Every chunk once, one read at a time, compared with what was written. */
  async function readEach(path: string): Promise<void> {
    const vol = await openVolume(path, { cache: new ChunkCache(0) });
    for (const offset of coords) {
      const region = { offset, shape: chunks };
      const got = (await vol.read(region)).data;
      expect(sameBytes(got, expected('uint16', shape, () => true, 0, region)), JSON.stringify(offset)).toBe(true);
    }
  }

  it.each([['zstd'], ['none']] as Array<[Compressor]>)('%s: an awaited lone read is run by the idle loop, with the same voxels', async (compressor) => {
    const path = await written(compressor, compressor);
    const before = loopJobs();
    for (let rep = 0; rep < 4; rep++) await readEach(path);
    // A pool thread can still win the race for a job, but not for most of 64.
    expect(loopJobs() - before).toBeGreaterThan(16);
  });

  it('never while JavaScript has work queued (immediates), nor for blosc or multi-chunk reads', async () => {
    const zstdPath = await written('zstd', 'busy');
    const bloscPath = await written('blosc-zstd', 'blosc');
    let spinning = true;
    const spin = () => {
      if (spinning) setImmediate(spin);
    };
    const before = loopJobs();
    setImmediate(spin);
    try {
      await readEach(zstdPath);
    } finally {
      spinning = false;
    }
    await readEach(bloscPath);
    const whole = await openVolume(zstdPath, { cache: new ChunkCache(0) });
    for (let rep = 0; rep < 8; rep++) {
      const got = (await whole.read({ offset: [0, 0, 0], shape })).data;
      expect(sameBytes(got, filled('uint16', shape))).toBe(true);
    }
    expect(loopJobs()).toBe(before);
  });

  it('reads an absent chunk as the fill value and a corrupt one as a typed error', async () => {
    const path = await written('zstd', 'damaged', 9);
    const { rm: remove, writeFile } = await import('node:fs/promises');
    await remove(join(path, '0', '0', '1'));
    await writeFile(join(path, '1', '1', '1'), Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]));
    const vol = await openVolume(path, { cache: new ChunkCache(0) });
    const b = nativeReaderBinding()!;
    // Recycled output memory holding other data, so that a missed fill would show.
    for (let i = 0; i < 4; i++) new Uint8Array(b.allocOutput(chunks[0] * chunks[1] * chunks[2] * 2, true)).fill(0xee);
    gc();
    await new Promise((r) => setTimeout(r, 10));
    const before = loopJobs();
    for (let rep = 0; rep < 10; rep++) {
      const absent = (await vol.read({ offset: [0, 0, 64], shape: chunks })).data;
      expect(absent.every((x) => x === 9)).toBe(true);
      await expect(vol.read({ offset: [32, 32, 64], shape: chunks })).rejects.toThrow(/1\/1\/1.*cannot be decoded/);
    }
    expect(loopJobs() - before).toBeGreaterThan(0);
  });

  it('in a worker thread too, which still exits on its own and can be terminated mid-read', async () => {
    const path = await written('zstd', 'worker');
    // The worker reads chunk files through the addon directly (no TypeScript loader there).
    const script = `
      const { parentPort, workerData } = require('node:worker_threads');
      const b = require(workerData.addon);
      (async () => {
        const before = b.codecs().loopJobs;
        let sum = 0;
        for (let rep = 0; rep < workerData.reps; rep++) {
          for (const key of workerData.keys) {
            const out = new Uint16Array(workerData.n);
            await b.readChunk(workerData.path + '/' + key, 2, 2, workerData.n * 2, 2, workerData.chunks, out, workerData.chunks, [0, 0, 0], [0, 0, 0], workerData.chunks, null, true, true);
            for (let i = 0; i < out.length; i += 97) sum += out[i];
          }
        }
        parentPort.postMessage({ sum, loopJobs: b.codecs().loopJobs - before });
      })();
    `;
    const keys = coords.map((o) => o.map((x, d) => x / chunks[d]).join('/'));
    const n = chunks[0] * chunks[1] * chunks[2];
    const data = { addon: NATIVE_READER_FILE, path, keys, n, chunks };
    const run = (reps: number) => new Worker(script, { eval: true, workerData: { ...data, reps } });

    // Runs to the end and exits by itself: the loop's handle must not keep the worker alive.
    const w = run(2);
    const [msg, code] = await Promise.all([new Promise<{ sum: number; loopJobs: number }>((r) => w.once('message', r)), new Promise<number>((r) => w.once('exit', r))]);
    expect(code).toBe(0);
    let want = 0;
    for (const offset of coords) {
      const chunk = expected('uint16', shape, () => true, 0, { offset, shape: chunks });
      for (let i = 0; i < chunk.length; i += 97) want += chunk[i];
    }
    expect(msg.sum).toBe(2 * want);
    expect(msg.loopJobs).toBeGreaterThan(0);

    // A worker's own read buffers go with it. Pool threads keep theirs: whole-array reads here give
    // every pool thread file and decode buffers first. Ten workers, each reading through its own loop
    // too, then leave no more mapped.
    const buffers = () => nativeReaderBinding()!.poolStats().threadBuffers;
    const finish = (x: Worker) => new Promise<number>((r) => x.once('exit', r));
    const vol = await openVolume(path, { cache: new ChunkCache(0) });
    for (let i = 0; i < 8; i++) expect(sameBytes((await vol.read({ offset: [0, 0, 0], shape })).data, filled('uint16', shape))).toBe(true);
    const held = buffers();
    for (let i = 0; i < 10; i++) expect(await finish(run(1))).toBe(0);
    expect(buffers()).toBe(held);

    // Terminated while reads are queued and running: the worker goes, this thread reads on.
    const t = run(1000);
    await new Promise((r) => setTimeout(r, 30));
    expect(await t.terminate()).toBe(1);
    await readEach(path);
  });
});
