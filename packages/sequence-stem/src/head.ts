/**
 * The byte head: encoded tokens `[B, N, d]` -> logits over the 256 byte values at every position, and
 * the cross-entropy of the true bytes at the positions that count (the masked ones in masked-byte
 * modelling). Bits per byte is that cross-entropy in base 2 — the usual metric of byte-level models
 * (e.g. enwik8), comparable across tokenisations because a byte is a byte.
 *
 * Legend: B batch, N positions, d token width, V = 256 byte values.
 */
import { ConfigFieldError, InputShapeError, LayerNorm, Linear, Module, configChecks, tf, type Rng } from '@goe/tf';
import { oneHotFloat } from './one-hot.js';

/** Number of byte values, the head's output width. */
export const BYTE_VALUES = 256;

export interface ByteHeadConfig {
  /** Token width d of the tokens it reads. */
  d: number;
  /** LayerNorm on the tokens before the projection (the GoE layer's residual output is not normalised). */
  norm: boolean;
}

export const BYTE_HEAD_DEFAULTS: Readonly<ByteHeadConfig> = Object.freeze({ d: 64, norm: true });

/** A byte-head config field has an unknown name or a bad value. */
export class ByteHeadConfigError extends ConfigFieldError {
  override readonly name = 'ByteHeadConfigError';
  constructor(field: string, expected: string, received: unknown, options?: { cause?: unknown }) {
    super('byte-head', field, expected, received, options);
  }
}

/** Logits, targets or weights handed to the byte head or its loss have the wrong shape or dtype. */
export class ByteHeadInputError extends InputShapeError {
  override readonly name = 'ByteHeadInputError';
  constructor(input: string, expected: string, received: string, options?: { cause?: unknown }) {
    super('byte-head', input, expected, received, options);
  }
}

const check = configChecks((field, expected, received) => new ByteHeadConfigError(field, expected, received));

/** Fills defaults and validates; throws `ByteHeadConfigError` naming the field. */
export function resolveByteHeadConfig(partial: Partial<ByteHeadConfig> = {}): ByteHeadConfig {
  const p = check.merge(BYTE_HEAD_DEFAULTS, partial);
  return { d: check.int('d', p['d'], 1), norm: check.bool('norm', p['norm']) };
}

/** `[B, N, d]` tokens -> `[B, N, 256]` byte logits: an optional LayerNorm, then one Linear. */
export class ByteHead extends Module {
  readonly norm: LayerNorm | undefined;
  readonly proj: Linear;

  constructor(
    readonly config: ByteHeadConfig,
    rng: Rng,
  ) {
    super();
    this.norm = config.norm ? this.child('norm', new LayerNorm(config.d, rng)) : undefined;
    this.proj = this.child('proj', new Linear(config.d, BYTE_VALUES, rng));
  }

  /** @param tokens `[B, N, d]` @returns logits `[B, N, 256]` */
  apply(tokens: tf.Tensor3D): tf.Tensor3D {
    const { d } = this.config;
    if (tokens.rank !== 3 || tokens.shape[2] !== d) {
      throw new ByteHeadInputError('tokens', `[B, N, ${d}]`, `[${tokens.shape.join(', ')}]`);
    }
    return tf.tidy(() => {
      const [b, n] = tokens.shape;
      let x = tf.reshape(tokens, [b * n, d]) as tf.Tensor2D; // [B·N, d]
      if (this.norm) x = this.norm.apply(x) as tf.Tensor2D;
      return tf.reshape(this.proj.apply(x), [b, n, BYTE_VALUES]) as tf.Tensor3D; // [B, N, 256]
    });
  }
}

/**
 * Natural-log probability the logits give the target byte at every position, `log softmax(z)[y]`.
 * The target is picked with a one-hot product (a gather's gradient needs UnsortedSegmentSum, which
 * wasm lacks).
 * @param logits `[B, N, 256]` @param targets `[B, N]` int32 bytes 0–255 @returns `[B, N]`
 */
export function byteLogProbs(logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D {
  const [b, n, v] = logits.shape;
  if (logits.rank !== 3 || v !== BYTE_VALUES) {
    throw new ByteHeadInputError('logits', `[B, N, ${BYTE_VALUES}]`, `[${logits.shape.join(', ')}]`);
  }
  if (targets.rank !== 2 || targets.dtype !== 'int32' || targets.shape[0] !== b || targets.shape[1] !== n) {
    throw new ByteHeadInputError('targets', `int32 [${b}, ${n}]`, `${targets.dtype} [${targets.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    const logp = tf.logSoftmax(tf.reshape(logits, [b * n, v]) as tf.Tensor2D); // [B·N, 256]
    const pick = oneHotFloat(tf.reshape(targets, [-1]) as tf.Tensor1D, v); // [B·N, 256]
    return tf.reshape(tf.sum(tf.mul(logp, pick), 1), [b, n]) as tf.Tensor2D; // [B, N]
  });
}

export interface ByteLoss {
  /** Mean cross-entropy in nats over the weighted positions (what the optimiser sees). */
  ce: tf.Scalar;
  /** The same in bits: `ce / ln 2`. */
  bitsPerByte: tf.Scalar;
}

/**
 * Weighted mean cross-entropy of the target bytes: `−Σ w·log p(y) / Σ w`, in nats and in bits.
 * @param logits `[B, N, 256]` @param targets `[B, N]` int32 @param weights `[B, N]` float32, ≥ 0 with a
 * positive sum (1 at the positions that count, 0 elsewhere)
 */
export function byteLoss(logits: tf.Tensor3D, targets: tf.Tensor2D, weights: tf.Tensor2D): ByteLoss {
  if (weights.rank !== 2 || weights.dtype !== 'float32' || weights.shape[0] !== targets.shape[0] || weights.shape[1] !== targets.shape[1]) {
    throw new ByteHeadInputError('weights', `float32 [${targets.shape.join(', ')}]`, `${weights.dtype} [${weights.shape.join(', ')}]`);
  }
  return tf.tidy(() => {
    const lp = byteLogProbs(logits, targets); // [B, N]
    const ce = tf.div(tf.neg(tf.sum(tf.mul(lp, weights))), tf.sum(weights)) as tf.Scalar;
    return { ce, bitsPerByte: tf.div(ce, Math.LN2) as tf.Scalar };
  });
}
