/**
 * Properties every router of the layer must keep (DESIGN.md §4, "Properties worth a test each"),
 * checked for every key of `routerRegistry` (and every graph kind where the graph matters), so that a
 * router registered later is covered without touching this file. layer.test.ts checks the `goe`
 * router against the float64 reference; here each property is extended to the whole registry, to
 * several cycles, to both dispatch modes and to gradients.
 */
import {
  Adam,
  backendsUnderTest,
  directionalGradCheck,
  expectNoLeak,
  makeRng,
  maxAbsDiff,
  tf,
  useBackend,
  type BackendName,
} from '@goe/tf';
import { beforeAll, describe, expect, it } from 'vitest';
import { routerRegistry, graphRegistry, resolveGoeConfig, type GoeConfigInput } from './index.js';
import { routeRows } from './dispatch.js';
import { GoeLayer, disposeGoeOutput, readGoeStats, type GoeOutput } from './layer.js';
import { adamStep, copyWeights, normals } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');
const ROUTERS = routerRegistry.keys();
const GRAPHS = graphRegistry.keys();

const B = 2;
const N = 8;
const R = B * N;
const D = 6;
const DA = 3;
const M = 4;
const K = 2;
/**
 * capacityFactor = M / k makes the capacity C = ceil(M/k · k · R / M) = R: it never binds, and the
 * routers that need a capacity (`expert-choice`) are valid; tests of dropping set their own.
 */
const SMALL: GoeConfigInput = { d: D, da: DA, experts: M, k: 2, cycles: K, expertDim: 8, expertHidden: 12, capacityFactor: M / 2 };
const ALL_REGULARISERS = { balance: 0.1, entropy: 0.01, switchBalance: 0.01, zLoss: 0.001, halting: 0.1 };

/**
 * Variables that legitimately get no gradient under a router (DESIGN.md §4: every other trainable
 * variable must get a finite non-zero one on some input). Keyed by router, then variable path.
 */
const NO_GRADIENT: Record<string, Record<string, string>> = {
  chain: { 'graph.theta': 'Chain-of-Experts has no expert graph: no routing bias and no messages (chain.ts)' },
  graphmoe: { 'graph.theta': 'GraphMoE passes state through its GRU virtual node only: no routing bias and no messages (graphmoe.ts)' },
};

function inputs(seed: number, b = B, n = N): { tokens: tf.Tensor3D; aux: tf.Tensor3D } {
  return { tokens: tf.tensor3d(normals(b * n * D, seed), [b, n, D]), aux: tf.tensor3d(normals(b * n * DA, seed + 100), [b, n, DA]) };
}

function layerOf(partial: GoeConfigInput, seed = 7): GoeLayer {
  return new GoeLayer(resolveGoeConfig({ ...SMALL, ...partial }), makeRng(seed));
}

/** Random Θ (or graph weights of any learned kind), so that A is not uniform and the graph terms matter. */
function randomiseGraph(layer: GoeLayer, seed = 3): void {
  for (const v of layer.graph.trainableVariables()) v.assign(tf.tensor(normals(v.size, seed, 1.5), v.shape));
}

/** The training loss of these tests: a fixed random target plus the layer's regularisers. */
function lossOf(out: GoeOutput, target: tf.Tensor3D): tf.Scalar {
  return tf.add(tf.mean(tf.square(tf.sub(out.tokens, target))), out.losses.total) as tf.Scalar;
}

/** Trainable variables by dotted path, with the gradient of `loss` for each (absent: none). */
async function namedGrads(layer: GoeLayer, loss: () => tf.Scalar): Promise<Map<string, Float32Array | undefined>> {
  const named = [...layer.variables()].filter(([, v]) => v.trainable);
  const { value, grads } = tf.variableGrads(loss, named.map(([, v]) => v));
  const out = new Map<string, Float32Array | undefined>();
  for (const [name, v] of named) {
    const g = grads[v.name];
    out.set(name, g ? ((await g.data()) as Float32Array) : undefined);
  }
  tf.dispose([value, ...Object.values(grads)]);
  return out;
}

function norm(g: ArrayLike<number> | undefined): number {
  if (!g) return 0;
  let s = 0;
  for (let i = 0; i < g.length; i++) s += (g[i] as number) ** 2;
  return Math.sqrt(s);
}

/** Per token and cycle, expert id -> gate, from provenance `[K, B, N, s]` (slot order differs between routers). */
async function gateMaps(out: GoeOutput): Promise<Map<number, number>[]> {
  const ids = await out.provenance.experts.data();
  const gates = await out.provenance.gates.data();
  const s = out.provenance.experts.shape[3];
  const maps: Map<number, number>[] = [];
  for (let q = 0; q < ids.length / s; q++) {
    const m = new Map<number, number>();
    for (let j = 0; j < s; j++) if ((ids[q * s + j] as number) >= 0) m.set(ids[q * s + j] as number, gates[q * s + j] as number);
    maps.push(m);
  }
  return maps;
}

describe.each(BACKENDS)('layer invariants on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  describe.each(['exact', 'dense'] as const)('with %s dispatch', (dispatch) => {
    it.each(ROUTERS)('a one-expert %s layer is the MLP it wraps, applied once per cycle', async (router) => {
      const { tokens, aux } = inputs(1);
      for (const cycles of [1, 2]) {
        const layer = layerOf({ router, dispatch, experts: 1, k: 1, cycles, capacityFactor: 1, haltEps: 0 });
        // A router that rewrites the token between rounds (`afterCycle`, GraphMoE) is not an iterated
        // MLP for K > 1; with K = 1 every router must be.
        if (cycles > 1 && layer.router.afterCycle) {
          layer.dispose();
          continue;
        }
        randomiseGraph(layer);
        const out = layer.apply({ tokens, aux });
        // t ← t + W_o (f(W_p [t; a]) + A[0,0] W_c h_prev), with A[0,0] = 1 for one expert; the expert
        // applied directly, no router and no dispatch.
        const expected = tf.tidy(() => {
          let t = tf.reshape(tokens, [R, D]) as tf.Tensor2D;
          const a = tf.reshape(aux, [R, DA]);
          let hPrev: tf.Tensor2D | null = null;
          for (let k = 0; k < cycles; k++) {
            let h = layer.experts[0]!.apply(layer.wp.apply(tf.concat([t, a], 1)) as tf.Tensor2D);
            if (hPrev && layer.wc) h = tf.add(h, layer.wc.apply(hPrev)) as tf.Tensor2D;
            t = tf.add(t, layer.wo.apply(h)) as tf.Tensor2D;
            hPrev = h;
          }
          return t;
        });
        expect(maxAbsDiff(await out.tokens.data(), await expected.data()), `K = ${cycles}`).toBeLessThan(1e-5);
        const gates = Array.from(await out.provenance.gates.data());
        expect(gates.every((g) => Math.abs(g - 1) < 1e-6)).toBe(true);
        disposeGoeOutput(out);
        expected.dispose();
        layer.dispose();
      }
      tf.dispose([tokens, aux]);
    });
  });

  it.each([0, 1])('topk with k = M (capacity factor %s) equals the dense mixture in values, gates and gradients', async (capacityFactor) => {
    // k = M with capacity factor 1 gives C = R: every expert takes every token, nothing is dropped.
    const { tokens, aux } = inputs(3);
    const target = tf.tensor3d(normals(R * D, 4), [B, N, D]);
    const cfg = { cycles: 3, haltEps: 0.02, regularisers: ALL_REGULARISERS };
    const topk = layerOf({ ...cfg, router: 'topk', k: M, capacityFactor, dispatch: 'exact' });
    const dense = layerOf({ ...cfg, router: 'dense', dispatch: 'dense' }, 99);
    randomiseGraph(topk);
    copyWeights(topk, dense);
    const [o1, o2] = [topk.apply({ tokens, aux }), dense.apply({ tokens, aux })];
    // Slots are summed in score order (topk) or index order (dense): equal up to float32 rounding.
    expect(maxAbsDiff(await o1.tokens.data(), await o2.tokens.data())).toBeLessThan(1e-4);
    expect(Array.from(await o1.provenance.haltedAt.data())).toEqual(Array.from(await o2.provenance.haltedAt.data()));
    const halted = Array.from(await o1.provenance.haltedAt.data());
    expect(halted.some((h) => h < 3) && halted.some((h) => h === 3)).toBe(true); // halting is exercised
    const [m1, m2] = [await gateMaps(o1), await gateMaps(o2)];
    m1.forEach((m, q) => {
      expect([...m.keys()].sort()).toEqual([...m2[q]!.keys()].sort());
      for (const [e, g] of m) expect(Math.abs(g - m2[q]!.get(e)!)).toBeLessThan(1e-6);
    });
    const s1 = await readGoeStats(o1.stats);
    const s2 = await readGoeStats(o2.stats);
    expect(s1.expertEvaluations).toBe(s2.expertEvaluations);
    expect(maxAbsDiff(s1.load.flat(), s2.load.flat())).toBeLessThan(1e-6);
    [o1, o2].forEach(disposeGoeOutput);
    const g1 = await namedGrads(topk, () => lossOf(topk.apply({ tokens, aux }), target));
    const g2 = await namedGrads(dense, () => lossOf(dense.apply({ tokens, aux }), target));
    for (const [name, g] of g1) {
      expect(g2.has(name), name).toBe(true);
      expect(norm(g), name).toBeGreaterThan(0);
      expect(maxAbsDiff(g!, g2.get(name)!), name).toBeLessThan(1e-4 * Math.max(1, norm(g)));
    }
    tf.dispose([tokens, aux, target]);
    [topk, dense].forEach((l) => l.dispose());
  });

  it.each([0, M / 2])(
    'goe with A = I and K = 1 (γ = 1) equals topk without capacity limits (capacity factor %s), gradients included',
    async (capacityFactor) => {
      const { tokens, aux } = inputs(5);
      const target = tf.tensor3d(normals(R * D, 6), [B, N, D]);
      const cfg = { cycles: 1, graphGamma: 1, regularisers: ALL_REGULARISERS };
      const goe = layerOf({ ...cfg, router: 'goe' });
      // row_softmax of a diagonal of 40: A = I to within e^-40.
      goe.graph.variables().get('theta')!.assign(tf.tensor2d(normals(M * M, 8, 0).map((_, i) => (i % (M + 1) === 0 ? 40 : 0)), [M, M]));
      const adjacency = await tf.tidy(() => goe.graph.adjacency()).data();
      expect(maxAbsDiff(adjacency, Array.from({ length: M * M }, (_, i) => (i % (M + 1) === 0 ? 1 : 0)))).toBeLessThan(1e-12);
      const topk = layerOf({ ...cfg, router: 'topk', capacityFactor }, 5);
      copyWeights(goe, topk);
      const [o1, o2] = [goe.apply({ tokens, aux }), topk.apply({ tokens, aux }, { training: true })]; // jitter 0: training changes nothing
      expect(maxAbsDiff(await o1.tokens.data(), await o2.tokens.data())).toBe(0);
      expect(Array.from(await o1.provenance.experts.data())).toEqual(Array.from(await o2.provenance.experts.data()));
      expect(Array.from(await o1.provenance.gates.data())).toEqual(Array.from(await o2.provenance.gates.data()));
      [o1, o2].forEach(disposeGoeOutput);
      const g1 = await namedGrads(goe, () => lossOf(goe.apply({ tokens, aux }), target));
      const g2 = await namedGrads(topk, () => lossOf(topk.apply({ tokens, aux }, { training: true }), target));
      for (const [name, g] of g1) {
        // K = 1: no cycle has a previous one, so Θ enters neither the bias nor a message.
        if (name === 'graph.theta') expect(norm(g)).toBe(0);
        else expect(g && Array.from(g), name).toEqual(g2.get(name) && Array.from(g2.get(name)!)); // the halt head: none in either (no cycle 1)
      }
      tf.dispose([tokens, aux, target]);
      [goe, topk].forEach((l) => l.dispose());
    },
  );

  it('goe with γ = 0 equals topk at every cycle count, messages and halting included (the graph bias is their only difference)', async () => {
    const { tokens, aux } = inputs(9);
    const target = tf.tensor3d(normals(R * D, 10), [B, N, D]);
    const cfg = { cycles: 3, graphGamma: 0, haltEps: 0.02, capacityFactor: 0, regularisers: ALL_REGULARISERS };
    const goe = layerOf({ ...cfg, router: 'goe' });
    randomiseGraph(goe);
    const topk = layerOf({ ...cfg, router: 'topk' }, 5);
    copyWeights(goe, topk);
    const [o1, o2] = [goe.apply({ tokens, aux }), topk.apply({ tokens, aux })];
    expect(maxAbsDiff(await o1.tokens.data(), await o2.tokens.data())).toBe(0);
    expect(Array.from(await o1.provenance.experts.data())).toEqual(Array.from(await o2.provenance.experts.data()));
    expect(Array.from(await o1.provenance.haltedAt.data())).toEqual(Array.from(await o2.provenance.haltedAt.data()));
    [o1, o2].forEach(disposeGoeOutput);
    const g1 = await namedGrads(goe, () => lossOf(goe.apply({ tokens, aux }), target));
    const g2 = await namedGrads(topk, () => lossOf(topk.apply({ tokens, aux }), target));
    for (const [name, g] of g1) expect(g && Array.from(g), name).toEqual(g2.get(name) && Array.from(g2.get(name)!));
    expect(norm(g1.get('graph.theta'))).toBeGreaterThan(0); // Θ is trained through the messages
    tf.dispose([tokens, aux, target]);
    [goe, topk].forEach((l) => l.dispose());
  });

  it.each([...ROUTERS.map((r) => [r, 'static']), ...GRAPHS.filter((g) => g !== 'static').map((g) => ['goe', g])])(
    'router %s, graph %s: every trainable variable gets a finite gradient, non-zero unless listed with its reason',
    async (router, graph) => {
      const { tokens, aux } = inputs(11);
      const target = tf.tensor3d(normals(R * D, 12), [B, N, D]);
      // K = 3: GraphMoE's reset gate W_r only acts from the third round on (h_0 = 0).
      const layer = layerOf({ router, graph, cycles: 3, haltEps: 0, regularisers: ALL_REGULARISERS });
      randomiseGraph(layer);
      const out = layer.apply({ tokens, aux }, { training: true });
      const load = (await readGoeStats(out.stats)).load;
      disposeGoeOutput(out);
      expect(load.every((row) => row.every((f) => f > 0)), 'every expert gets tokens in every cycle').toBe(true);
      const grads = await namedGrads(layer, () => lossOf(layer.apply({ tokens, aux }, { training: true }), target));
      const none = NO_GRADIENT[router] ?? {};
      for (const [name, g] of grads) {
        const n = norm(g);
        expect(Number.isFinite(n), name).toBe(true);
        if (name in none) expect(n, `${name}: ${none[name]}`).toBe(0);
        else expect(n, name).toBeGreaterThan(0);
      }
      tf.dispose([tokens, aux, target]);
      layer.dispose();
    },
  );

  it.each(ROUTERS)('%s: gradients of every variable agree with central finite differences (exact dispatch)', async (router) => {
    const { tokens, aux } = inputs(13);
    const target = tf.tensor3d(normals(R * D, 14), [B, N, D]);
    const layer = layerOf({ router, dispatch: 'exact', cycles: 3, haltEps: 0, regularisers: ALL_REGULARISERS });
    randomiseGraph(layer);
    // One training call, so that co-selection statistics (symphony) are no longer uniform; eval freezes them.
    disposeGoeOutput(layer.apply({ tokens, aux }, { training: true }));
    // The selections are piecewise constant in the weights: a difference is only fair if both sides
    // route every token the same way, so every evaluation keeps its ids for the check below.
    const idsSeen: tf.Tensor[] = [];
    const loss = (): tf.Scalar =>
      tf.tidy(() => {
        const out = layer.apply({ tokens, aux });
        idsSeen.push(tf.keep(out.provenance.experts.clone()));
        return lossOf(out, target);
      });
    const named = [...layer.variables()].filter(([, v]) => v.trainable);
    const { value, grads } = tf.variableGrads(loss, named.map(([, v]) => v));
    const rng = makeRng(15);
    let checked = 0;
    let largest = 0;
    for (const [name, v] of named) {
      const g = grads[v.name];
      if (!g) continue;
      const { analytic, numeric } = await directionalGradCheck(v, await g.data(), loss, rng, 1e-3);
      expect(Math.abs(numeric - analytic), `${name}: analytic ${analytic}, numeric ${numeric}`).toBeLessThan(0.02 * Math.abs(analytic) + 2e-3);
      checked++;
      largest = Math.max(largest, Math.abs(analytic));
    }
    expect(checked).toBeGreaterThan(8);
    expect(largest).toBeGreaterThan(0.1); // the check compares derivatives well above its tolerance
    const base = Array.from(await idsSeen[0]!.data());
    for (const t of idsSeen) expect(Array.from(await t.data())).toEqual(base);
    tf.dispose([value, ...Object.values(grads), ...idsSeen, tokens, aux, target]);
    layer.dispose();
  });

  it('the row-routing kernel (gather with repeats, scatter-add gradient) agrees with finite differences', async () => {
    const rng = makeRng(17);
    const xs = [tf.variable(tf.tensor2d(normals(5 * 3, 18), [5, 3])), tf.variable(tf.tensor2d(normals(4 * 3, 19), [4, 3]))];
    // Output rows read input rows (global numbering over both inputs) with repeats and gaps (−1).
    const src = Int32Array.from([8, 0, 0, -1, 3, 6, 2, 8, 5, 1]);
    const outRows = [4, 6];
    const probes = outRows.map((n, j) => tf.tensor2d(normals(n * 3, 20 + j), [n, 3]));
    const loss = (): tf.Scalar =>
      tf.tidy(() => tf.addN(routeRows(xs as unknown as tf.Tensor2D[], src, outRows).map((o, j) => tf.sum(tf.mul(tf.square(o), probes[j]!)))) as tf.Scalar);
    const { value, grads } = tf.variableGrads(loss, xs);
    for (const x of xs) {
      const { analytic, numeric } = await directionalGradCheck(x, await grads[x.name]!.data(), loss, rng, 1e-2);
      expect(Math.abs(analytic)).toBeGreaterThan(1e-2);
      expect(Math.abs(numeric - analytic)).toBeLessThan(1e-3 * Math.abs(analytic) + 1e-4);
    }
    tf.dispose([value, ...Object.values(grads), ...xs, ...probes]);
  });

  it.each(ROUTERS)('%s: no tensor leaks across 100 training steps (halting, padding, every regulariser)', async (router) => {
    // Capacity factor 1: C = 4 places per expert for the 12 slots of 6 real tokens, so an uneven
    // choice drops slots and the dropping path runs too.
    const layer = layerOf({ router, d: D, experts: 3, k: 2, capacityFactor: 1, cycles: 2, haltEps: 0.02, regularisers: ALL_REGULARISERS });
    const { tokens, aux } = inputs(21, 1, 8);
    const target = tf.tensor3d(normals(8 * D, 22), [1, 8, D]);
    const mask = tf.tensor2d([1, 1, 1, 0, 1, 1, 1, 0], [1, 8]);
    const adam = new Adam();
    const step = (): void => adamStep(layer, adam, () => lossOf(layer.apply({ tokens, aux }, { training: true, mask }), target), 1e-2);
    step(); // Adam creates its moments on a parameter's first step
    step();
    const variables = layer.variables().size;
    await expectNoLeak(() => {
      for (let i = 0; i < 100; i++) step();
    }, `${router}: 100 training steps`);
    await expectNoLeak(() => disposeGoeOutput(layer.apply({ tokens, aux }, { mask })), `${router}: eval apply`);
    expect(layer.variables().size).toBe(variables);
    adam.dispose();
    tf.dispose([tokens, aux, target, mask]);
    layer.dispose();
  });

  it.each(ROUTERS)('%s: evaluation is deterministic and leaves the layer unchanged (jitter and statistics only in training)', async (router) => {
    const layer = layerOf({ router, cycles: 3, haltEps: 0.02, jitter: 0.5, regularisers: ALL_REGULARISERS });
    randomiseGraph(layer);
    const { tokens, aux } = inputs(23);
    disposeGoeOutput(layer.apply({ tokens, aux }, { training: true })); // statistics (symphony, ema) are no longer fresh
    const read = async (o: GoeOutput): Promise<number[][]> => {
      const s = o.stats;
      const ts = [o.tokens, ...Object.values(o.provenance), ...Object.values(o.losses), s.load, s.routerEntropy, s.activeFraction, s.expertEvaluations, ...Object.values(s.perCycle)];
      return Promise.all(ts.map(async (t) => Array.from(await t.data())));
    };
    const state = async (): Promise<number[][]> => Promise.all([...layer.variables().values()].map(async (v) => Array.from(await v.data())));
    const before = await state();
    const o1 = layer.apply({ tokens, aux });
    const o2 = layer.apply({ tokens, aux });
    expect(await read(o2)).toEqual(await read(o1));
    expect(await state()).toEqual(before);
    [o1, o2].forEach(disposeGoeOutput);
    tf.dispose([tokens, aux]);
    layer.dispose();
  });

  it.each(ROUTERS)('%s: padding values change neither the real tokens\' routing and outputs nor the statistics (binding capacity)', async (router) => {
    // Capacity factor 1: C = ceil(k · R_real / M) binds for `topk` and `expert-choice`, so a padding
    // token that took a place would change which real tokens are dropped.
    const cfg = { router, cycles: 3, haltEps: 0.02, capacityFactor: 1, jitter: 0.2, regularisers: ALL_REGULARISERS };
    const base = layerOf(cfg);
    randomiseGraph(base);
    const { tokens, aux } = inputs(25);
    const t = await tokens.data();
    const a = await aux.data();
    const isPad = Array.from({ length: R }, (_, i) => i % 3 === 1 || i === R - 1); // interleaved padding
    const padded = (seed: number, scale: number): { tokens: tf.Tensor3D; aux: tf.Tensor3D } => {
      const tp = Float32Array.from(t);
      const ap = Float32Array.from(a);
      const noise = normals(R * (D + DA), seed, scale);
      for (let i = 0; i < R; i++) {
        if (!isPad[i]) continue;
        for (let c = 0; c < D; c++) tp[i * D + c] = noise[i * D + c]!;
        for (let c = 0; c < DA; c++) ap[i * DA + c] = noise[R * D + i * DA + c]!;
      }
      return { tokens: tf.tensor3d(tp, [B, N, D]), aux: tf.tensor3d(ap, [B, N, DA]) };
    };
    const mask = tf.tensor2d(isPad.map((p) => (p ? 0 : 1)), [B, N]);
    const runs = [];
    for (const [seed, scale] of [
      [26, 1],
      [27, 100],
    ] as const) {
      // A fresh copy per padding, so that the routers' noise and statistics start the same.
      const layer = layerOf(cfg);
      copyWeights(base, layer);
      const x = padded(seed, scale);
      const train = layer.apply(x, { training: true, mask });
      const evalOut = layer.apply(x, { mask });
      runs.push({
        train: { tokens: await train.tokens.data(), ids: await train.provenance.experts.data(), total: (await train.losses.total.data())[0] },
        eval: { tokens: await evalOut.tokens.data(), ids: await evalOut.provenance.experts.data(), haltedAt: await evalOut.provenance.haltedAt.data() },
        // Statistics the routers and graphs keep (co-selection counts): real tokens only.
        stats: await Promise.all([...layer.variables().entries()].filter(([, v]) => !v.trainable).map(async ([n, v]) => [n, Array.from(await v.data())])),
      });
      [train, evalOut].forEach(disposeGoeOutput);
      tf.dispose([x.tokens, x.aux]);
      layer.dispose();
    }
    const [p, q] = runs as [(typeof runs)[number], (typeof runs)[number]];
    const s = base.slots;
    for (const mode of ['train', 'eval'] as const) {
      for (let i = 0; i < R; i++) {
        if (isPad[i]) continue;
        expect(Array.from(p[mode].tokens.subarray(i * D, (i + 1) * D)), `${mode} token ${i}`).toEqual(Array.from(q[mode].tokens.subarray(i * D, (i + 1) * D)));
        for (let k = 0; k < 3; k++) {
          const at = (k * R + i) * s;
          expect(Array.from(p[mode].ids.subarray(at, at + s)), `${mode} ids of token ${i}, cycle ${k}`).toEqual(Array.from(q[mode].ids.subarray(at, at + s)));
        }
      }
    }
    // Padding is never routed nor changed.
    for (let i = 0; i < R; i++) {
      if (!isPad[i]) continue;
      expect(p.eval.haltedAt[i]).toBe(0);
      for (let k = 0; k < 3; k++) expect(Array.from(p.eval.ids.subarray((k * R + i) * s, (k * R + i + 1) * s)).every((e) => e === -1)).toBe(true);
    }
    expect(p.train.total).toBeCloseTo(q.train.total!, 5);
    expect(p.stats).toEqual(q.stats);
    tf.dispose([tokens, aux, mask]);
    base.dispose();
  });

  it.each(ROUTERS)('%s: a zero coefficient gives no gradient from its regulariser; a positive one does', async (router) => {
    const { tokens, aux } = inputs(29);
    for (const term of ['balance', 'entropy', 'switchBalance', 'zLoss', 'halting'] as const) {
      for (const weight of [0, 1]) {
        const zero = { balance: 0, entropy: 0, switchBalance: 0, zLoss: 0, halting: 0 };
        const layer = layerOf({ router, cycles: 2, haltEps: 0, regularisers: { ...zero, [term]: weight } });
        randomiseGraph(layer);
        const grads = await namedGrads(layer, () => layer.apply({ tokens, aux }, { training: true }).losses.total);
        if (weight === 0) {
          for (const [name, g] of grads) expect(norm(g), `${term} = 0: ${name}`).toBe(0);
        } else {
          // The halting cost trains the halt head; the routing regularisers train the router.
          const owner = term === 'halting' ? 'halt.' : 'router.';
          const total = [...grads].filter(([name]) => name.startsWith(owner)).reduce((s, [, g]) => s + norm(g), 0);
          expect(total, `${term} = 1: gradient into ${owner}*`).toBeGreaterThan(0);
        }
        layer.dispose();
      }
    }
    tf.dispose([tokens, aux]);
  });
});
