/**
 * The structure-recovery experiment: on a synthetic task whose right expert sequence is known
 * (`src/routing-task.ts`: M random rotations composed K times, the first chosen by the token's content,
 * the next ones by a known transition graph G, or — the control — by the content again), does training
 * recover the structure (the learned A against G), and does `goe` beat flat `topk` at the same active
 * compute (the same k, K, M, d and steps, so the same expert evaluations per token)?
 *
 *   npx nx run core:experiment [-- --steps 400 --warmup 300 --curriculum all --batch 256 --seeds 3
 *                                  --k 2 --lr 0.01 --gamma 8 --expert linear
 *                                  --models topk,topk+msg,goe-route,goe --tasks graph,content
 *                                  --workers 2 --backend wasm --verbose
 *                                  --layer '{"renormalizeGates":false}']   (config keys over every model)
 *
 * Every model gets the same training: `--warmup` Adam steps on each shorter composition (`--curriculum
 * all`: lengths 1 … K−1 in turn; `first`: length 1 only; `--warmup 0`: none), then `--steps` on the
 * whole task (`trainRoutingModel`'s curriculum).
 *
 * Models (one layer each, the task fixes d = 8, M = 4, K = 3):
 * - `topk`: flat top-k routing, no expert messages (the Switch/GShard baseline);
 * - `topk+msg`: top-k routing, with the messages `Σ_n A[n,m] W_c h_n` between cycles (draft §3.1.4);
 * - `goe-route`: the graph router's bias `γ log(ε + Aᵀq)` (DESIGN.md §4 step 1), no messages;
 * - `goe`: both (the default GoE layer).
 * Runs go to `--workers` child processes (one tfjs each), and a markdown table of mean ± std over the
 * seeds is printed; seed s sets the task's rotations, C and π, the weights and the samples.
 */
import { fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { availableBackends, makeRng, useBackend, type BackendName } from '@goe/tf';
import { resolveGoeConfig, type GoeConfigInput } from '../src/config.js';
import {
  makeRoutingTask,
  mutualInformation,
  trainRoutingModel,
  transitionCounts,
  type RoutingRunResult,
  type RoutingTaskKind,
} from '../src/routing-task.js';

const MODELS: Record<string, GoeConfigInput> = {
  topk: { router: 'topk', messages: false },
  'topk+msg': { router: 'topk', messages: true },
  'goe-route': { router: 'goe', messages: false },
  goe: { router: 'goe', messages: true },
};

interface Job {
  task: RoutingTaskKind;
  model: string;
  seed: number;
  layer: GoeConfigInput;
  steps: number;
  warmupSteps: number;
  curriculum: 'first' | 'all';
  batch: number;
  lr: number;
  backend: string;
}

/** The numbers a worker sends back (plain data). */
type JobResult = Pick<
  RoutingRunResult,
  | 'relativeMse'
  | 'initialRelativeMse'
  | 'routingAccuracy'
  | 'routingInformationPerCycle'
  | 'adjacencyCorrelation'
  | 'routingTransitionCorrelation'
  | 'evaluationsPerToken'
  | 'parameters'
  | 'seconds'
  | 'adjacencyAligned'
>;

function usage(flag: string, expected: string, got: string | undefined): never {
  process.stderr.write(`routing-experiment: --${flag} must be ${expected}; got '${got}'\n`);
  process.exit(2);
}

function options() {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      steps: { type: 'string', default: '400' },
      warmup: { type: 'string', default: '300' },
      curriculum: { type: 'string', default: 'all' },
      expert: { type: 'string', default: 'linear' },
      batch: { type: 'string', default: '256' },
      seeds: { type: 'string', default: '3' },
      k: { type: 'string', default: '2' },
      lr: { type: 'string', default: '0.01' },
      gamma: { type: 'string', default: '8' },
      layer: { type: 'string', default: '{}' },
      models: { type: 'string', default: Object.keys(MODELS).join(',') },
      tasks: { type: 'string', default: 'graph,content' },
      workers: { type: 'string', default: String(Math.min(2, availableParallelism())) },
      backend: { type: 'string' },
      verbose: { type: 'boolean', default: false },
      worker: { type: 'boolean', default: false },
    },
  });
  const int = (flag: 'steps' | 'warmup' | 'batch' | 'seeds' | 'k' | 'workers', min: number): number => {
    const v = Number(values[flag]);
    if (!Number.isInteger(v) || v < min) usage(flag, `an integer >= ${min}`, values[flag]);
    return v;
  };
  const num = (flag: 'lr' | 'gamma'): number => {
    const v = Number(values[flag]);
    if (!Number.isFinite(v) || (flag === 'lr' && v <= 0)) usage(flag, flag === 'lr' ? 'a number > 0' : 'a finite number', values[flag]);
    return v;
  };
  const models = values.models.split(',');
  for (const m of models) if (!(m in MODELS)) usage('models', `a comma list of ${Object.keys(MODELS).join(', ')}`, values.models);
  const tasks = values.tasks.split(',');
  for (const t of tasks) if (t !== 'graph' && t !== 'content') usage('tasks', 'a comma list of graph, content', values.tasks);
  let layer: GoeConfigInput = {};
  try {
    layer = JSON.parse(values.layer) as GoeConfigInput;
  } catch {
    usage('layer', 'a JSON object of layer config keys', values.layer);
  }
  if (typeof layer !== 'object' || layer === null || Array.isArray(layer)) usage('layer', 'a JSON object of layer config keys', values.layer);
  if (values.curriculum !== 'first' && values.curriculum !== 'all') usage('curriculum', "'first' or 'all'", values.curriculum);
  // Unknown keys and bad values fail here, before any worker starts.
  resolveGoeConfig({ d: 8, experts: 4, expert: values.expert, ...layer });
  return {
    layer,
    steps: int('steps', 1),
    warmupSteps: int('warmup', 0),
    curriculum: values.curriculum as 'first' | 'all',
    expert: values.expert,
    batch: int('batch', 1),
    seeds: int('seeds', 1),
    k: int('k', 1),
    lr: num('lr'),
    gamma: num('gamma'),
    models,
    tasks: tasks as RoutingTaskKind[],
    workers: int('workers', 1),
    backend: values.backend,
    verbose: values.verbose,
    worker: values.worker,
  };
}

/** Child process: runs the jobs it is sent, one at a time, and sends each result back. */
async function workerLoop(): Promise<void> {
  let backend = '';
  process.on('message', (msg: Job | 'exit') => {
    if (msg === 'exit') process.exit(0);
    void (async () => {
      if (backend !== msg.backend) {
        await useBackend(msg.backend as BackendName);
        backend = msg.backend;
      }
      const task = makeRoutingTask({ kind: msg.task, seed: msg.seed });
      const r = await trainRoutingModel(task, {
        layer: msg.layer,
        steps: msg.steps,
        warmupSteps: msg.warmupSteps,
        curriculum: msg.curriculum,
        batch: msg.batch,
        lr: msg.lr,
        seed: msg.seed,
      });
      const out: JobResult = {
        relativeMse: r.relativeMse,
        initialRelativeMse: r.initialRelativeMse,
        routingAccuracy: r.routingAccuracy,
        routingInformationPerCycle: r.routingInformationPerCycle,
        adjacencyCorrelation: r.adjacencyCorrelation,
        routingTransitionCorrelation: r.routingTransitionCorrelation,
        evaluationsPerToken: r.evaluationsPerToken,
        parameters: r.parameters,
        seconds: r.seconds,
        adjacencyAligned: r.adjacencyAligned,
      };
      process.send?.({ job: msg, result: out });
    })().catch((err: unknown) => {
      process.send?.({ job: msg, error: String(err instanceof Error ? (err.stack ?? err.message) : err) });
    });
  });
}

/** Runs every job on `workers` child processes; resolves with the results in job order. */
function runJobs(jobs: Job[], workers: number, verbose: boolean): Promise<JobResult[]> {
  return new Promise((resolve, reject) => {
    const results = new Array<JobResult | undefined>(jobs.length);
    let next = 0;
    let done = 0;
    const children = Array.from({ length: Math.min(workers, jobs.length) }, () =>
      fork(process.argv[1] as string, ['--worker'], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' }),
    );
    const feed = (c: (typeof children)[number]): void => {
      if (next < jobs.length) c.send({ ...jobs[next], index: next++ });
      else c.send('exit');
    };
    for (const c of children) {
      c.on('message', (msg: { job: Job & { index: number }; result?: JobResult; error?: string }) => {
        if (msg.error || !msg.result) {
          children.forEach((k) => k.kill());
          reject(new Error(`run ${JSON.stringify(msg.job)} failed: ${msg.error}`));
          return;
        }
        results[msg.job.index] = msg.result;
        done++;
        if (verbose) {
          const r = msg.result;
          process.stderr.write(
            `[${done}/${jobs.length}] ${msg.job.task} ${msg.job.model} seed ${msg.job.seed}: rel MSE ${r.relativeMse.toFixed(4)}, ` +
              `corr(A,G) ${r.adjacencyCorrelation.toFixed(3)}, info ${r.routingInformationPerCycle.map((v) => v.toFixed(2)).join('/')} bits, ${r.seconds.toFixed(1)} s\n`,
          );
        }
        if (done === jobs.length) resolve(results as JobResult[]);
        feed(c);
      });
      c.on('exit', (code) => {
        if (code !== 0 && done < jobs.length) reject(new Error(`a worker exited with code ${code}`));
      });
      feed(c);
    }
  });
}

/** `mean ± std` (sample std; `—` when no value is finite). */
function meanStd(xs: number[], digits: number): string {
  const v = xs.filter(Number.isFinite);
  if (v.length === 0) return '—';
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  const sd = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1)) : 0;
  return `${m.toFixed(digits)} ± ${sd.toFixed(digits)}`;
}

async function main(): Promise<void> {
  const o = options();
  if (o.worker) return workerLoop();
  const have = await availableBackends();
  const backend = o.backend ?? (have.includes('wasm') ? 'wasm' : 'cpu');
  if (!have.includes(backend as BackendName)) usage('backend', `one of ${have.join(', ')}`, backend);
  // k = 1 with renormalised gates fixes every gate at 1, which leaves the router without a gradient
  // from the task; there the gate is the router probability (Switch Transformer).
  const common: GoeConfigInput = { k: o.k, renormalizeGates: o.k > 1, graphGamma: o.gamma, expert: o.expert, ...o.layer };
  const jobs: Job[] = [];
  for (const task of o.tasks) {
    for (const model of o.models) {
      for (let seed = 1; seed <= o.seeds; seed++) {
        jobs.push({
          task,
          model,
          seed,
          layer: { ...common, ...MODELS[model] },
          steps: o.steps,
          warmupSteps: o.warmupSteps,
          curriculum: o.curriculum,
          batch: o.batch,
          lr: o.lr,
          backend,
        });
      }
    }
  }
  const t0 = performance.now();
  const results = await runJobs(jobs, o.workers, o.verbose);
  const wall = (performance.now() - t0) / 1000;

  const d = 8;
  const m = 4;
  const kSteps = 3;
  const warm = o.warmupSteps > 0 ? `${o.warmupSteps} warm-up steps on length${o.curriculum === 'all' ? 's 1 … K−1 each' : ' 1'}, then ` : '';
  console.log(
    `## Structure recovery: d = ${d}, M = ${m}, K = ${kSteps}, k = ${o.k}, γ = ${o.gamma}, ${o.expert} experts, ${warm}${o.steps} Adam steps of ${o.batch} samples, ` +
      `lr ${o.lr}, ${o.seeds} seeds, backend ${backend}${Object.keys(o.layer).length ? `, layer ${JSON.stringify(o.layer)}` : ''}\n`,
  );
  for (const task of o.tasks) {
    const infos = Array.from({ length: o.seeds }, (_, i) => {
      const t = makeRoutingTask({ kind: task, seed: i + 1 });
      return mutualInformation(transitionCounts(t.sample(makeRng(5), 8192).path, kSteps, m));
    });
    console.log(`- ${task}: information of a function about the next one ${meanStd(infos, 3)} bits (log2 M = ${Math.log2(m)})`);
  }
  console.log(
    '\n| task | model | test MSE / change | routing info, cycles ≥ 1 (bits) | routing accuracy | corr(A, G) | corr(routed transitions, G) | expert evals / token | parameters | s / run |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const task of o.tasks) {
    for (const model of o.models) {
      const graph = task === 'graph';
      const rs = results.filter((_, i) => jobs[i]!.task === task && jobs[i]!.model === model);
      const col = (f: (r: JobResult) => number, digits: number): string => meanStd(rs.map(f), digits);
      const later = (r: JobResult): number => r.routingInformationPerCycle.slice(1).reduce((a, b) => a + b, 0) / Math.max(1, r.routingInformationPerCycle.length - 1);
      console.log(
        // In the control the task's transition matrix is near uniform (its entries differ by sampling
        // noise), so a correlation with it would measure noise: shown only for the graph task.
        `| ${task} | ${model} | ${col((r) => r.relativeMse, 3)} | ${col(later, 2)} | ${col((r) => r.routingAccuracy, 2)} | ${graph ? col((r) => r.adjacencyCorrelation, 2) : '—'} | ` +
          `${graph ? col((r) => r.routingTransitionCorrelation, 2) : '—'} | ${col((r) => r.evaluationsPerToken, 0)} | ${rs[0]?.parameters ?? '—'} | ${col((r) => r.seconds, 0)} |`,
      );
    }
  }
  for (const model of ['goe-route', 'goe']) {
    const at = results.findIndex((_, i) => jobs[i]!.task === 'graph' && jobs[i]!.model === model);
    if (at < 0) continue;
    const g = makeRoutingTask({ kind: 'graph', seed: jobs[at]!.seed }).params.successor;
    console.log(`\nLearned A of \`${model}\` on graph, seed ${jobs[at]!.seed}, relabelled to function order, beside G:`);
    results[at]!.adjacencyAligned.forEach((row, a) =>
      console.log(`    ${row.map((v) => v.toFixed(2)).join('  ')}    |  ${row.map((_, b) => (g[a] === b ? '1' : '0')).join(' ')}`),
    );
  }
  console.log(`\n${jobs.length} runs in ${wall.toFixed(0)} s on ${o.workers} worker(s).`);
}

await main();
