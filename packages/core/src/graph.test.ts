import { backendsUnderTest, directionalGradCheck, expectNoLeak, makeRng, maxAbsDiff, tf, useBackend, type BackendName } from '@goe/tf';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveGoeConfig } from './config.js';
import { DynamicExpertGraph, EmaExpertGraph, StaticExpertGraph, graphRegistry, type ExpertGraph } from './graph.js';
import { GoeLayer, disposeGoeOutput } from './layer.js';
import { normals } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');

// ---- float64 host references ----

function rowSoftmax64(s: number[][], allowed?: number[][]): number[][] {
  return s.map((row, n) => {
    const ok = row.map((_, m) => (allowed ? allowed[n]![m] === 1 : true));
    const mx = Math.max(...row.filter((_, m) => ok[m]));
    const e = row.map((v, m) => (ok[m] ? Math.exp(v - mx) : 0));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / z);
  });
}

/** C masked and row-normalised; a row with nothing on an allowed edge is uniform over them. */
function rowNormalised64(c: number[][], allowed?: number[][]): number[][] {
  return c.map((row, n) => {
    const ok = row.map((_, m) => (allowed ? allowed[n]![m]! : 1));
    const kept = row.map((v, m) => v * ok[m]!);
    const s = kept.reduce((a, b) => a + b, 0);
    const nOk = ok.reduce((a, b) => a + b, 0);
    return s > 0 ? kept.map((v) => v / s) : ok.map((o) => o / nOk);
  });
}

function matrix(values: ArrayLike<number>, m: number): number[][] {
  return Array.from({ length: m }, (_, i) => Array.from(values).slice(i * m, (i + 1) * m));
}

async function adjacencyOf(g: ExpertGraph): Promise<number[][]> {
  const a = g.adjacency();
  const out = (await a.array()) as number[][];
  a.dispose();
  return out;
}

function expectStochastic(a: number[][]): void {
  for (const row of a) expect(Math.abs(row.reduce((x, y) => x + y, 0) - 1)).toBeLessThan(1e-6);
}

// A ring with self-loops and one extra chord: 0 -> {0, 1, 3}, 1 -> {1, 2}, 2 -> {2, 3}, 3 -> {3, 0}.
const TOPOLOGY = [
  [1, 1, 0, 1],
  [0, 1, 1, 0],
  [0, 0, 1, 1],
  [1, 0, 0, 1],
];

describe.each(BACKENDS)('expert graphs on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  it('ema: observe() keeps the EMA of normalised co-selection counts, in training only', async () => {
    const m = 3;
    const beta = 0.9;
    const g = new EmaExpertGraph(m, beta, makeRng(1));
    expect(g.trainableVariables()).toEqual([]); // statistics, no gradient
    // Empty: uniform rows.
    expect(maxAbsDiff((await adjacencyOf(g)).flat(), new Array(9).fill(1 / 3))).toBeLessThan(1e-7);

    const observe = (ids: number[][], training = true): void => {
      const t = tf.tensor2d(ids, [ids.length, ids[0]!.length], 'int32');
      g.observe(t, training);
      t.dispose();
    };
    // Call 1, by hand: tokens chose {0, 1} and {0, 2}; a third row is empty (halted or padding) and
    // does not count. SᵀS = [[2,1,1],[1,1,0],[1,0,1]], n = 2, C = 0.1 · SᵀS / 2.
    observe([
      [0, 1],
      [0, 2],
      [-1, -1],
    ]);
    const c1 = [
      [0.1, 0.05, 0.05],
      [0.05, 0.05, 0],
      [0.05, 0, 0.05],
    ];
    expect(maxAbsDiff(await g.counts.data(), c1.flat())).toBeLessThan(1e-7);
    // Call 2: {1, 2} three times, {0, 1} once (n = 4): C = 0.9 C1 + 0.1 · SᵀS / 4.
    observe([
      [1, 2],
      [2, 1],
      [1, 2],
      [0, 1],
    ]);
    const s2 = [
      [1, 1, 0],
      [1, 4, 3],
      [0, 3, 3],
    ];
    const c2 = c1.map((row, i) => row.map((v, j) => 0.9 * v + 0.1 * (s2[i]![j]! / 4)));
    expect(maxAbsDiff(await g.counts.data(), c2.flat())).toBeLessThan(1e-7);
    // Eval and an all-empty cycle change nothing.
    observe([[0, 2]], false);
    observe([[-1, -1]]);
    expect(maxAbsDiff(await g.counts.data(), c2.flat())).toBeLessThan(1e-7);
    // Call 3, single-slot ids (k = 1): SᵀS is diagonal.
    observe([[2], [2], [0]]);
    const c3 = c2.map((row, i) => row.map((v, j) => 0.9 * v + 0.1 * (i === j ? [1, 0, 2][i]! / 3 : 0)));
    expect(maxAbsDiff(await g.counts.data(), c3.flat())).toBeLessThan(1e-7);
    // A = C row-normalised.
    const a = await adjacencyOf(g);
    expect(maxAbsDiff(a.flat(), rowNormalised64(c3).flat())).toBeLessThan(1e-6);
    expectStochastic(a);
    await expectNoLeak(() => {
      observe([[0, 1]]);
      tf.dispose(g.adjacency());
    }, 'observe');
    g.dispose();
  });

  it('dynamic: A = row_softmax(E Eᵀ / √w), rows sum to 1, gradients reach E', async () => {
    const m = 5;
    const w = 6;
    const g = new DynamicExpertGraph(m, w, makeRng(2));
    const ev = Array.from(await g.embeddings.data());
    const rows = Array.from({ length: m }, (_, i) => ev.slice(i * w, (i + 1) * w));
    const scores = rows.map((x) => rows.map((y) => x.reduce((s, v, c) => s + v * y[c]!, 0) / Math.sqrt(w)));
    const a = await adjacencyOf(g);
    expect(maxAbsDiff(a.flat(), rowSoftmax64(scores).flat())).toBeLessThan(1e-6);
    expectStochastic(a);
    // A loss on A: its gradient in E is finite, non-zero, and matches finite differences.
    const weights = tf.tensor2d(normals(m * m, 3), [m, m]);
    const loss = (): tf.Scalar => tf.tidy(() => tf.sum(tf.mul(g.adjacency(), weights)) as tf.Scalar);
    const { value, grads } = tf.variableGrads(loss, [g.embeddings]);
    const grad = await grads[g.embeddings.name]!.data();
    expect(Array.from(grad).every(Number.isFinite)).toBe(true);
    expect(Math.max(...Array.from(grad).map(Math.abs))).toBeGreaterThan(1e-4);
    const { analytic, numeric } = await directionalGradCheck(g.embeddings, grad, loss, makeRng(4), 1e-2);
    expect(Math.abs(analytic - numeric)).toBeLessThan(0.02 * Math.abs(analytic) + 1e-4);
    tf.dispose([value, weights, ...Object.values(grads)]);
    g.dispose();
  });

  it('topology: every kind has exactly 0 on masked edges and stochastic rows', async () => {
    const m = 4;
    const fixed = new StaticExpertGraph(m, makeRng(5), TOPOLOGY);
    // Uniform over the allowed edges at Θ = 0.
    expect(maxAbsDiff((await adjacencyOf(fixed)).flat(), TOPOLOGY.flatMap((row) => row.map((v) => v / row.reduce((a, b) => a + b, 0))))).toBeLessThan(1e-7);
    const theta = normals(m * m, 6, 2);
    fixed.theta.assign(tf.tensor2d(theta, [m, m]));
    const dyn = new DynamicExpertGraph(m, 3, makeRng(7), TOPOLOGY);
    const ema = new EmaExpertGraph(m, 0.9, makeRng(8), TOPOLOGY);
    // Counts on masked edges too, and a row (2) whose only counts are on masked edges.
    const counts = [
      [0.3, 0.1, 0.2, 0.1],
      [0.1, 0.2, 0.1, 0.3],
      [0.2, 0.1, 0, 0],
      [0, 0, 0, 0],
    ];
    ema.counts.assign(tf.tensor2d(counts));
    const ev = Array.from(await dyn.embeddings.data());
    const er = Array.from({ length: m }, (_, i) => ev.slice(i * 3, (i + 1) * 3));
    const refs: [string, ExpertGraph, number[][]][] = [
      ['static', fixed, rowSoftmax64(matrix(theta, m), TOPOLOGY)],
      ['dynamic', dyn, rowSoftmax64(er.map((x) => er.map((y) => x.reduce((s, v, c) => s + v * y[c]!, 0) / Math.sqrt(3))), TOPOLOGY)],
      ['ema', ema, rowNormalised64(counts, TOPOLOGY)],
    ];
    for (const [name, g, ref] of refs) {
      const a = await adjacencyOf(g);
      a.forEach((row, n) => row.forEach((v, mm) => TOPOLOGY[n]![mm] === 0 && expect(v, `${name} A[${n},${mm}]`).toBe(0)));
      expectStochastic(a);
      expect(maxAbsDiff(a.flat(), ref.flat()), name).toBeLessThan(1e-6);
    }
    // Far-apart scores do not break the mask: the allowed entries of a row stay a distribution even
    // when a masked entry is 200 above them.
    const skew = TOPOLOGY.flatMap((row) => row.map((v) => (v ? -100 : 100)));
    fixed.theta.assign(tf.tensor2d(skew, [m, m]));
    const a = await adjacencyOf(fixed);
    expectStochastic(a);
    a.forEach((row, n) =>
      row.forEach((v, mm) => {
        if (TOPOLOGY[n]![mm]) expect(v).toBeCloseTo(1 / TOPOLOGY[n]!.reduce((x, y) => x + y, 0), 6);
        else expect(v).toBe(0);
      }),
    );
    [fixed, dyn, ema].forEach((g) => g.dispose());
  });

  it.each(['dynamic', 'ema'])('graph %s inside GoeLayer: messages use it, gradients finite, ema learns only in training', async (graph) => {
    const cfg = resolveGoeConfig({ d: 8, da: 4, experts: 4, k: 2, cycles: 2, expertDim: 8, expertHidden: 16, haltEps: 0, graph, topology: TOPOLOGY });
    const layer = new GoeLayer(cfg, makeRng(9));
    const tokens = tf.tensor3d(normals(2 * 8 * 8, 10), [2, 8, 8]);
    const aux = tf.tensor3d(normals(2 * 8 * 4, 11), [2, 8, 4]);
    const vars = layer.trainableVariables();
    const names = [...layer.variables().entries()].filter(([, v]) => v.trainable).map(([n]) => n);
    const { value, grads } = tf.variableGrads(() => {
      const out = layer.apply({ tokens, aux }, { training: true });
      return tf.add(tf.mean(tf.square(out.tokens)), out.losses.total) as tf.Scalar;
    }, vars);
    for (const [name, v] of names.map((n, i) => [n, vars[i]!] as const)) {
      const g = Array.from(await grads[v.name]!.data());
      const norm = Math.sqrt(g.reduce((s, x) => s + x * x, 0));
      expect(Number.isFinite(norm), name).toBe(true);
      if (name.startsWith('graph.')) expect(norm, name).toBeGreaterThan(0); // E reaches the loss through the messages
    }
    tf.dispose([value, ...Object.values(grads)]);
    if (graph === 'ema') {
      const counts = (layer.graph as EmaExpertGraph).counts;
      const after = Array.from(await counts.data());
      expect(after.some((v) => v > 0)).toBe(true); // the training pass counted its two cycles
      disposeGoeOutput(layer.apply({ tokens, aux })); // eval
      expect(Array.from(await counts.data())).toEqual(after);
    }
    const out = layer.apply({ tokens, aux });
    const a = (await out.provenance.adjacency.array()) as number[][];
    a.forEach((row, n) => row.forEach((v, mm) => TOPOLOGY[n]![mm] === 0 && expect(v).toBe(0)));
    disposeGoeOutput(out);
    await expectNoLeak(() => disposeGoeOutput(layer.apply({ tokens, aux }, { training: true })), 'apply');
    tf.dispose([tokens, aux]);
    layer.dispose();
  });
});

describe('graph registry', () => {
  it('registers static, dynamic and ema, and the config accepts them', () => {
    expect(graphRegistry.keys().slice(0, 3)).toEqual(['static', 'dynamic', 'ema']);
    for (const graph of ['static', 'dynamic', 'ema']) expect(resolveGoeConfig({ graph }).graph).toBe(graph);
    const spec = { experts: 3, topology: null, emaBeta: 0.5, embedDim: 7 };
    const dyn = graphRegistry.get('dynamic')(spec, makeRng(1)) as DynamicExpertGraph;
    expect(dyn.embeddings.shape).toEqual([3, 7]);
    const ema = graphRegistry.get('ema')(spec, makeRng(1)) as EmaExpertGraph;
    expect(ema.beta).toBe(0.5);
    [dyn, ema].forEach((g) => g.dispose());
  });
});
