/**
 * The fiber head: one sign-free 3-D papyrus fibre direction per token (a unit vector whose sign carries
 * no meaning: v and −v are the same fibre), and its loss 1 − (v·t)², which is invariant to either sign;
 * or, with `output: 'tensor'`, a symmetric orientation tensor per token trained toward t tᵀ (the
 * sign-free form of a direction), whose principal eigenvector is the direction.
 *
 * Legend: B batch, N tokens, d width, k skip-feature width; directions are (z, y, x) components;
 * tensors are (a_zz, a_yy, a_xx, a_zy, a_zx, a_yx), the order `symmetricEigen3` takes.
 */
import { LayerNorm, Linear, Module, gelu, tf, type Rng } from '@goe/tf';
import type { FiberHeadConfig } from './config.js';
import { FiberInputError } from './errors.js';
import { SYMMETRIC_ENTRIES, symmetricEigen3 } from './metrics.js';

/** v / √(|v|² + ε) over the last axis of `[rows, 3]`. */
function normalise(v: tf.Tensor2D, eps: number): tf.Tensor2D {
  return tf.tidy(() => tf.mul(v, tf.rsqrt(tf.add(tf.sum(tf.square(v), 1, true), eps))) as tf.Tensor2D);
}

export class FiberHead extends Module {
  readonly norm: LayerNorm | undefined;
  readonly hidden: Linear | undefined;
  /** The last projection: to 3 numbers (a direction, checkpoint name `toDirection`) or 6 (a tensor, `toTensor`). */
  readonly out: Linear;

  constructor(
    readonly config: FiberHeadConfig,
    rng: Rng,
  ) {
    super();
    const { d, hidden, skip } = config;
    this.norm = config.norm ? this.child('norm', new LayerNorm(d, rng)) : undefined;
    this.hidden = hidden > 0 ? this.child('hidden', new Linear(d + skip, hidden, rng)) : undefined;
    const width = hidden > 0 ? hidden : d + skip;
    this.out = config.output === 'tensor' ? this.child('toTensor', new Linear(width, 6, rng)) : this.child('toDirection', new Linear(width, 3, rng));
  }

  /** Numbers per token that `apply` returns: 3 (a direction) or 6 (a tensor). */
  get outputWidth(): 3 | 6 {
    return this.config.output === 'tensor' ? 6 : 3;
  }

  /**
   * @param tokens `[B, N, d]`
   * @param skip `[B, N, k]` per-token features (k = `config.skip`), concatenated after the LayerNorm so
   *   that their scale carries through; required exactly when `config.skip > 0`
   * @returns `[B, N, 3]` unit directions (z, y, x), sign arbitrary; or with `output: 'tensor'`
   *   `[B, N, 6]` orientation tensors, unnormalised (read the direction with `tensorFibers`)
   */
  apply(tokens: tf.Tensor3D, skip?: tf.Tensor3D): tf.Tensor3D {
    const { d, skip: k } = this.config;
    if (tokens.rank !== 3 || tokens.shape[2] !== d) {
      throw new FiberInputError('tokens', `[B, N, ${d}]`, `[${tokens.shape.join(', ')}]`);
    }
    const [B, N] = tokens.shape;
    if (k > 0 ? skip?.rank !== 3 || skip.shape[0] !== B || skip.shape[1] !== N || skip.shape[2] !== k : skip !== undefined) {
      throw new FiberInputError('skip', k > 0 ? `[${B}, ${N}, ${k}]` : 'none (config.skip is 0)', skip ? `[${skip.shape.join(', ')}]` : 'none');
    }
    return tf.tidy(() => {
      let x = tf.reshape(tokens, [B * N, d]); // [B*N, d]
      if (this.norm) x = this.norm.apply(x);
      if (skip) x = tf.concat([x, tf.reshape(skip, [B * N, k])], 1); // [B*N, d + k]
      if (this.hidden) x = gelu(this.hidden.apply(x));
      const o = this.out.apply(x) as tf.Tensor2D; // [B*N, 3 | 6]
      if (this.config.output === 'tensor') return tf.reshape(o, [B, N, 6]) as tf.Tensor3D;
      return tf.reshape(normalise(o, this.config.eps), [B, N, 3]) as tf.Tensor3D;
    });
  }

  /** The training loss of this head's output `pred` (`apply`'s result) against directions `target` `[B, N, 3]`. */
  loss(pred: tf.Tensor, target: tf.Tensor, mask?: tf.Tensor): tf.Scalar {
    return this.config.output === 'tensor' ? fiberTensorLoss(pred, target, mask) : fiberLoss(pred, target, mask);
  }

  /** Host directions `[rows*3]` from this head's output values (`await apply(...).data()`). */
  directions(values: ArrayLike<number>): Float32Array {
    return this.config.output === 'tensor' ? tensorFibers(values) : Float32Array.from(values);
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

/**
 * Orientation-tensor loss: mean over labelled tokens of ‖M − t̂ t̂ᵀ‖²_F (Frobenius; the off-diagonal
 * pairs count twice, as in the full matrix). Its minimiser is E[t̂ t̂ᵀ | x]: the sign of t drops out, and
 * an ambiguous token is pulled to the mixture of its candidates rather than to one of them.
 *
 * @param pred `[B, N, 6]` (a_zz, a_yy, a_xx, a_zy, a_zx, a_yx)
 * @param target `[B, N, 3]` directions, any non-zero length; a zero row counts as unlabelled
 * @param mask `[B, N]`, 1 = labelled (optional)
 * @returns scalar loss (0 when no token is labelled)
 */
export function fiberTensorLoss(pred: tf.Tensor, target: tf.Tensor, mask?: tf.Tensor, opts: FiberLossOptions = {}): tf.Scalar {
  const rows = target.size / 3;
  if (pred.shape[pred.rank - 1] !== 6 || target.shape[target.rank - 1] !== 3 || pred.size !== rows * 6) {
    throw new FiberInputError('pred', `[..., 6] with one row per target row (${rows})`, `[${pred.shape.join(', ')}]`);
  }
  if (mask && mask.size !== rows) throw new FiberInputError('mask', `${rows} values`, `[${mask.shape.join(', ')}]`);
  const eps = opts.eps ?? 1e-8;
  return tf.tidy(() => {
    const t2 = tf.reshape(target, [rows, 3]) as tf.Tensor2D; // [rows, 3]
    const t = normalise(t2, eps);
    const c = tf.split(t, 3, 1); // (z, y, x), [rows, 1] each
    const outer = tf.concat(SYMMETRIC_ENTRIES.map(([p, q]) => tf.mul(c[p]!, c[q]!)), 1); // [rows, 6]
    const weight = tf.tensor2d([1, 1, 1, 2, 2, 2], [1, 6]);
    const per = tf.sum(tf.mul(tf.square(tf.sub(tf.reshape(pred, [rows, 6]), outer)), weight), 1, true); // [rows, 1]
    let valid: tf.Tensor = tf.cast(tf.greater(tf.sum(tf.square(t2), 1, true), 0), 'float32'); // [rows, 1]
    if (mask) valid = tf.mul(valid, tf.reshape(tf.cast(mask, 'float32'), [rows, 1]));
    return tf.div(tf.sum(tf.mul(per, valid)), tf.maximum(tf.sum(valid), 1)) as tf.Scalar;
  });
}

/**
 * Directions from orientation tensors: the principal eigenvector of each (float64 Jacobi).
 * @param tensors `[rows*6]` (a_zz, a_yy, a_xx, a_zy, a_zx, a_yx)
 * @returns `[rows*3]` unit directions (z, y, x), sign arbitrary
 */
export function tensorFibers(tensors: ArrayLike<number>): Float32Array {
  if (tensors.length % 6 !== 0) throw new FiberInputError('tensors', 'a multiple of 6 values', `${tensors.length}`);
  const rows = tensors.length / 6;
  const out = new Float32Array(rows * 3);
  for (let r = 0; r < rows; r++) out.set(symmetricEigen3(Array.from({ length: 6 }, (_, k) => tensors[6 * r + k] as number)).vectors[0], 3 * r);
  return out;
}
