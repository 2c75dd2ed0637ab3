/**
 * The expert library (GoE draft §3.1.4: "an MLP, a small transformer block, a convolutional unit…").
 * An expert maps rows `[n, dim] -> [n, dim]`; rows are whatever tokens the dispatcher gathered for it,
 * so an expert never sees a batch or sequence axis.
 */
import { Module, tf, type Rng } from '@goe/tf';
import { Registry } from './registry.js';

/** One node of the expert graph. */
export abstract class Expert extends Module {
  /** Input and output width (the expert state width d_e). */
  abstract readonly dim: number;
  /** @param x `[n, dim]` rows routed to this expert @returns `[n, dim]` */
  abstract apply(x: tf.Tensor2D): tf.Tensor2D;
  /** Multiply-adds per row, for compute accounting. */
  abstract flopsPerRow(): number;
}

/** What an expert factory is told. */
export interface ExpertSpec {
  /** Row width d_e. */
  dim: number;
  /** Hidden width. */
  hidden: number;
  /** Which expert of the layer (0-based), for factories that vary by node. */
  index: number;
}

export type ExpertFactory = (spec: ExpertSpec, rng: Rng) => Expert;

/**
 * SwiGLU MLP (Shazeer, 2020): `f(x) = (silu(x W1) ⊙ x W3) W2`, no biases, as in current MoE FFN
 * experts. W2 starts at std 1/sqrt(2·hidden), so that the first refinement cycles make moderate updates.
 */
export class SwiGluExpert extends Expert {
  readonly w1: tf.Variable;
  readonly w3: tf.Variable;
  readonly w2: tf.Variable;
  constructor(
    readonly dim: number,
    readonly hidden: number,
    rng: Rng,
  ) {
    super();
    this.w1 = this.param('w1', [dim, hidden], { kind: 'glorot' }, rng);
    this.w3 = this.param('w3', [dim, hidden], { kind: 'glorot' }, rng);
    this.w2 = this.param('w2', [hidden, dim], { kind: 'normal', std: 1 / Math.sqrt(2 * hidden) }, rng);
  }

  /** @param x `[n, dim]` @returns `[n, dim]` */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const a = tf.matMul(x, this.w1); // [n, hidden]
      const b = tf.matMul(x, this.w3); // [n, hidden]
      const h = tf.mul(tf.mul(a, tf.sigmoid(a)), b); // silu(a) ⊙ b
      return tf.matMul(h, this.w2) as tf.Tensor2D; // [n, dim]
    });
  }

  flopsPerRow(): number {
    return 3 * this.dim * this.hidden;
  }
}

/** Expert kinds by config key. Built in: `mlp` (SwiGLU). */
export const expertRegistry = new Registry<ExpertFactory>('expert');
expertRegistry.register('mlp', (spec, rng) => new SwiGluExpert(spec.dim, spec.hidden, rng));
