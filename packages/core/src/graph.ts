/**
 * The expert graph G = (V, E), |V| = M (GoE draft §3.1.3). `A[n, m]` is the strength of the edge
 * n -> m; every row sums to 1, so `Aᵀ q` maps a gate distribution over experts to a distribution over
 * their successors.
 */
import { Module, tf, type Rng } from '@goe/tf';
import { selectionMask } from './ops.js';
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

/** What a graph factory is told (from the layer's config). */
export interface GraphSpec {
  /** Number of experts M. */
  experts: number;
  /**
   * The user topology `[M][M]` of 0/1 (`topology[n][m] = 1` allows the edge n -> m), or null for every
   * edge. Every kind applies it: A is masked by it and renormalised, so a masked edge is exactly 0.
   */
  topology: number[][] | null;
  /** EMA decay β of the co-selection statistics (`ema`). */
  emaBeta: number;
  /** Width of the learned expert embeddings (`dynamic`). */
  embedDim: number;
}

export type GraphFactory = (spec: GraphSpec, rng: Rng) => ExpertGraph;

/**
 * A masked edge's score before the softmax: finite (WGSL may assume no infinities), and so far below
 * any real score that its exp underflows to exactly 0 after the row maximum is subtracted.
 */
const MASKED_SCORE = -1e9;

/** The topology as a `[M, M]` float 0/1 tensor. */
function topologyTensor(topology: number[][], experts: number): tf.Tensor2D {
  return tf.tensor2d(Float32Array.from(topology.flat()), [experts, experts]);
}

/**
 * `row_softmax(S)` over the edges the topology allows (all when it is null): the masked scores are
 * replaced by a very negative constant, so the softmax is over the allowed entries only, a masked edge
 * is exactly 0 and gets no gradient, and rows stay stochastic however far the allowed scores drift
 * (multiplying A by the mask and renormalising would divide by an underflowed 0 there).
 * @param scores `[M, M]` @returns A `[M, M]`, rows summing to 1
 */
export function maskedRowSoftmax(scores: tf.Tensor2D, topology: number[][] | null): tf.Tensor2D {
  return tf.tidy(() => {
    if (!topology) return tf.softmax(scores, -1) as tf.Tensor2D;
    const m = scores.shape[0];
    const allowed = tf.greater(topologyTensor(topology, m), 0); // [M, M] bool
    return tf.softmax(tf.where(allowed, scores, tf.fill([m, m], MASKED_SCORE)), -1) as tf.Tensor2D;
  });
}

/**
 * Static learned graph: `A = row_softmax(Θ)`, Θ `[M, M]` trained end to end. Θ starts at zero, so A
 * starts uniform (1/M everywhere, or over the allowed edges under a topology): the graph bias
 * `log(ε + Aᵀq)` is then the same for every expert and the router is unbiased until the graph has
 * learned something.
 */
export class StaticExpertGraph extends ExpertGraph {
  readonly theta: tf.Variable;
  constructor(
    readonly experts: number,
    rng: Rng,
    readonly topology: number[][] | null = null,
  ) {
    super();
    this.theta = this.param('theta', [experts, experts], { kind: 'zeros' }, rng);
  }

  adjacency(): tf.Tensor2D {
    return maskedRowSoftmax(this.theta as tf.Tensor2D, this.topology); // [M, M], rows sum to 1
  }
}

/**
 * Dynamic graph (GoE draft §3.1.3: "A … dynamically updated via attention over expert embeddings"):
 * learned expert embeddings E `[M, w]` and `A = row_softmax(E Eᵀ / √w)`, scaled dot-product attention
 * of every expert over all experts. E Eᵀ is symmetric, the row softmax is not: A[n, m] is how much of
 * n's attention goes to m.
 *
 * E starts N(0, 1/√w) (variance), so the diagonal scores |E_n|²/√w start near 1 and the others near 0
 * with spread 1/√w: A starts close to uniform with a mild self-loop. A zero start would be a saddle
 * (the gradient of E Eᵀ in E is proportional to E).
 */
export class DynamicExpertGraph extends ExpertGraph {
  /** E `[M, w]`. */
  readonly embeddings: tf.Variable;
  constructor(
    readonly experts: number,
    readonly width: number,
    rng: Rng,
    readonly topology: number[][] | null = null,
  ) {
    super();
    this.embeddings = this.param('embeddings', [experts, width], { kind: 'normal', std: width ** -0.25 }, rng);
  }

  adjacency(): tf.Tensor2D {
    return tf.tidy(() => {
      const e = this.embeddings as tf.Tensor2D; // [M, w]
      const scores = tf.div(tf.matMul(e, e, false, true), Math.sqrt(this.width)) as tf.Tensor2D; // [M, M]
      return maskedRowSoftmax(scores, this.topology);
    });
  }
}

/**
 * Co-selection statistics (SymphonySMoE, Nguyen-Nhat et al. 2025, §2: the "social graph" of experts):
 * no parameters and no gradient; `observe()` updates, during training only,
 *
 *   C ← β C + (1 − β) N,   N = Sᵀ S / n,
 *
 * where S `[n, M]` is the 0/1 selection of each of the n tokens routed this cycle (tokens with at least
 * one valid slot), so N[j, m] is the share of them that chose both j and m (N[j, j]: the share that
 * chose j). C starts at zero (the paper's best initialisation, with β = 0.9). A cycle that routed no
 * token leaves C as it is.
 *
 * `A = C` row-normalised: A[j, m] = P(m chosen | j chosen) / k for a top-k router, the paper's
 * conditional p(expert m | expert j) as a distribution over m. A row whose expert has not been seen
 * (all zero, including a fresh graph) is uniform. The topology masks C before the normalisation; a row
 * with no count on an allowed edge is uniform over its allowed edges.
 */
export class EmaExpertGraph extends ExpertGraph {
  /** C `[M, M]` (not trainable; saved and restored with the other variables). */
  readonly counts: tf.Variable;
  constructor(
    readonly experts: number,
    readonly beta: number,
    rng: Rng,
    readonly topology: number[][] | null = null,
  ) {
    super();
    this.counts = this.param('counts', [experts, experts], { kind: 'zeros' }, rng, false);
  }

  adjacency(): tf.Tensor2D {
    return tf.tidy(() => {
      const m = this.experts;
      const mask = this.topology ? topologyTensor(this.topology, m) : (tf.ones([m, m]) as tf.Tensor2D); // [M, M]
      const c = tf.mul(this.counts, mask); // [M, M]
      const rowSum = tf.sum(c, -1, true); // [M, 1]
      const uniform = tf.div(mask, tf.sum(mask, -1, true)); // [M, M], every row has an allowed edge (validated)
      const seen = tf.tile(tf.greater(rowSum, 0), [1, m]); // [M, M] bool
      // The max() only keeps 0/0 out of the branch that `where` discards.
      return tf.where(seen, tf.div(c, tf.maximum(rowSum, 1e-30)), uniform) as tf.Tensor2D;
    });
  }

  /** Counts the cycle's co-selections into C (training only); all on the device, no read-back. */
  override observe(ids: tf.Tensor2D, training: boolean): void {
    if (!training) return;
    tf.tidy(() => {
      const sel = tf.minimum(selectionMask(ids, this.experts), 1); // [R, M] 0/1
      const routed = tf.minimum(tf.sum(sel, -1), 1); // [R]: 1 where the token had a valid slot
      const n = tf.sum(routed); // tokens routed this cycle
      const coSel = tf.matMul(sel, sel, true, false); // [M, M] Sᵀ S
      const rate = tf.div(coSel, tf.maximum(n, 1)); // N
      const w = tf.mul(tf.minimum(n, 1), 1 - this.beta); // (1 − β), or 0 when nothing was routed
      this.counts.assign(tf.add(this.counts, tf.mul(w, tf.sub(rate, this.counts)))); // C + w (N − C)
    });
  }
}

/** Graph kinds by config key. Built in: `static`, `dynamic`, `ema`. */
export const graphRegistry = new Registry<GraphFactory>('graph');
graphRegistry.register('static', (spec, rng) => new StaticExpertGraph(spec.experts, rng, spec.topology));
graphRegistry.register('dynamic', (spec, rng) => new DynamicExpertGraph(spec.experts, spec.embedDim, rng, spec.topology));
graphRegistry.register('ema', (spec, rng) => new EmaExpertGraph(spec.experts, spec.emaBeta, rng, spec.topology));
