/**
 * A synthetic routing task whose right expert sequence is known, and the training run that measures
 * whether a GoE layer recovers it (the structure-recovery experiment; GoE draft §3.1.3–3.1.5: "edges
 * between experts are learnable pathways", the gating "learns how to traverse the expert graph").
 *
 * Dimension legend: d state width, M functions (one per expert), K composition steps (one per
 * refinement cycle), n samples.
 *
 * The task: M fixed random rotations `f_m(x) = Q_m x` (Q_m `[d, d]` orthogonal) of a d-dim state.
 * Rotations keep `N(0, I_d)` as it is, so the state after any number of steps looks the same whatever
 * the path: it carries no trace of which functions were applied, and only the routing can know where a
 * token is in its sequence. They do not commute, so the order matters. A sample draws `x_0 ~ N(0, I_d)`;
 * its first function is read from the token's content, `s_0 = argmax_m (C x_0)_m` (C `[M, d]` fixed),
 * and the target is the composition `y = f_{s_{K−1}} ∘ … ∘ f_{s_0}(x_0)`. The next function is chosen by
 * - `graph`: the known transition graph G, `s_{j+1} = π(s_j)` for a fixed cyclic permutation π
 *   (G[n][m] = 1 iff m = π(n)): the right expert depends on the previous one, not on the state;
 * - `content` (the control): the state again, `s_{j+1} = argmax_m (C x_{j+1})_m`: the right expert is
 *   readable from the token, and the previous function carries almost no information about it (the
 *   rotated state falls in a new cone of C nearly independently of the last: the `mutualInformation` of
 *   consecutive functions is ~0.1 bit at d = 8, M = 4, against log2 M = 2 bits for the graph).
 *
 * Training (`trainRoutingModel`) can follow a curriculum over composition lengths (`warmupSteps`):
 * length 1 first, whose only routing is read from the content, so that the experts specialise by
 * function before later cycles depend on which expert did what; then longer compositions, on which
 * the graph router's bias can only learn G once an expert stands for one function. Trained on the whole
 * composition from the start, the experts never specialise (routing stays near chance, and A learns
 * nothing about G: packages/core README).
 */
import { Adam, makeRng, tf, type Rng } from '@goe/tf';
import { resolveGoeConfig, type GoeConfig, type GoeConfigInput } from './config.js';
import { GoeConfigError } from './errors.js';
import { GoeLayer, disposeGoeOutput, readGoeStats } from './layer.js';

/** How the function after the first is chosen (see the module comment). */
export type RoutingTaskKind = 'graph' | 'content';

export interface RoutingTaskSpec {
  kind: RoutingTaskKind;
  /** State width d. */
  d: number;
  /** Number of functions M (the layer gets as many experts). */
  functions: number;
  /** Composition length K (the layer runs as many cycles). */
  steps: number;
  /** Seed of the rotations, the selector C and the permutation π. */
  seed: number;
}

export const ROUTING_TASK_DEFAULTS: Readonly<RoutingTaskSpec> = Object.freeze({ kind: 'graph', d: 8, functions: 4, steps: 3, seed: 1 });

/** Fills the defaults and validates; throws `GoeConfigError` naming the field (`routingTask.<field>`). */
export function resolveRoutingTaskSpec(partial: Partial<RoutingTaskSpec> = {}): RoutingTaskSpec {
  for (const k of Object.keys(partial)) {
    if (!(k in ROUTING_TASK_DEFAULTS)) throw new GoeConfigError(`routingTask.${k}`, `a known key (${Object.keys(ROUTING_TASK_DEFAULTS).join(', ')})`, 'unknown key');
  }
  const s = { ...ROUTING_TASK_DEFAULTS, ...partial };
  if (s.kind !== 'graph' && s.kind !== 'content') throw new GoeConfigError('routingTask.kind', "'graph' or 'content'", s.kind);
  for (const [field, min] of [['d', 2], ['functions', 2], ['steps', 1], ['seed', -(2 ** 31)]] as const) {
    const v = s[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new GoeConfigError(`routingTask.${field}`, `an integer >= ${min}`, v);
  }
  return s;
}

/** The fixed parameters of a task, row-major float64, for checking it independently. */
export interface RoutingTaskParams {
  /** `[M]` of Q_m `[d, d]` (orthogonal; `f_m(x) = Q_m x`). */
  rotations: Float64Array[];
  /** Selector C `[M, d]`. */
  selector: Float64Array;
  /** π: the successor of each function (`graph` kind). */
  successor: Int32Array;
}

/** A batch of samples. */
export interface RoutingBatch {
  /** `[n, d]` float32 starting states x_0. */
  x: Float32Array;
  /** `[n, d]` float32 targets x_K. */
  y: Float32Array;
  /** `[n, K]` the function applied at each step. */
  path: Int32Array;
  n: number;
}

export interface RoutingTask {
  readonly spec: RoutingTaskSpec;
  readonly params: RoutingTaskParams;
  /** `f_m(x) = Q_m x` in float64. @param x `[d]` @returns `[d]` */
  apply(m: number, x: ArrayLike<number>): Float64Array;
  /** `argmax_m (C x)_m` (ties: the lower index). @param x `[d]` */
  select(x: ArrayLike<number>): number;
  /** n samples drawn from `rng`. */
  sample(rng: Rng, n: number): RoutingBatch;
}

/** A random orthogonal `[d, d]` matrix: Gram–Schmidt on the rows of a Gaussian one (row-major). */
function randomRotation(d: number, rng: Rng): Float64Array {
  const q = Float64Array.from({ length: d * d }, () => rng.normal());
  for (let i = 0; i < d; i++) {
    const row = q.subarray(i * d, (i + 1) * d);
    for (let j = 0; j < i; j++) {
      const prev = q.subarray(j * d, (j + 1) * d);
      let dot = 0;
      for (let c = 0; c < d; c++) dot += (row[c] as number) * (prev[c] as number);
      for (let c = 0; c < d; c++) row[c] = (row[c] as number) - dot * (prev[c] as number);
    }
    let norm = 0;
    for (let c = 0; c < d; c++) norm += (row[c] as number) ** 2;
    norm = Math.sqrt(norm);
    for (let c = 0; c < d; c++) row[c] = (row[c] as number) / norm;
  }
  return q;
}

/** Builds the task of `spec` (defaults filled): the rotations, C and π are drawn from `spec.seed`. */
export function makeRoutingTask(partial: Partial<RoutingTaskSpec> = {}): RoutingTask {
  const spec = resolveRoutingTaskSpec(partial);
  const { d, functions: m, steps } = spec;
  const rng = makeRng(spec.seed);
  const rotations = Array.from({ length: m }, () => randomRotation(d, rng));
  const selector = Float64Array.from({ length: m * d }, () => rng.normal());
  // π: one cycle through every function in a random order (no fixed point, every function reachable).
  const order = Array.from({ length: m }, (_, i) => i);
  for (let i = m - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const successor = new Int32Array(m);
  order.forEach((f, i) => (successor[f] = order[(i + 1) % m] as number));

  const apply = (f: number, x: ArrayLike<number>): Float64Array => {
    const q = rotations[f] as Float64Array;
    const out = new Float64Array(d);
    for (let r = 0; r < d; r++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += (q[r * d + c] as number) * (x[c] as number);
      out[r] = s;
    }
    return out;
  };
  const select = (x: ArrayLike<number>): number => {
    let best = 0;
    let bestV = -Infinity;
    for (let f = 0; f < m; f++) {
      let s = 0;
      for (let c = 0; c < d; c++) s += (selector[f * d + c] as number) * (x[c] as number);
      if (s > bestV) [best, bestV] = [f, s];
    }
    return best;
  };
  const sample = (r: Rng, n: number): RoutingBatch => {
    const x = new Float32Array(n * d);
    const y = new Float32Array(n * d);
    const path = new Int32Array(n * steps);
    for (let i = 0; i < n; i++) {
      let state: Float64Array = Float64Array.from({ length: d }, () => r.normal());
      x.set(state, i * d);
      let f = select(state);
      for (let j = 0; j < steps; j++) {
        if (j > 0) f = spec.kind === 'graph' ? (successor[f] as number) : select(state);
        path[i * steps + j] = f;
        state = apply(f, state);
      }
      y.set(state, i * d);
    }
    return { x, y, path, n };
  };
  return { spec, params: { rotations, selector, successor }, apply, select, sample };
}

/**
 * Counts of consecutive pairs `(s_j, s_{j+1})` in paths.
 * @param path `[n, K]` (entries < 0 are skipped) @returns `[M][M]`
 */
export function transitionCounts(path: ArrayLike<number>, steps: number, functions: number): number[][] {
  const t = Array.from({ length: functions }, () => new Array<number>(functions).fill(0));
  for (let i = 0; i + steps <= path.length; i += steps) {
    for (let j = 0; j + 1 < steps; j++) {
      const a = path[i + j] as number;
      const c = path[i + j + 1] as number;
      if (a >= 0 && c >= 0) (t[a] as number[])[c] = ((t[a] as number[])[c] as number) + 1;
    }
  }
  return t;
}

/** Rows divided by their sums (an all-zero row stays zero). */
export function rowNormalise(t: readonly (readonly number[])[]): number[][] {
  return t.map((row) => {
    const s = row.reduce((a, c) => a + c, 0);
    return row.map((c) => (s > 0 ? c / s : 0));
  });
}

/**
 * Mutual information (bits) between the row and the column variable of a contingency table of counts.
 * On `transitionCounts`: 0 when the next function is independent of the previous one, log2 M for a
 * permutation used uniformly. On a (function, expert) confusion table: how much the routing tells
 * about the function, whichever expert stands for which function.
 */
export function mutualInformation(counts: readonly (readonly number[])[]): number {
  const total = counts.flat().reduce((a, c) => a + c, 0);
  if (total === 0) return 0;
  const rows = counts.map((r) => r.reduce((a, c) => a + c, 0) / total);
  const cols = counts[0]!.map((_, c) => counts.reduce((a, r) => a + (r[c] as number), 0) / total);
  let mi = 0;
  counts.forEach((r, a) =>
    r.forEach((c, b) => {
      const p = c / total;
      if (p > 0) mi += p * Math.log2(p / ((rows[a] as number) * (cols[b] as number)));
    }),
  );
  return mi;
}

/** Pearson correlation of two equal-length lists; NaN when either is constant. */
export function pearson(a: readonly number[], b: readonly number[]): number {
  const n = a.length;
  const ma = a.reduce((s, v) => s + v, 0) / n;
  const mb = b.reduce((s, v) => s + v, 0) / n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const x = (a[i] as number) - ma;
    const y = (b[i] as number) - mb;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : NaN;
}

/**
 * The one-to-one assignment function -> expert that maximises the matched count of a confusion table
 * (exact, by dynamic programming over subsets of experts: O(M² 2^M), M <= 16). Experts are learned in
 * no particular order, so a learned graph is compared with the true one only after this relabelling.
 * @param confusion `[M][M]`: confusion[f][e] = how often function f's step went to expert e
 * @returns assignment `[M]` (function -> expert) and the matched count
 */
export function alignExperts(confusion: readonly (readonly number[])[]): { assignment: number[]; matched: number } {
  const m = confusion.length;
  if (m > 16) throw new GoeConfigError('experts', 'at most 16 for the exact alignment', m);
  const full = 1 << m;
  // best[mask]: largest count assigning functions 0 … popcount(mask)−1 to the experts in mask.
  const best = new Float64Array(full).fill(-Infinity);
  const choice = new Int32Array(full).fill(-1);
  best[0] = 0;
  for (let mask = 0; mask < full; mask++) {
    const cur = best[mask] as number;
    if (cur === -Infinity) continue;
    let f = 0;
    for (let x = mask; x; x &= x - 1) f++;
    if (f >= m) continue;
    for (let e = 0; e < m; e++) {
      if (mask & (1 << e)) continue;
      const next = mask | (1 << e);
      const v = cur + (confusion[f]![e] as number);
      if (v > (best[next] as number)) {
        best[next] = v;
        choice[next] = e;
      }
    }
  }
  const assignment = new Array<number>(m).fill(-1);
  for (let mask = full - 1, f = m - 1; f >= 0; f--) {
    const e = choice[mask] as number;
    assignment[f] = e;
    mask &= ~(1 << e);
  }
  return { assignment, matched: best[full - 1] as number };
}

/** Options of one training run. */
export interface RoutingRunOptions {
  /** Layer config over the task-derived fields (d, da = 0, experts = M, cycles = K). */
  layer: GoeConfigInput;
  /** Adam steps. */
  steps: number;
  /** Samples per step. */
  batch: number;
  /** Learning rate. */
  lr: number;
  /** Seed of the weights and the training samples (the test set depends on it too). */
  seed: number;
  /** Held-out samples for the final numbers. */
  testSize: number;
  /** Record the training loss every this many steps (0 = never). */
  logEvery: number;
  /**
   * Curriculum: Adam steps on each shorter composition of the same functions (see `curriculum`) before
   * the `steps` on the whole one; each stage's layer starts from the weights the last one trained (a
   * layer of K cycles has the same variables as one of fewer, plus W_c from 2 cycles on). The loss
   * curve logs the stages too, numbered on. 0 = none.
   */
  warmupSteps: number;
  /** `first`: warm up on the one-step task only; `all`: on every shorter length 1 … K−1 in turn. */
  curriculum: 'first' | 'all';
}

export const ROUTING_RUN_DEFAULTS: Readonly<Omit<RoutingRunOptions, 'layer'>> = Object.freeze({
  steps: 400,
  batch: 128,
  lr: 1e-2,
  seed: 1,
  testSize: 1024,
  logEvery: 0,
  warmupSteps: 0,
  curriculum: 'first',
});

/**
 * Fills `ROUTING_RUN_DEFAULTS` and validates; throws `GoeConfigError` naming the field
 * (`routingRun.<field>`) for an unknown key or a bad value. The layer config is checked by the layer.
 */
export function resolveRoutingRunOptions(options: Partial<RoutingRunOptions> & Pick<RoutingRunOptions, 'layer'>): RoutingRunOptions {
  for (const k of Object.keys(options)) {
    if (k !== 'layer' && !(k in ROUTING_RUN_DEFAULTS)) {
      throw new GoeConfigError(`routingRun.${k}`, `a known key (layer, ${Object.keys(ROUTING_RUN_DEFAULTS).join(', ')})`, 'unknown key');
    }
  }
  const o = { ...ROUTING_RUN_DEFAULTS, ...options };
  for (const [field, min] of [['steps', 0], ['batch', 1], ['testSize', 1], ['logEvery', 0], ['warmupSteps', 0], ['seed', -(2 ** 31)]] as const) {
    const v = o[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new GoeConfigError(`routingRun.${field}`, `an integer >= ${min}`, v);
  }
  if (typeof o.lr !== 'number' || !(o.lr > 0) || !Number.isFinite(o.lr)) throw new GoeConfigError('routingRun.lr', 'a finite number > 0', o.lr);
  if (o.curriculum !== 'first' && o.curriculum !== 'all') throw new GoeConfigError('routingRun.curriculum', "'first' or 'all'", o.curriculum);
  return o;
}

/** The composition lengths warmed up on before the full K (none when `warmupSteps` is 0). */
function curriculumLengths(k: number, warmupSteps: number, curriculum: 'first' | 'all'): number[] {
  if (warmupSteps <= 0 || k <= 1) return [];
  return curriculum === 'first' ? [1] : Array.from({ length: k - 1 }, (_, i) => i + 1);
}

/** What one training run measured, on the held-out set. */
export interface RoutingRunResult {
  config: GoeConfig;
  /** Mean squared error per coordinate of the output against y. */
  testMse: number;
  /** `testMse / mean (y − x_0)²`: the share of the composition's change left unexplained. */
  relativeMse: number;
  /** Same for the model before training. */
  initialRelativeMse: number;
  /** Function -> expert, from the routing on the test set (`alignExperts`). */
  assignment: number[];
  /** Share of (token, cycle) pairs sent to the expert assigned to that step's function. */
  routingAccuracy: number;
  /** The same per cycle `[K]` (cycle 0 is chosen by content in both task kinds). */
  routingAccuracyPerCycle: number[];
  /**
   * Per cycle `[K]`, the mutual information (bits, at most log2 M) between the expert in the first slot
   * and the function of that step: whether routing tracks the sequence at all, without assuming one
   * expert per function across cycles.
   */
  routingInformationPerCycle: number[];
  /** Per cycle `[K][M][M]`: how often function f's step went to expert e (slot 0), in expert order. */
  confusionPerCycle: number[][][];
  /** Trainable parameters of the layer (Θ counts for every router, W_c only with messages). */
  parameters: number;
  /** The layer's A `[M][M]` in expert order. */
  adjacency: number[][];
  /** A relabelled into function order, `A_f[a][b] = A[σ(a)][σ(b)]`. */
  adjacencyAligned: number[][];
  /** Pearson(A_f, the task's transition matrix) over all M² entries. */
  adjacencyCorrelation: number;
  /** Pearson(row-normalised expert-to-expert transitions of the routing, relabelled, the task's transition matrix). */
  routingTransitionCorrelation: number;
  /** Expert evaluations per token over all cycles (k·K when nothing halts): the active compute. */
  evaluationsPerToken: number;
  /** `[step, loss]` every `logEvery` steps. */
  lossCurve: [number, number][];
  seconds: number;
}

/**
 * The task's transition matrix: G itself for `graph`; for `content`, the row-normalised pair counts
 * of `sampleSize` samples (close to each row's marginal: the next function barely depends on the last).
 */
export function taskTransitions(task: RoutingTask, sampleSize = 4096): number[][] {
  const m = task.spec.functions;
  if (task.spec.kind === 'graph') return Array.from({ length: m }, (_, a) => Array.from({ length: m }, (_, c) => (task.params.successor[a] === c ? 1 : 0)));
  const s = task.sample(makeRng(task.spec.seed + 7919), sampleSize);
  return rowNormalise(transitionCounts(s.path, task.spec.steps, m));
}

/** The layer config a run uses: the task fixes d, da = 0, experts and cycles; halting is off so compute is k·K. */
export function routingLayerConfig(task: RoutingTask, layer: GoeConfigInput): GoeConfig {
  return resolveGoeConfig({
    expertDim: 2 * task.spec.d,
    haltEps: 0,
    ...layer,
    d: task.spec.d,
    da: 0,
    experts: task.spec.functions,
    cycles: task.spec.steps,
  });
}

/** Copies every variable `to` shares with `from` (same dotted name and shape). */
function copyVariables(from: GoeLayer, to: GoeLayer): void {
  const src = from.variables();
  for (const [name, v] of to.variables()) {
    const w = src.get(name);
    if (w && w.shape.join() === v.shape.join()) v.assign(w);
  }
}

/**
 * `steps` Adam steps on `MSE(layer(x_0), y) + losses.total` over fresh samples of `task`; the MSE is
 * pushed to `lossCurve` every `logEvery` steps, numbered from `offset`.
 */
async function fitLayer(
  layer: GoeLayer,
  task: RoutingTask,
  adam: Adam,
  rng: Rng,
  steps: number,
  batch: number,
  lr: number,
  logEvery: number,
  lossCurve: [number, number][],
  offset = 0,
): Promise<void> {
  const d = task.spec.d;
  for (let step = 0; step < steps; step++) {
    const s = task.sample(rng, batch);
    const x = tf.tensor3d(s.x, [1, s.n, d]);
    const y = tf.tensor3d(s.y, [1, s.n, d]);
    let logged: tf.Scalar | null = null;
    const log = logEvery > 0 && step % logEvery === 0;
    adam
      .minimize(
        layer,
        () => {
          const out = layer.apply({ tokens: x }, { training: true });
          const mse = tf.mean(tf.square(tf.sub(out.tokens, y))) as tf.Scalar;
          if (log) logged = tf.keep(tf.clone(mse));
          return tf.add(mse, out.losses.total) as tf.Scalar;
        },
        lr,
      )
      .dispose();
    if (logged) {
      lossCurve.push([offset + step, (await (logged as tf.Scalar).data())[0] as number]);
      (logged as tf.Scalar).dispose();
    }
    tf.dispose([x, y]);
  }
}

/**
 * Trains a GoE layer (any router) on the task with Adam on `MSE(layer(x_0), y) + losses.total`, then
 * measures it on a held-out set: error, routing against the known expert sequence, and the learned
 * graph against the true one. Runs on the current backend.
 */
export async function trainRoutingModel(task: RoutingTask, options: Partial<RoutingRunOptions> & Pick<RoutingRunOptions, 'layer'>): Promise<RoutingRunResult> {
  const o = resolveRoutingRunOptions(options);
  const t0 = performance.now();
  const { d, functions: m, steps: kSteps } = task.spec;
  const config = routingLayerConfig(task, o.layer);
  const layer = new GoeLayer(config, makeRng(o.seed));
  const test = task.sample(makeRng(1_000_003 + o.seed), o.testSize);
  const testX = tf.tensor3d(test.x, [1, test.n, d]);
  const testY = tf.tensor3d(test.y, [1, test.n, d]);
  let change = 0;
  for (let i = 0; i < test.x.length; i++) change += ((test.y[i] as number) - (test.x[i] as number)) ** 2;
  change /= test.x.length;
  const testMse = async (): Promise<number> => {
    const v = tf.tidy(() => tf.mean(tf.square(tf.sub(layer.apply({ tokens: testX }).tokens, testY))));
    const out = (await v.data())[0] as number;
    v.dispose();
    return out;
  };
  const initialRelativeMse = (await testMse()) / change;

  const adam = new Adam();
  const rng = makeRng(o.seed * 7 + 3);
  const lossCurve: [number, number][] = [];
  let done = 0;
  let prev: GoeLayer | null = null;
  for (const len of curriculumLengths(kSteps, o.warmupSteps, o.curriculum)) {
    // Shorter compositions first (the same functions): cycle 0's routing is read from the content, so
    // the experts can specialise on one function each before later cycles depend on which expert did
    // what. Adam's moments carry over (its slots are keyed by variable name, the same in every layer).
    const part = makeRoutingTask({ ...task.spec, steps: len });
    const warm = new GoeLayer(routingLayerConfig(part, o.layer), makeRng(o.seed));
    if (prev) {
      copyVariables(prev, warm);
      prev.dispose();
    }
    await fitLayer(warm, part, adam, rng, o.warmupSteps, o.batch, o.lr, o.logEvery, lossCurve, done);
    done += o.warmupSteps;
    prev = warm;
  }
  if (prev) {
    copyVariables(prev, layer);
    prev.dispose();
  }
  await fitLayer(layer, task, adam, rng, o.steps, o.batch, o.lr, o.logEvery, lossCurve, done);
  adam.dispose();

  const mse = await testMse();
  const out = layer.apply({ tokens: testX });
  const ids = await out.provenance.experts.data(); // [K, 1, n, k]
  const adjacency = (await out.provenance.adjacency.array()) as number[][];
  const stats = await readGoeStats(out.stats);
  const parameters = layer.parameterCount();
  disposeGoeOutput(out);
  tf.dispose([testX, testY]);
  layer.dispose();

  // Confusion of (true function at step j) against (expert in slot 0 of cycle j, the highest score),
  // per cycle and summed, and the routed path.
  const slots = ids.length / (kSteps * test.n);
  const table = (): number[][] => Array.from({ length: m }, () => new Array<number>(m).fill(0));
  const confusion = table();
  const perCycleConfusion = Array.from({ length: kSteps }, table);
  const routed = new Int32Array(test.n * kSteps);
  for (let j = 0; j < kSteps; j++) {
    for (let i = 0; i < test.n; i++) {
      const e = ids[(j * test.n + i) * slots] as number;
      const f = test.path[i * kSteps + j] as number;
      routed[i * kSteps + j] = e;
      if (e < 0) continue;
      (confusion[f] as number[])[e] = ((confusion[f] as number[])[e] as number) + 1;
      const pc = (perCycleConfusion[j] as number[][])[f] as number[];
      pc[e] = (pc[e] as number) + 1;
    }
  }
  const { assignment, matched } = alignExperts(confusion);
  const truth = taskTransitions(task);
  const relabel = (t: number[][]): number[][] => assignment.map((ea) => assignment.map((eb) => t[ea]![eb]!));
  const adjacencyAligned = relabel(adjacency);
  const routedTransitions = rowNormalise(relabel(transitionCounts(routed, kSteps, m)));
  const perCycle = Array.from({ length: kSteps }, (_, j) => {
    let hit = 0;
    for (let i = 0; i < test.n; i++) if (routed[i * kSteps + j] === assignment[test.path[i * kSteps + j] as number]) hit++;
    return hit / test.n;
  });
  return {
    config,
    testMse: mse,
    relativeMse: mse / change,
    initialRelativeMse,
    assignment,
    routingAccuracy: matched / (test.n * kSteps),
    routingAccuracyPerCycle: perCycle,
    routingInformationPerCycle: perCycleConfusion.map(mutualInformation),
    confusionPerCycle: perCycleConfusion,
    parameters,
    adjacency,
    adjacencyAligned,
    adjacencyCorrelation: pearson(adjacencyAligned.flat(), truth.flat()),
    routingTransitionCorrelation: pearson(routedTransitions.flat(), truth.flat()),
    evaluationsPerToken: stats.expertEvaluations / test.n,
    lossCurve,
    seconds: (performance.now() - t0) / 1000,
  };
}
