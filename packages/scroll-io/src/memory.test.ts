/**
 * Memory stays bounded by the chunk cache budget plus the prefetch queue, whatever the volume's size:
 * a 128 MiB volume is streamed whole through the tiler, and sampled at random, with a 4 MiB cache.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkCache } from './cache.js';
import { configureDecoding } from './codecs.js';
import { nativeReaderBinding } from './native.js';
import { openVolume } from './ome.js';
import { PatchSampler } from './sampler.js';
import { Tiler } from './tiler.js';
import { createVolume } from './volume.js';

// Live memory is measured after a full collection, so garbage awaiting the collector (which V8 frees
// on its own schedule) does not count: what is measured is what the readers retain.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const N = 512; // 512^3 uint8 = 128 MiB decoded
const C = 64;
const MiB = 1024 * 1024;
const value = (z: number, y: number, x: number) => (z * 7 + y * 3 + x) & 255;

let dir: string;
let path: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-mem-'));
  path = join(dir, 'big.zarr');
  // Written chunk by chunk, so writing is bounded too (one chunk in memory at a time).
  const v = await createVolume(path, { shape: [N, N, N], chunks: [C, C, C], dtype: 'uint8', compressor: 'blosc-lz4', cache: new ChunkCache(0) });
  const buf = new Uint8Array(C * C * C);
  for (let cz = 0; cz < N; cz += C)
    for (let cy = 0; cy < N; cy += C)
      for (let cx = 0; cx < N; cx += C) {
        let i = 0;
        for (let z = 0; z < C; z++)
          for (let y = 0; y < C; y++) {
            const row = ((cz + z) * 7 + (cy + y) * 3 + cx) & 255;
            for (let x = 0; x < C; x++) buf[i++] = (row + x) & 255;
          }
        await v.write({ offset: [cz, cy, cx], shape: [C, C, C] }, buf);
      }
}, 60_000);
afterAll(() => rm(dir, { recursive: true, force: true }));

/**
 * Samples live memory (after gc): peak growth of typed-array memory over the baseline taken now, and
 * of the resident set over the baseline taken by `warm()` (once decoders, worker threads and allocator
 * arenas have reached their working size, which does not depend on the volume's size).
 */
function memoryProbe() {
  gc();
  // Typed-array memory: Node's ArrayBuffers plus the compiled reader's output memory (held by
  // JavaScript buffers or pooled for reuse), which Node's count leaves out.
  const native = () => {
    const s = nativeReaderBinding()?.poolStats();
    return s ? s.live + s.bytes : 0;
  };
  const base = { ...process.memoryUsage(), native: native() };
  let peakBuffers = 0;
  let peakRss = 0;
  return {
    warm() {
      gc();
      base.rss = process.memoryUsage().rss;
      peakRss = 0;
    },
    async sample() {
      // Two collections around a turn of the event loop: V8 sweeps dead ArrayBuffers concurrently
      // and native finalizers run from the loop, so one collection alone can still count garbage.
      gc();
      await new Promise((r) => setImmediate(r));
      gc();
      const m = process.memoryUsage();
      peakBuffers = Math.max(peakBuffers, m.arrayBuffers + native() - base.arrayBuffers - base.native);
      peakRss = Math.max(peakRss, m.rss - base.rss);
    },
    get peakBuffers() {
      return peakBuffers;
    },
    get peakRss() {
      return peakRss;
    },
  };
}

describe('memory bound', () => {
  it('streams a 128 MiB volume through the tiler and the sampler with a 4 MiB cache: live memory stays a few MiB', async () => {
    const budget = 4 * MiB;
    // The bound is the cache budget + the prefetch queues + the compiled reader's output pool.
    await configureDecoding({ outputPoolBytes: 4 * MiB });
    const cache = new ChunkCache(budget);
    const vol = await openVolume(path, { cache });
    const volumeBytes = N * N * N;
    const probe = memoryProbe();

    // Whole-volume pass, tiles of 64x128x128 (1 MiB) with 8 voxels of overlap, 2 in flight.
    const tiler = new Tiler({ volume: vol, tile: [C, 128, 128], overlap: [0, 8, 8], prefetch: 2 });
    let tiles = 0;
    let checksum = 0;
    let expectedSum = 0;
    for await (const t of tiler) {
      // Spot-check each tile against the formula (first voxel and last voxel).
      const [oz, oy, ox] = t.origin;
      expect(t.image[0]).toBe(value(oz, oy, ox));
      expect(t.image[t.image.length - 1]).toBe(value(oz + C - 1, oy + 127, ox + 127));
      checksum += t.image[(32 * 128 + 64) * 128 + 64];
      expectedSum += value(oz + 32, oy + 64, ox + 64);
      if (++tiles % 8 === 0) await probe.sample();
      if (tiles === Math.floor(tiler.count / 4)) probe.warm();
      expect(cache.stats().bytes).toBeLessThanOrEqual(budget);
    }
    expect(tiles).toBe(tiler.count);
    expect(checksum).toBe(expectedSum);
    const covered = tiles * C * 128 * 128;
    expect(covered).toBeGreaterThan(volumeBytes); // every voxel was read

    // Random 32^3 patches, 3 in flight.
    const sampler = new PatchSampler({ volume: vol, patchShape: [32, 32, 32], seed: 11, prefetch: 3 });
    for (let i = 0; i < 300; i++) {
      const p = await sampler.next();
      expect(p.image[0]).toBe(value(p.origin[0], p.origin[1], p.origin[2]));
      if (i % 20 === 0) await probe.sample();
    }
    await sampler.close();
    await probe.sample();

    const stats = cache.stats();
    expect(stats.evictions).toBeGreaterThan(400); // the volume went through the cache many times over
    // Live typed-array memory: cache budget (4 MiB) + tiles in flight and in hand (3 MiB) + decode
    // buffers; 16 MiB is 1/8 of the volume. After the first quarter of the tiles, reading the other
    // ~100 MiB and the patches grows the resident set by far less than the data read.
    await configureDecoding();
    expect(probe.peakBuffers).toBeLessThan(16 * MiB);
    expect(probe.peakRss).toBeLessThan(32 * MiB);
    console.log(
      `memory bound: volume ${volumeBytes / MiB} MiB, cache budget ${budget / MiB} MiB, ${tiles} tiles + 300 patches; ` +
        `peak live arrayBuffers +${(probe.peakBuffers / MiB).toFixed(1)} MiB, peak rss after warm-up +${(probe.peakRss / MiB).toFixed(1)} MiB`,
    );
  }, 60_000);
});
