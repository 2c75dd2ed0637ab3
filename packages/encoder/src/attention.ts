/**
 * Multi-head attention (draft eq. 6; Vaswani et al. 2017) on rank-2/3 views: projections are one
 * rank-2 matMul over all tokens, heads are split by one rank-4 transpose, and both attention products
 * are batched rank-3 matMuls over B·heads (no broadcast batch dims, which tfjs cannot differentiate).
 * Self-attention serves the encoder blocks (eq. 5); cross-attention serves the aux refinement f_aux
 * (eq. 7), whose queries come from the aux features and whose keys and values come from T'.
 *
 * Legend: B batch, N tokens (Nq queries, Nk keys), d width, h heads, dh = d / h.
 */
import { Linear, Module, tf, type Init, type Rng } from '@goe/tf';
import { dropout } from './dropout.js';

/** Added to the scores of masked keys: exp underflows to exactly 0, yet it stays finite (no NaN). */
export const MASKED_SCORE = -1e9;

/**
 * softmax(q kᵀ · scale + bias) v on `[B*h, N, dh]` views.
 *
 * @param q `[B*h, Nq, dh]`
 * @param k `[B*h, Nk, dh]`
 * @param v `[B*h, Nk, dv]`
 * @param keyBias `[B, 1, Nk]` added to every query's scores of sample b (e.g. `MASKED_SCORE` at padding)
 * @param heads h, to broadcast `keyBias` over heads and queries
 * @returns output `[B*h, Nq, dv]` and the attention probabilities `[B*h, Nq, Nk]`
 */
export function scaledDotProductAttention(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  options: { keyBias?: tf.Tensor3D; heads: number; scale?: number; probDropout?: (p: tf.Tensor) => tf.Tensor },
): { out: tf.Tensor3D; probs: tf.Tensor3D } {
  return tf.tidy(() => {
    const [BH, Nq, dh] = q.shape;
    const Nk = k.shape[1];
    const h = options.heads;
    const B = BH / h;
    const scale = options.scale ?? 1 / Math.sqrt(dh);
    // Scaling q (BH·Nq·dh values) is cheaper than scaling the scores (BH·Nq·Nk).
    let scores: tf.Tensor = tf.matMul(tf.mul(q, scale), k, false, true); // [B*h, Nq, Nk]
    if (options.keyBias) {
      // Rank-3 broadcast over (heads, queries): [B, h*Nq, Nk] + [B, 1, Nk].
      scores = tf.reshape(tf.add(tf.reshape(scores, [B, h * Nq, Nk]), options.keyBias), [BH, Nq, Nk]); // [B*h, Nq, Nk]
    }
    const probs = tf.softmax(scores) as tf.Tensor3D; // [B*h, Nq, Nk]
    const used = options.probDropout ? options.probDropout(probs) : probs;
    const out = tf.matMul(used, v) as tf.Tensor3D; // [B*h, Nq, dv]
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

/** Options of one attention call. */
export interface AttendOptions {
  /** `[B, 1, Nk]` additive key bias (padding mask), optional. */
  keyBias?: tf.Tensor3D;
  /** Dropout rate on the attention probabilities (applied only with `rng`). */
  attnDropout?: number;
  rng?: Rng;
}

/**
 * Multi-head attention on projected rows: split heads, attend, merge heads.
 * @param q `[B*Nq, D]` @param k `[B*Nk, D]` @param v `[B*Nk, D]`, D divisible by `heads`
 * @returns `[B*Nq, D]`
 */
export function attendRows(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  v: tf.Tensor2D,
  B: number,
  Nq: number,
  Nk: number,
  heads: number,
  opts: AttendOptions = {},
): tf.Tensor2D {
  return tf.tidy(() => {
    const rate = opts.attnDropout ?? 0;
    const rng = opts.rng;
    const { out } = scaledDotProductAttention(splitHeads(q, B, Nq, heads), splitHeads(k, B, Nk, heads), splitHeads(v, B, Nk, heads), {
      heads,
      keyBias: opts.keyBias,
      probDropout: rate > 0 && rng ? (p) => dropout(p, rate, rng) : undefined,
    }); // [B*h, Nq, dh]
    return mergeHeads(out, B, heads); // [B*Nq, D]
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
   * @returns `[B*N, d]`
   */
  apply(x: tf.Tensor2D, B: number, N: number, opts: AttendOptions = {}): tf.Tensor2D {
    return tf.tidy(() => {
      const [q, k, v] = tf.split(this.qkv.apply(x), 3, 1) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D]; // 3 x [B*N, d]
      return this.out.apply(attendRows(q, k, v, B, N, N, this.heads, opts)) as tf.Tensor2D; // [B*N, d]
    });
  }
}

/**
 * Multi-head cross-attention: queries from one set of rows, keys and values from another (per sample).
 * The aux refinement f_aux(a, T') of draft eq. 7 uses it with queries from a and context T'.
 */
export class MultiHeadCrossAttention extends Module {
  readonly q: Linear;
  readonly kv: Linear;
  readonly out: Linear;
  /**
   * @param queryDim width of the query rows (and of the output, so that it can be added back to them)
   * @param contextDim width of the context rows
   * @param dim inner width of queries, keys and values, split over `heads`
   * @param outInit initialisation of the output projection (default Glorot)
   */
  constructor(
    readonly queryDim: number,
    readonly contextDim: number,
    readonly dim: number,
    readonly heads: number,
    rng: Rng,
    options: { outInit?: Init } = {},
  ) {
    super();
    this.q = this.child('q', new Linear(queryDim, dim, rng));
    this.kv = this.child('kv', new Linear(contextDim, 2 * dim, rng));
    this.out = this.child('out', new Linear(dim, queryDim, rng, options.outInit ? { init: options.outInit } : {}));
  }

  /**
   * @param x `[B*Nq, queryDim]` query rows (sample-major)
   * @param context `[B*Nk, contextDim]` context rows (sample-major)
   * @returns `[B*Nq, queryDim]`
   */
  apply(x: tf.Tensor2D, context: tf.Tensor2D, B: number, Nq: number, Nk: number, opts: AttendOptions = {}): tf.Tensor2D {
    return tf.tidy(() => {
      const q = this.q.apply(x) as tf.Tensor2D; // [B*Nq, dim]
      const [k, v] = tf.split(this.kv.apply(context), 2, 1) as [tf.Tensor2D, tf.Tensor2D]; // 2 x [B*Nk, dim]
      return this.out.apply(attendRows(q, k, v, B, Nq, Nk, this.heads, opts)) as tf.Tensor2D; // [B*Nq, queryDim]
    });
  }
}
