/**
 * Read throughput of @goe/scroll-io against zarr-python on the same stores, in one run.
 *
 *   npx nx run scroll-io:bench [-- --shape 256,512,512 --chunk 128 --reps 3 --threads N --dir DIR]
 *
 * zarr-python (bench/zarr_bench.py, /usr/bin/python3) writes a CT-like uint8 volume as blosc-lz4,
 * blosc-zstd, zstd and raw stores; then both readers read the same list of regions, one read at a time
 * and without a chunk cache (zarr-python has none), and the best of `reps` passes is reported as MB/s
 * of voxels returned. A checksum of every row shows both read the same voxels.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { ChunkCache } from '../src/cache.js';
import { configureDecoding, decodingConfig, decodingStats } from '../src/codecs.js';
import { openVolume } from '../src/ome.js';
import type { Region } from '../src/region.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const PYTHON = '/usr/bin/python3';
const STORES = ['blosc-lz4', 'blosc-zstd', 'zstd', 'raw'];

interface Args {
  shape: number[];
  chunk: number;
  reps: number;
  threads?: number;
  dir: string;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { shape: [256, 512, 512], chunk: 128, reps: 3, dir: join(tmpdir(), 'goe-scroll-io-bench') };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--shape') a.shape = v.split(',').map(Number);
    else if (k === '--chunk') a.chunk = Number(v);
    else if (k === '--reps') a.reps = Number(v);
    else if (k === '--threads') a.threads = Number(v);
    else if (k === '--dir') a.dir = v;
    else throw new Error(`unknown option ${k} (expected --shape, --chunk, --reps, --threads, --dir)`);
  }
  if (a.shape.length !== 3 || a.shape.some((s) => !Number.isInteger(s) || s < 64)) throw new Error('--shape: three integers >= 64');
  return a;
}

/** A small seeded generator (LCG), so both readers get the same regions on every run. */
function rng(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.floor((s / 2 ** 32) * n);
  };
}

interface Row {
  name: string;
  label: string;
  regions: Array<[number[], number[]]>;
}

function plan(shape: number[], chunk: number): Row[] {
  const r = rng(12345);
  const random = (box: number[], count: number, aligned: boolean): Array<[number[], number[]]> =>
    Array.from({ length: count }, () => {
      const off = shape.map((s, i) => {
        if (aligned) return r(Math.floor(s / chunk)) * chunk;
        return r(s - box[i] + 1);
      });
      return [off, box.slice()];
    });
  return [
    { name: 'whole', label: 'whole array', regions: [[[0, 0, 0], shape.slice()]] },
    { name: 'chunks', label: `random ${chunk}^3 chunks (x16)`, regions: random([chunk, chunk, chunk], 16, true) },
    { name: 'r64', label: 'random unaligned 64^3 (x48)', regions: random([64, 64, 64], 48, false) },
    { name: 'r32x256', label: 'random unaligned 32x256x256 (x12)', regions: random([32, Math.min(256, shape[1]), Math.min(256, shape[2])], 12, false) },
  ];
}

function checksum(data: ArrayLike<number>, acc: number): number {
  let s = 0;
  for (let i = 0; i < data.length; i++) s += data[i];
  return (acc + s) % 2 ** 32;
}

interface Timing {
  seconds: number;
  checksum: number;
}

async function readOurs(dir: string, rows: Row[], reps: number): Promise<Record<string, Record<string, Timing>>> {
  const out: Record<string, Record<string, Timing>> = {};
  for (const store of STORES) {
    // No chunk cache: every read decodes, as zarr-python does.
    const vol = await openVolume(join(dir, store), { cache: new ChunkCache(0) });
    // Warm-up: starts the decode workers and JIT-compiles the read path.
    for (const [offset, shape] of rows[1].regions.slice(0, 4)) await vol.read({ offset, shape });
    out[store] = {};
    for (const row of rows) {
      let best = Infinity;
      let sum = 0;
      for (let rep = 0; rep < reps; rep++) {
        let dt = 0;
        sum = 0;
        for (const [offset, shape] of row.regions) {
          const region: Region = { offset, shape };
          const t0 = performance.now();
          const { data } = await vol.read(region);
          dt += performance.now() - t0;
          sum = checksum(data, sum);
        }
        best = Math.min(best, dt / 1000);
      }
      out[store][row.name] = { seconds: best, checksum: sum };
    }
  }
  return out;
}

function python(args: string[]): string {
  const res = spawnSync(PYTHON, [join(HERE, 'zarr_bench.py'), ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (res.status !== 0) throw new Error(`zarr_bench.py ${args[0]} failed (${res.status}): ${res.stderr}`);
  return res.stdout;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.threads !== undefined) await configureDecoding({ threads: args.threads });
  mkdirSync(args.dir, { recursive: true });
  const rows = plan(args.shape, args.chunk);
  console.log(`writing ${args.shape.join('x')} uint8, ${args.chunk}^3 chunks, with zarr-python into ${args.dir} ...`);
  python(['write', args.dir, ...args.shape.map(String), String(args.chunk)]);
  const planFile = join(args.dir, 'plan.json');
  writeFileSync(planFile, JSON.stringify({ stores: STORES, rows, reps: args.reps }));

  const ours = await readOurs(args.dir, rows, args.reps);
  const theirs = JSON.parse(python(['read', args.dir, planFile])) as Record<string, Record<string, Timing>>;

  const cfg = decodingConfig();
  console.log(`\n@goe/scroll-io (${cfg.threads} decode threads, native ${cfg.native}) vs zarr-python ${python(['version']).trim()}; best of ${args.reps}\n`);
  const header = ['store', 'read', 'ours MB/s', 'zarr-python MB/s', 'ratio', 'same voxels'];
  const lines: string[][] = [];
  let slowest = Infinity;
  for (const store of STORES) {
    for (const row of rows) {
      const bytes = row.regions.reduce((acc, [, s]) => acc + s[0] * s[1] * s[2], 0);
      const a = ours[store][row.name];
      const b = theirs[store][row.name];
      const ratio = b.seconds / a.seconds;
      slowest = Math.min(slowest, ratio);
      lines.push([store, row.label, (bytes / a.seconds / 1e6).toFixed(0), (bytes / b.seconds / 1e6).toFixed(0), ratio.toFixed(2), a.checksum === b.checksum ? 'yes' : 'NO']);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(fmt(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const l of lines) console.log(fmt(l));
  console.log(`\ndecoded chunks: ${JSON.stringify(decodingStats())}; slowest ratio ${slowest.toFixed(2)}`);
  if (lines.some((l) => l[5] !== 'yes')) {
    console.error('the two readers returned different voxels');
    process.exitCode = 1;
  }
}

await main();
