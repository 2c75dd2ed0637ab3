/**
 * The encoder's configuration: one typed object, every default in `ENCODER_DEFAULTS`, validated by
 * `resolveEncoderConfig` with errors that name the field, what it must be and what arrived.
 */
import { EncoderConfigError } from './errors.js';

/** How the aux routing features are refined from the encoded tokens (draft eq. 7). */
export type AuxRefine = 'linear' | 'none';

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
  /** `linear`: a' = a + W[a; T'] + b (draft eq. 7, shallow projection); `none`: a' = a. */
  auxRefine: AuxRefine;
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
  finalNorm: true,
});

function int(field: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new EncoderConfigError(field, `an integer >= ${min}`, v);
  return v;
}

function prob(field: string, v: unknown): number {
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new EncoderConfigError(field, 'a number in [0, 1)', v);
  return v;
}

/**
 * Merges `partial` over `ENCODER_DEFAULTS` and validates every field.
 * @throws EncoderConfigError naming the first unknown key or bad value.
 */
export function resolveEncoderConfig(partial: EncoderConfigInput = {}): EncoderConfig {
  if (typeof partial !== 'object' || partial === null || Array.isArray(partial)) {
    throw new EncoderConfigError('(config)', 'an object', partial);
  }
  for (const key of Object.keys(partial)) {
    if (!(key in ENCODER_DEFAULTS)) {
      throw new EncoderConfigError(key, `a known key (${Object.keys(ENCODER_DEFAULTS).join(', ')})`, key);
    }
  }
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const p = { ...ENCODER_DEFAULTS, ...given } as Record<string, unknown>;
  const cfg: EncoderConfig = {
    d: int('d', p['d'], 1),
    da: int('da', p['da'], 0),
    depth: int('depth', p['depth'], 0),
    heads: int('heads', p['heads'], 1),
    mlpRatio: ((): number => {
      const v = p['mlpRatio'];
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new EncoderConfigError('mlpRatio', 'a number > 0', v);
      return v;
    })(),
    dropout: prob('dropout', p['dropout']),
    attnDropout: prob('attnDropout', p['attnDropout']),
    auxRefine: ((): AuxRefine => {
      const v = p['auxRefine'];
      if (v !== 'linear' && v !== 'none') throw new EncoderConfigError('auxRefine', "'linear' or 'none'", v);
      return v;
    })(),
    finalNorm: ((): boolean => {
      const v = p['finalNorm'];
      if (typeof v !== 'boolean') throw new EncoderConfigError('finalNorm', 'true or false', v);
      return v;
    })(),
  };
  if (cfg.d % cfg.heads !== 0) throw new EncoderConfigError('heads', `a divisor of d (${cfg.d})`, cfg.heads);
  if (Math.round(cfg.d * cfg.mlpRatio) < 1) throw new EncoderConfigError('mlpRatio', 'at least 1/d', cfg.mlpRatio);
  return cfg;
}
