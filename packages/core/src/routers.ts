/**
 * Routers: everything that turns a token's routing descriptor `r = [t; a]` into a choice of experts
 * and their gates. One interface, a registry keyed by the config's `router` name, so that one config
 * key swaps the GoE router for a baseline (DESIGN.md §4).
 */
import { Linear, Module, makeRng, tf, type Rng } from '@goe/tf';
import type { GoeConfig } from './config.js';
import { slotOneHots, topKIds } from './ops.js';
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

/**
 * Plain top-k (Switch / GShard style, no capacity limit yet): `p = softmax(W_r r + b_r)`, top k,
 * optional renormalisation; during training, multiplicative jitter `r ⊙ U(1−j, 1+j)` (Switch
 * Transformer §2.4), drawn from the router's own seeded generator.
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
      const logits = this.proj.apply(r) as tf.Tensor2D; // [R, M]
      const probs = tf.softmax(logits, -1) as tf.Tensor2D;
      const ids = topKIds(logits, this.config.k);
      const { gates, gateDist } = gatesFromSelection(probs, ids, this.config.renormalizeGates);
      return { logits, scores: logits, probs, ids, gates, gateDist };
    });
  }
}

/** Routers by config key. Built in: `goe`, `dense`, `topk`. */
export const routerRegistry = new Registry<RouterFactory>('router');
routerRegistry.register('goe', (cfg, rng) => new GoeRouter(cfg, rng));
routerRegistry.register('dense', (cfg, rng) => new DenseRouter(cfg, rng));
routerRegistry.register('topk', (cfg, rng) => new TopKRouter(cfg, rng));
