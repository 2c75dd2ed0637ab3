/**
 * The `graphmoe` baseline: GraphMoE's self-rethinking mechanism (Lv et al., "GraphMoE: Amplifying
 * Cognitive Depth of Mixture-of-Experts Network via Introducing Self-Rethinking Mechanism", §3.2,
 * eqs. 3–9 and Algorithm 1) as a router of the GoE layer. Each of the T = `cycles` rounds routes the
 * token with a plain top-k router, runs the chosen experts, and feeds their output to a low-rank GRU,
 * the "virtual node", whose hidden state carries the token's routing state to the next round:
 *
 *   z_t = σ(W_z · [h_{t−1}, y_t]),                W_z ∈ R^{d̄ × (d̄ + d)}
 *   r_t = σ(W_r · [h_{t−1}, y_t]),                W_r ∈ R^{d̄ × (d̄ + d)}
 *   ĥ_t = σ(W_o · [r_t ⊙ h_{t−1}, y_t] + b_o)
 *   h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ ĥ_t                                             (eq. 6)
 *   g_t = W_g · h_t,                              W_g ∈ R^{d × d̄}
 *   x_{t+1} = x_t + g_t                                                               (eq. 7)
 *
 * Symbols, paper -> here (R = B·N token rows, d̄ = `graphmoeHidden`, default round(0.1 d)):
 * - x_t `[R, d]`: the tokens round t routes on (the layer's `t`; x_1 = the layer's input tokens);
 * - Router R^ℓ (eq. 3) and Top-k (eq. 4): `router.gate` (a `topk` router: `W_r [x_t; a] + b_r`, softmax,
 *   top k, renormalised; the paper's router has no bias b_r and no aux features a);
 * - E_i(x) (eqs. 1, 5): `W_o f_i(W_p [x; a])` with the layer's W_p, W_o (`wp`, `wo`) around expert f_i,
 *   so y_t = Σ_i s_t[i] E_i(x_t) is the layer's cycle update `W_o Σ_m g_m h_m` `[R, d]`;
 * - W_z, W_r, W_o, b_o, W_g: `router.wz`, `router.wr`, `router.wh` (named so, not `wo`, to keep it apart
 *   from the layer's W_o), `router.wg`; as in eq. 6 only the candidate has a bias; h_0 = 0;
 * - output: Algorithm 1 returns y_T; the transformer block adds it to its residual stream, which here
 *   is the layer's input, so the layer outputs x_1 + y_T (with T = 1 exactly the `topk` layer).
 *
 * Eq. 6 feeds y_t to the candidate ĥ_t, where Algorithm 1 (line 19) feeds x_t; we follow eq. 6. Both
 * use σ, not the tanh of a textbook GRU; so do we. The GRU runs after rounds 1 … T−1 only (Algorithm 1,
 * line 16: its output would not be used after round T).
 *
 * Balance: the paper trains with `L_CE + λ n Σ_i f_i p_i`, λ = 0.01 (eqs. 8–9) and no other router loss.
 * Here that term is the layer's Switch balance (`regularisers.switchBalance`), whose f_m is the share
 * of dispatched slots (summing to 1, where the paper's token fraction sums to k) and P_m the mean full
 * softmax probability: the same minimiser, scaled by 1/k. Run the baseline with `GRAPHMOE_BASELINE`
 * (switchBalance 0.01, the draft's balance/entropy and the z-loss off).
 *
 * Under this router the layer sends no expert-to-expert messages (`usesMessages = false`: the GRU is
 * GraphMoE's only channel between rounds) and ignores the expert graph, so `graph.theta` gets no
 * gradient. `router.wr` gets none when K ≤ 2 (it only gates h_{t−1}, and h_0 = 0), and no GRU weight
 * gets one when K = 1. Halting works as for every router: a halted token keeps its x and h, and
 * outputs x_1 + y of its last active round.
 */
import { Linear, tf, type Rng } from '@goe/tf';
import type { GoeConfig, GoeConfigInput } from './config.js';
import { Router, TopKRouter, routerPresets, routerRegistry, type CycleStep, type RouteInput, type RouteOutput } from './routers.js';

/**
 * The config the `graphmoe` baseline is meant to run with (paper eq. 9: only the load-balancing loss,
 * λ = 0.01); spread it under the user's own settings.
 */
export const GRAPHMOE_BASELINE: Readonly<GoeConfigInput> = Object.freeze({
  router: 'graphmoe',
  regularisers: Object.freeze({ switchBalance: 0.01, balance: 0, entropy: 0, zLoss: 0 }),
});

/** What the virtual node carries from round to round of one `apply` call. */
interface GraphMoeState {
  /** x_1, the layer's input tokens `[R, d]`. */
  input: tf.Tensor2D;
  /** h_{t−1} `[R, d̄]`. */
  hidden: tf.Tensor2D;
  /** y of each token's last active round `[R, d]` (0 for tokens never routed). */
  lastUpdate: tf.Tensor2D;
}

export class GraphMoeRouter extends Router {
  readonly name = 'graphmoe';
  readonly slots: number;
  override readonly usesMessages = false;
  /** The paper's Router R^ℓ with Top-k (eqs. 3–4). */
  readonly gate: TopKRouter;
  /** W_z: `[d̄ + d] -> [d̄]`, no bias. */
  readonly wz: Linear;
  /** W_r: `[d̄ + d] -> [d̄]`, no bias. */
  readonly wr: Linear;
  /** The paper's W_o, b_o (candidate ĥ): `[d̄ + d] -> [d̄]`. */
  readonly wh: Linear;
  /** W_g: `[d̄] -> [d]`, no bias (the low-rank output). */
  readonly wg: Linear;
  private state: GraphMoeState | null = null;

  constructor(
    readonly config: GoeConfig,
    rng: Rng,
  ) {
    super();
    const { d, graphmoeHidden: hd } = config;
    this.slots = config.k;
    this.gate = this.child('gate', new TopKRouter(config, rng));
    this.wz = this.child('wz', new Linear(hd + d, hd, rng, { bias: false }));
    this.wr = this.child('wr', new Linear(hd + d, hd, rng, { bias: false }));
    this.wh = this.child('wh', new Linear(hd + d, hd, rng));
    this.wg = this.child('wg', new Linear(hd, d, rng, { bias: false }));
  }

  /** Eqs. 3–4 on x_t (`input.r` = [x_t; a]). @see RouteInput, RouteOutput (all `[R, …]`). */
  route(input: RouteInput): RouteOutput {
    return this.gate.route(input);
  }

  /**
   * One round of the virtual node: eq. 6 on y_t = `step.update`, then eq. 7; after the last round the
   * layer's output x_1 + y_T. Inactive rows keep x and h (and their last y).
   * @returns x_{t+1} `[R, d]`, or after round T the output `[R, d]`
   */
  override afterCycle(step: CycleStep): tf.Tensor2D {
    const { cycle, cycles, tokens: x, update: y, active: a } = step;
    // Cycle 0 starts a new apply call: the virtual node starts again from h_0 = 0.
    if (cycle === 0 || this.state === null) {
      this.state = { input: x, hidden: tf.zeros([x.shape[0], this.config.graphmoeHidden]), lastUpdate: tf.zerosLike(y) };
    }
    const s = this.state;
    // y of the last round each token was active in; a ∈ {0, 1}, so this is y or the old value exactly.
    const lastUpdate = tf.add(tf.mul(y, a), tf.mul(s.lastUpdate, tf.sub(1, a))) as tf.Tensor2D; // [R, d]
    if (cycle === cycles - 1) {
      this.state = null; // its tensors die with the layer's tidy
      return tf.add(s.input, lastUpdate) as tf.Tensor2D; // x_1 + y_T
    }
    const { next, hidden } = tf.tidy(() => {
      const h = s.hidden; // h_{t−1} [R, d̄]
      const hy = tf.concat([h, y], 1); // [R, d̄ + d]
      const z = tf.sigmoid(this.wz.apply(hy)); // [R, d̄]
      const r = tf.sigmoid(this.wr.apply(hy)); // [R, d̄]
      const cand = tf.sigmoid(this.wh.apply(tf.concat([tf.mul(r, h), y], 1))); // ĥ_t [R, d̄]
      const hNew = tf.add(tf.mul(tf.sub(1, z), h), tf.mul(z, cand)); // h_t [R, d̄]
      const g = this.wg.apply(hNew); // g_t = W_g h_t [R, d]
      return {
        next: tf.add(x, tf.mul(g, a)) as tf.Tensor2D, // x_{t+1} = x_t + g_t where active
        hidden: tf.add(tf.mul(hNew, a), tf.mul(h, tf.sub(1, a))) as tf.Tensor2D, // [R, d̄]
      };
    });
    this.state = { input: s.input, hidden, lastUpdate };
    return next;
  }
}

routerRegistry.register('graphmoe', (cfg, rng) => new GraphMoeRouter(cfg, rng));
routerPresets.set('graphmoe', GRAPHMOE_BASELINE);
