/**
 * The volume stem's configuration: one typed object, every default in `VOLUME_STEM_DEFAULTS`, validated
 * by `resolveVolumeStemConfig` with errors that name the field, what it must be and what arrived.
 */
import { VolumeStemConfigError } from './errors.js';

/** Three sizes in (z, y, x) order. */
export type Triple = [number, number, number];

/**
 * Non-linearity after the stem convolution. `silu` (x·σ(x), Ramachandran et al. 2017) is the default:
 * smooth like GELU but three element-wise kernels instead of GELU's tanh polynomial, which matters on the
 * stem's per-voxel tensor (measured on wasm, [65536, 4] forward + backward: SiLU ~4 ms, GELU ~12-25 ms).
 */
export type StemActivation = 'silu' | 'gelu' | 'relu';

export interface VolumeStemConfig {
  /** Token width d (tokens are `[B, N, d]`). */
  d: number;
  /** Aux routing-feature width da (aux is `[B, N, da]`). */
  da: number;
  /** Voxels per token `[cz, cy, cx]` (anisotropic allowed); the input size must be a multiple. */
  cell: Triple;
  /** Output channels of the 3x3x3 stem convolution φ (draft eq. 1); 0 = no convolution (raw voxels). */
  convChannels: number;
  /** Non-linearity after the convolution. */
  activation: StemActivation;
  /** Physical voxel size `[z, y, x]` in micrometres at pyramid level 0 (Scroll 1: 7.91). */
  voxelSizeUm: Triple;
  /** Pyramid level of the input: its voxels are 2^level level-0 voxels wide. */
  pyramidLevel: number;
  /** Positional encoding added to the tokens: 3-D sinusoids of the token centre in µm, or none. */
  positional: 'sinusoidal' | 'none';
  /** Shortest sinusoid wavelength in µm (keep it above twice the token spacing to avoid aliasing). */
  minWavelengthUm: number;
  /** Longest sinusoid wavelength in µm (about the largest distance positions must tell apart). */
  maxWavelengthUm: number;
  /** Append the six trace-normalised structure-tensor components (sign-free orientation) to the descriptors. */
  orientationDescriptors: boolean;
  /** Floor added to eigenvalue and trace denominators of the descriptors (in squared intensity units). */
  descriptorEps: number;
}

/** What `resolveVolumeStemConfig` accepts: any subset; `cell` and `voxelSizeUm` may be one number. */
export type VolumeStemConfigInput = Partial<Omit<VolumeStemConfig, 'cell' | 'voxelSizeUm'>> & {
  cell?: number | readonly number[];
  voxelSizeUm?: number | readonly number[];
};

/** Every default of the stem, in one place (small enough for a few hundred CPU steps in minutes). */
export const VOLUME_STEM_DEFAULTS: Readonly<VolumeStemConfig> = Object.freeze({
  d: 64,
  da: 16,
  cell: [4, 4, 4] as Triple,
  convChannels: 4,
  activation: 'silu' as StemActivation,
  voxelSizeUm: [7.91, 7.91, 7.91] as Triple,
  pyramidLevel: 0,
  positional: 'sinusoidal' as const,
  minWavelengthUm: 64,
  maxWavelengthUm: 100_000,
  orientationDescriptors: true,
  descriptorEps: 1e-8,
});

function positiveInt(field: string, v: unknown, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new VolumeStemConfigError(field, `an integer >= ${min}`, v);
  }
  return v;
}

function positiveNumber(field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new VolumeStemConfigError(field, 'a finite number > 0', v);
  }
  return v;
}

function triple(field: string, v: unknown, each: (f: string, x: unknown) => number): Triple {
  if (typeof v === 'number') {
    const n = each(field, v);
    return [n, n, n];
  }
  if (!Array.isArray(v) || v.length !== 3) throw new VolumeStemConfigError(field, 'a number or [z, y, x]', v);
  return [each(`${field}[0]`, v[0]), each(`${field}[1]`, v[1]), each(`${field}[2]`, v[2])];
}

function oneOf<T extends string>(field: string, v: unknown, options: readonly T[]): T {
  if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
    throw new VolumeStemConfigError(field, `one of ${options.map((o) => `'${o}'`).join(', ')}`, v);
  }
  return v as T;
}

/**
 * Merges `partial` over `VOLUME_STEM_DEFAULTS` and validates every field.
 * @throws VolumeStemConfigError naming the first unknown key or bad value.
 */
export function resolveVolumeStemConfig(partial: VolumeStemConfigInput = {}): VolumeStemConfig {
  if (typeof partial !== 'object' || partial === null || Array.isArray(partial)) {
    throw new VolumeStemConfigError('(config)', 'an object', partial);
  }
  for (const key of Object.keys(partial)) {
    if (!(key in VOLUME_STEM_DEFAULTS)) {
      throw new VolumeStemConfigError(key, `a known key (${Object.keys(VOLUME_STEM_DEFAULTS).join(', ')})`, key);
    }
  }
  const p = { ...VOLUME_STEM_DEFAULTS, ...stripUndefined(partial) } as Record<string, unknown>;
  const cfg: VolumeStemConfig = {
    d: positiveInt('d', p['d']),
    da: positiveInt('da', p['da']),
    cell: triple('cell', p['cell'], (f, x) => positiveInt(f, x)),
    convChannels: positiveInt('convChannels', p['convChannels'], 0),
    activation: oneOf('activation', p['activation'], ['silu', 'gelu', 'relu'] as const),
    voxelSizeUm: triple('voxelSizeUm', p['voxelSizeUm'], positiveNumber),
    pyramidLevel: positiveInt('pyramidLevel', p['pyramidLevel'], 0),
    positional: oneOf('positional', p['positional'], ['sinusoidal', 'none'] as const),
    minWavelengthUm: positiveNumber('minWavelengthUm', p['minWavelengthUm']),
    maxWavelengthUm: positiveNumber('maxWavelengthUm', p['maxWavelengthUm']),
    orientationDescriptors: bool('orientationDescriptors', p['orientationDescriptors']),
    descriptorEps: positiveNumber('descriptorEps', p['descriptorEps']),
  };
  if (cfg.maxWavelengthUm < cfg.minWavelengthUm) {
    throw new VolumeStemConfigError('maxWavelengthUm', `>= minWavelengthUm (${cfg.minWavelengthUm})`, cfg.maxWavelengthUm);
  }
  if (cfg.positional === 'sinusoidal' && cfg.d < 6) {
    throw new VolumeStemConfigError('d', "at least 6 with positional 'sinusoidal' (sin and cos per axis)", cfg.d);
  }
  return cfg;
}

function bool(field: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new VolumeStemConfigError(field, 'true or false', v);
  return v;
}

function stripUndefined(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
