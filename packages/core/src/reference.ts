/**
 * A float64 host reference of one GoE layer (token mode), written from DESIGN.md §4 as plain loops,
 * one token at a time, sharing no code with the tensor implementation. Tests compare the layer on
 * every backend against it.
 */
import type { GoeConfig } from './config.js';

/** A host copy of one variable: row-major values and shape. */
export interface HostArray {
  data: ArrayLike<number>;
  shape: readonly number[];
}

/** What the reference computed. */
export interface GoeReferenceResult {
  /** `[R·d]` output tokens, row-major. */
  tokens: Float64Array;
  /** `[K][R][s]` chosen expert ids (−1 once halted). */
  ids: number[][][];
  /** `[K][R][s]` gates (0 once halted). */
  gates: number[][][];
  /** `[K][R][M]` router probabilities. */
  probs: number[][][];
  /** `[R]` cycles each token ran. */
  haltedAt: number[];
  /** `[K][R]` halting head outputs u (for every token, active or not). */
  u: number[][];
  /** Raw per-cycle regularisers over active tokens. */
  perCycle: { balance: number[]; entropy: number[]; switchBalance: number[]; zLoss: number[]; load: number[][] };
  /** Smallest gap between the k-th and (k+1)-th score met by an active token (near-ties make a comparison fragile). */
  minSelectionMargin: number;
  /** Smallest `| |Δu| − ε_u |` met by an active token (near-threshold halts make a comparison fragile). */
  minHaltMargin: number;
}

function get(w: ReadonlyMap<string, HostArray>, name: string): HostArray {
  const v = w.get(name);
  if (!v) throw new Error(`reference: no weight '${name}'`);
  return v;
}

/** y = x W (+ b), W `[in, out]` row-major. */
function affine(x: ArrayLike<number>, w: HostArray, b?: HostArray): Float64Array {
  const [nIn, nOut] = w.shape as [number, number];
  const y = new Float64Array(nOut);
  for (let o = 0; o < nOut; o++) {
    let s = b ? (b.data[o] as number) : 0;
    for (let i = 0; i < nIn; i++) s += (x[i] as number) * (w.data[i * nOut + o] as number);
    y[o] = s;
  }
  return y;
}

function softmax(z: ArrayLike<number>): Float64Array {
  let mx = -Infinity;
  for (let i = 0; i < z.length; i++) mx = Math.max(mx, z[i] as number);
  const e = new Float64Array(z.length);
  let s = 0;
  for (let i = 0; i < z.length; i++) {
    e[i] = Math.exp((z[i] as number) - mx);
    s += e[i] as number;
  }
  for (let i = 0; i < z.length; i++) e[i] = (e[i] as number) / s;
  return e;
}

/** SwiGLU: (silu(x W1) ⊙ x W3) W2. */
export function swigluReference(x: ArrayLike<number>, w1: HostArray, w3: HostArray, w2: HostArray): Float64Array {
  const a = affine(x, w1);
  const b = affine(x, w3);
  const h = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const v = a[i] as number;
    h[i] = (v / (1 + Math.exp(-v))) * (b[i] as number);
  }
  return affine(h, w2);
}

/**
 * @param cfg the layer config (router `goe`, `topk` without jitter, or `dense`)
 * @param weights the layer's variables by dotted name (`router.proj.w`, `experts.0.w1`, …)
 * @param tokens `[R·d]` row-major, @param aux `[R·da]` row-major (empty when da = 0)
 */
export function goeReference(
  cfg: GoeConfig,
  weights: ReadonlyMap<string, HostArray>,
  tokens: ArrayLike<number>,
  aux: ArrayLike<number>,
  rows: number,
): GoeReferenceResult {
  const { d, da, experts: m, cycles: kc } = cfg;
  const dense = cfg.router === 'dense';
  const s = dense ? m : cfg.k;
  const theta = get(weights, 'graph.theta');
  const adj: Float64Array[] = [];
  for (let n = 0; n < m; n++) adj.push(softmax(Array.from({ length: m }, (_, j) => theta.data[n * m + j] as number)));
  const wr = get(weights, 'router.proj.w');
  const br = get(weights, 'router.proj.b');
  const wp = get(weights, 'wp.w');
  const bp = get(weights, 'wp.b');
  const wo = get(weights, 'wo.w');
  const wu = get(weights, 'halt.w');
  const bu = get(weights, 'halt.b');
  const wc = cfg.messages && kc > 1 ? get(weights, 'wc.w') : undefined;
  const ex = Array.from({ length: m }, (_, e) => ({
    w1: get(weights, `experts.${e}.w1`),
    w3: get(weights, `experts.${e}.w3`),
    w2: get(weights, `experts.${e}.w2`),
  }));

  const out = new Float64Array(rows * d);
  const ids = Array.from({ length: kc }, () => Array.from({ length: rows }, () => new Array<number>(s).fill(-1)));
  const gates = Array.from({ length: kc }, () => Array.from({ length: rows }, () => new Array<number>(s).fill(0)));
  const probs = Array.from({ length: kc }, () => Array.from({ length: rows }, () => new Array<number>(m).fill(0)));
  const logitsAll = Array.from({ length: kc }, () => Array.from({ length: rows }, () => new Array<number>(m).fill(0)));
  const haltedAt = new Array<number>(rows).fill(kc);
  const uTrace = Array.from({ length: kc }, () => new Array<number>(rows).fill(0));
  let minSelectionMargin = Infinity;
  let minHaltMargin = Infinity;

  for (let i = 0; i < rows; i++) {
    const t = Float64Array.from({ length: d }, (_, c) => tokens[i * d + c] as number);
    const a = Array.from({ length: da }, (_, c) => aux[i * da + c] as number);
    let active = true;
    let uPrev = 0;
    let hPrev: Float64Array[] = [];
    let idsPrev: number[] = [];
    let qPrev = new Float64Array(m);
    for (let k = 0; k < kc; k++) {
      const r = [...t, ...a];
      const u = 1 / (1 + Math.exp(-(affine(r, wu, bu)[0] as number)));
      uTrace[k]![i] = u;
      if (k >= 1 && active) {
        const du = Math.abs(u - uPrev);
        if (cfg.haltEps > 0) {
          minHaltMargin = Math.min(minHaltMargin, Math.abs(du - cfg.haltEps));
          if (du < cfg.haltEps) {
            active = false;
            haltedAt[i] = k;
          }
        }
      }
      uPrev = u;
      const logits = affine(r, wr, br);
      logitsAll[k]![i] = Array.from(logits);
      const scores = Float64Array.from(logits);
      if (cfg.router === 'goe' && k >= 1 && cfg.graphGamma !== 0) {
        for (let e = 0; e < m; e++) {
          let succ = 0;
          for (let n = 0; n < m; n++) succ += (qPrev[n] as number) * (adj[n]![e] as number);
          scores[e] = (scores[e] as number) + cfg.graphGamma * Math.log(cfg.graphEps + succ);
        }
      }
      const p = softmax(scores);
      probs[k]![i] = Array.from(p);
      let chosen: number[];
      if (dense) chosen = Array.from({ length: m }, (_, e) => e);
      else {
        const order = Array.from({ length: m }, (_, e) => e).sort((x, y) => (scores[y] as number) - (scores[x] as number) || x - y);
        chosen = order.slice(0, s);
        if (active && s < m) minSelectionMargin = Math.min(minSelectionMargin, (scores[order[s - 1]!] as number) - (scores[order[s]!] as number));
      }
      let g = chosen.map((e) => p[e] as number);
      if (!dense && cfg.renormalizeGates) {
        const z = g.reduce((x, y) => x + y, 0);
        g = g.map((v) => v / z);
      }
      qPrev = new Float64Array(m);
      chosen.forEach((e, j) => (qPrev[e] = g[j] as number));
      if (!active) continue;
      ids[k]![i] = chosen.slice();
      gates[k]![i] = g.slice();
      const x = affine(r, wp, bp);
      const h: Float64Array[] = [];
      const hc = wc ? hPrev.map((hp) => affine(hp, wc)) : [];
      chosen.forEach((e) => {
        const he = swigluReference(x, ex[e]!.w1, ex[e]!.w3, ex[e]!.w2);
        if (wc && k >= 1) {
          idsPrev.forEach((n, l) => {
            const coef = adj[n]![e] as number;
            for (let c = 0; c < he.length; c++) he[c] = (he[c] as number) + coef * (hc[l]![c] as number);
          });
        }
        h.push(he);
      });
      const mix = new Float64Array(x.length);
      h.forEach((he, j) => {
        for (let c = 0; c < mix.length; c++) mix[c] = (mix[c] as number) + (g[j] as number) * (he[c] as number);
      });
      const upd = affine(mix, wo);
      for (let c = 0; c < d; c++) t[c] = (t[c] as number) + (upd[c] as number);
      hPrev = h;
      idsPrev = chosen;
    }
    out.set(t, i * d);
  }

  // Regularisers per cycle over the tokens active in that cycle.
  const perCycle = { balance: [] as number[], entropy: [] as number[], switchBalance: [] as number[], zLoss: [] as number[], load: [] as number[][] };
  for (let k = 0; k < kc; k++) {
    const act = Array.from({ length: rows }, (_, i) => k < haltedAt[i]!);
    const n = Math.max(act.filter(Boolean).length, 1);
    const meanP = new Array<number>(m).fill(0);
    const counts = new Array<number>(m).fill(0);
    let ent = 0;
    let z = 0;
    for (let i = 0; i < rows; i++) {
      if (!act[i]) continue;
      const p = probs[k]![i]!;
      p.forEach((v, e) => {
        meanP[e] = meanP[e]! + v / n;
        if (v > 0) ent -= (v * Math.log(v)) / n;
      });
      ids[k]![i]!.forEach((e) => {
        if (e >= 0) counts[e] = counts[e]! + 1;
      });
      const lg = logitsAll[k]![i]!;
      const mx = Math.max(...lg);
      const lse = mx + Math.log(lg.reduce((acc, v) => acc + Math.exp(v - mx), 0));
      z += (lse * lse) / n;
    }
    const totalSlots = Math.max(counts.reduce((x, y) => x + y, 0), 1);
    const load = counts.map((c) => c / totalSlots);
    perCycle.balance.push(meanP.reduce((acc, v) => acc + (v - 1 / m) ** 2, 0));
    perCycle.entropy.push(ent);
    perCycle.switchBalance.push(m * load.reduce((acc, f, e) => acc + f * meanP[e]!, 0));
    perCycle.zLoss.push(z);
    perCycle.load.push(load);
  }
  return { tokens: out, ids, gates, probs, haltedAt, u: uTrace, perCycle, minSelectionMargin, minHaltMargin };
}
