/**
 * Writing the phantom streams: the memory it holds is a few chunks, whatever the volume's size. Two
 * volumes, the second 8 times the first, are written in this thread (so that everything they hold is
 * in this isolate) and live memory is sampled after every few chunks.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvePhantomConfig } from './config.js';
import { writePhantom } from './write.js';

// Live memory is measured after a full collection, so garbage awaiting the collector does not count.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;
/** Bytes per voxel of everything written: image (uint8), ink, papyrus, wrap (uint16), fibre and normal (3 x float32). */
const BYTES_PER_VOXEL = 1 + 1 + 1 + 2 + 12 + 12;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'phantom-mem-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Peak live memory (JS heap + typed arrays, after gc) held while writing `shape`, over the memory before. */
async function peakLive(name: string, shape: [number, number, number]): Promise<number> {
  const live = () => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const config = resolvePhantomConfig({ preset: 'easy', shape, seed: 3 });
  const base = live();
  let peak = 0;
  await writePhantom(join(dir, name), config, {
    chunks: [16, 32, 32],
    threads: 0,
    levels: 2,
    onProgress: (p) => {
      if (p.chunksDone % 4 === 0) peak = Math.max(peak, live() - base);
    },
  });
  return Math.max(peak, live() - base);
}

describe('writePhantom memory', () => {
  it('holds no more live memory for a volume 8 times larger', async () => {
    await peakLive('warm', [16, 32, 32]);
    const small = await peakLive('small', [32, 64, 64]);
    const bigShape: [number, number, number] = [64, 128, 128];
    const big = await peakLive('big', bigShape);
    const bigBytes = bigShape.reduce((a, b) => a * b, 1) * BYTES_PER_VOXEL;
    console.log(`phantom write memory: small +${(small / MiB).toFixed(2)} MiB, 8x larger +${(big / MiB).toFixed(2)} MiB (its data: ${(bigBytes / MiB).toFixed(0)} MiB)`);
    // Proportional growth would be +7x small; the larger volume's data would be ~29 MiB.
    expect(big).toBeLessThan(small + 2 * MiB);
    expect(big).toBeLessThan(bigBytes / 8);
  });
});
