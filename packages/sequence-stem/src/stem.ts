/**
 * The sequence stem (GoE draft §3.1.1): bytes -> embedding -> temporal encoder φ (residual 1D
 * convolutions) + sinusoidal positions -> tokens `[B, N, d]`, and aux routing features `[B, N, da]`
 * by attention pooling over a local window (the draft's "attention-based or temporal pooling
 * mechanism" for sequences, eq. 3).
 *
 * Everything is rank 2–3: a convolution is an im2col of shifted copies of the sequence followed by
 * one `[B·N, kernel·d] × [kernel·d, d]` matmul (the fast path on every backend), and the pooling
 * window is a stack of shifted keys. In causal mode every window ends at the current position, so
 * tokens and aux at position i depend on bytes ≤ i only.
 */
import { Linear, Module, gelu, tf, type Rng } from '@goe/tf';
import { sinusoidalPositions } from './bytes.js';
import { SequenceStemInputError, type SequenceStemConfig } from './config.js';
import { oneHotFloat } from './one-hot.js';

/** Output of `SequenceStem.apply`. */
export interface SequenceStemOutput {
  /** `[B, N, d]`, positions already added. */
  tokens: tf.Tensor3D;
  /** `[B, N, da]` aux routing features. */
  aux: tf.Tensor3D;
  /** `[B, N, d]` the sinusoidal positions that were added. */
  positions: tf.Tensor3D;
}

export interface SequenceStemApplyOptions {
  /** Index of the first position (for a window cut from a longer sequence). Default 0. */
  offset?: number;
  /** Check on the host that every byte is in 0–255 (needs a synchronous read; skipped on WebGPU). Default true. */
  checkRange?: boolean;
}

/**
 * `x` shifted along the sequence: `out[b, i] = x[b, i + o]`, zero where `i + o` is outside [0, N).
 * @param x `[B, N, c]` @returns `[B, N, c]`
 */
export function shiftSequence(x: tf.Tensor3D, o: number): tf.Tensor3D {
  const [b, n, c] = x.shape;
  if (o === 0) return x;
  if (Math.abs(o) >= n) return tf.zeros([b, n, c]);
  return tf.tidy(() => {
    if (o > 0) return tf.concat([tf.slice(x, [0, o, 0], [b, n - o, c]), tf.zeros([b, o, c])], 1) as tf.Tensor3D;
    return tf.concat([tf.zeros([b, -o, c]), tf.slice(x, [0, 0, 0], [b, n + o, c])], 1) as tf.Tensor3D;
  });
}

/** Offsets of a window of `size`: causal `−(size−1) … 0`; centred `−⌊(size−1)/2⌋ … ⌈(size−1)/2⌉`. */
export function windowOffsets(size: number, causal: boolean): number[] {
  const lo = causal ? -(size - 1) : -Math.floor((size - 1) / 2);
  return Array.from({ length: size }, (_, j) => lo + j);
}

export class SequenceStem extends Module {
  /** Byte embedding `[256, d]`, drawn on the host from the seeded generator. */
  readonly embed: tf.Variable;
  readonly convs: Linear[];
  readonly wq: Linear;
  readonly wk: Linear;
  /** Projection of the pooled features to da. */
  readonly wa: Linear;

  constructor(
    readonly config: SequenceStemConfig,
    rng: Rng,
  ) {
    super();
    const { d, kernel, layers, auxKeyDim, da } = config;
    this.embed = this.param('embed', [256, d], { kind: 'normal', std: 1 }, rng);
    this.convs = [];
    for (let l = 0; l < layers; l++) this.convs.push(this.child(`conv${l}`, new Linear(kernel * d, d, rng)));
    this.wq = this.child('wq', new Linear(d, auxKeyDim, rng, { bias: false }));
    this.wk = this.child('wk', new Linear(d, auxKeyDim, rng, { bias: false }));
    this.wa = this.child('wa', new Linear(d, da, rng));
  }

  private check(bytes: tf.Tensor, checkRange: boolean): void {
    if (bytes.rank !== 2 || bytes.dtype !== 'int32') {
      throw new SequenceStemInputError('bytes', 'int32 [B, N]', `${bytes.dtype} [${bytes.shape.join(', ')}]`);
    }
    if (checkRange && tf.getBackend() !== 'webgpu') {
      const range = tf.tidy(() => tf.stack([tf.min(bytes), tf.max(bytes)]));
      const [lo, hi] = range.dataSync() as unknown as [number, number];
      range.dispose();
      if (lo < 0 || hi > 255) throw new SequenceStemInputError('bytes', 'values 0-255', `values in [${lo}, ${hi}]`);
    }
  }

  /**
   * One residual temporal convolution: `x + gelu(im2col(x) W + b)`.
   * @param x `[B, N, d]` @returns `[B, N, d]`
   */
  private conv(x: tf.Tensor3D, layer: Linear): tf.Tensor3D {
    return tf.tidy(() => {
      const [b, n, d] = x.shape;
      const cols = tf.concat(
        windowOffsets(this.config.kernel, this.config.causal).map((o) => shiftSequence(x, o)),
        2,
      ); // [B, N, kernel·d]
      const y = layer.apply(tf.reshape(cols, [b * n, this.config.kernel * d])); // [B·N, d]
      return tf.add(x, tf.reshape(gelu(y), [b, n, d])) as tf.Tensor3D;
    });
  }

  /**
   * Attention pooling over a local window, projected to da:
   * `aux_i = W_a Σ_{o ∈ window} softmax_o(q_i · k_{i+o} / √dk) t_{i+o} + b_a`.
   * @param t `[B, N, d]` @returns `[B, N, da]`
   */
  private pool(t: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      const [b, n, d] = t.shape;
      const { auxWindow, auxKeyDim, causal, da } = this.config;
      const q = this.wq.apply(t) as tf.Tensor3D; // [B, N, dk]
      const k = this.wk.apply(t) as tf.Tensor3D; // [B, N, dk]
      const offsets = windowOffsets(auxWindow, causal);
      const scale = 1 / Math.sqrt(auxKeyDim);
      const scores = offsets.map((o) => {
        // Positions whose window reaches past either end get −1e9 there (softmax weight 0).
        const invalid = new Float32Array(n).map((_, i) => (i + o < 0 || i + o >= n ? -1e9 : 0));
        const s = tf.mul(tf.sum(tf.mul(q, shiftSequence(k, o)), -1), scale); // [B, N]
        return tf.add(s, tf.tensor2d(invalid, [1, n]));
      });
      const w = tf.softmax(tf.stack(scores, 2), -1); // [B, N, window]
      let pooled = tf.zeros([b, n, d]) as tf.Tensor3D;
      offsets.forEach((o, j) => {
        const wj = tf.slice(w, [0, 0, j], [b, n, 1]); // [B, N, 1]
        pooled = tf.add(pooled, tf.mul(wj, shiftSequence(t, o))) as tf.Tensor3D;
      });
      return tf.reshape(this.wa.apply(tf.reshape(pooled, [b * n, d])), [b, n, da]) as tf.Tensor3D;
    });
  }

  /**
   * @param bytes `[B, N]` int32 byte values 0–255 (see `encodeBytes`)
   * @returns tokens `[B, N, d]` (positions added), aux `[B, N, da]`, positions `[B, N, d]`
   * @throws SequenceStemInputError for a wrong dtype/rank or, when checked, bytes outside 0–255
   */
  apply(bytes: tf.Tensor2D, options: SequenceStemApplyOptions = {}): SequenceStemOutput {
    this.check(bytes, options.checkRange ?? true);
    const { d, positionBase } = this.config;
    return tf.tidy(() => {
      const [b, n] = bytes.shape;
      // Embedding as one-hot × table: a matmul whose gradient is a matmul on every backend (a gather's
      // gradient needs UnsortedSegmentSum).
      const oh = oneHotFloat(tf.reshape(bytes, [-1]) as tf.Tensor1D, 256); // [B·N, 256]
      let x = tf.reshape(tf.matMul(oh, this.embed), [b, n, d]) as tf.Tensor3D; // [B, N, d]
      for (const layer of this.convs) x = this.conv(x, layer);
      const pe = tf.tensor3d(sinusoidalPositions(n, d, positionBase, options.offset ?? 0), [1, n, d]);
      const positions = tf.tile(pe, [b, 1, 1]) as tf.Tensor3D; // [B, N, d]
      const tokens = tf.add(x, positions) as tf.Tensor3D;
      const aux = this.pool(tokens);
      return { tokens, aux, positions };
    });
  }
}
