/**
 * `npx nx run core:bench [-- --backend wasm] [--experts 4,8,16,32] [--quick] [--rounds N] [--json FILE]
 *   [--no-torch] [--python PATH] [--min-time S] [--max-reps N]`
 *
 * Times one forward + backward step (the gradient of `mean(t'²) + losses.total` with respect to every
 * trainable variable, every gradient read back) of a GoE layer at [B, N, d] = [4, 256, 64], da = 16,
 * d_e = 64, SwiGLU hidden 128, k = 2:
 *
 * 1. the plain top-k MoE layer (`router: 'topk'`, K = 1, no messages) for M = 4, 8, 16, 32, beside the
 *    same layer in PyTorch from this same run (bench/moe_torch.py, gather / index_add dispatch), so the
 *    cost of M is seen on both sides: sparse dispatch should cost what k experts cost, whatever M is;
 * 2. the GoE layer (`router: 'goe'`, K = 3 cycles, graph bias and messages) for the same M;
 * 3. halting (draft §3.1.5): the GoE layer with haltEps = 0 (every token runs K cycles) and haltEps = 1
 *    (|u^k − u^{k−1}| < 1 always: every token stops after cycle 0), giving the time per cycle, the
 *    share of expert evaluations saved and the share of time saved.
 *
 * Timing: every row's layer is built first and warmed up with two steps; then `--rounds` rounds (6;
 * --quick 2) run over all rows, each row once untimed and 3 times timed (--quick 2) per round
 * (`timeInterleaved`), so that a machine whose speed drifts slows every row alike; medians of wall time
 * and of this process's CPU time over a row's timed steps. PyTorch runs after, with `--min-time` and
 * `--max-reps`. The cpu and wasm backends run on
 * one thread, and PyTorch is pinned to one thread, so on a machine shared with other work the CPU time
 * is the fairer number (wall time also counts the time other processes held the core); the ratios use
 * CPU time. The 1-minute load average is printed at the start and the end.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { availableBackends, makeRng, parsePeerBenchOptions, positiveFlag, tf, timeInterleaved, useBackend, type BackendName, type PeerBenchOptions, type StepTiming } from '@goe/tf';
import { GoeLayer, disposeGoeOutput, readGoeStats, resolveGoeConfig, type GoeConfigInput } from '../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const SIZES = { B: 4, N: 256, d: 64, da: 16, de: 64, hidden: 128, k: 2 };

interface Options extends PeerBenchOptions {
  experts: number[];
  /** Interleaved rounds over all rows, and timed steps per row in each (`timeInterleaved`). */
  rounds: number;
  perRound: number;
}

function options(argv: string[]): Options {
  const { common, values } = parsePeerBenchOptions(argv, { experts: { type: 'string' }, rounds: { type: 'string' } });
  const experts = ((values['experts'] as string | undefined) ?? '4,8,16,32').split(',').map((s) => positiveFlag(s.trim(), 'experts', 0));
  const rounds = Math.round(positiveFlag(values['rounds'] as string | undefined, 'rounds', common.quick ? 2 : 6));
  return { ...common, experts, rounds, perRound: common.quick ? 2 : 3 };
}

type Timing = StepTiming;

interface Row extends Timing {
  layer: 'moe' | 'goe';
  experts: number;
  cycles: number;
  haltEps: number;
  /** Share of expert evaluations not done (halting), from the layer's stats. */
  savedFraction: number;
  meanHaltCycle: number;
  torch?: Timing;
}

function layerConfig(kind: 'moe' | 'goe', experts: number, haltEps: number): GoeConfigInput {
  const { d, da, de, hidden, k } = SIZES;
  const common = { d, da, expertDim: de, expertHidden: hidden, k, experts, dispatch: 'exact' as const, haltEps };
  return kind === 'moe' ? { ...common, router: 'topk', cycles: 1, messages: false } : { ...common, router: 'goe', cycles: 3 };
}

/** A layer of one row with its inputs, and its step: forward + backward, every gradient read back. */
interface Subject {
  kind: Row['layer'];
  experts: number;
  haltEps: number;
  layer: GoeLayer;
  tokens: tf.Tensor3D;
  aux: tf.Tensor3D;
  step: () => Promise<void>;
}

function subject(kind: Row['layer'], experts: number, haltEps: number): Subject {
  const { B, N, d, da } = SIZES;
  const layer = new GoeLayer(resolveGoeConfig(layerConfig(kind, experts, haltEps)), makeRng(1));
  const rng = makeRng(2);
  const tokens = tf.tensor3d(Float32Array.from({ length: B * N * d }, () => rng.normal()), [B, N, d]);
  const aux = tf.tensor3d(Float32Array.from({ length: B * N * da }, () => rng.normal()), [B, N, da]);
  const vars = layer.trainableVariables();
  const step = async (): Promise<void> => {
    const { value, grads } = tf.variableGrads(() => {
      const out = layer.apply({ tokens, aux }, { training: true });
      return tf.add(tf.mean(tf.square(out.tokens)), out.losses.total) as tf.Scalar;
    }, vars);
    await Promise.all(Object.values(grads).map((g) => g.data()));
    tf.dispose([value, ...Object.values(grads)]);
  };
  return { kind, experts, haltEps, layer, tokens, aux, step };
}

/**
 * Times every row's step interleaved (`timeInterleaved`: the machine's drift lands on all rows alike,
 * which is what the M = 32 / M = 4 ratio needs), then reads each row's halting statistics.
 * @throws if a row's steps leak tensors
 */
async function measureRows(plan: [Row['layer'], number, number][], opt: Options): Promise<Row[]> {
  const subjects = plan.map(([kind, m, haltEps]) => subject(kind, m, haltEps));
  try {
    // Two warm-up steps each: the first pays for JIT compilation and XNNPACK set-up.
    for (const s of subjects) for (let i = 0; i < 2; i++) await s.step();
    const before = tf.memory().numTensors;
    const timings = await timeInterleaved(
      subjects.map((s) => s.step),
      { rounds: opt.rounds, perRound: opt.perRound },
    );
    const leaked = tf.memory().numTensors - before;
    if (leaked !== 0) throw new Error(`the timed steps leaked ${leaked} tensors`);
    const rows: Row[] = [];
    for (const [i, s] of subjects.entries()) {
      const out = s.layer.apply({ tokens: s.tokens, aux: s.aux });
      const stats = await readGoeStats(out.stats);
      disposeGoeOutput(out);
      const cycles = s.layer.config.cycles;
      rows.push({ layer: s.kind, experts: s.experts, cycles, haltEps: s.haltEps, ...(timings[i] as Timing), savedFraction: stats.savedFraction, meanHaltCycle: stats.meanHaltCycle });
    }
    return rows;
  } finally {
    for (const s of subjects) {
      s.layer.dispose();
      tf.dispose([s.tokens, s.aux]);
    }
  }
}

interface TorchReply {
  torch: string;
  threads: number;
  results: ({ key: string } & Timing)[];
}

/** The PyTorch MoE peer (bench/moe_torch.py) on one thread, after our rows so that the two never share a core. */
function runTorch(opt: Options, experts: number[]): TorchReply {
  const request = {
    threads: 1,
    minTimeS: opt.minTime,
    minReps: 5,
    maxReps: opt.maxReps,
    workloads: experts.map((m) => ({ key: `moe-${m}`, ...SIZES, experts: m })),
  };
  const r = spawnSync(opt.python, [resolve(here, 'moe_torch.py')], {
    input: JSON.stringify(request),
    encoding: 'utf8',
    timeout: 900_000,
    env: { ...process.env, OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1' },
  });
  if (r.status !== 0) throw new Error(`moe_torch.py failed (${r.status ?? r.signal}): ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-2).join(' | ')}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as TorchReply;
}

const f1 = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(1));
const f2 = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(2));
const pct = (v: number): string => `${(100 * v).toFixed(0)}%`;

/** The three tables as markdown. */
function formatTables(rows: Row[], head: string[]): string {
  const lines = [...head, ''];
  const base = (kind: Row['layer']) => rows.find((r) => r.layer === kind && r.haltEps === 0 && r.experts === Math.min(...rows.map((x) => x.experts)));
  lines.push('| layer | M | K | wall ms | CPU ms | CPU vs smallest M | PyTorch CPU ms | PyTorch vs smallest M | ours / PyTorch (CPU) |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows.filter((x) => x.haltEps === 0)) {
    const b = base(r.layer) as Row;
    const name = r.layer === 'moe' ? 'top-k MoE' : 'GoE (graph bias, messages)';
    lines.push(
      `| ${name} | ${r.experts} | ${r.cycles} | ${f1(r.wallMs)} | ${f1(r.cpuMs)} | ${f2(r.cpuMs / b.cpuMs)} | ${f1(r.torch?.cpuMs)} | ${
        r.torch && b.torch ? f2(r.torch.cpuMs / b.torch.cpuMs) : '—'
      } | ${r.torch ? f2(r.cpuMs / r.torch.cpuMs) : '—'} |`,
    );
  }
  lines.push('', '| GoE, M | haltEps | mean cycles run | CPU ms per step | CPU ms per cycle | evaluations saved | time saved |');
  lines.push('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows.filter((x) => x.layer === 'goe' && x.haltEps > 0)) {
    const none = rows.find((x) => x.layer === 'goe' && x.haltEps === 0 && x.experts === r.experts) as Row;
    for (const x of [none, r]) {
      lines.push(
        `| ${x.experts} | ${x.haltEps} | ${f2(x.meanHaltCycle)} | ${f1(x.cpuMs)} | ${f1(x.cpuMs / x.cycles)} | ${pct(x.savedFraction)} | ${
          x === r ? pct(1 - r.cpuMs / none.cpuMs) : '—'
        } |`,
      );
    }
  }
  return lines.join('\n');
}

async function main(argv: string[]): Promise<void> {
  const opt = options(argv);
  const avail = await availableBackends();
  // The backends that run exact (host-side) dispatch; the fastest of them by default.
  const exact: BackendName[] = avail.filter((b) => b !== 'webgpu');
  const backend = (opt.backend ?? exact[0]) as BackendName;
  if (!exact.includes(backend)) throw new Error(`--backend ${backend}: not one of ${exact.join(', ')} (exact dispatch needs synchronous read-back)`);
  await useBackend(backend);
  const load0 = os.loadavg()[0] as number;
  const started = performance.now();
  const plan: [Row['layer'], number, number][] = [
    ...opt.experts.map((m) => ['moe', m, 0] as [Row['layer'], number, number]),
    ...opt.experts.map((m) => ['goe', m, 0] as [Row['layer'], number, number]),
    ...[Math.min(...opt.experts), Math.max(...opt.experts)].filter((m, i, a) => a.indexOf(m) === i).map((m) => ['goe', m, 1] as [Row['layer'], number, number]),
  ];
  process.stderr.write(`[bench] ${plan.length} rows, ${opt.rounds} interleaved rounds of ${opt.perRound} timed steps each\n`);
  const rows = await measureRows(plan, opt);
  for (const row of rows) {
    process.stderr.write(`[bench] ${row.layer} M=${row.experts} haltEps ${row.haltEps}: ${f1(row.wallMs)} ms wall, ${f1(row.cpuMs)} ms CPU (${row.reps} steps)\n`);
  }
  let torchLine = 'PyTorch: not run (--no-torch)';
  if (opt.torch) {
    try {
      const reply = runTorch(opt, opt.experts);
      for (const r of reply.results) {
        const row = rows.find((x) => x.layer === 'moe' && `moe-${x.experts}` === r.key);
        if (row) row.torch = { wallMs: r.wallMs, cpuMs: r.cpuMs, reps: r.reps };
      }
      torchLine = `PyTorch ${reply.torch} (${opt.python}), ${reply.threads} thread, CPU`;
    } catch (err) {
      torchLine = `PyTorch: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  const cpus = os.cpus();
  const { B, N, d, da, de, hidden, k } = SIZES;
  const head = [
    `Command: \`npx nx run core:bench${argv.length ? ` -- ${argv.join(' ')}` : ''}\` (${new Date().toISOString()})`,
    `Machine: ${cpus.length} x ${cpus[0]?.model.trim() ?? 'unknown'}, Node ${process.versions.node}, tfjs ${tf.version_core}, backend ${backend}; ${torchLine}`,
    `Load average (1 min): ${load0.toFixed(2)} at start, ${(os.loadavg()[0] as number).toFixed(2)} at end; ${((performance.now() - started) / 1000).toFixed(0)} s`,
    `Sizes: [B, N, d] = [${B}, ${N}, ${d}], da = ${da}, d_e = ${de}, SwiGLU hidden ${hidden}, k = ${k}; one step = forward + backward of mean(t'²) + regularisers, every gradient read back; medians`,
  ];
  const text = formatTables(rows, head);
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
