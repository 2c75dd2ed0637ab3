/**
 * The expert graph G = (V, E), |V| = M (GoE draft §3.1.3). `A[n, m]` is the strength of the edge
 * n -> m; every row sums to 1, so `Aᵀ q` maps a gate distribution over experts to a distribution over
 * their successors.
 */
import { Module, tf, type Rng } from '@goe/tf';
import { Registry } from './registry.js';

/** A source of the row-stochastic adjacency A `[M, M]`. */
export abstract class ExpertGraph extends Module {
  abstract readonly experts: number;
  /** @returns A `[M, M]`, rows summing to 1 (differentiable where the kind is learned). */
  abstract adjacency(): tf.Tensor2D;
  /**
   * Sees the experts chosen in one cycle (`ids [R, s]` int32, −1 = none); kinds that keep statistics
   * (co-selection, SymphonySMoE) update them here. Called outside any gradient tape's concern: no
   * gradient flows through statistics.
   */
  observe(_ids: tf.Tensor2D, _training: boolean): void {}
}

export interface GraphSpec {
  experts: number;
}

export type GraphFactory = (spec: GraphSpec, rng: Rng) => ExpertGraph;

/**
 * Static learned graph: `A = row_softmax(Θ)`, Θ `[M, M]` trained end to end. Θ starts at zero, so A
 * starts uniform (1/M everywhere): the graph bias `log(ε + Aᵀq)` is then the same for every expert and
 * the router is unbiased until the graph has learned something.
 */
export class StaticExpertGraph extends ExpertGraph {
  readonly theta: tf.Variable;
  constructor(
    readonly experts: number,
    rng: Rng,
  ) {
    super();
    this.theta = this.param('theta', [experts, experts], { kind: 'zeros' }, rng);
  }

  adjacency(): tf.Tensor2D {
    return tf.softmax(this.theta, -1) as tf.Tensor2D; // [M, M], rows sum to 1
  }
}

/** Graph kinds by config key. Built in: `static`. */
export const graphRegistry = new Registry<GraphFactory>('graph');
graphRegistry.register('static', (spec, rng) => new StaticExpertGraph(spec.experts, rng));
