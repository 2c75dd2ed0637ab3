import { Adam, backendsUnderTest, expectNoLeak, makeRng, maxAbsDiff, tf, useBackend, type BackendName } from '@goe/tf';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveGoeConfig, type GoeConfigInput } from './config.js';
import { GoeConfigError } from './errors.js';
import { GoeLayer, disposeGoeOutput } from './layer.js';
import {
  ExpertChoiceRouter,
  SymphonyRouter,
  TopKRouter,
  TopPRouter,
  routerRegistry,
  type LinearRouter,
  type RouteInput,
  type RouteOutput,
} from './routers.js';
import { adamStep, normals } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');

// ---- float64 host references, written from the papers, sharing no code with routers.ts ----

function softmax64(z: readonly number[]): number[] {
  const mx = Math.max(...z);
  const e = z.map((v) => Math.exp(v - mx));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Expert indices by descending value, ties to the lower index. */
function order64(v: readonly number[]): number[] {
  return v.map((_, i) => i).sort((a, b) => v[b]! - v[a]! || a - b);
}

/** Rows of logits `W_r r + b_r` in float64 from the router's weights. */
async function logits64(router: LinearRouter, r: Float32Array, rows: number): Promise<number[][]> {
  const w = await router.proj.w.data();
  const b = await router.proj.b!.data();
  const [nIn, m] = router.proj.w.shape as [number, number];
  return Array.from({ length: rows }, (_, i) =>
    Array.from({ length: m }, (_, e) => {
      let s = b[e]!;
      for (let c = 0; c < nIn; c++) s += r[i * nIn + c]! * w[c * m + e]!;
      return s;
    }),
  );
}

/**
 * Switch / GShard capacity as a plain loop: C = ceil(cf·k·R_active/M); for each choice rank j, tokens
 * in order take a place at their j-th expert while it has fewer than C.
 */
function capacityReference(logits: number[][], active: number[], k: number, cf: number): { ids: number[][]; capacity: number } {
  const m = logits[0]!.length;
  const capacity = Math.ceil((cf * k * active.reduce((a, b) => a + b, 0)) / m);
  const count = new Array<number>(m).fill(0);
  const ids = logits.map(() => new Array<number>(k).fill(-1));
  for (let j = 0; j < k; j++) {
    logits.forEach((row, i) => {
      if (!active[i]) return;
      const e = order64(row)[j]!;
      if (count[e]! < capacity) {
        ids[i]![j] = e;
        count[e]!++;
      }
    });
  }
  return { ids, capacity };
}

// ---- routers driven directly ----

/** A router over `d = M` inputs whose W_r is the identity and b_r zero: its logits are its input rows. */
function identityRouter<T extends LinearRouter>(make: (c: ReturnType<typeof resolveGoeConfig>) => T, cfg: GoeConfigInput): T {
  const c = resolveGoeConfig({ da: 0, ...cfg, d: cfg.experts });
  const router = make(c);
  const m = c.experts;
  router.proj.w.assign(tf.tensor2d(Float32Array.from({ length: m * m }, (_, q) => (q % (m + 1) === 0 ? 1 : 0)), [m, m]));
  return router;
}

function routeOn(router: LinearRouter, logits: number[][], options: { active?: number[]; training?: boolean } = {}): RouteOutput {
  const rows = logits.length;
  const m = logits[0]!.length;
  const input: RouteInput = {
    r: tf.tensor2d(logits.flat(), [rows, m]),
    cycle: 0,
    training: options.training ?? false,
    prevGates: null,
    adjacency: tf.eye(m) as tf.Tensor2D,
  };
  if (options.active) input.active = tf.tensor2d(options.active, [rows, 1]);
  const out = router.route(input);
  tf.dispose([input.r, input.adjacency, input.active ?? []]);
  return out;
}

function disposeRoute(out: RouteOutput): void {
  tf.dispose(Object.values(out) as tf.Tensor[]);
}

async function rowsOf(t: tf.Tensor2D): Promise<number[][]> {
  return (await t.array()) as number[][];
}

/** Seeded logits `[R, M]` with spread `scale`. */
function randomLogits(rows: number, m: number, seed: number, scale = 1.5): number[][] {
  const v = normals(rows * m, seed, scale);
  return Array.from({ length: rows }, (_, i) => Array.from(v.subarray(i * m, (i + 1) * m)));
}

describe.each(BACKENDS)('routers on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  it('topk with capacity drops exactly the over-capacity slots of a hand-made case (GShard order)', async () => {
    const router = identityRouter((c) => new TopKRouter(c, makeRng(1)), { experts: 3, k: 2, capacityFactor: 0.5 });
    // C = ceil(0.5 · 2 · 6 / 3) = 2. First choices go first, in token order: expert 1 keeps rows 0, 1
    // (row 4's is its third), expert 0 rows 2, 3, expert 2 row 5. Then second choices: expert 0 is full
    // (rows 0, 1 dropped), expert 2 keeps row 2 only, expert 1 is full (row 5 dropped). Row 4 loses
    // both slots. (Token-major order would instead keep the second choices of rows 0, 1 and drop the
    // first choices of rows 2, 3.)
    const logits = [
      [2, 3, 0],
      [2, 3, 0],
      [3, 0, 2],
      [3, 0, 2],
      [0, 3, 2],
      [0, 2, 3],
    ];
    const gatesOf = (ids: number[][]): number[] =>
      logits.flatMap((row, i) => {
        const p = softmax64(row);
        const top = order64(p).slice(0, 2);
        return top.map((e, j) => (ids[i]![j]! >= 0 ? p[e]! / (p[top[0]!]! + p[top[1]!]!) : 0));
      });
    const want = [
      [1, -1],
      [1, -1],
      [0, 2],
      [0, -1],
      [-1, -1],
      [2, -1],
    ];
    const out = routeOn(router, logits);
    expect(await rowsOf(out.ids)).toEqual(want);
    expect(Array.from(await out.dropped!.data())).toEqual([1, 1, 0, 1, 1, 1]);
    // Gates: normalised over the two chosen experts, then zeroed where dropped (GShard).
    expect(maxAbsDiff(await out.gates.data(), gatesOf(want))).toBeLessThan(1e-6);
    const gd = await rowsOf(out.gateDist);
    expect(gd[4]).toEqual([0, 0, 0]);
    expect(gd[0]![0]).toBe(0);
    expect(gd[0]![1]).toBeCloseTo(gatesOf(want)[0]!, 6);
    disposeRoute(out);

    // Row 1 inactive: it takes no place, so row 4's first choice now fits; C = ceil(0.5·2·5/3) = 2 still.
    const want2 = [
      [1, -1],
      [-1, -1],
      [0, 2],
      [0, -1],
      [1, -1],
      [2, -1],
    ];
    const out2 = routeOn(router, logits, { active: [1, 0, 1, 1, 1, 1] });
    expect(await rowsOf(out2.ids)).toEqual(want2);
    expect(Array.from(await out2.dropped!.data())).toEqual([1, 0, 0, 1, 1, 1]);
    expect(maxAbsDiff(await out2.gates.data(), gatesOf(want2))).toBeLessThan(1e-6);
    disposeRoute(out2);
    router.dispose();
  });

  it('topk with capacity matches the reference loop on random logits and never fills an expert past C', async () => {
    const rows = 40;
    const m = 4;
    for (const [k, cf] of [
      [1, 0.5],
      [2, 0.75],
      [3, 1.1],
    ] as const) {
      const router = identityRouter((c) => new TopKRouter(c, makeRng(2)), { experts: m, k, capacityFactor: cf });
      const logits = randomLogits(rows, m, 10 + k);
      const active = Array.from({ length: rows }, (_, i) => (i % 7 === 3 ? 0 : 1));
      const ref = capacityReference(logits, active, k, cf);
      const out = routeOn(router, logits, { active });
      const ids = await rowsOf(out.ids);
      // Inactive rows: the router leaves them out of the count and gives them no slot.
      expect(ids).toEqual(ref.ids);
      const perExpert = new Array<number>(m).fill(0);
      ids.flat().forEach((e) => e >= 0 && perExpert[e]!++);
      expect(Math.max(...perExpert)).toBeLessThanOrEqual(ref.capacity);
      expect(perExpert.reduce((a, b) => a + b, 0)).toBeLessThan(rows * k); // the case drops something
      const dropped = Array.from(await out.dropped!.data());
      expect(dropped).toEqual(ref.ids.map((row, i) => (active[i] && row.some((e) => e < 0) ? 1 : 0)));
      // Gates: top-k renormalised (renormalizeGates) in float64, zero where dropped.
      const gates = await out.gates.data();
      const refGates = logits.flatMap((row, i) => {
        const p = softmax64(row);
        const top = order64(p).slice(0, k);
        const s = top.reduce((a, e) => a + p[e]!, 0);
        return top.map((e, j) => (ref.ids[i]![j]! >= 0 ? p[e]! / s : 0));
      });
      expect(maxAbsDiff(gates, refGates)).toBeLessThan(1e-6);
      disposeRoute(out);
      router.dispose();
    }
  });

  it('expert-choice: each expert takes its top-C active tokens by probability, padding never', async () => {
    const rows = 24;
    const m = 4;
    const cfg = { d: 6, da: 2, experts: m, k: 2, capacityFactor: 1 };
    const router = new ExpertChoiceRouter(resolveGoeConfig(cfg), makeRng(3));
    const r = normals(rows * 8, 5, 1.5);
    const active = Array.from({ length: rows }, (_, i): number => (i % 4 === 1 ? 0 : 1)); // 6 padding rows
    const nActive = active.reduce((a, b) => a + b, 0);
    const capacity = Math.ceil((1 * 2 * nActive) / m); // 9
    const rt = tf.tensor2d(r, [rows, 8]);
    const at = tf.tensor2d(active, [rows, 1]);
    const input = { r: rt, cycle: 0, training: false, prevGates: null, adjacency: tf.eye(m) as tf.Tensor2D, active: at };
    const out = router.route(input);
    const p = (await logits64(router, r, rows)).map(softmax64);
    const ids = await rowsOf(out.ids);
    const gates = await rowsOf(out.gates);
    for (let e = 0; e < m; e++) {
      const ranked = p.map((row, i) => i).filter((i) => active[i]).sort((a, b) => p[b]![e]! - p[a]![e]! || a - b);
      const margin = p[ranked[capacity - 1]!]![e]! - p[ranked[capacity]!]![e]!;
      expect(margin).toBeGreaterThan(1e-5); // no near-tie at the boundary: a fair comparison
      const want = new Set(ranked.slice(0, capacity));
      const got = new Set(ids.map((row, i) => (row[e] === e ? i : -1)).filter((i) => i >= 0));
      expect(got).toEqual(want);
      ids.forEach((row) => expect([e, -1]).toContain(row[e]));
      for (let i = 0; i < rows; i++) expect(gates[i]![e]!).toBeCloseTo(want.has(i) ? p[i]![e]! : 0, 6);
    }
    ids.forEach((row, i) => active[i] || expect(row).toEqual([-1, -1, -1, -1]));
    const dropped = Array.from(await out.dropped!.data());
    expect(dropped).toEqual(ids.map((row, i) => (active[i] && row.every((e) => e < 0) ? 1 : 0)));
    disposeRoute(out);

    // A capacity above the active count: every expert takes every active token, still no padding.
    const big = new ExpertChoiceRouter(resolveGoeConfig({ ...cfg, capacityFactor: 4 }), makeRng(3));
    const out2 = big.route(input);
    const ids2 = await rowsOf(out2.ids);
    ids2.forEach((row, i) => expect(row).toEqual(active[i] ? [0, 1, 2, 3] : [-1, -1, -1, -1]));
    disposeRoute(out2);
    tf.dispose([rt, at, input.adjacency]);
    [router, big].forEach((x) => x.dispose());
  });

  it('top-p: the selected sets equal the brute-force smallest sets reaching topP', async () => {
    const rows = 48;
    const m = 5;
    for (const topP of [0.5, 0.8, 0.95]) {
      const router = identityRouter((c) => new TopPRouter(c, makeRng(4)), { experts: m, k: 1, topP });
      const logits = randomLogits(rows, m, 20, 1.2);
      const out = routeOn(router, logits);
      const ids = await rowsOf(out.ids);
      const gates = await rowsOf(out.gates);
      logits.forEach((row, i) => {
        const p = softmax64(row);
        // Every subset of the M experts: the smallest reaching topP, the largest mass among those.
        let best: number[] | null = null;
        let bestMass = -1;
        let margin = Infinity;
        for (let mask = 1; mask < 1 << m; mask++) {
          const set = [...Array(m).keys()].filter((e) => mask & (1 << e));
          const mass = set.reduce((a, e) => a + p[e]!, 0);
          margin = Math.min(margin, Math.abs(mass - topP));
          if (mass < topP) continue;
          if (!best || set.length < best.length || (set.length === best.length && mass > bestMass)) [best, bestMass] = [set, mass];
        }
        expect(margin).toBeGreaterThan(1e-5); // no subset sits on the threshold
        const got = ids[i]!.filter((e) => e >= 0);
        expect(new Set(got)).toEqual(new Set(best));
        expect(ids[i]!.slice(got.length).every((e) => e === -1)).toBe(true); // −1 only after the kept ones
        got.forEach((e, j) => expect(gates[i]![j]!).toBeCloseTo(p[e]! / bestMass, 6));
      });
      // The case has tokens with 1, 2 and more experts.
      const sizes = new Set(ids.map((row) => row.filter((e) => e >= 0).length));
      if (topP === 0.8) expect(sizes.size).toBeGreaterThanOrEqual(3);
      expect(out.dropped).toBeUndefined();
      disposeRoute(out);
      router.dispose();
    }
  });

  it('symphony: p\' = p A for a known A, top-k on p\', and the EMA of co-selections matches a hand computation', async () => {
    const m = 4;
    const k = 2;
    const beta = 0.9;
    const router = identityRouter((c) => new SymphonyRouter(c, makeRng(5)), { experts: m, k, emaBeta: beta });
    // A known C (row 3 empty: uniform), and A = C row-normalised.
    const c0 = [
      [0.5, 0.2, 0.1, 0.0],
      [0.2, 0.4, 0.0, 0.3],
      [0.1, 0.0, 0.3, 0.05],
      [0, 0, 0, 0],
    ];
    router.social.counts.assign(tf.tensor2d(c0));
    const a0 = c0.map((row) => {
      const s = row.reduce((x, y) => x + y, 0);
      return s > 0 ? row.map((v) => v / s) : row.map(() => 1 / m);
    });
    const smooth = (p: number[], a: number[][]): number[] => a[0]!.map((_, j) => p.reduce((s, pm, mm) => s + pm * a[mm]![j]!, 0));
    const logits = randomLogits(16, m, 31, 2);
    const out = routeOn(router, logits); // eval: A is frozen
    const probs = await rowsOf(out.probs);
    const ids = await rowsOf(out.ids);
    const gates = await rowsOf(out.gates);
    logits.forEach((row, i) => {
      const q = smooth(softmax64(row), a0);
      expect(maxAbsDiff(probs[i]!, q)).toBeLessThan(1e-6);
      const top = order64(q);
      expect(q[top[k - 1]!]! - q[top[k]!]!).toBeGreaterThan(1e-5);
      expect(ids[i]).toEqual(top.slice(0, k));
      const s = q[top[0]!]! + q[top[1]!]!;
      expect(maxAbsDiff(gates[i]!, [q[top[0]!]! / s, q[top[1]!]! / s])).toBeLessThan(1e-6);
    });
    expect(maxAbsDiff(await router.social.counts.data(), c0.flat())).toBeLessThan(1e-7); // eval: no update
    disposeRoute(out);

    // Training from zero: each call first counts the plain top-k co-selections of its active rows,
    // C ← β C + (1 − β) SᵀS / n, then routes on the updated A.
    const fresh = identityRouter((c) => new SymphonyRouter(c, makeRng(6)), { experts: m, k, emaBeta: beta });
    let c = c0.map((row) => row.map(() => 0));
    for (let call = 0; call < 3; call++) {
      const lg = randomLogits(12, m, 40 + call, 2);
      const active = lg.map((_, i) => ((i + call) % 5 === 0 ? 0 : 1));
      const co = c.map((row) => row.map(() => 0));
      let n = 0;
      lg.forEach((row, i) => {
        if (!active[i]) return;
        const top = order64(row).slice(0, k);
        n++;
        for (const x of top) for (const y of top) co[x]![y]!++;
      });
      c = c.map((row, x) => row.map((v, y) => beta * v + (1 - beta) * (co[x]![y]! / n)));
      const o = routeOn(fresh, lg, { active, training: true });
      expect(maxAbsDiff(await fresh.social.counts.data(), c.flat())).toBeLessThan(1e-6);
      const a = c.map((row) => {
        const s = row.reduce((x, y) => x + y, 0);
        return s > 0 ? row.map((v) => v / s) : row.map(() => 1 / m);
      });
      const pr = await rowsOf(o.probs);
      lg.forEach((row, i) => expect(maxAbsDiff(pr[i]!, smooth(softmax64(row), a))).toBeLessThan(1e-6));
      disposeRoute(o);
    }
    // A first call by hand: C = (1 − β) · (SᵀS / n) exactly, for two tokens choosing {0, 1} and {0, 2}.
    const hand = identityRouter((x) => new SymphonyRouter(x, makeRng(7)), { experts: 3, k: 2, emaBeta: beta });
    disposeRoute(
      routeOn(
        hand,
        [
          [2, 1, 0],
          [2, 0, 1],
        ],
        { training: true },
      ),
    );
    expect(maxAbsDiff(await hand.social.counts.data(), [0.1, 0.05, 0.05, 0.05, 0.05, 0, 0.05, 0, 0.05])).toBeLessThan(1e-7);
    [router, fresh, hand].forEach((x) => x.dispose());
  });
});

// ---- every router inside the layer ----

const B = 2;
const N = 12;
const D = 8;
const DA = 4;
const SMALL: GoeConfigInput = { d: D, da: DA, experts: 4, k: 2, cycles: 2, expertDim: 8, expertHidden: 16, haltEps: 0 };
const ROUTERS: [string, GoeConfigInput][] = [
  ['topk (capacity 0.75)', { router: 'topk', capacityFactor: 0.75, jitter: 0.1 }],
  ['expert-choice', { router: 'expert-choice', capacityFactor: 1 }],
  ['top-p', { router: 'top-p', topP: 0.7 }],
  ['symphony', { router: 'symphony' }],
];

describe.each(BACKENDS)('routers inside GoeLayer on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  it.each(['exact', 'dense'] as const)('a token whose slots are all dropped passes through unchanged (%s dispatch)', async (dispatch) => {
    const layer = new GoeLayer(resolveGoeConfig({ ...SMALL, router: 'topk', k: 1, cycles: 1, capacityFactor: 0.5, dispatch }), makeRng(8));
    const t = normals(B * N * D, 9);
    const tokens = tf.tensor3d(t, [B, N, D]);
    const aux = tf.tensor3d(normals(B * N * DA, 10), [B, N, DA]);
    const out = layer.apply({ tokens, aux });
    const ids = await out.provenance.experts.data(); // [1, B, N, 1]
    const got = await out.tokens.data();
    let droppedRows = 0;
    for (let i = 0; i < B * N; i++) {
      const row = got.subarray(i * D, (i + 1) * D);
      const diff = maxAbsDiff(row, t.subarray(i * D, (i + 1) * D));
      if (ids[i] === -1) {
        droppedRows++;
        expect(diff).toBe(0);
      } else expect(diff).toBeGreaterThan(0);
    }
    // C = ceil(0.5 · 1 · 24 / 4) = 3 per expert: at most 12 of the 24 tokens are kept.
    expect(droppedRows).toBeGreaterThanOrEqual(12);
    disposeGoeOutput(out);
    tf.dispose([tokens, aux]);
    layer.dispose();
  });

  it.each(ROUTERS)('%s: forward and backward with finite gradients, padding unrouted, no leaks', async (_name, extra) => {
    const layer = new GoeLayer(resolveGoeConfig({ ...SMALL, ...extra }), makeRng(11));
    const tokens = tf.tensor3d(normals(B * N * D, 12), [B, N, D]);
    const aux = tf.tensor3d(normals(B * N * DA, 13), [B, N, DA]);
    const target = tf.tensor3d(normals(B * N * D, 14), [B, N, D]);
    const maskValues = Array.from({ length: B * N }, (_, i) => (i % N >= N - 3 ? 0 : 1)); // 3 padding tokens per sequence
    const mask = tf.tensor2d(maskValues, [B, N]);
    const vars = layer.trainableVariables();
    const names = [...layer.variables().entries()].filter(([, v]) => v.trainable).map(([n]) => n);
    const loss = (): tf.Scalar => {
      const out = layer.apply({ tokens, aux }, { training: true, mask });
      return tf.add(tf.mean(tf.square(tf.sub(out.tokens, target))), out.losses.total) as tf.Scalar;
    };
    const { value, grads } = tf.variableGrads(loss, vars);
    expect(Number.isFinite((await value.data())[0])).toBe(true);
    for (const [name, v] of names.map((n, i) => [n, vars[i]!] as const)) {
      const g = Array.from(await grads[v.name]!.data());
      const norm = Math.sqrt(g.reduce((s, x) => s + x * x, 0));
      expect(Number.isFinite(norm), name).toBe(true);
      if (name.startsWith('router.') || name.startsWith('wo.') || name.startsWith('wp.')) expect(norm, name).toBeGreaterThan(0);
    }
    tf.dispose([value, ...Object.values(grads)]);
    // Padding tokens get no expert in any cycle.
    const out = layer.apply({ tokens, aux }, { mask });
    const ids = await out.provenance.experts.data();
    const s = layer.slots;
    for (let q = 0; q < ids.length; q++) if (!maskValues[Math.floor(q / s) % (B * N)]) expect(ids[q]).toBe(-1);
    disposeGoeOutput(out);

    const adam = new Adam();
    adamStep(layer, adam, loss, 1e-3); // Adam creates its moments on the first step
    await expectNoLeak(() => {
      for (let i = 0; i < 2; i++) {
        disposeGoeOutput(layer.apply({ tokens, aux }, { training: true, mask }));
        adamStep(layer, adam, loss, 1e-3);
      }
    }, 'apply and train step');
    adam.dispose();
    tf.dispose([tokens, aux, target, mask]);
    layer.dispose();
  });
});

// The selections run on the device with no read-back; on WebGPU they must agree with cpu.
describe.runIf((await backendsUnderTest()).includes('webgpu'))('routers on webgpu', () => {
  it('capacity, expert-choice, top-p and symphony choose as on cpu', async () => {
    const m = 4;
    const logits = randomLogits(20, m, 50, 1.5);
    const active = logits.map((_, i) => (i % 6 === 5 ? 0 : 1));
    const makers: [string, () => LinearRouter][] = [
      ['topk', () => identityRouter((c) => new TopKRouter(c, makeRng(1)), { experts: m, k: 2, capacityFactor: 0.75 })],
      ['expert-choice', () => identityRouter((c) => new ExpertChoiceRouter(c, makeRng(1)), { experts: m, k: 2, capacityFactor: 1 })],
      ['top-p', () => identityRouter((c) => new TopPRouter(c, makeRng(1)), { experts: m, k: 1, topP: 0.7 })],
      ['symphony', () => identityRouter((c) => new SymphonyRouter(c, makeRng(1)), { experts: m, k: 2 })],
    ];
    for (const [name, make] of makers) {
      const results: { ids: number[][]; gates: Float32Array | Int32Array | Uint8Array }[] = [];
      for (const backend of ['cpu', 'webgpu'] as const) {
        await useBackend(backend);
        const router = make();
        // Symphony: one training call (updates A on the device), then route on it.
        if (name === 'symphony') disposeRoute(routeOn(router, logits, { active, training: true }));
        const out = routeOn(router, logits, { active });
        results.push({ ids: await rowsOf(out.ids), gates: await out.gates.data() });
        disposeRoute(out);
        router.dispose();
      }
      expect(results[1]!.ids, name).toEqual(results[0]!.ids);
      expect(maxAbsDiff(results[1]!.gates, results[0]!.gates), name).toBeLessThan(1e-5);
    }
    await useBackend('cpu');
  });
});

describe('router registry and config', () => {
  it('registers every baseline router under its config key', () => {
    for (const key of ['goe', 'dense', 'topk', 'expert-choice', 'top-p', 'symphony']) expect(routerRegistry.has(key)).toBe(true);
    const ec = new GoeLayer(resolveGoeConfig({ ...SMALL, router: 'expert-choice', capacityFactor: 1 }), makeRng(1));
    const tp = new GoeLayer(resolveGoeConfig({ ...SMALL, router: 'top-p' }), makeRng(1));
    const sy = new GoeLayer(resolveGoeConfig({ ...SMALL, router: 'symphony' }), makeRng(1));
    expect(ec.router).toBeInstanceOf(ExpertChoiceRouter);
    expect(ec.slots).toBe(4);
    expect(tp.router).toBeInstanceOf(TopPRouter);
    expect(tp.slots).toBe(4);
    expect(sy.router).toBeInstanceOf(SymphonyRouter);
    expect(sy.slots).toBe(2);
    // Symphony's statistics are state, not parameters.
    expect(sy.variables().get('router.social.counts')?.trainable).toBe(false);
    [ec, tp, sy].forEach((l) => l.dispose());
  });

  it('resolveGoeConfig rejects nonsense for these routers, naming the field', () => {
    const field = (cfg: GoeConfigInput): string => {
      try {
        resolveGoeConfig(cfg);
      } catch (e) {
        expect(e).toBeInstanceOf(GoeConfigError);
        return (e as GoeConfigError).field;
      }
      throw new Error('expected a GoeConfigError');
    };
    expect(field({ router: 'expert-choice', capacityFactor: 0 })).toBe('capacityFactor');
    expect(field({ router: 'expert-choice' })).toBe('capacityFactor'); // the default is 0
    expect(field({ router: 'topk', capacityFactor: -1 })).toBe('capacityFactor');
    expect(field({ router: 'top-p', topP: 0 })).toBe('topP');
    expect(field({ router: 'top-p', topP: 1.5 })).toBe('topP');
    expect(field({ router: 'symphony', emaBeta: 1 })).toBe('emaBeta');
    expect(field({ router: 'symphony', emaBeta: -0.1 })).toBe('emaBeta');
  });
});
