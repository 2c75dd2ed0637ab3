/**
 * The `chain` baseline: Chain-of-Experts (Wang et al. 2025, "Chain-of-Experts: Unlocking the
 * Communication Power of Mixture-of-Experts Models", §3, arXiv 2506.18945) as a router of the GoE
 * layer. CoE runs C iterations inside one layer, each with its own router on the current hidden state,
 * over one set of experts shared by all iterations, with an inner residual:
 *
 *   x^(0) = x,   x^(t) = Σ_i g_{t,i} E_i(x^(t−1)) + I_r x^(t−1),   y = x^(C),
 *   g_{t,i} = s_{t,i} if s_{t,i} ∈ TopK({s_{t,j}}) else 0,   s_t = Softmax(router_t(x^(t−1))).
 *
 * That is the layer's own cycle, `t ← t + W_o Σ_m g_m f_m(W_p [t; a])`, with C = `cycles`; what makes
 * it CoE is only the gate: cycle k routes with its own `topk` router `router.steps.k` (jitter and
 * everything else as `topk`), so a token can pick different experts at every iteration.
 *
 * `k` is the experts per iteration. CoE compares at equal compute with a total budget K split as K/C
 * per iteration: to match a `topk` layer of k experts and one cycle, run `chain` with k/C and C cycles.
 *
 * No expert-graph bias and no messages: CoE's experts communicate only through the residual stream,
 * so under this router the layer builds no W_c and sends no messages even when the config's
 * `messages` is true (`usesMessages = false`; ignored rather than rejected so that the default config
 * swaps to `chain` with one key), and `graph.theta` gets no gradient.
 */
import type { Rng } from '@goe/tf';
import type { GoeConfig } from './config.js';
import { Router, TopKRouter, routerRegistry, type RouteInput, type RouteOutput } from './routers.js';

export class ChainRouter extends Router {
  readonly name = 'chain';
  readonly slots: number;
  override readonly usesMessages = false;
  /** One gate per iteration, `steps[k]` for cycle k (K = `cycles` of them). */
  readonly steps: TopKRouter[];

  constructor(
    readonly config: GoeConfig,
    rng: Rng,
  ) {
    super();
    this.slots = config.k;
    this.steps = Array.from({ length: config.cycles }, (_, k) => this.child(`steps.${k}`, new TopKRouter(config, rng)));
  }

  /** Routes cycle k with gate k. @see RouteInput, RouteOutput (all `[R, …]`). */
  route(input: RouteInput): RouteOutput {
    const gate = this.steps[input.cycle];
    if (!gate) throw new RangeError(`chain router: cycle ${input.cycle} outside the ${this.steps.length} iterations it was built for`);
    return gate.route(input);
  }
}

routerRegistry.register('chain', (cfg, rng) => new ChainRouter(cfg, rng));
