/**
 * Throughput and memory of the phantom writer, with one thread and with all of them.
 *
 *   npx nx run phantom:bench [-- --shape 128,512,512 --threads N --preset default --dir DIR]
 *
 * Writes the phantom (image and label pyramids, fibre and normal fields) into a temporary folder with
 * `threads: 1` (computed in the calling thread) and with `--threads` workers (default: every core),
 * and prints per run the seconds for level 0 and for the pyramids, level-0 voxels per second, the
 * speed-up over one thread, and the peak resident memory of the process next to the volume's size.
 * Worker threads share the process, so the resident set covers them; it is sampled every 20 ms by a
 * thread of its own, which keeps sampling while the calling thread computes a chunk.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { type PhantomPreset, resolvePhantomConfig } from '../src/config.js';
import { writePhantom } from '../src/write.js';

const MiB = 1024 * 1024;

function options() {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { shape: { type: 'string', default: '128,512,512' }, threads: { type: 'string' }, preset: { type: 'string', default: 'default' }, dir: { type: 'string' } },
  });
  const shape = values.shape.split(',').map(Number);
  if (shape.length !== 3 || shape.some((s) => !Number.isInteger(s) || s < 1)) throw new Error(`--shape: expected D,H,W, got '${values.shape}'`);
  const threads = values.threads === undefined ? availableParallelism() : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads: expected an integer >= 1, got '${values.threads}'`);
  return { shape: shape as [number, number, number], threads, preset: values.preset as PhantomPreset, dir: values.dir ?? tmpdir() };
}

/** Peak resident set (KiB) since the last reset, sampled every 20 ms on a thread of its own. */
function rssSampler() {
  const peak = new Int32Array(new SharedArrayBuffer(4));
  const code = [
    "const { workerData } = require('node:worker_threads');",
    'const peak = workerData;',
    'const sample = () => { const kib = Math.round(process.memoryUsage.rss() / 1024); if (kib > Atomics.load(peak, 0)) Atomics.store(peak, 0, kib); };',
    'sample();',
    'setInterval(sample, 20);',
  ].join('\n');
  const worker = new Worker(code, { eval: true, workerData: peak });
  return {
    reset: () => Atomics.store(peak, 0, Math.round(process.memoryUsage.rss() / 1024)),
    peakBytes: () => Atomics.load(peak, 0) * 1024,
    stop: () => worker.terminate(),
  };
}

async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) total += (await stat(join(e.parentPath, e.name))).size;
  }
  return total;
}

async function main() {
  const o = options();
  const config = resolvePhantomConfig({ preset: o.preset, shape: o.shape });
  const voxels = o.shape.reduce((a, b) => a * b, 1);
  // Level 0 of every array: image, ink, papyrus (1 byte), wrap (2), fibre and normal (3 x 4 each).
  const volumeBytes = voxels * ((config.dtype === 'uint16' ? 2 : 1) + 1 + 1 + 2 + 24);
  const sampler = rssSampler();
  const rows: string[][] = [];
  let oneThread = 0;
  console.log(`phantom bench: preset ${o.preset}, shape ${o.shape.join('x')} (${(voxels / 1e6).toFixed(1)} M voxels), chunks 64^3, ${availableParallelism()} cores, node ${process.version}`);
  try {
    for (const threads of [...new Set([1, o.threads])]) {
      const dir = await mkdtemp(join(o.dir, 'goe-phantom-bench-'));
      try {
        const startRss = process.memoryUsage.rss();
        sampler.reset();
        const t0 = performance.now();
        let tPyramids = NaN;
        await writePhantom(dir, config, {
          threads,
          onProgress: (p) => {
            if (p.stage === 'pyramids') tPyramids = performance.now();
          },
        });
        const t1 = performance.now();
        const level0 = ((Number.isNaN(tPyramids) ? t1 : tPyramids) - t0) / 1000;
        const rate = voxels / level0;
        if (threads === 1) oneThread = rate;
        const disk = await diskBytes(dir);
        rows.push([
          String(threads),
          level0.toFixed(1),
          Number.isNaN(tPyramids) ? '-' : ((t1 - tPyramids) / 1000).toFixed(1),
          (rate / 1e6).toFixed(2),
          `${(rate / oneThread).toFixed(2)}x`,
          (startRss / MiB).toFixed(0),
          (sampler.peakBytes() / MiB).toFixed(0),
          (volumeBytes / MiB).toFixed(0),
          (disk / MiB).toFixed(0),
        ]);
        console.log(`threads ${threads}: done in ${((t1 - t0) / 1000).toFixed(1)} s`);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await sampler.stop();
  }
  const head = ['threads', 'level 0 s', 'pyramids s', 'M voxels/s', 'speed-up', 'RSS before MiB', 'peak RSS MiB', 'volume MiB', 'on disk MiB'];
  console.log(`\n| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  console.log('\nvolume: level 0 of every array, uncompressed; voxels/s and speed-up are of level 0 (computing and writing chunks).');
}

await main();
