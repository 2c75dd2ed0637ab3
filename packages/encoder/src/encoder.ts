/**
 * The modality-agnostic encoder (GoE draft §3.1.2): T' = Φ(T) (eq. 4), a stack of pre-LayerNorm blocks
 * LN -> MHA -> residual -> LN -> FFN -> residual (eq. 5), and the aux refinement a' = f_aux(a, T')
 * (eq. 7), either as the shallow projection a' = a + W[a; T'] + b or as cross-attention from the aux
 * features to the encoded tokens, a' = a + W_o MHA(LN(a) W_q, T' W_k, T' W_v).
 *
 * No positions are added here: the stems add them, so the encoder is permutation-equivariant.
 *
 * Legend: B batch, N tokens, d width, da aux width; rows are `[B*N, ·]` (rank 2 on the hot path).
 */
import { LayerNorm, Linear, Module, gelu, makeRng, tf, type Rng } from '@goe/tf';
import { MASKED_SCORE, MultiHeadCrossAttention, MultiHeadSelfAttention } from './attention.js';
import type { EncoderConfig } from './config.js';
import { dropout } from './dropout.js';
import { EncoderInputError } from './errors.js';

/** One pre-LN transformer block. */
export class EncoderBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn: MultiHeadSelfAttention;
  readonly norm2: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(
    readonly config: EncoderConfig,
    rng: Rng,
  ) {
    super();
    const { d, heads, mlpRatio } = config;
    const hidden = Math.round(d * mlpRatio);
    this.norm1 = this.child('norm1', new LayerNorm(d, rng));
    this.attn = this.child('attn', new MultiHeadSelfAttention(d, heads, rng));
    this.norm2 = this.child('norm2', new LayerNorm(d, rng));
    this.fc1 = this.child('fc1', new Linear(d, hidden, rng));
    this.fc2 = this.child('fc2', new Linear(hidden, d, rng));
  }

  /**
   * @param x `[B*N, d]`
   * @param keyBias `[B, 1, N]` padding bias, optional
   * @returns `[B*N, d]`
   */
  apply(x: tf.Tensor2D, B: number, N: number, opts: { keyBias?: tf.Tensor3D; training?: boolean; rng?: Rng }): tf.Tensor2D {
    return tf.tidy(() => {
      const train = opts.training === true && opts.rng !== undefined;
      const drop = (t: tf.Tensor, rate: number): tf.Tensor => (train && rate > 0 ? dropout(t, rate, opts.rng!) : t);
      const a = this.attn.apply(this.norm1.apply(x) as tf.Tensor2D, B, N, {
        keyBias: opts.keyBias,
        attnDropout: train ? this.config.attnDropout : 0,
        rng: opts.rng,
      });
      const x1 = tf.add(x, drop(a, this.config.dropout)); // [B*N, d]
      const f = this.fc2.apply(gelu(this.fc1.apply(this.norm2.apply(x1)))); // [B*N, d]
      return tf.add(x1, drop(f, this.config.dropout)) as tf.Tensor2D;
    });
  }
}

export interface EncoderInput {
  /** `[B, N, d]` */
  tokens: tf.Tensor3D;
  /** `[B, N, da]` */
  aux: tf.Tensor3D;
}

export interface EncoderApplyOptions {
  /** Training mode: dropout on. */
  training?: boolean;
  /** `[B, N]`, 1 = real token, 0 = padding: padded tokens are never attended to. */
  mask?: tf.Tensor2D;
}

export interface EncoderOutput {
  /** `[B, N, d]` T' */
  tokens: tf.Tensor3D;
  /** `[B, N, da]` a' */
  aux: tf.Tensor3D;
}

export class Encoder extends Module {
  readonly blocks: EncoderBlock[];
  readonly finalNorm: LayerNorm | undefined;
  /** f_aux of eq. 7 with `auxRefine: 'linear'` (absent otherwise, or with da = 0). */
  readonly auxProj: Linear | undefined;
  /** Pre-LN of the aux queries with `auxRefine: 'cross'`. */
  readonly auxNorm: LayerNorm | undefined;
  /** f_aux of eq. 7 with `auxRefine: 'cross'` (absent otherwise, or with da = 0). */
  readonly auxAttn: MultiHeadCrossAttention | undefined;
  private readonly dropoutRng: Rng;

  constructor(
    readonly config: EncoderConfig,
    rng: Rng,
  ) {
    super();
    this.blocks = Array.from({ length: config.depth }, (_, i) => this.child(`blocks.${i}`, new EncoderBlock(config, rng)));
    this.finalNorm = config.finalNorm ? this.child('finalNorm', new LayerNorm(config.d, rng)) : undefined;
    this.auxProj =
      config.auxRefine === 'linear' && config.da > 0
        ? // Small initial weights: a' starts near a, so routing begins from the stem's descriptors and
          // learns how much token context to mix in.
          this.child('auxProj', new Linear(config.da + config.d, config.da, rng, { init: { kind: 'normal', std: 0.02 } }))
        : undefined;
    const cross = config.auxRefine === 'cross' && config.da > 0;
    // The aux features are the stem's raw descriptors (any scale), so the queries are normalised first,
    // as every block normalises its input (pre-LN); T' is already normalised by finalNorm.
    this.auxNorm = cross ? this.child('auxNorm', new LayerNorm(config.da, rng)) : undefined;
    this.auxAttn = cross
      ? // Small output weights, as for the linear path: a' starts near a.
        this.child(
          'auxAttn',
          new MultiHeadCrossAttention(config.da, config.d, config.auxDim, config.auxHeads, rng, { outInit: { kind: 'normal', std: 0.02 } }),
        )
      : undefined;
    // Dropout masks come from their own stream, seeded from the model's generator.
    this.dropoutRng = makeRng(rng.int(2 ** 31));
  }

  /**
   * @param input tokens `[B, N, d]`, aux `[B, N, da]`
   * @param opts.mask `[B, N]` padding mask (1 = real), optional
   * @returns tokens T' `[B, N, d]`, aux a' `[B, N, da]`
   * @throws EncoderInputError on mismatched shapes
   */
  apply(input: EncoderInput, opts: EncoderApplyOptions = {}): EncoderOutput {
    const { tokens, aux, mask } = { ...input, mask: opts.mask };
    const { d, da } = this.config;
    if (tokens.rank !== 3 || tokens.shape[2] !== d) {
      throw new EncoderInputError('tokens', `[B, N, ${d}]`, `[${tokens.shape.join(', ')}]`);
    }
    const [B, N] = tokens.shape;
    if (aux.rank !== 3 || aux.shape[0] !== B || aux.shape[1] !== N || aux.shape[2] !== da) {
      throw new EncoderInputError('aux', `[${B}, ${N}, ${da}]`, `[${aux.shape.join(', ')}]`);
    }
    if (mask && (mask.rank !== 2 || mask.shape[0] !== B || mask.shape[1] !== N)) {
      throw new EncoderInputError('mask', `[${B}, ${N}]`, `[${mask.shape.join(', ')}]`);
    }
    const out = tf.tidy(() => {
      const keyBias = mask
        ? (tf.reshape(tf.mul(tf.sub(1, tf.cast(mask, 'float32')), MASKED_SCORE), [B, 1, N]) as tf.Tensor3D) // [B, 1, N]
        : undefined;
      let x = tf.reshape(tokens, [B * N, d]) as tf.Tensor2D; // [B*N, d]
      for (const block of this.blocks) {
        x = block.apply(x, B, N, { keyBias, training: opts.training, rng: this.dropoutRng });
      }
      if (this.finalNorm) x = this.finalNorm.apply(x) as tf.Tensor2D;
      let a = tf.reshape(aux, [B * N, da]); // [B*N, da]
      if (this.auxProj) a = tf.add(a, this.auxProj.apply(tf.concat([a, x], 1))); // a + W[a; T'] + b
      if (this.auxAttn && this.auxNorm) {
        // Padded tokens are masked as keys here too, so no real token's a' reads them.
        a = tf.add(a, this.auxAttn.apply(this.auxNorm.apply(a) as tf.Tensor2D, x, B, N, N, { keyBias })); // [B*N, da]
      }
      return { tokens: tf.reshape(x, [B, N, d]) as tf.Tensor3D, aux: tf.reshape(a, [B, N, da]) as tf.Tensor3D };
    });
    return out;
  }
}
