/**
 * The encoder's configuration: one typed object, every default in `ENCODER_DEFAULTS`, validated by
 * `resolveEncoderConfig` with errors that name the field, what it must be and what arrived.
 */
import { configChecks } from '@goe/tf';
import { EncoderConfigError } from './errors.js';

/** How the aux routing features are refined from the encoded tokens (draft eq. 7). */
export type AuxRefine = 'linear' | 'cross' | 'none';

export interface EncoderConfig {
  /** Token width d. */
  d: number;
  /** Aux routing-feature width da. */
  da: number;
  /** Number of transformer blocks. */
  depth: number;
  /** Attention heads; must divide d. */
  heads: number;
  /** Feed-forward hidden width as a multiple of d. */
  mlpRatio: number;
  /** Dropout on the attention output and the feed-forward output (training only). */
  dropout: number;
  /** Dropout on the attention probabilities (training only). */
  attnDropout: number;
  /**
   * f_aux of draft eq. 7. `linear`: a' = a + W[a; T'] + b (the shallow projection); `cross`:
   * a' = a + W_o MHA(LN(a) W_q, T' W_k, T' W_v), each token's aux features attending to the sample's
   * encoded tokens (the cross-attention); `none`: a' = a.
   */
  auxRefine: AuxRefine;
  /** Heads of the `cross` aux refinement; must divide `auxDim`. */
  auxHeads: number;
  /** Inner width of the `cross` aux refinement's queries, keys and values. */
  auxDim: number;
  /** LayerNorm on the encoder's output tokens (pre-LN transformers need one at the end). */
  finalNorm: boolean;
}

export type EncoderConfigInput = Partial<EncoderConfig>;

/** Every default of the encoder, in one place. */
export const ENCODER_DEFAULTS: Readonly<EncoderConfig> = Object.freeze({
  d: 64,
  da: 16,
  depth: 2,
  heads: 4,
  mlpRatio: 2,
  dropout: 0,
  attnDropout: 0,
  auxRefine: 'linear' as AuxRefine,
  auxHeads: 2,
  auxDim: 16,
  finalNorm: true,
});

const check = configChecks((field, expected, received) => new EncoderConfigError(field, expected, received));

function prob(field: string, v: unknown): number {
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new EncoderConfigError(field, 'a number in [0, 1)', v);
  return v;
}

/**
 * Merges `partial` over `ENCODER_DEFAULTS` and validates every field.
 * @throws EncoderConfigError naming the first unknown key or bad value.
 */
export function resolveEncoderConfig(partial: EncoderConfigInput = {}): EncoderConfig {
  const p = check.merge(ENCODER_DEFAULTS, partial);
  const cfg: EncoderConfig = {
    d: check.int('d', p['d'], 1),
    da: check.int('da', p['da'], 0),
    depth: check.int('depth', p['depth'], 0),
    heads: check.int('heads', p['heads'], 1),
    mlpRatio: ((): number => {
      const v = p['mlpRatio'];
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new EncoderConfigError('mlpRatio', 'a number > 0', v);
      return v;
    })(),
    dropout: prob('dropout', p['dropout']),
    attnDropout: prob('attnDropout', p['attnDropout']),
    auxRefine: ((): AuxRefine => {
      const v = p['auxRefine'];
      if (v !== 'linear' && v !== 'cross' && v !== 'none') throw new EncoderConfigError('auxRefine', "'linear', 'cross' or 'none'", v);
      return v;
    })(),
    auxHeads: check.int('auxHeads', p['auxHeads'], 1),
    auxDim: check.int('auxDim', p['auxDim'], 1),
    finalNorm: check.bool('finalNorm', p['finalNorm']),
  };
  if (cfg.d % cfg.heads !== 0) throw new EncoderConfigError('heads', `a divisor of d (${cfg.d})`, cfg.heads);
  if (cfg.auxDim % cfg.auxHeads !== 0) throw new EncoderConfigError('auxHeads', `a divisor of auxDim (${cfg.auxDim})`, cfg.auxHeads);
  if (Math.round(cfg.d * cfg.mlpRatio) < 1) throw new EncoderConfigError('mlpRatio', 'at least 1/d', cfg.mlpRatio);
  return cfg;
}
