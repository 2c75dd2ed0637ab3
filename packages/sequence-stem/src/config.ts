/**
 * Configuration of the sequence stem: one typed object, every default in `SEQUENCE_STEM_DEFAULTS`,
 * validated with errors that name the field.
 */

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
export class SequenceStemConfigError extends Error {
  override readonly name = 'SequenceStemConfigError';
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly received: unknown,
    options?: { cause?: unknown },
  ) {
    super(`sequence-stem config: '${field}' must be ${expected}; got ${JSON.stringify(received) ?? String(received)}`, options);
  }
}

/** Input handed to the stem has the wrong shape, dtype or values. */
export class SequenceStemInputError extends Error {
  override readonly name = 'SequenceStemInputError';
  constructor(
    readonly input: string,
    readonly expected: string,
    readonly received: string,
    options?: { cause?: unknown },
  ) {
    super(`sequence-stem input '${input}': expected ${expected}, got ${received}`, options);
  }
}

const KEYS = Object.keys(SEQUENCE_STEM_DEFAULTS);

function int(field: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new SequenceStemConfigError(field, `an integer >= ${min}`, v);
  return v;
}

/** Fills defaults and validates; throws `SequenceStemConfigError` naming the field. */
export function resolveSequenceStemConfig(partial: Partial<SequenceStemConfig> = {}): SequenceStemConfig {
  if (typeof partial !== 'object' || partial === null) throw new SequenceStemConfigError('(config)', 'an object', partial);
  for (const k of Object.keys(partial)) {
    if (!KEYS.includes(k)) throw new SequenceStemConfigError(k, `a known key (${KEYS.join(', ')})`, 'unknown key');
  }
  const p = { ...SEQUENCE_STEM_DEFAULTS, ...partial };
  if (typeof p.causal !== 'boolean') throw new SequenceStemConfigError('causal', 'true or false', p.causal);
  if (typeof p.positionBase !== 'number' || !Number.isFinite(p.positionBase) || p.positionBase <= 1) {
    throw new SequenceStemConfigError('positionBase', 'a finite number > 1', p.positionBase);
  }
  return {
    d: int('d', p.d, 1),
    da: int('da', p.da, 0),
    kernel: int('kernel', p.kernel, 1),
    layers: int('layers', p.layers, 0),
    causal: p.causal,
    auxWindow: int('auxWindow', p.auxWindow, 1),
    auxKeyDim: int('auxKeyDim', p.auxKeyDim, 1),
    positionBase: p.positionBase,
  };
}
