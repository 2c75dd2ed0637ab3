/**
 * Multi-head self-attention (draft eq. 6; Vaswani et al. 2017) on rank-2/3 views: projections are one
 * rank-2 matMul over all tokens, heads are split by one rank-4 transpose, and both attention products
 * are batched rank-3 matMuls over B·heads (no broadcast batch dims, which tfjs cannot differentiate).
 *
 * Legend: B batch, N tokens, d width, h heads, dh = d / h.
 */
import { Linear, Module, tf, type Rng } from '@goe/tf';
import { dropout } from './dropout.js';

/** Added to the scores of masked keys: exp underflows to exactly 0, yet it stays finite (no NaN). */
export const MASKED_SCORE = -1e9;

/**
 * softmax(q kᵀ · scale + bias) v on `[B*h, N, dh]` views.
 *
 * @param q `[B*h, N, dh]`
 * @param k `[B*h, N, dh]`
 * @param v `[B*h, N, dv]`
 * @param keyBias `[B, 1, N]` added to every query's scores of sample b (e.g. `MASKED_SCORE` at padding)
 * @param heads h, to broadcast `keyBias` over heads and queries
 * @returns output `[B*h, N, dv]` and the attention probabilities `[B*h, N, N]`
 */
export function scaledDotProductAttention(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  options: { keyBias?: tf.Tensor3D; heads: number; scale?: number; probDropout?: (p: tf.Tensor) => tf.Tensor },
): { out: tf.Tensor3D; probs: tf.Tensor3D } {
  return tf.tidy(() => {
    const [BH, N, dh] = q.shape;
    const h = options.heads;
    const B = BH / h;
    const scale = options.scale ?? 1 / Math.sqrt(dh);
    // Scaling q (BH·N·dh values) is cheaper than scaling the scores (BH·N·N).
    let scores: tf.Tensor = tf.matMul(tf.mul(q, scale), k, false, true); // [B*h, N, N]
    if (options.keyBias) {
      // Rank-3 broadcast over (heads, queries): [B, h*N, N] + [B, 1, N].
      scores = tf.reshape(tf.add(tf.reshape(scores, [B, h * N, N]), options.keyBias), [BH, N, N]); // [B*h, N, N]
    }
    const probs = tf.softmax(scores) as tf.Tensor3D; // [B*h, N, N]
    const used = options.probDropout ? options.probDropout(probs) : probs;
    const out = tf.matMul(used, v) as tf.Tensor3D; // [B*h, N, dv]
    return { out, probs };
  });
}

/** Splits `[B*N, d]` rows into heads `[B*h, N, dh]`. */
export function splitHeads(x: tf.Tensor2D, B: number, N: number, h: number): tf.Tensor3D {
  return tf.tidy(() => {
    const d = x.shape[1];
    const x4 = tf.reshape(x, [B, N, h, d / h]); // [B, N, h, dh]
    return tf.reshape(tf.transpose(x4, [0, 2, 1, 3]), [B * h, N, d / h]) as tf.Tensor3D; // [B*h, N, dh]
  });
}

/** Merges heads `[B*h, N, dh]` back into rows `[B*N, h*dh]`. */
export function mergeHeads(x: tf.Tensor3D, B: number, h: number): tf.Tensor2D {
  return tf.tidy(() => {
    const [, N, dh] = x.shape;
    const x4 = tf.reshape(x, [B, h, N, dh]); // [B, h, N, dh]
    return tf.reshape(tf.transpose(x4, [0, 2, 1, 3]), [B * N, h * dh]) as tf.Tensor2D; // [B*N, d]
  });
}

/** Multi-head self-attention with a fused QKV projection and an output projection. */
export class MultiHeadSelfAttention extends Module {
  readonly qkv: Linear;
  readonly out: Linear;
  constructor(
    readonly d: number,
    readonly heads: number,
    rng: Rng,
  ) {
    super();
    this.qkv = this.child('qkv', new Linear(d, 3 * d, rng));
    this.out = this.child('out', new Linear(d, d, rng));
  }

  /**
   * @param x `[B*N, d]` token rows (sample-major)
   * @param keyBias `[B, 1, N]` additive key bias (padding mask), optional
   * @returns `[B*N, d]`
   */
  apply(
    x: tf.Tensor2D,
    B: number,
    N: number,
    opts: { keyBias?: tf.Tensor3D; attnDropout?: number; rng?: Rng } = {},
  ): tf.Tensor2D {
    return tf.tidy(() => {
      const h = this.heads;
      const [q, k, v] = tf.split(this.qkv.apply(x), 3, 1) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D]; // 3 x [B*N, d]
      const rate = opts.attnDropout ?? 0;
      const rng = opts.rng;
      const { out } = scaledDotProductAttention(splitHeads(q, B, N, h), splitHeads(k, B, N, h), splitHeads(v, B, N, h), {
        heads: h,
        keyBias: opts.keyBias,
        probDropout: rate > 0 && rng ? (p) => dropout(p, rate, rng) : undefined,
      });
      return this.out.apply(mergeHeads(out, B, h)) as tf.Tensor2D; // [B*N, d]
    });
  }
}
