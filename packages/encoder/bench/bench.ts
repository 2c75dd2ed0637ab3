/**
 * `npx nx run encoder:bench [-- --backend wasm] [--quick] [--json FILE] [--no-torch] [--python PATH]
 *   [--min-time S] [--max-reps N] [--profile]`
 *
 * Tokens per second of one forward + backward step of the encoder (depth 2, 4 heads, MLP ratio 2, the
 * project's defaults otherwise: final LayerNorm, da = 16 with the linear aux refinement; one row with
 * the cross-attention refinement) at [B, N, d] = [4, 256, 64], [4, 512, 128], [2, 1024, 128], beside
 * the same encoder in PyTorch (bench/encoder_torch.py) from the same run, on one thread and on every
 * core. One step is the gradient of sum(T' r1) + sum(a' r2) with respect to every parameter, every
 * gradient read back with `await data()`.
 *
 * Same work on both sides: before timing, each workload's weights and inputs are sent to PyTorch, which
 * computes the outputs and every parameter gradient with them; the bench stops unless both agree with
 * ours (largest difference over the largest value, per tensor, below 1e-3).
 *
 * Timing: two warm-up steps, then steps until `--min-time` seconds have passed (at least 5, at most
 * `--max-reps`); medians of wall time and of this process's CPU time. tfjs' wasm and cpu backends run
 * on one thread, so against single-threaded PyTorch the CPU time is the fairer number on a machine
 * shared with other work (wall time also counts the time other processes held the core); other backends
 * (WebGPU) and PyTorch on every core are compared by wall time. The 1-minute load average is printed at the start and the end.
 * Progress goes to stderr, the markdown table to stdout. `--profile` adds, per workload, the kernels of
 * one step by time (tf.profile), to see where a step goes.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend, makeRng, parsePeerBenchOptions, tf, timeSteps, type PeerBenchOptions, type StepTiming } from '@goe/tf';
import { Encoder, resolveEncoderConfig, type AuxRefine, type EncoderConfig } from '../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));

interface Workload {
  key: string;
  B: number;
  N: number;
  d: number;
  auxRefine: AuxRefine;
}

const WORKLOADS: Workload[] = [
  { key: '4x256x64', B: 4, N: 256, d: 64, auxRefine: 'linear' },
  { key: '4x512x128', B: 4, N: 512, d: 128, auxRefine: 'linear' },
  { key: '4x512x128-cross', B: 4, N: 512, d: 128, auxRefine: 'cross' },
  { key: '2x1024x128', B: 2, N: 1024, d: 128, auxRefine: 'linear' },
];
const QUICK: Workload[] = [
  { key: '2x128x64', B: 2, N: 128, d: 64, auxRefine: 'linear' },
  { key: '2x128x64-cross', B: 2, N: 128, d: 64, auxRefine: 'cross' },
];
const SHAPE = { depth: 2, heads: 4, mlpRatio: 2, da: 16, auxDim: 16, auxHeads: 2 };
/** Largest |ours − PyTorch| over the largest |PyTorch|, per tensor, for the two to count as equal. */
const AGREE = 1e-3;

interface Options extends PeerBenchOptions {
  profile: boolean;
}

function options(argv: string[]): Options {
  const { common, values } = parsePeerBenchOptions(argv, { profile: { type: 'boolean', default: false } });
  return { ...common, profile: values['profile'] === true };
}

type Timing = StepTiming;

interface Row {
  workload: Workload;
  ours: Timing;
  /** Largest relative difference to PyTorch over outputs and gradients (undefined: not checked). */
  agreement?: number;
  torch1?: Timing;
  torchAll?: Timing;
  /** Kernel time of one step by kernel name, largest first (`--profile`). */
  profile?: { kernel: string; ms: number; calls: number }[];
}

function configOf(w: Workload): EncoderConfig {
  return resolveEncoderConfig({ d: w.d, auxRefine: w.auxRefine, ...SHAPE });
}

function randn(seed: number, n: number): Float32Array {
  const rng = makeRng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}

/** Inputs of a workload and the loss sum(T' r1) + sum(a' r2) whose gradient one step takes. */
function problem(w: Workload, cfg: EncoderConfig) {
  const { B, N, d } = w;
  const host = { tokens: randn(11, B * N * d), aux: randn(12, B * N * cfg.da), r1: randn(13, B * N * d), r2: randn(14, B * N * cfg.da) };
  const tokens = tf.tensor3d(host.tokens, [B, N, d]);
  const aux = tf.tensor3d(host.aux, [B, N, cfg.da]);
  const r1 = tf.tensor3d(host.r1, [B, N, d]);
  const r2 = tf.tensor3d(host.r2, [B, N, cfg.da]);
  const loss = (enc: Encoder) => (): tf.Scalar =>
    tf.tidy(() => {
      const o = enc.apply({ tokens, aux }, { training: true });
      return tf.add(tf.sum(tf.mul(o.tokens, r1)), tf.sum(tf.mul(o.aux, r2))) as tf.Scalar;
    });
  return { host, tokens, aux, loss, dispose: () => tf.dispose([tokens, aux, r1, r2]) };
}

/** Kernel time of one step, summed by kernel name and by the shapes it saw, largest first. */
async function profileStep(step: () => Promise<void>): Promise<NonNullable<Row['profile']>> {
  const info = await tf.profile(step);
  const by = new Map<string, { ms: number; calls: number }>();
  for (const k of info.kernels) {
    const key = `${k.name} ${JSON.stringify(k.inputShapes)}`;
    const e = by.get(key) ?? { ms: 0, calls: 0 };
    e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    e.calls++;
    by.set(key, e);
  }
  return [...by].map(([kernel, e]) => ({ kernel, ...e })).sort((a, b) => b.ms - a.ms);
}

/** One forward + backward step per call, timed; throws if a step leaks tensors. */
async function timeOurs(w: Workload, opt: Options): Promise<Timing & Pick<Row, 'profile'>> {
  const cfg = configOf(w);
  const enc = new Encoder(cfg, makeRng(1));
  const p = problem(w, cfg);
  const vars = enc.trainableVariables();
  const lossFn = p.loss(enc);
  const step = async (): Promise<void> => {
    const { value, grads } = tf.variableGrads(lossFn, vars);
    await Promise.all([value, ...Object.values(grads)].map((g) => g.data()));
    tf.dispose([value, ...Object.values(grads)]);
  };
  try {
    await step();
    await step();
    const before = tf.memory().numTensors;
    const timing = await timeSteps(step, opt);
    const leaked = tf.memory().numTensors - before;
    if (leaked !== 0) throw new Error(`${w.key}: a step leaked ${leaked} tensors`);
    return opt.profile ? { ...timing, profile: await profileStep(step) } : timing;
  } finally {
    p.dispose();
    enc.dispose();
  }
}

interface TorchReply<R> {
  torch: string;
  threads: number;
  results: ({ key: string } & R)[];
}

function callTorch<R>(opt: Options, request: object, threads: number): TorchReply<R> {
  const r = spawnSync(opt.python, [resolve(here, 'encoder_torch.py')], {
    input: JSON.stringify(request),
    encoding: 'utf8',
    timeout: 900_000,
    maxBuffer: 1 << 30,
    env: { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) },
  });
  if (r.status !== 0) {
    throw new Error(`encoder_torch.py failed (${r.status ?? r.signal}): ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-2).join(' | ')}`);
  }
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as TorchReply<R>;
}

function torchShape(w: Workload, cfg: EncoderConfig) {
  return { key: w.key, B: w.B, N: w.N, d: w.d, da: cfg.da, depth: cfg.depth, heads: cfg.heads, hidden: Math.round(cfg.d * cfg.mlpRatio), auxRefine: cfg.auxRefine, auxDim: cfg.auxDim, auxHeads: cfg.auxHeads };
}

function relErr(ours: ArrayLike<number>, theirs: number[], what: string): number {
  if (ours.length !== theirs.length) throw new Error(`${what}: ${ours.length} values here, ${theirs.length} in PyTorch`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < ours.length; i++) {
    diff = Math.max(diff, Math.abs((ours[i] as number) - (theirs[i] as number)));
    scale = Math.max(scale, Math.abs(theirs[i] as number));
  }
  return diff / Math.max(scale, 1e-12);
}

/**
 * Loads this workload's weights and inputs into PyTorch and compares its outputs and every parameter
 * gradient with ours. @returns the largest relative difference @throws when the two differ.
 */
async function checkAgainstTorch(w: Workload, opt: Options): Promise<number> {
  const cfg = configOf(w);
  const enc = new Encoder(cfg, makeRng(1));
  const p = problem(w, cfg);
  try {
    const o = enc.apply({ tokens: p.tokens, aux: p.aux });
    const ours = { tokens: await o.tokens.data(), aux: await o.aux.data() };
    tf.dispose([o.tokens, o.aux]);
    const { grads } = tf.variableGrads(p.loss(enc), enc.trainableVariables());
    const params: Record<string, number[]> = {};
    const ourGrads = new Map<string, Float32Array>();
    for (const [name, v] of enc.variables()) {
      params[name] = Array.from(await v.data());
      ourGrads.set(name, (await grads[v.name]!.data()) as Float32Array);
    }
    tf.dispose(Object.values(grads));
    const request = { mode: 'check', workloads: [{ ...torchShape(w, cfg), params, ...Object.fromEntries(Object.entries(p.host).map(([k, v]) => [k, Array.from(v)])) }] };
    const reply = callTorch<{ tokens: number[]; aux: number[]; grads: Record<string, number[]> }>(opt, request, 1).results[0]!;
    const names = [...enc.variables().keys()];
    const missing = names.filter((n) => !(n in reply.grads));
    if (missing.length || Object.keys(reply.grads).length !== names.length) {
      throw new Error(`${w.key}: PyTorch's parameters differ from ours (missing there: ${missing.join(', ') || 'none'})`);
    }
    const errs: [string, number][] = [
      ["T'", relErr(ours.tokens, reply.tokens, `${w.key} T'`)],
      ["a'", relErr(ours.aux, reply.aux, `${w.key} a'`)],
      ...names.map((n): [string, number] => [`∂/∂${n}`, relErr(ourGrads.get(n)!, reply.grads[n]!, `${w.key} ${n}`)]),
    ];
    const worst = errs.reduce((a, b) => (b[1] > a[1] ? b : a));
    if (!(worst[1] < AGREE)) throw new Error(`${w.key}: PyTorch computes another function (${worst[0]} differs by ${worst[1].toExponential(2)} of its largest value)`);
    return worst[1];
  } finally {
    p.dispose();
    enc.dispose();
  }
}

function timeTorch(opt: Options, workloads: Workload[], threads: number): TorchReply<Timing> {
  const request = {
    mode: 'time',
    threads,
    minTimeS: opt.minTime,
    minReps: 5,
    maxReps: opt.maxReps,
    workloads: workloads.map((w) => torchShape(w, configOf(w))),
  };
  return callTorch<Timing>(opt, request, threads);
}

const f0 = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : Math.round(v).toLocaleString('en-US'));
const f1 = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(1));
const pct = (v: number): string => `${(100 * v).toFixed(0)}%`;
const f2 = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(2));
const tps = (w: Workload, ms: number | undefined): number | undefined => (ms === undefined ? undefined : (w.B * w.N) / (ms / 1000));

/**
 * @param clock which of our times the first ratio uses: CPU time where our backend computes on this
 * process's one thread (cpu, wasm), wall time where it does not (WebGPU, libtensorflow)
 */
function formatTable(rows: Row[], head: string[], threadsAll: number, clock: 'cpuMs' | 'wallMs'): string {
  const lines = [...head, ''];
  const c = clock === 'cpuMs' ? 'CPU' : 'wall';
  lines.push(
    `| [B, N, d] | f_aux | ours ms (${c}) | ours tokens/s | PyTorch 1 thread ms (${c}) | tokens/s | ours / PyTorch 1 thread | PyTorch ${threadsAll} threads ms (wall) | tokens/s | ours (wall) / PyTorch ${threadsAll} threads | max rel. difference |`,
  );
  lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    const w = r.workload;
    lines.push(
      `| [${w.B}, ${w.N}, ${w.d}] | ${w.auxRefine} | ${f1(r.ours[clock])} | ${f0(tps(w, r.ours[clock]))} | ${f1(r.torch1?.[clock])} | ${f0(tps(w, r.torch1?.[clock]))} | ${
        r.torch1 ? f2(r.torch1[clock] / r.ours[clock]) : '—'
      } | ${f1(r.torchAll?.wallMs)} | ${f0(tps(w, r.torchAll?.wallMs))} | ${r.torchAll ? f2(r.torchAll.wallMs / r.ours.wallMs) : '—'} | ${
        r.agreement === undefined ? '—' : r.agreement.toExponential(1)
      } |`,
    );
  }
  return lines.join('\n');
}

async function main(argv: string[]): Promise<void> {
  const opt = options(argv);
  const choice = await initBackend({ ...(opt.backend ? { backend: opt.backend } : {}), log: (l) => process.stderr.write(`[bench] ${l}\n`) });
  const workloads = opt.quick ? QUICK : WORKLOADS;
  const load0 = os.loadavg()[0] as number;
  const started = performance.now();
  const rows: Row[] = [];
  let torchLine = 'PyTorch: not run (--no-torch)';
  const threadsAll = os.cpus().length;
  for (const w of workloads) {
    const row: Row = { workload: w, ours: { wallMs: NaN, cpuMs: NaN, reps: 0 } };
    if (opt.torch) {
      row.agreement = await checkAgainstTorch(w, opt);
      process.stderr.write(`[bench] ${w.key}: PyTorch computes the same outputs and gradients (max rel. difference ${row.agreement.toExponential(1)})\n`);
    }
    const { profile, ...ours } = await timeOurs(w, opt);
    row.ours = ours;
    process.stderr.write(`[bench] ${w.key} ours: ${f1(row.ours.wallMs)} ms wall, ${f1(row.ours.cpuMs)} ms CPU (${row.ours.reps} steps)\n`);
    if (profile) {
      row.profile = profile;
      const total = profile.reduce((a, e) => a + e.ms, 0);
      process.stderr.write(`[bench] ${w.key} profile of one step: ${f1(total)} ms in kernels; the largest:\n`);
      for (const e of profile.slice(0, 15)) process.stderr.write(`[bench]   ${f1(e.ms).padStart(7)} ms ${pct(e.ms / total).padStart(4)} ${String(e.calls).padStart(4)} x ${e.kernel}\n`);
    }
    rows.push(row);
  }
  if (opt.torch) {
    // After ours, so that the two never share the cores.
    for (const threads of [1, threadsAll]) {
      const reply = timeTorch(opt, workloads, threads);
      for (const r of reply.results) {
        const row = rows.find((x) => x.workload.key === r.key)!;
        const t = { wallMs: r.wallMs, cpuMs: r.cpuMs, reps: r.reps };
        if (threads === 1) row.torch1 = t;
        else row.torchAll = t;
        process.stderr.write(`[bench] ${r.key} PyTorch ${threads} thread(s): ${f1(r.wallMs)} ms wall, ${f1(r.cpuMs)} ms CPU (${r.reps} steps)\n`);
      }
      torchLine = `PyTorch ${reply.torch} (${opt.python}), CPU`;
    }
  }
  const cpus = os.cpus();
  const oneThread = choice.name === 'cpu' || choice.name === 'wasm';
  const head = [
    `Command: \`npx nx run encoder:bench${argv.length ? ` -- ${argv.join(' ')}` : ''}\` (${new Date().toISOString()})`,
    `Machine: ${cpus.length} x ${cpus[0]?.model.trim() ?? 'unknown'}, Node ${process.versions.node}, tfjs ${tf.version_core}, backend ${choice.name}${oneThread ? ' (one thread)' : ''}; ${torchLine}`,
    `Load average (1 min): ${load0.toFixed(2)} at start, ${(os.loadavg()[0] as number).toFixed(2)} at end; ${((performance.now() - started) / 1000).toFixed(0)} s`,
    `Encoder: depth ${SHAPE.depth}, ${SHAPE.heads} heads, MLP ratio ${SHAPE.mlpRatio}, final LayerNorm, da = ${SHAPE.da} (cross: ${SHAPE.auxHeads} heads of width ${SHAPE.auxDim / SHAPE.auxHeads}); one step = forward + backward of sum(T' r1) + sum(a' r2), every parameter gradient read back; medians; tokens/s = B N / step time; ratios above 1: we are faster`,
  ];
  const text = formatTable(rows, head, threadsAll, oneThread ? 'cpuMs' : 'wallMs');
  process.stdout.write(`${text}\n`);
  if (opt.json) writeFileSync(resolve(process.env['INIT_CWD'] ?? process.cwd(), opt.json), `${JSON.stringify({ head, rows }, null, 1)}\n`);
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
