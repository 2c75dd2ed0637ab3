/**
 * The fiber head: one sign-free 3-D papyrus fibre direction per token (a unit vector whose sign carries
 * no meaning: v and −v are the same fibre), and its loss 1 − (v·t)², which is invariant to either sign.
 *
 * Legend: B batch, N tokens, d width; directions are (z, y, x) components.
 */
import { LayerNorm, Linear, Module, gelu, tf, type Rng } from '@goe/tf';
import type { FiberHeadConfig } from './config.js';
import { FiberInputError } from './errors.js';

/** v / √(|v|² + ε) over the last axis of `[rows, 3]`. */
function normalise(v: tf.Tensor2D, eps: number): tf.Tensor2D {
  return tf.tidy(() => tf.mul(v, tf.rsqrt(tf.add(tf.sum(tf.square(v), 1, true), eps))) as tf.Tensor2D);
}

export class FiberHead extends Module {
  readonly norm: LayerNorm | undefined;
  readonly hidden: Linear | undefined;
  readonly toDirection: Linear;

  constructor(
    readonly config: FiberHeadConfig,
    rng: Rng,
  ) {
    super();
    const { d, hidden } = config;
    this.norm = config.norm ? this.child('norm', new LayerNorm(d, rng)) : undefined;
    this.hidden = hidden > 0 ? this.child('hidden', new Linear(d, hidden, rng)) : undefined;
    this.toDirection = this.child('toDirection', new Linear(hidden > 0 ? hidden : d, 3, rng));
  }

  /**
   * @param tokens `[B, N, d]`
   * @returns `[B, N, 3]` unit directions (z, y, x), sign arbitrary
   */
  apply(tokens: tf.Tensor3D): tf.Tensor3D {
    const { d } = this.config;
    if (tokens.rank !== 3 || tokens.shape[2] !== d) {
      throw new FiberInputError('tokens', `[B, N, ${d}]`, `[${tokens.shape.join(', ')}]`);
    }
    const [B, N] = tokens.shape;
    return tf.tidy(() => {
      let x = tf.reshape(tokens, [B * N, d]); // [B*N, d]
      if (this.norm) x = this.norm.apply(x);
      if (this.hidden) x = gelu(this.hidden.apply(x));
      const v = normalise(this.toDirection.apply(x) as tf.Tensor2D, this.config.eps); // [B*N, 3]
      return tf.reshape(v, [B, N, 3]) as tf.Tensor3D;
    });
  }
}

export interface FiberLossOptions {
  /** ε of the normalisations (default 1e-8). */
  eps?: number;
}

/**
 * Sign-free direction loss mean(1 − (v̂·t̂)²) over labelled tokens (0 when none are). Both vectors are
 * normalised first, so a target may be any non-zero multiple of the direction; a zero target counts as
 * unlabelled as well, so a direction field with zeros at unlabelled voxels needs no separate mask.
 *
 * @param pred `[B, N, 3]`
 * @param target `[B, N, 3]`
 * @param mask `[B, N]`, 1 = labelled (optional)
 * @returns scalar loss in [0, 1]
 */
export function fiberLoss(pred: tf.Tensor, target: tf.Tensor, mask?: tf.Tensor, opts: FiberLossOptions = {}): tf.Scalar {
  if (pred.shape[pred.rank - 1] !== 3 || pred.shape.join() !== target.shape.join()) {
    throw new FiberInputError('target', `[..., 3] equal to pred [${pred.shape.join(', ')}]`, `[${target.shape.join(', ')}]`);
  }
  const rows = pred.size / 3;
  if (mask && mask.size !== rows) throw new FiberInputError('mask', `${rows} values`, `[${mask.shape.join(', ')}]`);
  const eps = opts.eps ?? 1e-8;
  return tf.tidy(() => {
    const v = normalise(tf.reshape(pred, [rows, 3]) as tf.Tensor2D, eps); // [rows, 3]
    const t2 = tf.reshape(target, [rows, 3]) as tf.Tensor2D; // [rows, 3]
    const t = normalise(t2, eps);
    let valid: tf.Tensor = tf.cast(tf.greater(tf.sum(tf.square(t2), 1, true), 0), 'float32'); // [rows, 1]
    if (mask) valid = tf.mul(valid, tf.reshape(tf.cast(mask, 'float32'), [rows, 1]));
    const cos = tf.sum(tf.mul(v, t), 1, true); // [rows, 1]
    const per = tf.sub(1, tf.square(cos));
    return tf.div(tf.sum(tf.mul(per, valid)), tf.maximum(tf.sum(valid), 1)) as tf.Scalar;
  });
}
