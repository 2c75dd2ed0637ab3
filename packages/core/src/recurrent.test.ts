import { Adam, backendsUnderTest, directionalGradCheck, expectNoLeak, makeRng, maxAbsDiff, tf, useBackend, type BackendName } from '@goe/tf';
import { beforeAll, describe, expect, it } from 'vitest';
import { ChainRouter } from './chain.js';
import { resolveGoeConfig, type GoeConfig, type GoeConfigInput } from './config.js';
import { GRAPHMOE_BASELINE, GraphMoeRouter } from './graphmoe.js';
import { GoeLayer, disposeGoeOutput, type GoeOutput } from './layer.js';
import { goeReference, type HostArray } from './reference.js';
import { routerRegistry } from './routers.js';
import { adamStep, copyWeights, hostWeights, normals } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');

// Batch B, sequence N, rows R = B·N, token width d, aux width da, GRU hidden d̄ (the default
// round(0.1 d) would be 1 at d = 8).
const [B, N, D, DA, HD] = [2, 16, 8, 4, 3] as const;
const R = B * N;
const SMALL: GoeConfigInput = { d: D, da: DA, experts: 4, k: 2, expertDim: 8, expertHidden: 16, haltEps: 0, graphmoeHidden: HD };

function inputs(seed: number): { tokens: tf.Tensor3D; aux: tf.Tensor3D; t: Float32Array; a: Float32Array } {
  const t = normals(R * D, seed);
  const a = normals(R * DA, seed + 100);
  return { tokens: tf.tensor3d(t, [B, N, D]), aux: tf.tensor3d(a, [B, N, DA]), t, a };
}

function layerOf(partial: GoeConfigInput, seed = 7): GoeLayer {
  return new GoeLayer(resolveGoeConfig({ ...SMALL, ...partial }), makeRng(seed));
}

/** `x W (+ b)` in float64, W `[in, out]` row-major. */
function matVec(x: ArrayLike<number>, w: HostArray, b?: HostArray): Float64Array {
  const [nIn, nOut] = w.shape as [number, number];
  return Float64Array.from({ length: nOut }, (_, o) => {
    let s = b ? (b.data[o] as number) : 0;
    for (let i = 0; i < nIn; i++) s += (x[i] as number) * (w.data[i * nOut + o] as number);
    return s;
  });
}

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

/** What the float64 host model of `graphmoe` computed. */
interface GraphMoeHost {
  /** Layer output x_1 + y_T, `[R·d]`. */
  tokens: Float64Array;
  /** Tokens each round routed on, x_1 … x_T, each `[R·d]`. */
  xs: Float64Array[];
  /** Chosen experts per round, `[T][R][k]`. */
  ids: number[][][];
  /** Smallest top-k selection margin over all rounds. */
  margin: number;
}

/**
 * GraphMoE written from the paper in float64, one token row at a time: each round is a plain top-k MoE
 * round (the shared float64 layer reference with the `topk` router and K = 1 gives x + y), then eq. 6
 * (GRU on y_t) and eq. 7 (x_{t+1} = x_t + W_g h_t) after rounds 1 … T−1; the output is x_1 + y_T.
 */
function graphmoeHost(cfg: GoeConfig, w: Map<string, HostArray>, t: Float32Array, a: Float32Array, rounds: number): GraphMoeHost {
  const refWeights = new Map(w);
  refWeights.set('router.proj.w', w.get('router.gate.proj.w')!);
  refWeights.set('router.proj.b', w.get('router.gate.proj.b')!);
  const roundCfg: GoeConfig = { ...cfg, router: 'topk', cycles: 1, haltEps: 0 };
  const [wz, wr, wh, bh, wg] = ['router.wz.w', 'router.wr.w', 'router.wh.w', 'router.wh.b', 'router.wg.w'].map((n) => w.get(n)!);
  let x = Float64Array.from(t);
  const h = Array.from({ length: R }, () => new Float64Array(HD)); // h_0 = 0
  const xs: Float64Array[] = [];
  const ids: number[][][] = [];
  let margin = Infinity;
  let y = new Float64Array(R * D);
  for (let round = 1; round <= rounds; round++) {
    xs.push(x);
    const ref = goeReference(roundCfg, refWeights, x, a, R);
    ids.push(ref.ids[0]!);
    margin = Math.min(margin, ref.minSelectionMargin);
    y = ref.tokens.map((v, q) => v - x[q]!); // y_t = Σ s_t[i] E_i(x_t)
    if (round === rounds) break;
    const next = Float64Array.from(x);
    for (let i = 0; i < R; i++) {
      const hp = h[i]!;
      const yi = y.subarray(i * D, (i + 1) * D);
      const hy = [...hp, ...yi]; // [h_{t−1}, y_t]
      const z = matVec(hy, wz!).map(sigmoid);
      const r = matVec(hy, wr!).map(sigmoid);
      const cand = matVec([...hp.map((v, j) => r[j]! * v), ...yi], wh!, bh!).map(sigmoid); // ĥ_t
      const hn = hp.map((v, j) => (1 - z[j]!) * v + z[j]! * cand[j]!); // h_t
      h[i] = hn;
      const g = matVec(hn, wg!); // g_t = W_g h_t
      for (let c = 0; c < D; c++) next[i * D + c] = x[i * D + c]! + g[c]!; // x_{t+1} = x_t + g_t
    }
    x = next;
  }
  return { tokens: Float64Array.from(t, (v, q) => v + y[q]!), xs, ids, margin };
}

/** Mean squared error to `target` (to 0 when null) plus the weighted router regularisers. */
function taskLoss(out: GoeOutput, target: tf.Tensor3D | null): tf.Scalar {
  const err = target ? tf.sub(out.tokens, target) : out.tokens;
  return tf.add(tf.mean(tf.square(err)), out.losses.total) as tf.Scalar;
}

/** Asserts that two calls gave the same tokens, routes and losses, bit for bit; frees both. */
async function expectSameOutputs(a: GoeOutput, b: GoeOutput): Promise<void> {
  expect(Array.from(await b.tokens.data())).toEqual(Array.from(await a.tokens.data()));
  expect(Array.from(await b.provenance.experts.data())).toEqual(Array.from(await a.provenance.experts.data()));
  expect(Array.from(await b.losses.total.data())).toEqual(Array.from(await a.losses.total.data()));
  [a, b].forEach(disposeGoeOutput);
}

/** ‖g‖ of every trainable variable for `loss`, by dotted name. */
async function gradNorms(layer: GoeLayer, loss: () => tf.Scalar): Promise<Map<string, number>> {
  const named = [...layer.variables().entries()].filter(([, v]) => v.trainable);
  const { value, grads } = tf.variableGrads(loss, named.map(([, v]) => v));
  const out = new Map<string, number>();
  for (const [name, v] of named) {
    const g = grads[v.name];
    out.set(name, g ? Math.sqrt(Array.from(await g.data()).reduce((s, q) => s + q * q, 0)) : 0);
  }
  tf.dispose([value, ...Object.values(grads)]);
  return out;
}

describe('recurrent routers: registration and presets', () => {
  it('are registered, resolve by name, and the graphmoe preset is the paper’s eq. 9', () => {
    expect(routerRegistry.keys()).toEqual(expect.arrayContaining(['graphmoe', 'chain']));
    const gm = new GoeLayer(resolveGoeConfig({ ...SMALL, ...GRAPHMOE_BASELINE }), makeRng(1));
    expect(gm.router).toBeInstanceOf(GraphMoeRouter);
    gm.dispose();
    const cfg = resolveGoeConfig({ d: 40, ...GRAPHMOE_BASELINE });
    expect(cfg.router).toBe('graphmoe');
    expect(cfg.graphmoeHidden).toBe(4); // round(0.1 d)
    expect(cfg.regularisers).toEqual({ ...cfg.regularisers, switchBalance: 0.01, balance: 0, entropy: 0, zLoss: 0 });
    const layer = new GoeLayer(resolveGoeConfig({ ...SMALL, router: 'chain', cycles: 3, messages: true }), makeRng(1));
    expect(layer.router).toBeInstanceOf(ChainRouter);
    expect(layer.wc).toBeUndefined(); // messages ignored under chain
    expect((layer.router as ChainRouter).steps).toHaveLength(3);
    layer.dispose();
  });
});

describe.each(BACKENDS)('recurrent routers on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  it('graphmoe: rounds 1–3 match eqs. 6–7 computed by hand in float64', async () => {
    const { tokens, aux, t, a } = inputs(3);
    const full = layerOf({ router: 'graphmoe', cycles: 3, messages: true });
    expect(full.wc).toBeUndefined(); // the GRU is GraphMoE's only channel between rounds
    const w = await hostWeights(full);
    let previous: Float64Array | null = null;
    for (const rounds of [1, 2, 3]) {
      const layer = layerOf({ router: 'graphmoe', cycles: rounds }, 100 + rounds);
      copyWeights(full, layer);
      const host = graphmoeHost(layer.config, w, t, a, rounds);
      expect(host.margin).toBeGreaterThan(1e-4); // no near-ties in any round: a fair comparison
      const out = layer.apply({ tokens, aux });
      expect(maxAbsDiff(await out.tokens.data(), host.tokens)).toBeLessThan(1e-5);
      expect(Array.from(await out.provenance.experts.data())).toEqual(host.ids.flat(2));
      if (rounds > 1) {
        // The virtual node moved the routing input (x_t ≠ x_1), so round t saw different tokens.
        expect(maxAbsDiff(host.xs[rounds - 1]!, host.xs[0]!)).toBeGreaterThan(1e-2);
        expect(maxAbsDiff(host.tokens, previous!)).toBeGreaterThan(1e-3);
      }
      previous = host.tokens;
      disposeGoeOutput(out);
      layer.dispose();
    }
    tf.dispose([tokens, aux]);
    full.dispose();
  });

  it('graphmoe with one round equals topk, and its state restarts at cycle 0 of every call', async () => {
    const { tokens, aux } = inputs(5);
    const gm = layerOf({ router: 'graphmoe', cycles: 1 });
    const topk = layerOf({ router: 'topk', cycles: 1 }, 8);
    copyWeights(gm, topk);
    topk.router.variables().get('proj.w')!.assign(gm.router.variables().get('gate.proj.w')!);
    topk.router.variables().get('proj.b')!.assign(gm.router.variables().get('gate.proj.b')!);
    const o1 = gm.apply({ tokens, aux });
    const o2 = topk.apply({ tokens, aux });
    expect(maxAbsDiff(await o1.tokens.data(), await o2.tokens.data())).toBe(0);
    [o1, o2].forEach(disposeGoeOutput);

    // Three rounds: a call on another batch in between leaves no trace on the next call.
    const layer = layerOf({ router: 'graphmoe', cycles: 3 });
    const first = layer.apply({ tokens, aux });
    const other = { tokens: tf.tensor3d(normals(3 * 5 * D, 77), [3, 5, D]), aux: tf.tensor3d(normals(3 * 5 * DA, 78), [3, 5, DA]) };
    disposeGoeOutput(layer.apply(other, { training: true }));
    await expectSameOutputs(first, layer.apply({ tokens, aux }));
    tf.dispose([tokens, aux, other.tokens, other.aux]);
    [gm, topk, layer].forEach((l) => l.dispose());
  });

  it('graphmoe with halting and padding: a token that ran h rounds outputs x_1 + y_h, padding is untouched', async () => {
    const { t, a } = inputs(11);
    const base = layerOf({ router: 'graphmoe', cycles: 3 });
    const w = await hostWeights(base);
    const hosts = [1, 2, 3].map((k) => graphmoeHost(base.config, w, t, a, k));
    // Halting head u = σ(W_u [x_t; a] + b_u) on the tokens each round routed on; place ε_u so that
    // some tokens stop after round 1, some after round 2 and some never.
    const u = hosts[2]!.xs.map((x) => Array.from({ length: R }, (_, i) => sigmoid(matVec([...x.subarray(i * D, (i + 1) * D), ...a.subarray(i * DA, (i + 1) * DA)], w.get('halt.w')!, w.get('halt.b')!)[0]!)));
    const du = [1, 2].map((k) => u[k]!.map((v, i) => Math.abs(v - u[k - 1]![i]!)));
    const all = du.flat().sort((p, q) => p - q);
    const halts = (eps: number): number[] => du[0]!.map((d1, i) => (d1 < eps ? 1 : du[1]![i]! < eps ? 2 : 3));
    let haltEps = 0;
    let best = -1;
    for (let j = 0; j + 1 < all.length; j++) {
      const eps = (all[j]! + all[j + 1]!) / 2;
      const h = halts(eps);
      const fewest = Math.min(...[1, 2, 3].map((k) => h.filter((v) => v === k).length));
      if (all[j + 1]! - all[j]! > 2e-5 && fewest > best) [best, haltEps] = [fewest, eps];
    }
    expect(best).toBeGreaterThan(0); // some tokens stop after each round (ε_u clear of every |Δu|)
    const layer = layerOf({ router: 'graphmoe', cycles: 3, haltEps });
    copyWeights(base, layer);
    // Padding: 4 extra positions per sequence, masked out.
    const P = 4;
    const tp = new Float32Array(B * (N + P) * D);
    const ap = new Float32Array(B * (N + P) * DA);
    const mask = new Float32Array(B * (N + P));
    const pad = normals(B * P * D, 12, 3);
    for (let b = 0; b < B; b++) {
      tp.set(t.subarray(b * N * D, (b + 1) * N * D), b * (N + P) * D);
      tp.set(pad.subarray(b * P * D, (b + 1) * P * D), (b * (N + P) + N) * D);
      ap.set(a.subarray(b * N * DA, (b + 1) * N * DA), b * (N + P) * DA);
      mask.fill(1, b * (N + P), b * (N + P) + N);
    }
    const x = { tokens: tf.tensor3d(tp, [B, N + P, D]), aux: tf.tensor3d(ap, [B, N + P, DA]) };
    const m = tf.tensor2d(mask, [B, N + P]);
    const out = layer.apply(x, { mask: m });
    const got = await out.tokens.data();
    const haltedAt = await out.provenance.haltedAt.data();
    const seen = new Set<number>();
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < N + P; i++) {
        const q = b * (N + P) + i;
        const row = got.subarray(q * D, (q + 1) * D);
        if (i >= N) {
          expect(haltedAt[q]).toBe(0);
          expect(maxAbsDiff(row, tp.subarray(q * D, (q + 1) * D))).toBe(0);
          continue;
        }
        const h = haltedAt[q]!;
        seen.add(h);
        const ref = hosts[h - 1]!.tokens;
        expect(maxAbsDiff(row, ref.subarray((b * N + i) * D, (b * N + i + 1) * D))).toBeLessThan(1e-5);
      }
    }
    expect([...seen].sort()).toEqual([1, 2, 3]); // the test exercises every halting round
    disposeGoeOutput(out);
    tf.dispose([x.tokens, x.aux, m]);
    [base, layer].forEach((l) => l.dispose());
  });

  it('chain with one iteration equals topk; with K gates all copied from topk it equals topk without messages', async () => {
    const { tokens, aux } = inputs(13);
    for (const cycles of [1, 3]) {
      const chain = layerOf({ router: 'chain', cycles, messages: true });
      const topk = layerOf({ router: 'topk', cycles, messages: false, capacityFactor: 0 }, 8);
      copyWeights(chain, topk); // wp, wo, experts, halt, graph
      const steps = (chain.router as ChainRouter).steps;
      for (const step of steps) {
        step.variables().get('proj.w')!.assign(topk.router.variables().get('proj.w')!);
        step.variables().get('proj.b')!.assign(topk.router.variables().get('proj.b')!);
      }
      const o1 = chain.apply({ tokens, aux });
      const o2 = topk.apply({ tokens, aux });
      expect(maxAbsDiff(await o1.tokens.data(), await o2.tokens.data())).toBe(0);
      expect(Array.from(await o1.provenance.experts.data())).toEqual(Array.from(await o2.provenance.experts.data()));
      expect(maxAbsDiff(await o1.provenance.probs.data(), await o2.provenance.probs.data())).toBe(0);
      [o1, o2].forEach(disposeGoeOutput);
      [chain, topk].forEach((l) => l.dispose());
    }
    tf.dispose([tokens, aux]);
  });

  it('chain iteration i routes with gate i', async () => {
    const { tokens, aux } = inputs(17);
    const layer = layerOf({ router: 'chain', cycles: 2 });
    const before = layer.apply({ tokens, aux });
    const probs0 = await before.provenance.probs.data(); // [K, B, N, M]
    const ids0 = await before.provenance.experts.data(); // [K, B, N, k]
    const gate1 = (layer.router as ChainRouter).steps[1]!.proj.w;
    gate1.assign(tf.tidy(() => tf.add(gate1, tf.tensor(normals(gate1.size, 19, 0.7), gate1.shape))));
    const after = layer.apply({ tokens, aux });
    const probs1 = await after.provenance.probs.data();
    const ids1 = await after.provenance.experts.data();
    const half = (arr: ArrayLike<number>, k: number): number[] => Array.from(arr).slice((k * arr.length) / 2, ((k + 1) * arr.length) / 2);
    expect(half(probs1, 0)).toEqual(half(probs0, 0)); // cycle 0 (gate 0) unchanged
    expect(half(ids1, 0)).toEqual(half(ids0, 0));
    expect(maxAbsDiff(half(probs1, 1), half(probs0, 1))).toBeGreaterThan(1e-2); // cycle 1 follows gate 1
    expect(half(ids1, 1)).not.toEqual(half(ids0, 1));
    [before, after].forEach(disposeGoeOutput);
    tf.dispose([tokens, aux]);
    layer.dispose();
  });

  it.each([
    ['graphmoe', 3],
    ['graphmoe', 2],
    ['chain', 3],
  ] as const)('%s (K = %i): finite gradients, non-zero exactly where they should be', async (router, cycles) => {
    const { tokens, aux } = inputs(23);
    const target = tf.tensor3d(normals(R * D, 29), [B, N, D]);
    const layer = layerOf({ router, cycles, regularisers: { balance: 0.1, entropy: 0.01, switchBalance: 0.01, zLoss: 0.001, halting: 0 } });
    const norms = await gradNorms(layer, () => taskLoss(layer.apply({ tokens, aux }, { training: true }), target));
    // No gradient: the halt head (hard halting, halting regulariser 0), Θ (the router ignores the
    // graph and no messages are sent), and W_r of the GRU when it only ever sees h_0 = 0 (K = 2).
    const none = (name: string): boolean => name.startsWith('halt.') || name === 'graph.theta' || (cycles === 2 && name === 'router.wr.w');
    expect(norms.size).toBeGreaterThan(10);
    for (const [name, norm] of norms) {
      expect(Number.isFinite(norm), name).toBe(true);
      if (none(name)) expect(norm, name).toBe(0);
      else expect(norm, name).toBeGreaterThan(0);
    }
    tf.dispose([tokens, aux, target]);
    layer.dispose();
  });

  it('graphmoe: the router and GRU gradients match central finite differences', async () => {
    const { tokens, aux } = inputs(31);
    const target = tf.tensor3d(normals(R * D, 37), [B, N, D]);
    const layer = layerOf({ router: 'graphmoe', cycles: 3, regularisers: { switchBalance: 0.01 } });
    const loss = (): tf.Scalar => tf.tidy(() => taskLoss(layer.apply({ tokens, aux }), target));
    const vars = [...layer.router.variables().entries()]; // gate.proj.{w,b}, wz, wr, wh.{w,b}, wg
    const { value, grads } = tf.variableGrads(loss, vars.map(([, v]) => v));
    const rng = makeRng(43);
    for (const [name, v] of vars) {
      // Small steps on the gate (larger ones cross top-k boundaries); larger on the GRU, whose small
      // gradients (W_r: ~1e-3) would otherwise drown in the float32 rounding of the loss.
      const step = name.startsWith('gate.') ? 1e-3 : 3e-2;
      const { analytic, numeric } = await directionalGradCheck(v, await grads[v.name]!.data(), loss, rng, step);
      expect(Math.abs(analytic), name).toBeGreaterThan(1e-4);
      expect(Math.abs(numeric - analytic), name).toBeLessThan(0.03 * Math.abs(analytic) + 5e-5);
    }
    tf.dispose([value, target, tokens, aux, ...Object.values(grads)]);
    layer.dispose();
  });

  it.each(['graphmoe', 'chain'] as const)('%s: deterministic in eval, no tensor leaks over 20 training steps', async (router) => {
    const layer = layerOf({ router, cycles: 3, haltEps: 0.02, jitter: 0.1, regularisers: { switchBalance: 0.01 } });
    const { tokens, aux } = inputs(41);
    await expectSameOutputs(layer.apply({ tokens, aux }), layer.apply({ tokens, aux }));
    const adam = new Adam();
    const step = (): void => adamStep(layer, adam, () => taskLoss(layer.apply({ tokens, aux }, { training: true }), null), 1e-3);
    step(); // Adam creates its moment tensors on the first step
    await expectNoLeak(() => {
      for (let i = 0; i < 20; i++) step();
    }, `${router} train steps`);
    await expectNoLeak(() => disposeGoeOutput(layer.apply({ tokens, aux })), `${router} apply`);
    adam.dispose();
    tf.dispose([tokens, aux]);
    layer.dispose();
  });
});
