/**
 * Configuration of the sequence stem: one typed object, every default in `SEQUENCE_STEM_DEFAULTS`,
 * validated with errors that name the field.
 */
import { ConfigFieldError, InputShapeError, configChecks } from '@goe/tf';

export interface SequenceStemConfig {
  /** Token width d. */
  d: number;
  /** Aux routing-feature width da (GoE draft eq. 3). */
  da: number;
  /** Temporal convolution kernel size (in bytes). */
  kernel: number;
  /** Residual convolution layers of the temporal encoder. */
  layers: number;
  /** Causal: position i sees bytes ≤ i only (tokens and aux). Otherwise windows are centred. */
  causal: boolean;
  /** Attention-pooling window of the aux features, in positions. */
  auxWindow: number;
  /** Query/key width of the aux attention pooling. */
  auxKeyDim: number;
  /** Base of the sinusoidal positions (Vaswani et al., 2017: 10000). */
  positionBase: number;
}

export const SEQUENCE_STEM_DEFAULTS: Readonly<SequenceStemConfig> = Object.freeze({
  d: 64,
  da: 16,
  kernel: 5,
  layers: 2,
  causal: false,
  auxWindow: 8,
  auxKeyDim: 16,
  positionBase: 10000,
});

/** A sequence-stem config field has an unknown name or a bad value. */
export class SequenceStemConfigError extends ConfigFieldError {
  override readonly name = 'SequenceStemConfigError';
  constructor(field: string, expected: string, received: unknown, options?: { cause?: unknown }) {
    super('sequence-stem', field, expected, received, options);
  }
}

/** Input handed to the stem has the wrong shape, dtype or values. */
export class SequenceStemInputError extends InputShapeError {
  override readonly name = 'SequenceStemInputError';
  constructor(input: string, expected: string, received: string, options?: { cause?: unknown }) {
    super('sequence-stem', input, expected, received, options);
  }
}

const KEYS = Object.keys(SEQUENCE_STEM_DEFAULTS);

const check = configChecks((field, expected, received) => new SequenceStemConfigError(field, expected, received));

/** Fills defaults and validates; throws `SequenceStemConfigError` naming the field. */
export function resolveSequenceStemConfig(partial: Partial<SequenceStemConfig> = {}): SequenceStemConfig {
  if (typeof partial !== 'object' || partial === null) throw new SequenceStemConfigError('(config)', 'an object', partial);
  for (const k of Object.keys(partial)) {
    if (!KEYS.includes(k)) throw new SequenceStemConfigError(k, `a known key (${KEYS.join(', ')})`, 'unknown key');
  }
  const p = { ...SEQUENCE_STEM_DEFAULTS, ...partial };
  const causal = check.bool('causal', p.causal);
  const positionBase = check.above('positionBase', p.positionBase, 1);
  return {
    d: check.int('d', p.d, 1),
    da: check.int('da', p.da, 0),
    kernel: check.int('kernel', p.kernel, 1),
    layers: check.int('layers', p.layers, 0),
    causal,
    auxWindow: check.int('auxWindow', p.auxWindow, 1),
    auxKeyDim: check.int('auxKeyDim', p.auxKeyDim, 1),
    positionBase,
  };
}
