import { backendsUnderTest, expectNoLeak, makeRng, maxAbsDiff, tf, useBackend, type BackendName } from '@goe/tf';
import { describe, expect, it } from 'vitest';
import { GoeConfigError } from './errors.js';
import {
  alignExperts,
  makeRoutingTask,
  mutualInformation,
  pearson,
  resolveRoutingRunOptions,
  resolveRoutingTaskSpec,
  trainRoutingModel,
  transitionCounts,
  type RoutingTaskKind,
} from './routing-task.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');

describe('routing task', () => {
  it.each(['graph', 'content'] as RoutingTaskKind[])('%s: targets are the composition of the functions on the path, recomputed with tensor ops', async (kind) => {
    await useBackend('cpu');
    const task = makeRoutingTask({ kind, d: 6, functions: 5, steps: 4, seed: 3 });
    const { d, functions: m, steps } = task.spec;
    const n = 200;
    const batch = task.sample(makeRng(4), n);
    const { rotations, selector, successor } = task.params;
    // Independently: the selector's argmax and every rotation as matrix products over the whole batch.
    const q = rotations.map((r) => tf.tensor2d(Float32Array.from(r), [d, d]));
    const c = tf.tensor2d(Float32Array.from(selector), [m, d]);
    let state = tf.tensor2d(batch.x, [n, d]);
    let f = Array.from(await tf.tidy(() => tf.argMax(tf.matMul(state, c, false, true), 1)).data());
    const path: number[][] = [];
    for (let j = 0; j < steps; j++) {
      if (j > 0) f = kind === 'graph' ? f.map((s) => successor[s]!) : Array.from(await tf.tidy(() => tf.argMax(tf.matMul(state, c, false, true), 1)).data());
      path.push(f);
      const chosen = tf.tensor2d(Float32Array.from(f.flatMap((s) => Array.from({ length: m }, (_, e) => (e === s ? 1 : 0)))), [n, m]);
      const next = tf.tidy(() => tf.addN(q.map((qm, e) => tf.mul(tf.slice(chosen, [0, e], [n, 1]), tf.matMul(state, qm, false, true)))));
      tf.dispose([state, chosen]);
      state = next as tf.Tensor2D;
    }
    expect(maxAbsDiff(await state.data(), batch.y)).toBeLessThan(1e-4);
    expect(Array.from(batch.path)).toEqual(Array.from({ length: n * steps }, (_, i) => path[i % steps]![Math.floor(i / steps)]));
    // Every function starts some path (the selector's cones all hold mass), and rotations keep norms.
    expect(new Set(path[0]).size).toBe(m);
    for (let i = 0; i < n; i++) {
      const nx = Math.hypot(...batch.x.subarray(i * d, (i + 1) * d));
      expect(Math.abs(Math.hypot(...batch.y.subarray(i * d, (i + 1) * d)) - nx)).toBeLessThan(1e-4 * (1 + nx));
    }
    tf.dispose([...q, c, state]);
  });

  it('has orthogonal functions and a transition graph that is one cycle through every function', () => {
    const task = makeRoutingTask({ d: 7, functions: 6, seed: 9 });
    const { d } = task.spec;
    for (const r of task.params.rotations) {
      for (let a = 0; a < d; a++) {
        for (let b = 0; b < d; b++) {
          let dot = 0;
          for (let c = 0; c < d; c++) dot += r[a * d + c]! * r[b * d + c]!;
          expect(Math.abs(dot - (a === b ? 1 : 0))).toBeLessThan(1e-12);
        }
      }
    }
    const seen = new Set<number>();
    for (let f = 0, i = 0; i < 6; i++, f = task.params.successor[f]!) seen.add(f);
    expect(seen.size).toBe(6);
  });

  it('measures how much a function tells about the next: log2 M bits on the graph, close to none in the control', () => {
    const at = (kind: RoutingTaskKind): number => {
      const t = makeRoutingTask({ kind });
      return mutualInformation(transitionCounts(t.sample(makeRng(5), 8192).path, t.spec.steps, t.spec.functions));
    };
    expect(at('graph')).toBeGreaterThan(1.99);
    expect(at('content')).toBeLessThan(0.3);
    // The formula on tables with known answers: independent (an outer product) and a used permutation.
    expect(Math.abs(mutualInformation([[2, 6], [3, 9]]))).toBeLessThan(1e-12);
    expect(mutualInformation([[0, 5, 0], [0, 0, 5], [5, 0, 0]])).toBeCloseTo(Math.log2(3), 12);
    expect(transitionCounts([0, 1, 2, 1, 1, -1], 3, 3)).toEqual([[0, 1, 0], [0, 1, 1], [0, 0, 0]]);
  });

  it('aligns experts to functions by the best one-to-one assignment (checked against every permutation)', () => {
    const rng = makeRng(11);
    const perms = (xs: number[]): number[][] => (xs.length <= 1 ? [xs] : xs.flatMap((x, i) => perms([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p])));
    for (let trial = 0; trial < 20; trial++) {
      const m = 2 + (trial % 4);
      const table = Array.from({ length: m }, () => Array.from({ length: m }, () => rng.int(50)));
      const best = Math.max(...perms([...Array(m).keys()]).map((p) => p.reduce((s, e, f) => s + table[f]![e]!, 0)));
      const { assignment, matched } = alignExperts(table);
      expect(matched).toBe(best);
      expect(assignment.reduce((s, e, f) => s + table[f]![e]!, 0)).toBe(best);
      expect(new Set(assignment).size).toBe(m);
    }
    expect(alignExperts([[1, 9, 0], [0, 1, 8], [7, 0, 2]]).assignment).toEqual([1, 2, 0]);
  });

  it('computes Pearson correlation as cov / (σ σ), NaN for a constant list', () => {
    const x = [1, 2, 4, 7];
    expect(pearson(x, x.map((v) => 3 * v - 2))).toBeCloseTo(1, 12);
    expect(pearson(x, x.map((v) => -v))).toBeCloseTo(-1, 12);
    // By hand: x̄ = 3.5, ȳ = 2.5, Σ dx dy = 1.25 + 2.25 + 0.75 + 1.75 = 6, Σ dx² = 21, Σ dy² = 5.
    expect(pearson(x, [2, 1, 4, 3])).toBeCloseTo(6 / Math.sqrt(21 * 5), 12);
    expect(pearson(x, [1, 1, 1, 1])).toBeNaN();
  });

  it('rejects a bad spec naming the field', () => {
    expect(() => resolveRoutingTaskSpec({ functions: 1 })).toThrow(GoeConfigError);
    expect(() => resolveRoutingTaskSpec({ functions: 1 })).toThrow(/routingTask\.functions/);
    expect(() => resolveRoutingTaskSpec({ kind: 'chain' as RoutingTaskKind })).toThrow(/routingTask\.kind/);
    expect(() => resolveRoutingTaskSpec({ size: 3 } as never)).toThrow(/routingTask\.size/);
    expect(() => resolveRoutingRunOptions({ layer: {}, warmup: 3 } as never)).toThrow(/routingRun\.warmup/);
    expect(() => resolveRoutingRunOptions({ layer: {}, curriculum: 'some' as 'all' })).toThrow(/routingRun\.curriculum/);
    expect(() => resolveRoutingRunOptions({ layer: {}, warmupSteps: -1 })).toThrow(/routingRun\.warmupSteps/);
    expect(() => resolveRoutingRunOptions({ layer: {}, lr: 0 })).toThrow(/routingRun\.lr/);
    expect(resolveRoutingRunOptions({ layer: {}, warmupSteps: 5 })).toMatchObject({ warmupSteps: 5, curriculum: 'first', steps: 400 });
  });
});

describe.each(BACKENDS)('routing-task training on %s', (backend) => {
  it('a short run lowers the held-out error at k·K expert evaluations per token, and leaks nothing', async () => {
    await useBackend(backend);
    const task = makeRoutingTask({ kind: 'graph' });
    const result = await expectNoLeak(
      () => trainRoutingModel(task, { layer: { router: 'goe', k: 2 }, steps: 30, batch: 64, testSize: 256, lr: 1e-2, seed: 2, logEvery: 10 }),
      'trainRoutingModel',
    );
    expect(result.relativeMse).toBeLessThan(0.8 * result.initialRelativeMse);
    expect(result.lossCurve.map(([s]) => s)).toEqual([0, 10, 20]);
    expect(result.evaluationsPerToken).toBe(2 * task.spec.steps);
    for (const row of result.adjacency) expect(Math.abs(row.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-5);
    expect(new Set(result.assignment).size).toBe(task.spec.functions);
    expect(result.routingInformationPerCycle).toHaveLength(task.spec.steps);
    for (const v of [...result.routingInformationPerCycle, result.routingAccuracy]) expect(v).toBeGreaterThanOrEqual(0);
    expect(Number.isFinite(result.adjacencyCorrelation)).toBe(true);
  });
});

// The mechanism the structure-recovery experiment relies on (bench/routing-experiment.ts, README): with
// linear experts, a curriculum over composition lengths lets cycle 0 specialise the experts by
// function from the content first; then the graph router's bias learns A = G and routes the later
// cycles by it, which content alone cannot do on the graph task.
describe('structure recovery with the curriculum (wasm, else cpu)', () => {
  it('goe-route learns A correlated with G and routes every cycle by function; the loss is logged across the stages', async () => {
    await useBackend(BACKENDS.includes('wasm') ? 'wasm' : 'cpu');
    const task = makeRoutingTask({ kind: 'graph', seed: 1 });
    const r = await trainRoutingModel(task, {
      layer: { router: 'goe', messages: false, k: 2, graphGamma: 8, expert: 'linear' },
      warmupSteps: 150,
      curriculum: 'all',
      steps: 150,
      batch: 128,
      testSize: 512,
      seed: 1,
      logEvery: 50,
    });
    // Lengths 1 and 2 (150 steps each), then the whole task: one numbering across the stages.
    expect(r.lossCurve.map(([s]) => s)).toEqual([0, 50, 100, 150, 200, 250, 300, 350, 400]);
    expect(r.relativeMse).toBeLessThan(0.2);
    // Routing carries most of the log2 M = 2 bits about the function at every cycle ...
    for (const bits of r.routingInformationPerCycle) expect(bits).toBeGreaterThan(1.2);
    expect(r.routingAccuracy).toBeGreaterThan(0.8);
    // ... and the learned graph, relabelled by that routing, is the task's transition graph.
    expect(r.adjacencyCorrelation).toBeGreaterThan(0.8);
    expect(r.routingTransitionCorrelation).toBeGreaterThan(0.8);
  });
});
