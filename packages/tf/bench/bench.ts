/**
 * `npx nx run tf:bench [-- --backends cpu,wasm,webgpu] [--quick] [--json FILE] [--no-torch]`
 *
 * Times the computations the models spend their time in (matmuls, conv3d forward + backward in each
 * variant conv3dFast has, the patch embedding, patchify, a pre-LN attention block) on every tensor
 * backend this machine has, runs the same workloads in PyTorch from this same run
 * (tools/bench_torch.py), and prints one table with GFLOP/s and our speed relative to PyTorch's, plus
 * the fastest variant per backend next to the one `conv3dFast`/`patchify3d` pick in `auto` mode.
 *
 * Timing: one warm-up run (shader compilation, XNNPACK weight packing, JIT), then repeats until
 * `--min-time` seconds have passed (at least one, at most `--max-reps`); the median is reported. Every
 * run reads all its results back with `await t.data()`, so asynchronous backends (WebGPU) have really
 * finished, and disposes everything (a leak fails the row).
 *
 * PyTorch peers: cpu and wasm run on one thread here (tfjs' wasm threads are off in Node, and the cpu
 * backend is plain JavaScript), so PyTorch is pinned to one thread for them (`--torch-threads`). WebGPU
 * on a software adapter (lavapipe) uses every core, so its peer is PyTorch on every core; on a GPU
 * adapter its peer is PyTorch on CUDA when available.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  availableBackends,
  isSoftwareAdapter,
  preferredConv3dMethod,
  preferredPatchMethod,
  probeBackend,
  tf,
  useBackend,
  type BackendName,
} from '@goe/tf';
import { FULL_SIZES, SMALL_SIZES, workloads, type Sizes, type Workload } from './workloads.js';

/** Where one backend's numbers are compared: PyTorch's device and thread count. */
interface TorchTarget {
  device: 'cpu' | 'cuda';
  threads: number;
}

export interface BenchRow {
  backend: BackendName;
  workload: string;
  title: string;
  variant: string;
  sizes: 'full' | 'small' | 'quick';
  flops: number;
  ms?: number;
  minMs?: number;
  reps?: number;
  gflops?: number;
  torchMs?: number;
  torchGflops?: number;
  torchTarget?: string;
  /** Our speed over PyTorch's (torch ms / our ms): above 1 we are faster. */
  speedVsTorch?: number;
  fastest?: boolean;
  excluded?: string;
  error?: string;
}

export interface BenchReport {
  date: string;
  command: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; node: string; platform: string; loadAverage: { start: number; end?: number } };
  tfjs: string;
  backends: Record<string, { reason: string; sizes: 'full' | 'small' | 'quick'; torch: string }>;
  torch?: { version: string; python: string; cuda: boolean; cudaDevice: string } | { error: string };
  rows: BenchRow[];
  /** Fastest variant per backend and workload, and what `auto` picks there now. */
  winners: { backend: string; workload: string; fastest: string; auto: string; agrees: boolean }[];
}

interface Options {
  backends?: string[];
  quick: boolean;
  json?: string;
  torch: boolean;
  python?: string;
  torchThreads: number;
  torchScript: string;
  minTime: number;
  maxReps: number;
  only?: string[];
}

const here = dirname(fileURLToPath(import.meta.url));

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      backends: { type: 'string' },
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
      'no-torch': { type: 'boolean', default: false },
      python: { type: 'string' },
      'torch-threads': { type: 'string' },
      'torch-script': { type: 'string' },
      'min-time': { type: 'string' },
      'max-reps': { type: 'string' },
      only: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(
      [
        'usage: bench [--backends cpu,wasm,webgpu] [--quick] [--json FILE] [--no-torch] [--python PATH]',
        '             [--torch-threads N] [--torch-script PATH] [--min-time S] [--max-reps N] [--only id,id]',
        '',
      ].join('\n'),
    );
    process.exit(0);
  }
  const num = (v: string | undefined, name: string, fallback: number): number => {
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, got '${v}'`);
    return n;
  };
  const quick = values.quick ?? false;
  return {
    ...(values.backends ? { backends: values.backends.split(',').map((s) => s.trim()) } : {}),
    quick,
    ...(values.json ? { json: values.json } : {}),
    torch: !values['no-torch'],
    ...(values.python ? { python: values.python } : {}),
    torchThreads: num(values['torch-threads'], 'torch-threads', 1),
    torchScript: values['torch-script'] ?? resolve(here, '../../../tools/bench_torch.py'),
    minTime: num(values['min-time'], 'min-time', quick ? 0.2 : 1),
    maxReps: num(values['max-reps'], 'max-reps', quick ? 3 : 10),
    ...(values.only ? { only: values.only.split(',') } : {}),
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function measure(step: () => tf.Tensor[], minTime: number, maxReps: number): Promise<{ ms: number; minMs: number; reps: number }> {
  const once = async (): Promise<number> => {
    const t0 = performance.now();
    const outs = step();
    for (const o of outs) await o.data();
    const dt = performance.now() - t0;
    tf.dispose(outs);
    return dt;
  };
  await once();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < maxReps && (times.length === 0 || performance.now() - start < minTime * 1000)) {
    times.push(await once());
  }
  return { ms: median(times), minMs: Math.min(...times), reps: times.length };
}

/** Finds a Python that imports torch: --python, GOE_PYTHON, python3 on PATH, /usr/bin/python3. */
function findTorch(opt: Options): { python: string; version: string; cuda: boolean; cudaDevice: string } | { error: string } {
  const candidates = [opt.python, process.env['GOE_PYTHON'], 'python3', '/usr/bin/python3'].filter((c): c is string => !!c);
  const probe =
    'import json, torch; c = torch.cuda.is_available(); ' +
    'print(json.dumps({"version": torch.__version__, "cuda": c, "cudaDevice": torch.cuda.get_device_name(0) if c else ""}))';
  const tried: string[] = [];
  for (const python of candidates) {
    const r = spawnSync(python, ['-c', probe], { encoding: 'utf8', timeout: 120_000 });
    if (r.status === 0) {
      const info = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { version: string; cuda: boolean; cudaDevice: string };
      return { python, ...info };
    }
    tried.push(`${python}: ${(r.error?.message ?? r.stderr ?? '').trim().split('\n').pop()}`);
  }
  return { error: `no Python with torch found (${tried.join('; ')})` };
}

interface TorchResult {
  key: string;
  ms: number;
  minMs: number;
  reps: number;
}

function runTorch(
  python: string,
  script: string,
  target: TorchTarget,
  specs: { key: string; kind: string; params: Record<string, unknown> }[],
  opt: Options,
): Map<string, TorchResult> {
  const request = { device: target.device, threads: target.threads, minTimeS: opt.minTime, maxReps: opt.maxReps, workloads: specs };
  const threads = String(target.threads);
  const r = spawnSync(python, [script], {
    input: JSON.stringify(request),
    encoding: 'utf8',
    timeout: 900_000,
    maxBuffer: 16 * 1024 * 1024,
    env: { ...process.env, OMP_NUM_THREADS: threads, MKL_NUM_THREADS: threads },
  });
  if (r.status !== 0) {
    throw new Error(`${script} failed (${r.status ?? r.signal}): ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ')}`);
  }
  const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { results: TorchResult[] };
  return new Map(out.results.map((x) => [x.key, x]));
}

const ENGINE: Record<BackendName, string> = { 'node-gpu': 'tensorflow', node: 'tensorflow', webgpu: 'webgpu', wasm: 'wasm', cpu: 'cpu' };

/** What `auto` picks on this backend for the workload (the variant names used in the table). */
function autoChoice(w: Workload, backend: BackendName, s: Sizes): string | undefined {
  const engine = ENGINE[backend];
  const [, D, H, W] = s.volume;
  if (w.id === 'conv3d') {
    const m = preferredConv3dMethod({ kernel: [3, 3, 3], strides: [1, 1, 1], volume: [D, H, W] }, engine);
    return m === 'native' ? 'tf.conv3d' : `conv3dFast ${m}`;
  }
  if (w.id === 'patch-embed') {
    const p = s.patch;
    const m = preferredConv3dMethod({ kernel: [p, p, p], strides: [p, p, p], volume: [D, H, W] }, engine);
    return m === 'native' ? 'tf.conv3d' : `conv3dFast ${m}`;
  }
  if (w.id === 'patchify') return `patchify3d ${preferredPatchMethod(engine)}`;
  return undefined;
}

const fmt = (v: number | undefined, digits = 1): string => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits));

/** The report as a markdown table plus the winners list. */
export function formatReport(rep: BenchReport): string {
  const lines: string[] = [];
  lines.push(`Benchmark: ${rep.date}`);
  lines.push(`Command: \`${rep.command}\``);
  const m = rep.machine;
  lines.push(
    `Machine: ${m.cpus} x ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, tfjs ${rep.tfjs}; load average ${fmt(m.loadAverage.start, 2)} at start, ${fmt(m.loadAverage.end, 2)} at end`,
  );
  if (rep.torch && 'version' in rep.torch) {
    lines.push(`PyTorch ${rep.torch.version} (${rep.torch.python})${rep.torch.cuda ? `, CUDA: ${rep.torch.cudaDevice}` : ', no CUDA'}`);
  } else if (rep.torch) {
    lines.push(`PyTorch: ${rep.torch.error}`);
  }
  for (const [b, info] of Object.entries(rep.backends)) {
    const sizes = {
      full: 'full sizes',
      small: b === 'cpu' ? 'SMALL sizes (plain JavaScript)' : 'SMALL sizes (software adapter: the CPU emulates the GPU)',
      quick: 'small sizes (--quick)',
    }[info.sizes];
    lines.push(`- ${b}: ${info.reason}; ${sizes}; peer: PyTorch ${info.torch}`);
  }
  lines.push('');
  lines.push('| backend | workload | variant | ms | GFLOP/s | PyTorch ms | PyTorch GFLOP/s | ours / PyTorch | note |');
  lines.push('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of rep.rows) {
    const note = [
      r.fastest ? '**fastest**' : '',
      r.sizes !== 'full' ? 'small sizes' : '',
      r.excluded ? `excluded: ${r.excluded}` : '',
      r.error ? `error: ${r.error}` : '',
    ]
      .filter(Boolean)
      .join('; ');
    lines.push(
      `| ${r.backend} | ${r.title} | ${r.variant} | ${fmt(r.ms)} | ${r.flops ? fmt(r.gflops, 2) : '—'} | ${fmt(r.torchMs)} | ${
        r.flops ? fmt(r.torchGflops, 2) : '—'
      } | ${fmt(r.speedVsTorch, 2)} | ${note} |`,
    );
  }
  if (rep.winners.length) {
    lines.push('');
    lines.push('Fastest variant per backend (what `auto` picks in conv3dFast / patchify3d):');
    lines.push('');
    for (const w of rep.winners) {
      lines.push(`- ${w.backend} ${w.workload}: ${w.fastest}${w.agrees ? ' (auto picks it)' : ` — auto picks ${w.auto}`}`);
    }
  }
  return lines.join('\n');
}

/** Runs the benchmark with command-line style arguments; prints the table and returns the report. */
export async function runBench(argv: string[]): Promise<BenchReport> {
  const opt = parseOptions(argv);
  if (!tf.getGradient('Sum')) throw new Error('no gradients registered: @goe/tf must register them on import');
  const started = Date.now();
  const avail = await availableBackends();
  const wanted = opt.backends ?? avail;
  const unknown = wanted.filter((b) => !avail.includes(b as BackendName));
  if (unknown.length) throw new Error(`backend(s) not available here: ${unknown.join(', ')} (available: ${avail.join(', ')})`);
  const backends = wanted as BackendName[];
  const torchInfo = opt.torch ? findTorch(opt) : undefined;
  const cpus = os.cpus();

  const report: BenchReport = {
    date: new Date().toISOString(),
    command: `bench ${argv.join(' ')}`.trim(),
    machine: {
      cpus: cpus.length,
      cpuModel: cpus[0]?.model.trim() ?? 'unknown',
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      node: process.versions.node,
      platform: `${process.platform}-${process.arch}`,
      // Other processes on the machine slow every number down; the 1-minute load average says how busy it was.
      loadAverage: { start: os.loadavg()[0] as number },
    },
    tfjs: tf.version_core,
    backends: {},
    ...(torchInfo ? { torch: torchInfo } : {}),
    rows: [],
    winners: [],
  };

  const targets = new Map<BackendName, TorchTarget>();
  const sizesOf = new Map<BackendName, Sizes>();
  const labelOf = new Map<BackendName, 'full' | 'small' | 'quick'>();
  for (const backend of backends) {
    const probe = await probeBackend(backend);
    const software = backend === 'webgpu' && !!probe.webgpu && isSoftwareAdapter(probe.webgpu);
    // Plain JavaScript (cpu) and CPU-emulated WebGPU take minutes at full sizes: small sizes there.
    const slow = software || backend === 'cpu';
    const sizes = opt.quick || slow ? SMALL_SIZES : FULL_SIZES;
    const sizeLabel = opt.quick ? 'quick' : slow ? 'small' : 'full';
    sizesOf.set(backend, sizes);
    labelOf.set(backend, sizeLabel);
    const cuda = !!torchInfo && 'cuda' in torchInfo && torchInfo.cuda;
    const target: TorchTarget =
      backend === 'webgpu' || backend === 'node-gpu'
        ? software || !cuda
          ? { device: 'cpu', threads: cpus.length }
          : { device: 'cuda', threads: 1 }
        : backend === 'node'
          ? { device: 'cpu', threads: cpus.length }
          : { device: 'cpu', threads: opt.torchThreads };
    targets.set(backend, target);
    report.backends[backend] = {
      reason: probe.reason,
      sizes: sizeLabel,
      torch: target.device === 'cuda' ? `CUDA (${'cudaDevice' in (torchInfo ?? {}) ? (torchInfo as { cudaDevice: string }).cudaDevice : ''})` : `cpu, ${target.threads} thread(s)`,
    };
  }

  const allWorkloads = new Map<BackendName, Workload[]>();
  for (const backend of backends) {
    await useBackend(backend);
    const sizes = sizesOf.get(backend) as Sizes;
    const list = workloads(sizes).filter((w) => !opt.only || opt.only.includes(w.id));
    allWorkloads.set(backend, list);
    for (const w of list) {
      for (const v of w.variants) {
        const row: BenchRow = {
          backend,
          workload: w.id,
          title: w.title,
          variant: v.name,
          sizes: labelOf.get(backend) ?? 'full',
          flops: w.flops,
          ...(v.excluded ? { excluded: v.excluded } : {}),
        };
        const before = tf.memory().numTensors;
        const t0 = performance.now();
        try {
          const { step, dispose } = v.setup();
          try {
            Object.assign(row, await measure(step, opt.minTime, opt.maxReps));
          } finally {
            dispose();
          }
          const leaked = tf.memory().numTensors - before;
          if (leaked !== 0) throw new Error(`leaked ${leaked} tensor(s)`);
          row.gflops = w.flops ? w.flops / ((row.ms as number) * 1e6) : undefined;
        } catch (err) {
          row.error = (err instanceof Error ? err.message : String(err)).split('\n')[0]?.slice(0, 160) ?? 'error';
        }
        report.rows.push(row);
        process.stderr.write(
          `[bench] ${backend} ${w.id} ${v.name}: ${row.error ? `error ${row.error}` : `${fmt(row.ms)} ms`} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`,
        );
      }
    }
  }

  // PyTorch, after ours so the two never compete for cores: one process per device/thread count.
  if (torchInfo && 'python' in torchInfo) {
    const groups = new Map<string, { target: TorchTarget; specs: Map<string, { key: string; kind: string; params: Record<string, unknown> }> }>();
    const keyOf = (b: BackendName, w: Workload) => JSON.stringify([targets.get(b), w.torch]);
    for (const [backend, list] of allWorkloads) {
      const target = targets.get(backend) as TorchTarget;
      const gk = JSON.stringify(target);
      const g = groups.get(gk) ?? { target, specs: new Map() };
      groups.set(gk, g);
      for (const w of list) g.specs.set(keyOf(backend, w), { key: keyOf(backend, w), ...w.torch });
    }
    const results = new Map<string, TorchResult>();
    for (const { target, specs } of groups.values()) {
      process.stderr.write(`[bench] PyTorch on ${target.device}${target.device === 'cpu' ? `, ${target.threads} thread(s)` : ''}: ${specs.size} workloads\n`);
      try {
        for (const [k, v] of runTorch(torchInfo.python, opt.torchScript, target, [...specs.values()], opt)) results.set(k, v);
      } catch (err) {
        report.torch = { error: err instanceof Error ? err.message : String(err) };
      }
    }
    for (const row of report.rows) {
      const w = allWorkloads.get(row.backend)?.find((x) => x.id === row.workload) as Workload;
      const t = results.get(keyOf(row.backend, w));
      if (!t) continue;
      const target = targets.get(row.backend) as TorchTarget;
      row.torchMs = t.ms;
      row.torchTarget = target.device === 'cuda' ? 'cuda' : `cpu x${target.threads}`;
      row.torchGflops = row.flops ? row.flops / (t.ms * 1e6) : undefined;
      if (row.ms) row.speedVsTorch = t.ms / row.ms;
    }
  }

  for (const backend of backends) {
    for (const w of allWorkloads.get(backend) ?? []) {
      if (w.variants.length < 2) continue;
      const rows = report.rows.filter((r) => r.backend === backend && r.workload === w.id && !r.error && !r.excluded && r.ms);
      if (!rows.length) continue;
      const best = rows.reduce((a, b) => ((a.ms as number) <= (b.ms as number) ? a : b));
      best.fastest = true;
      const auto = autoChoice(w, backend, sizesOf.get(backend) as Sizes) ?? '';
      report.winners.push({ backend, workload: w.id, fastest: best.variant, auto, agrees: auto === best.variant });
    }
  }

  report.machine.loadAverage.end = os.loadavg()[0] as number;
  process.stdout.write(`${formatReport(report)}\n`);
  process.stdout.write(`\nTotal time: ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  if (opt.json) {
    const path = resolve(process.env['INIT_CWD'] ?? process.cwd(), opt.json);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
    process.stderr.write(`[bench] wrote ${path}\n`);
  }
  return report;
}
