/**
 * One Graph-of-Experts layer in token mode (DESIGN.md §4; GoE draft §3.1.3–3.1.5). Per cycle
 * k = 0 … K−1, for every token still active:
 *
 * 1. route `r = [t; a]` (the configured router; `goe` adds the expert-graph bias from cycle 1 on);
 * 2. expert update, only for the k chosen experts (sparse dispatch):
 *    `h_m = f_m(W_p r) + Σ_{n ∈ S^{k−1}} A[n, m] W_c h_n^{k−1}`;
 * 3. token update `t ← t + Σ_m g_m W_o h_m`;
 * 4. halting: `u = σ(W_u r)`; from cycle 1 on a token with `|u^k − u^{k−1}| < ε_u` stops (no longer
 *    dispatched, no longer changed); the expert evaluations saved are counted.
 *
 * Which variables get a gradient from the task loss: all, except
 * - `halt.*` (W_u, b_u): halting is a hard decision; only `regularisers.halting > 0` trains them;
 * - `graph.theta` and `wc.*` when K = 1 (no cycle has a previous one), `graph.theta` also when
 *   `graphGamma = 0` and `messages = false`, and Θ under routers that ignore the graph (`dense`, `topk`)
 *   without messages, and always under `graphmoe` and `chain`; `wc` exists only when `messages` is on,
 *   K > 1 and the router uses messages (`Router.usesMessages`: not `graphmoe` nor `chain`);
 * - an expert that no token chose in the batch.
 */
import { Linear, Module, tf, type Rng } from '@goe/tf';
import type { GoeConfig } from './config.js';
import { dispatchDense, dispatchExact } from './dispatch.js';
import { GoeConfigError, GoeInputError } from './errors.js';
import { expertKindOf, expertRegistry, type Expert, type TokenLayout } from './experts.js';
import { graphRegistry, type ExpertGraph } from './graph.js';
import { cycleRegularisers } from './losses.js';
import { slotMessages } from './messages.js';
import { canReadSync, detached, selectionMask, slotOneHots, toFloat32 } from './ops.js';
import { routerRegistry, type Router } from './routers.js';

/** Input of `GoeLayer.apply`. */
export interface GoeLayerInput {
  /** `[B, N, d]` */
  tokens: tf.Tensor3D;
  /** `[B, N, da]`; may be omitted only when `da = 0`. */
  aux?: tf.Tensor3D;
  /**
   * `[gz, gy, gx]`: the tokens of each sample tile this grid, z-major (N = gz·gy·gx). Passed to the
   * experts (the `conv` expert requires it).
   */
  grid?: number[];
}

export interface GoeApplyOptions {
  /** Training mode (router jitter for `topk`). Default false. */
  training?: boolean;
  /**
   * `[B, N]`, 1 for real tokens, 0 for padding. Padding tokens are never routed or updated, and stay
   * out of the regularisers and statistics (haltedAt 0). Default: every token is real.
   */
  mask?: tf.Tensor2D;
}

/** Weighted regularisers (what enters `total`), each the mean over the cycles that had active tokens. */
export interface GoeLosses {
  total: tf.Scalar;
  balance: tf.Scalar;
  entropy: tf.Scalar;
  switchBalance: tf.Scalar;
  zLoss: tf.Scalar;
  halting: tf.Scalar;
}

/** Path provenance (DESIGN.md §4 step 5). s = router slots (k; M for `dense`). */
export interface GoeProvenance {
  /** Chosen expert ids `[K, B, N, s]` int32; −1 once a token has halted. */
  experts: tf.Tensor4D;
  /** Gates `[K, B, N, s]`; 0 once a token has halted. */
  gates: tf.Tensor4D;
  /** Router probabilities `[K, B, N, M]`. */
  probs: tf.Tensor4D;
  /** Cycles each token ran, `[B, N]` int32: the cycle at which it halted, K if it never did. */
  haltedAt: tf.Tensor2D;
  /** The expert graph A `[M, M]` used in this call. */
  adjacency: tf.Tensor2D;
}

/** Per-call statistics as tensors (read them with `readGoeStats`, which works on every backend). */
export interface GoeStats {
  /** Share of dispatched slots per expert, `[K, M]` (rows sum to 1 when any token was active). */
  load: tf.Tensor2D;
  /** Mean router entropy over active tokens, `[K]`. */
  routerEntropy: tf.Tensor1D;
  /** Share of (real) tokens active in each cycle, `[K]`. */
  activeFraction: tf.Tensor1D;
  /** Mean of `haltedAt` over real tokens (scalar). */
  meanHaltCycle: tf.Scalar;
  /** Expert evaluations done (token-slot pairs dispatched), scalar. */
  expertEvaluations: tf.Scalar;
  /** Expert evaluations saved against running every real token for all K cycles (R·K·s − done), scalar. */
  savedEvaluations: tf.Scalar;
  /** `savedEvaluations / (R·K·s)`, scalar. */
  savedFraction: tf.Scalar;
  /** Raw (unweighted) regulariser values per cycle, `[K]` each. */
  perCycle: { balance: tf.Tensor1D; entropy: tf.Tensor1D; switchBalance: tf.Tensor1D; zLoss: tf.Tensor1D; halting: tf.Tensor1D };
}

export interface GoeOutput {
  /** `[B, N, d]` */
  tokens: tf.Tensor3D;
  losses: GoeLosses;
  provenance: GoeProvenance;
  stats: GoeStats;
}

/** Plain-number view of `GoeStats`. */
export interface GoeStatsValues {
  load: number[][];
  routerEntropy: number[];
  activeFraction: number[];
  meanHaltCycle: number;
  expertEvaluations: number;
  savedEvaluations: number;
  savedFraction: number;
  perCycle: { balance: number[]; entropy: number[]; switchBalance: number[]; zLoss: number[]; halting: number[] };
}

/** Reads every stat back to the host (asynchronously: works on WebGPU too). */
export async function readGoeStats(stats: GoeStats): Promise<GoeStatsValues> {
  const v = async (t: tf.Tensor): Promise<number[]> => Array.from(await t.data());
  const s = async (t: tf.Tensor): Promise<number> => (await t.data())[0] as number;
  return {
    load: (await stats.load.array()) as number[][],
    routerEntropy: await v(stats.routerEntropy),
    activeFraction: await v(stats.activeFraction),
    meanHaltCycle: await s(stats.meanHaltCycle),
    expertEvaluations: await s(stats.expertEvaluations),
    savedEvaluations: await s(stats.savedEvaluations),
    savedFraction: await s(stats.savedFraction),
    perCycle: {
      balance: await v(stats.perCycle.balance),
      entropy: await v(stats.perCycle.entropy),
      switchBalance: await v(stats.perCycle.switchBalance),
      zLoss: await v(stats.perCycle.zLoss),
      halting: await v(stats.perCycle.halting),
    },
  };
}

/** Frees every tensor of a `GoeOutput` (tokens included). */
export function disposeGoeOutput(out: GoeOutput): void {
  tf.dispose([
    out.tokens,
    ...Object.values(out.losses),
    ...Object.values(out.provenance),
    ...Object.values(out.stats).filter((t): t is tf.Tensor => t instanceof tf.Tensor),
    ...Object.values(out.stats.perCycle),
  ]);
}

export class GoeLayer extends Module {
  readonly router: Router;
  readonly graph: ExpertGraph;
  /** W_p: routing descriptor -> expert input `[d + da] -> [d_e]`. */
  readonly wp: Linear;
  readonly experts: Expert[];
  /** W_c: message projection `[d_e] -> [d_e]` (present when messages are on and K > 1). */
  readonly wc: Linear | undefined;
  /** W_o: expert state -> token update `[d_e] -> [d]`. */
  readonly wo: Linear;
  /** W_u: halting head `[d + da] -> 1`. */
  readonly halt: Linear;

  constructor(
    readonly config: GoeConfig,
    rng: Rng,
  ) {
    super();
    const c = config;
    const rIn = c.d + c.da;
    this.router = this.child('router', routerRegistry.get(c.router)(c, rng));
    this.graph = this.child('graph', graphRegistry.get(c.graph)({ experts: c.experts, topology: c.topology, emaBeta: c.emaBeta, embedDim: c.graphEmbedDim }, rng));
    this.wp = this.child('wp', new Linear(rIn, c.expertDim, rng));
    this.experts = [];
    for (let m = 0; m < c.experts; m++) {
      // A comma-separated `expert` is a heterogeneous library, its kinds assigned round robin.
      const e = expertRegistry.get(expertKindOf(c.expert, m))({ dim: c.expertDim, hidden: c.expertHidden, index: m }, rng);
      if (e.dim !== c.expertDim) throw new GoeConfigError('expert', `an expert of width ${c.expertDim}`, e.dim);
      this.experts.push(this.child(`experts.${m}`, e));
    }
    const sendsMessages = c.messages && c.cycles > 1 && this.router.usesMessages;
    this.wc = sendsMessages ? this.child('wc', new Linear(c.expertDim, c.expertDim, rng, { bias: false })) : undefined;
    this.wo = this.child('wo', new Linear(c.expertDim, c.d, rng, { bias: false }));
    this.halt = this.child('halt', new Linear(rIn, 1, rng));
  }

  /** Slots per token s (k, or M for the dense router). */
  get slots(): number {
    return this.router.slots;
  }

  private check(input: GoeLayerInput, mask: tf.Tensor | undefined): void {
    const { d, da } = this.config;
    const t = input.tokens;
    if (mask && (mask.rank !== 2 || mask.shape[0] !== t.shape[0] || mask.shape[1] !== t.shape[1])) {
      throw new GoeInputError('mask', `[${t.shape[0]}, ${t.shape[1]}]`, `[${mask.shape.join(', ')}]`);
    }
    if (t.rank !== 3 || t.shape[2] !== d || t.dtype !== 'float32') {
      throw new GoeInputError('tokens', `float32 [B, N, ${d}]`, `${t.dtype} [${t.shape.join(', ')}]`);
    }
    if (da > 0) {
      const a = input.aux;
      if (!a) throw new GoeInputError('aux', `float32 [${t.shape[0]}, ${t.shape[1]}, ${da}]`, 'nothing');
      if (a.rank !== 3 || a.shape[0] !== t.shape[0] || a.shape[1] !== t.shape[1] || a.shape[2] !== da || a.dtype !== 'float32') {
        throw new GoeInputError('aux', `float32 [${t.shape[0]}, ${t.shape[1]}, ${da}]`, `${a.dtype} [${a.shape.join(', ')}]`);
      }
    }
    const grid = input.grid;
    const n = t.shape[1];
    if (grid !== undefined) {
      const ok = Array.isArray(grid) && grid.length === 3 && grid.every((v) => Number.isInteger(v) && v >= 1) && grid[0]! * grid[1]! * grid[2]! === n;
      if (!ok) throw new GoeInputError('grid', `[gz, gy, gx] of positive integers with gz·gy·gx = N = ${n}`, JSON.stringify(grid));
    } else if (this.experts.some((e) => e.needsGrid)) {
      throw new GoeInputError('grid', `[gz, gy, gx] with gz·gy·gx = N = ${n} (the library '${this.config.expert}' has a conv expert)`, 'nothing');
    }
  }

  private dispatchMode(): 'exact' | 'dense' {
    const mode = this.config.dispatch;
    if (mode === 'auto') return canReadSync() ? 'exact' : 'dense';
    if (mode === 'exact' && !canReadSync()) {
      throw new GoeConfigError('dispatch', `'dense' or 'auto' on backend ${tf.getBackend()} (no synchronous read-back)`, mode);
    }
    return mode;
  }

  /**
   * Messages from the experts a token visited last cycle (draft §3.1.4):
   * `msg[j][i] = Σ_l A[prev[i,l], cur[i,j]] · W_c h^{k−1}[l][i]`. Per-slot rank-2 tensors throughout.
   * @param hPrev s' × `[R, de]` @param idsPrev `[R, s']` @param idsCur `[R, s]` @param adjacency `[M, M]`
   * @returns s × `[R, de]`
   */
  private messages(hPrev: tf.Tensor2D[], idsPrev: tf.Tensor2D, idsCur: tf.Tensor2D, adjacency: tf.Tensor2D): tf.Tensor2D[] {
    return tf.tidy(() => {
      const wc = this.wc as Linear;
      const m = this.config.experts;
      const aRows = slotOneHots(idsPrev, m).map((oh) => tf.matMul(oh, adjacency)); // s' × [R, M]: A[prev[i,l], :]
      const hc = hPrev.map((h) => wc.apply(h)); // s' × [R, de]
      return slotOneHots(idsCur, m).map((ohj) => {
        const terms = aRows.map((al, l) => {
          const coef = tf.sum(tf.mul(al, ohj), -1, true); // [R, 1]: A[prev[i,l], cur[i,j]]
          return tf.mul(coef, hc[l] as tf.Tensor2D); // [R, de]
        });
        return (terms.length === 1 ? terms[0] : tf.addN(terms)) as tf.Tensor2D;
      });
    });
  }

  /**
   * Runs the K refinement cycles.
   * @param input tokens `[B, N, d]`, aux `[B, N, da]`; `options.mask` `[B, N]` marks padding with 0
   * @returns tokens `[B, N, d]`, weighted losses, provenance (`[K, B, N, s]` ids/gates, `[B, N]` haltedAt)
   *   and stats; every tensor belongs to the caller (`disposeGoeOutput`).
   */
  apply(input: GoeLayerInput, options: GoeApplyOptions = {}): GoeOutput {
    this.check(input, options.mask);
    const training = options.training ?? false;
    const mode = this.dispatchMode();
    const c = this.config;
    return tf.tidy(() => {
      const [batch, n, d] = input.tokens.shape;
      const rows = batch * n;
      const grid = input.grid;
      const layout: TokenLayout = { batch, tokens: n, grid: grid ? [grid[0]!, grid[1]!, grid[2]!] : undefined };
      const s = this.router.slots;
      const kCycles = c.cycles;
      let t = tf.reshape(input.tokens, [rows, d]) as tf.Tensor2D; // [R, d]
      const aux = c.da > 0 ? (tf.reshape(input.aux as tf.Tensor3D, [rows, c.da]) as tf.Tensor2D) : null; // [R, da]
      const adjacency = this.graph.adjacency(); // [M, M]

      const real = options.mask ? (toFloat32(tf.reshape(options.mask, [rows, 1])) as tf.Tensor2D) : (tf.ones([rows, 1]) as tf.Tensor2D); // [R, 1]
      const nReal = tf.maximum(tf.sum(real), 1);
      let active = real; // 1 = still refining
      let uPrev: tf.Tensor2D | null = null;
      let hPrev: tf.Tensor2D[] | null = null;
      let idsPrev: tf.Tensor2D | null = null;
      let qPrev: tf.Tensor2D | null = null;
      const ids: tf.Tensor2D[] = [];
      const gates: tf.Tensor2D[] = [];
      const probs: tf.Tensor2D[] = [];
      const actives: tf.Tensor2D[] = [];
      const regs: ReturnType<typeof cycleRegularisers>[] = [];
      const haltCost: tf.Scalar[] = [];
      const haltHas: tf.Scalar[] = [];

      for (let k = 0; k < kCycles; k++) {
        const r = (aux ? tf.concat([t, aux], 1) : t) as tf.Tensor2D; // [R, d + da]
        const u = tf.sigmoid(this.halt.apply(r)) as tf.Tensor2D; // [R, 1], draft §3.1.5 u = ρ(W_u r)
        if (uPrev) {
          const du = tf.abs(tf.sub(u, uPrev)); // [R, 1]
          const before = active;
          const nBefore = tf.sum(before) as tf.Scalar;
          haltCost.push(tf.div(tf.sum(tf.mul(du, before)), tf.maximum(nBefore, 1)) as tf.Scalar);
          haltHas.push(tf.minimum(nBefore, 1) as tf.Scalar);
          if (c.haltEps > 0) {
            // Halt when |Δu| < ε: keep going only where |Δu| >= ε (a hard decision, no gradient).
            active = detached(
              (a, g) => tf.mul(a, toFloat32(tf.greaterEqual(g, c.haltEps))),
              before,
              du,
            ) as tf.Tensor2D;
          }
        }
        uPrev = u;

        const routed = this.router.route({ r, cycle: k, training, prevGates: qPrev, adjacency, active });
        // Halted tokens are not dispatched: their slots become −1.
        const idsK = detached((i, a) => {
          const ai = tf.cast(a, 'int32'); // [R, 1]
          return tf.sub(tf.add(tf.mul(i, ai), ai), tf.scalar(1, 'int32')) as tf.Tensor2D; // ids where active, −1 elsewhere
        }, routed.ids, active) as tf.Tensor2D; // [R, s]
        this.graph.observe(idsK, training);

        const x = this.wp.apply(r) as tf.Tensor2D; // [R, de], expert input W_p r
        const fOut = mode === 'exact' ? dispatchExact(this.experts, x, idsK, layout).out : dispatchDense(this.experts, x, idsK, layout); // s × [R, de]
        // Token mode: each token hears the experts it visited; slot mode: the pooled states of its sample (messages.ts).
        const msgs =
          hPrev && idsPrev && this.wc
            ? c.messageMode === 'slot'
              ? slotMessages(hPrev, idsPrev, idsK, adjacency, this.wc, batch)
              : this.messages(hPrev, idsPrev, idsK, adjacency)
            : null;
        const h: tf.Tensor2D[] = msgs ? fOut.map((f, j) => tf.add(f, msgs[j] as tf.Tensor2D) as tf.Tensor2D) : fOut;
        const g = tf.mul(routed.gates, active) as tf.Tensor2D; // [R, s], 0 for halted tokens
        // Σ_m g_m h_m, slot by slot at rank 2.
        const terms = h.map((hj, j) => tf.mul(tf.slice(g, [0, j], [rows, 1]), hj)); // s × [R, de]
        const mix = (terms.length === 1 ? terms[0] : tf.addN(terms)) as tf.Tensor2D; // [R, de]
        const update = this.wo.apply(mix) as tf.Tensor2D; // W_o Σ_m g_m h_m (W_o is linear, no bias: 0 where halted)
        // t ← t + W_o Σ_m g_m h_m, unless the router rewrites the token between rounds (graphmoe).
        t = this.router.afterCycle
          ? this.router.afterCycle({ cycle: k, cycles: kCycles, tokens: t, update, active })
          : (tf.add(t, update) as tf.Tensor2D);

        const mask = selectionMask(idsK, c.experts); // [R, M]
        regs.push(cycleRegularisers(routed.logits, routed.scores, mask, active));
        ids.push(idsK);
        gates.push(g);
        probs.push(routed.probs);
        actives.push(active);
        hPrev = h;
        idsPrev = idsK;
        qPrev = routed.gateDist;
      }

      // Weighted losses: each term is the mean over the cycles that still had active tokens.
      const has = regs.map((q) => tf.minimum(q.activeCount, 1));
      const nHas = tf.maximum(tf.addN(has), 1);
      const avg = (pick: (q: (typeof regs)[number]) => tf.Scalar): tf.Scalar =>
        tf.div(tf.addN(regs.map((q, i) => tf.mul(pick(q), has[i] as tf.Tensor))), nHas) as tf.Scalar;
      const w = c.regularisers;
      const balance = tf.mul(avg((q) => q.balance), w.balance) as tf.Scalar;
      const entropy = tf.mul(avg((q) => q.entropy), w.entropy) as tf.Scalar;
      const switchBalance = tf.mul(avg((q) => q.switchBalance), w.switchBalance) as tf.Scalar;
      const zLoss = tf.mul(avg((q) => q.zLoss), w.zLoss) as tf.Scalar;
      const haltingRaw =
        haltCost.length > 0
          ? tf.div(tf.addN(haltCost.map((hc, i) => tf.mul(hc, haltHas[i] as tf.Tensor))), tf.maximum(tf.addN(haltHas), 1))
          : tf.scalar(0);
      const halting = tf.mul(haltingRaw, w.halting) as tf.Scalar;
      const total = tf.addN([balance, entropy, switchBalance, zLoss, halting]) as tf.Scalar;

      // Provenance and stats.
      const haltedAtF = tf.addN(actives); // [R, 1]: cycles each token was active
      const haltedAt = tf.reshape(tf.cast(haltedAtF, 'int32'), [batch, n]) as tf.Tensor2D; // [B, N]
      const evaluations = tf.addN(ids.map((i) => tf.sum(toFloat32(tf.greaterEqual(i, tf.scalar(0, 'int32')))))) as tf.Scalar;
      const possible = tf.mul(tf.sum(real), kCycles * s);
      const saved = tf.sub(possible, evaluations) as tf.Scalar;
      const perCycleHalting = tf.stack([tf.scalar(0), ...haltCost]) as tf.Tensor1D; // [K]

      return {
        tokens: tf.reshape(t, [batch, n, d]) as tf.Tensor3D,
        losses: { total, balance, entropy, switchBalance, zLoss, halting },
        provenance: {
          experts: tf.reshape(tf.stack(ids), [kCycles, batch, n, s]) as tf.Tensor4D, // [K, B, N, s]
          gates: tf.reshape(tf.stack(gates), [kCycles, batch, n, s]) as tf.Tensor4D, // [K, B, N, s]
          probs: tf.reshape(tf.stack(probs), [kCycles, batch, n, c.experts]) as tf.Tensor4D, // [K, B, N, M]
          haltedAt,
          adjacency,
        },
        stats: {
          load: tf.stack(regs.map((q) => q.load)) as tf.Tensor2D, // [K, M]
          routerEntropy: tf.stack(regs.map((q) => q.entropy)) as tf.Tensor1D, // [K]
          activeFraction: tf.div(tf.stack(regs.map((q) => q.activeCount)), nReal) as tf.Tensor1D, // [K]
          meanHaltCycle: tf.div(tf.sum(haltedAtF), nReal) as tf.Scalar,
          expertEvaluations: evaluations,
          savedEvaluations: saved,
          savedFraction: tf.div(saved, tf.maximum(possible, 1)) as tf.Scalar,
          perCycle: {
            balance: tf.stack(regs.map((q) => q.balance)) as tf.Tensor1D,
            entropy: tf.stack(regs.map((q) => q.entropy)) as tf.Tensor1D,
            switchBalance: tf.stack(regs.map((q) => q.switchBalance)) as tf.Tensor1D,
            zLoss: tf.stack(regs.map((q) => q.zLoss)) as tf.Tensor1D,
            halting: perCycleHalting,
          },
        },
      };
    });
  }
}
