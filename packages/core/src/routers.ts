/**
 * Routers: everything that turns a token's routing descriptor `r = [t; a]` into a choice of experts
 * and their gates. One interface, a registry keyed by the config's `router` name, so that one config
 * key swaps the GoE router for a baseline (DESIGN.md §4).
 *
 * Dimensions: R token rows (B·N) of one cycle, of which the `active` ones (real, not halted) are routed;
 * M experts; k experts per token (`config.k`); s slots per token (k, or M for `dense`, `expert-choice`
 * and `top-p`); C expert capacity `ceil(capacityFactor · k · R_active / M)` slots per expert and cycle.
 *
 * Every selection is computed on the device (no read-back), so each router runs on WebGPU too.
 *
 * Dropped versus not selected. An id of −1 means "no expert in this slot"; what that says depends on
 * the router (`RouteOutput.dropped` marks the dropped tokens explicitly):
 * - `goe`, `dense`, `top-p`, `symphony`, `topk` without capacity: nothing is ever dropped. `top-p`'s −1
 *   slots are experts beyond its threshold (not selected).
 * - `topk` with capacity: every active token selects k experts, so an active token with fewer than k
 *   valid slots was dropped (each −1 slot is one dropped slot; all k −1: the token passes through).
 * - `expert-choice`: experts choose tokens; slot m is −1 where expert m did not choose the token (not
 *   selected). An active token with all M slots −1 was chosen by no expert: it is the dropped one.
 * - Halted and padding tokens: all −1 in the layer's provenance, and `active` is 0 (not dropped).
 */
import { Linear, Module, makeRng, tf, type Rng } from '@goe/tf';
import type { GoeConfig, GoeConfigInput } from './config.js';
import { EmaExpertGraph } from './graph.js';
import { detached, selectionMask, slotOneHots, toFloat32, topKIds } from './ops.js';
import { Registry } from './registry.js';

/** What a router sees in one refinement cycle. */
export interface RouteInput {
  /** Routing descriptors `r = [t; a]`, `[R, d + da]` (R = B·N rows). */
  r: tf.Tensor2D;
  /** Cycle index k = 0 … K−1. */
  cycle: number;
  training: boolean;
  /** The previous cycle's gate distribution q^{k−1} `[R, M]` (gates scattered over experts); null at k = 0. */
  prevGates: tf.Tensor2D | null;
  /** Expert-graph adjacency A `[M, M]`, row-stochastic. */
  adjacency: tf.Tensor2D;
  /**
   * `[R, 1]` float: 1 for rows routed this cycle, 0 for padding and halted rows (the layer sets their
   * slots to −1 afterwards). Routers that count tokens (capacity, expert choice, co-selection
   * statistics) count only these. Omitted: every row is active.
   */
  active?: tf.Tensor2D;
}

/** A router's decision for every row. */
export interface RouteOutput {
  /** Raw router logits `W_r r + b_r`, `[R, M]` (what the z-loss sees). */
  logits: tf.Tensor2D;
  /** The scores the softmax and the selection used (logits plus any bias), `[R, M]`. */
  scores: tf.Tensor2D;
  /** `p = softmax(scores)`, `[R, M]`. */
  probs: tf.Tensor2D;
  /** Chosen expert per slot, `[R, s]` int32, −1 = slot unused; carries no gradient. */
  ids: tf.Tensor2D;
  /** Gate of each slot, `[R, s]` (differentiable). */
  gates: tf.Tensor2D;
  /** The gates scattered over experts, `[R, M]` (zeros where not chosen): q for the next cycle. */
  gateDist: tf.Tensor2D;
  /**
   * `[R, 1]` float 0/1, for routers with a capacity: 1 where an active token was dropped (`topk`: lost
   * at least one of its k slots to the capacity; `expert-choice`: chosen by no expert). The dropped
   * rate of a cycle is `Σ dropped / Σ active`. Absent: the router never drops a token.
   */
  dropped?: tf.Tensor2D;
}

/** What the layer hands `Router.afterCycle` once the experts of one cycle have run (all `[R, …]`). */
export interface CycleStep {
  /** Cycle index k = 0 … K−1. */
  cycle: number;
  /** K, so that a router knows which cycle is the last. */
  cycles: number;
  /** The tokens this cycle routed on, `[R, d]` (the layer's input tokens at k = 0). */
  tokens: tf.Tensor2D;
  /** This cycle's expert output `W_o Σ_m g_m h_m`, `[R, d]`; zero rows for tokens not active. */
  update: tf.Tensor2D;
  /** `[R, 1]`: 1 for tokens routed in this cycle, 0 for halted and padding tokens. */
  active: tf.Tensor2D;
}

/** A router owns its parameters (it is a Module) and decides s slots per token. */
export abstract class Router extends Module {
  abstract readonly name: string;
  /** Slots per token s (k for top-k routers, M for `dense`). */
  abstract readonly slots: number;
  /**
   * Whether the layer's expert-to-expert messages (config `messages`, draft §3.1.4) run under this
   * router. Baselines whose paper has no such messages (`graphmoe`, `chain`) say false: the layer then
   * builds no W_c and sends none, whatever the config says.
   */
  readonly usesMessages: boolean = true;
  /** @see RouteInput, RouteOutput (all `[R, …]`). */
  abstract route(input: RouteInput): RouteOutput;
  /**
   * Optional: replaces the layer's token update `t ← t + update` of every cycle, for routers that
   * rewrite the token between rounds (GraphMoE: `x_{t+1} = x_t + W_g h_t`). Returns the tokens the
   * next cycle routes on, and after the last cycle the layer's output, `[R, d]`; rows whose `active`
   * is 0 must come back unchanged before the last cycle. Runs inside the layer's `tidy`: tensors kept
   * between cycles are freed when `apply` returns, so such state starts afresh at cycle 0.
   */
  afterCycle?(step: CycleStep): tf.Tensor2D;
}

export type RouterFactory = (config: GoeConfig, rng: Rng) => Router;

/**
 * A router whose logits are one linear map of the routing descriptor, `W_r r + b_r` `[R, M]` (every
 * built-in router); the subclasses differ in bias, selection and slot count.
 */
export abstract class LinearRouter extends Router {
  readonly slots: number;
  /** W_r, b_r: `[d + da] -> [M]`. */
  readonly proj: Linear;
  constructor(
    readonly config: GoeConfig,
    slots: number,
    rng: Rng,
  ) {
    super();
    this.slots = slots;
    this.proj = this.child('proj', new Linear(config.d + config.da, config.experts, rng));
  }

  /** `logits = W_r r + b_r` and `p = softmax(logits)`, both `[R, M]` (call inside a tidy). */
  protected logitsAndProbs(r: tf.Tensor2D): { logits: tf.Tensor2D; probs: tf.Tensor2D } {
    const logits = this.proj.apply(r) as tf.Tensor2D;
    return { logits, probs: tf.softmax(logits, -1) as tf.Tensor2D };
  }
}

/**
 * Gates from a selection: the kept probabilities, renormalised over the kept experts when asked.
 * @param probs `[R, M]` @param ids `[R, s]` int32 (−1 = none)
 * @returns gates `[R, s]`, gateDist `[R, M]`
 */
export function gatesFromSelection(
  probs: tf.Tensor2D,
  ids: tf.Tensor2D,
  renormalize: boolean,
): { gates: tf.Tensor2D; gateDist: tf.Tensor2D } {
  return tf.tidy(() => {
    const experts = probs.shape[1];
    const ohs = slotOneHots(ids, experts); // s × [R, M], no gradient through ids
    const mask = ohs.length === 1 ? ohs[0]! : tf.addN(ohs); // [R, M]
    const kept = tf.mul(probs, mask); // [R, M]
    // The 1e-30 only guards rows whose every kept probability underflowed; it does not move a gate.
    const gateDist = (renormalize ? tf.div(kept, tf.add(tf.sum(kept, -1, true), 1e-30)) : kept) as tf.Tensor2D;
    const perSlot = ohs.map((oh) => tf.sum(tf.mul(oh, gateDist), -1, true)); // s × [R, 1]
    const gates = (perSlot.length === 1 ? perSlot[0] : tf.concat(perSlot, 1)) as tf.Tensor2D; // [R, s]
    return { gates, gateDist };
  });
}

/**
 * The GoE graph router (draft §3.1.3, DESIGN.md §4 step 1): `logits = W_r r + b_r`; from cycle 1 on
 * `scores = logits + γ log(ε + Aᵀ q^{k−1})`, so the expert graph biases entry toward the successors of
 * the experts the token used last cycle; `p = softmax(scores)`; keep the top k; renormalise.
 */
export class GoeRouter extends LinearRouter {
  readonly name: string = 'goe';
  constructor(config: GoeConfig, rng: Rng) {
    super(config, config.k, rng);
  }

  protected bias(input: RouteInput): tf.Tensor2D | null {
    const { graphGamma, graphEps } = this.config;
    if (input.cycle === 0 || input.prevGates === null || graphGamma === 0) return null;
    // (Aᵀ q)_m = Σ_n q_n A[n, m]: row vector q times A.
    const succ = tf.matMul(input.prevGates, input.adjacency); // [R, M]
    return tf.mul(tf.log(tf.add(succ, graphEps)), graphGamma) as tf.Tensor2D;
  }

  route(input: RouteInput): RouteOutput {
    return tf.tidy(() => {
      const logits = this.proj.apply(input.r) as tf.Tensor2D; // [R, M]
      const b = this.bias(input);
      const scores = b ? (tf.add(logits, b) as tf.Tensor2D) : logits;
      const probs = tf.softmax(scores, -1) as tf.Tensor2D;
      const ids = topKIds(scores, this.config.k); // [R, k]
      const { gates, gateDist } = gatesFromSelection(probs, ids, this.config.renormalizeGates);
      return { logits, scores, probs, ids, gates, gateDist };
    });
  }
}

/** Every expert on every token, mixed by the full softmax (the dense-MoE baseline). */
export class DenseRouter extends LinearRouter {
  readonly name = 'dense';
  constructor(config: GoeConfig, rng: Rng) {
    super(config, config.experts, rng);
  }

  route(input: RouteInput): RouteOutput {
    return tf.tidy(() => {
      const rows = input.r.shape[0];
      const m = this.config.experts;
      const logits = this.proj.apply(input.r) as tf.Tensor2D; // [R, M]
      const probs = tf.softmax(logits, -1) as tf.Tensor2D;
      const ids = tf.tile(tf.reshape(tf.range(0, m, 1, 'int32'), [1, m]), [rows, 1]) as tf.Tensor2D; // [R, M]
      return { logits, scores: logits, probs, ids, gates: probs, gateDist: probs };
    });
  }
}

/** `[R, 1]`: the rows routed this cycle (`input.active`, or every row). */
function activeRows(input: RouteInput): tf.Tensor2D {
  return input.active ?? (tf.ones([input.r.shape[0], 1]) as tf.Tensor2D);
}

/**
 * Expert capacity `C = ceil(capacityFactor · k · R_active / M)` slots per expert (Switch Transformer
 * §2.2 eq. 3, with k slots per token as in GShard §2.2), a float scalar computed on the device.
 * @param active `[R, 1]` 1 for the rows routed this cycle
 */
function expertCapacity(active: tf.Tensor2D, capacityFactor: number, k: number, experts: number): tf.Scalar {
  return tf.tidy(() => {
    const c = tf.mul(tf.sum(active), (capacityFactor * k) / experts);
    // float32 can lift an exact integer by an ulp; rounding up from a hair below keeps it exact.
    return tf.ceil(tf.mul(c, 1 - 1e-6)) as tf.Scalar;
  });
}

/** `[R, s]` float: 1 for slots holding an expert, 0 for −1 slots (no gradient). */
function validSlots(ids: tf.Tensor2D): tf.Tensor2D {
  return detached((i) => toFloat32(tf.greaterEqual(i, tf.scalar(0, 'int32'))), ids) as tf.Tensor2D;
}

/**
 * Drops the slots over capacity, Switch / GShard style: every expert takes at most C slots per cycle,
 * assigned in token order, first choices of all tokens before second choices (GShard Algorithm 1:
 * the place of a 2nd-choice slot counts after every kept 1st choice); the rest become −1. Inactive
 * rows take no place.
 * @param ids `[R, s]` int32, slot j = the token's (j+1)-th choice @param active `[R, 1]`
 * @param capacity C (scalar) @returns `[R, s]` int32, −1 where dropped (no gradient)
 */
function dropOverCapacity(ids: tf.Tensor2D, active: tf.Tensor2D, capacity: tf.Scalar, experts: number): tf.Tensor2D {
  return detached(
    (i, a, c) =>
      tf.tidy(() => {
        const [rows, slots] = i.shape as [number, number];
        let taken: tf.Tensor = tf.zeros([1, experts]); // [1, M] places taken by earlier choices
        const kept: tf.Tensor[] = [];
        for (let j = 0; j < slots; j++) {
          const col = tf.slice(i, [0, j], [rows, 1]); // [R, 1]
          const oh = tf.mul((slotOneHots(col as tf.Tensor2D, experts)[0] as tf.Tensor2D), a); // [R, M]
          const place = tf.add(tf.cumsum(oh, 0, true), taken); // [R, M]: the place each row would take
          const mine = tf.sum(tf.mul(place, oh), -1, true); // [R, 1]
          const keep = tf.logicalAnd(tf.greater(tf.sum(oh, -1, true), 0), tf.less(mine, c)); // [R, 1]
          kept.push(tf.where(keep, col, tf.fill([rows, 1], -1, 'int32')));
          taken = tf.add(taken, tf.sum(oh, 0, true));
        }
        return tf.concat(kept, 1);
      }),
    ids,
    active,
    capacity,
  ) as tf.Tensor2D;
}

/**
 * Top-k (Switch Transformer, GShard): `p = softmax(W_r r + b_r)`, top k, optional renormalisation;
 * during training, multiplicative jitter `r ⊙ U(1−j, 1+j)` (Switch Transformer §2.4), drawn from the
 * router's own seeded generator.
 *
 * With `capacityFactor > 0` each expert takes at most C = ceil(capacityFactor · k · R_active / M)
 * slots per cycle (Switch §2.2); the slots over capacity become −1 in token order, first choices
 * before second ones (`dropOverCapacity`). As in GShard, gates are normalised over the k chosen
 * experts before dropping, and a dropped slot's gate is zeroed rather than handed to the kept ones:
 * a token loses that expert's contribution, and a token with every slot dropped passes through the
 * layer unchanged (the residual, Switch §2.2). `dropped` marks the tokens that lost a slot.
 */
export class TopKRouter extends LinearRouter {
  readonly name = 'topk';
  private readonly noise: Rng;
  constructor(config: GoeConfig, rng: Rng) {
    super(config, config.k, rng);
    this.noise = makeRng(Math.floor(rng.next() * 2 ** 31));
  }

  route(input: RouteInput): RouteOutput {
    return tf.tidy(() => {
      let r = input.r;
      const j = this.config.jitter;
      if (input.training && j > 0) {
        const u = new Float32Array(r.size);
        for (let i = 0; i < u.length; i++) u[i] = 1 - j + 2 * j * this.noise.next();
        r = tf.mul(r, tf.tensor2d(u, r.shape)) as tf.Tensor2D;
      }
      const { k, experts, capacityFactor } = this.config;
      const { logits, probs } = this.logitsAndProbs(r); // [R, M]
      const chosen = topKIds(logits, k); // [R, k]
      const sel = gatesFromSelection(probs, chosen, this.config.renormalizeGates);
      if (capacityFactor <= 0) return { logits, scores: logits, probs, ids: chosen, gates: sel.gates, gateDist: sel.gateDist };
      const active = activeRows(input);
      const ids = dropOverCapacity(chosen, active, expertCapacity(active, capacityFactor, k, experts), experts); // [R, k]
      const keep = validSlots(ids); // [R, k]
      const gates = tf.mul(sel.gates, keep) as tf.Tensor2D;
      const gateDist = tf.mul(sel.gateDist, selectionMask(ids, experts)) as tf.Tensor2D;
      const dropped = tf.mul(toFloat32(tf.less(tf.sum(keep, -1, true), k)), active) as tf.Tensor2D; // [R, 1]
      return { logits, scores: logits, probs, ids, gates, gateDist, dropped };
    });
  }
}

/**
 * Expert choice (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing", §3.1): experts
 * choose tokens. `S = softmax(W_r r + b_r)` `[R, M]`; each expert takes its top C active tokens by
 * S[:, m], C = ceil(capacityFactor · k · R_active / M) (the paper's `n·c/e`, c = capacityFactor · k),
 * at most R_active; ties go to the earlier token. A token may get 0 … M experts.
 *
 * Slots: s = M, slot m is expert m (id m where it chose the token, −1 elsewhere). Gates are the
 * token-expert probabilities S[i, m] (the paper's G, not renormalised: `renormalizeGates` does not
 * apply). Padding and halted rows (`active` 0) are ranked below every real token and C never exceeds
 * the active count, so they are never chosen. `dropped` marks active tokens no expert chose.
 */
export class ExpertChoiceRouter extends LinearRouter {
  readonly name = 'expert-choice';
  constructor(config: GoeConfig, rng: Rng) {
    super(config, config.experts, rng);
  }

  route(input: RouteInput): RouteOutput {
    return tf.tidy(() => {
      const { k, experts, capacityFactor } = this.config;
      const rows = input.r.shape[0];
      const { logits, probs } = this.logitsAndProbs(input.r); // [R, M]
      const active = activeRows(input);
      const chosen = detached(
        (p, a) =>
          tf.tidy(() => {
            // Inactive rows score −1, below every probability: they come last in each expert's order.
            const scores = tf.transpose(tf.add(tf.mul(p, a), tf.sub(a, 1))); // [M, R]
            const order = tf.topk(scores, rows).indices; // [M, R]: tokens in each expert's order
            // The inverse permutation: rank[m, i] = place of token i in expert m's order.
            const rank = toFloat32(tf.topk(tf.neg(toFloat32(order)), rows).indices); // [M, R]
            const cap = tf.minimum(expertCapacity(a as tf.Tensor2D, capacityFactor, k, experts), tf.sum(a));
            return tf.transpose(toFloat32(tf.less(rank, cap))); // [R, M] 0/1
          }),
        probs,
        active,
      ) as tf.Tensor2D;
      const expertIds = tf.reshape(tf.range(1, experts + 1, 1, 'int32'), [1, experts]); // [1, M]: m + 1
      const ids = detached((c) => tf.sub(tf.mul(tf.cast(c, 'int32'), expertIds), tf.scalar(1, 'int32')), chosen) as tf.Tensor2D; // m or −1
      const gates = tf.mul(probs, chosen) as tf.Tensor2D; // [R, M]
      const unchosen = toFloat32(tf.equal(tf.sum(chosen, -1, true), 0)); // [R, 1]
      const dropped = tf.mul(unchosen, active) as tf.Tensor2D;
      return { logits, scores: logits, probs, ids, gates, gateDist: gates, dropped };
    });
  }
}

/**
 * Top-p, a dynamic number of experts per token (Huang et al. 2024, "Harder Tasks Need More Experts:
 * Dynamic Routing in MoE Models", §3, eqs. 3–5): `p = softmax(W_r r + b_r)`; keep the smallest set of
 * experts whose probabilities sum to at least `topP`, taken in descending order of p, at least one.
 * Slots: s = M in descending order of p, −1 beyond the threshold (not selected; nothing is dropped).
 * Gates are the kept probabilities, renormalised over the kept set when `renormalizeGates`.
 */
export class TopPRouter extends LinearRouter {
  readonly name = 'top-p';
  constructor(config: GoeConfig, rng: Rng) {
    super(config, config.experts, rng);
  }

  route(input: RouteInput): RouteOutput {
    return tf.tidy(() => {
      const { experts, topP } = this.config;
      const rows = input.r.shape[0];
      const { logits, probs } = this.logitsAndProbs(input.r); // [R, M]
      const ids = detached(
        (p) =>
          tf.tidy(() => {
            const { values, indices } = tf.topk(p, experts); // [R, M], descending
            const before = tf.cumsum(values, 1, true); // [R, M]: mass of the experts ranked above
            // Keep an expert while the mass above it is still short of topP: the smallest prefix that
            // reaches topP; the first expert (0 above it) always stays.
            return tf.where(tf.less(before, topP), indices, tf.fill([rows, experts], -1, 'int32'));
          }),
        probs,
      ) as tf.Tensor2D;
      const { gates, gateDist } = gatesFromSelection(probs, ids, this.config.renormalizeGates);
      return { logits, scores: logits, probs, ids, gates, gateDist };
    });
  }
}

/**
 * SymphonySMoE (Nguyen-Nhat et al. 2025, "Modeling Expert Interactions in Sparse Mixture of Experts
 * via Graph Structures", §2.2 and its Algorithm): the router probabilities are smoothed by the experts'
 * co-selection graph, `g = A_paper · softmax(γ(x))` with `A_paper[j, m] = p(expert j | expert m)`, and
 * the top k of g are used.
 *
 * Which product: A_paper's columns are distributions (over j, given m). Our A is row-stochastic with
 * `A[m, j] = p(j | m)` (the `ema` graph: co-selection counts row-normalised), so `A_paper = Aᵀ` and per
 * token row `p' = p A`, i.e. `p'_j = Σ_m p_m A[m, j]`: the posterior over experts after one step along
 * the graph (the paper's replica z̃ marginalised out). It sums to 1, the same `Aᵀ q` map as the GoE
 * graph bias.
 *
 * A: the router keeps its own co-selection statistics (`social`, an `EmaExpertGraph` with β = emaBeta,
 * from zero, masked by the user topology), independent of the layer's `graph` (which still feeds the
 * GoE messages), so that `router: 'symphony'` is a one-key swap whatever graph kind is configured, and
 * A counts exactly what the paper counts. In training, following the paper's order, each call first
 * counts the co-selections of the plain top k of the logits over the active rows, updates C, and then
 * routes on the updated A; in eval A is frozen. Fresh (all zero), A is uniform and p' is too: train
 * before evaluating.
 *
 * Outputs: `probs` = p' (what is selected and gated, provenance), `scores = log p'` (so the balance and
 * entropy regularisers see p'), `logits` raw (z-loss). Gates: p' over the k kept, renormalised when
 * `renormalizeGates`. Nothing is dropped.
 */
export class SymphonyRouter extends LinearRouter {
  readonly name = 'symphony';
  /** The co-selection statistics C and their A. */
  readonly social: EmaExpertGraph;
  constructor(config: GoeConfig, rng: Rng) {
    super(config, config.k, rng);
    this.social = this.child('social', new EmaExpertGraph(config.experts, config.emaBeta, rng, config.topology));
  }

  route(input: RouteInput): RouteOutput {
    return tf.tidy(() => {
      const k = this.config.k;
      const { logits, probs: p } = this.logitsAndProbs(input.r); // [R, M]
      if (input.training) {
        const active = activeRows(input);
        // Inactive rows' slots become −1: they count for no co-selection.
        const base = detached(
          (i, a) => {
            const ai = tf.cast(a, 'int32'); // [R, 1]
            return tf.sub(tf.add(tf.mul(i, ai), ai), tf.scalar(1, 'int32')); // i where active, −1 elsewhere
          },
          topKIds(logits, k),
          active,
        ) as tf.Tensor2D;
        this.social.observe(base, true);
      }
      const probs = tf.matMul(p, this.social.adjacency()) as tf.Tensor2D; // [R, M]: p' = p A
      const scores = tf.log(tf.maximum(probs, 1e-30)) as tf.Tensor2D; // a column of A can be 0 under a topology
      const ids = topKIds(probs, k);
      const { gates, gateDist } = gatesFromSelection(probs, ids, this.config.renormalizeGates);
      return { logits, scores, probs, ids, gates, gateDist };
    });
  }
}

/** Routers by config key. Built in: `goe`, `dense`, `topk`, `expert-choice`, `top-p`, `symphony`. */
export const routerRegistry = new Registry<RouterFactory>('router');
routerRegistry.register('goe', (cfg, rng) => new GoeRouter(cfg, rng));
routerRegistry.register('dense', (cfg, rng) => new DenseRouter(cfg, rng));
routerRegistry.register('topk', (cfg, rng) => new TopKRouter(cfg, rng));
routerRegistry.register('expert-choice', (cfg, rng) => new ExpertChoiceRouter(cfg, rng));
routerRegistry.register('top-p', (cfg, rng) => new TopPRouter(cfg, rng));
routerRegistry.register('symphony', (cfg, rng) => new SymphonyRouter(cfg, rng));

/**
 * The config a baseline's paper trains it with, by router key (e.g. `graphmoe`: the Switch balance
 * at 0.01 and no other regulariser). A front end that swaps routers by name (`goe train --router`)
 * lays the preset under the user's own settings; routers without one train with the defaults.
 */
export const routerPresets = new Map<string, Readonly<GoeConfigInput>>();
