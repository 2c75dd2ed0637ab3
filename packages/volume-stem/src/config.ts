/**
 * The volume stem's configuration: one typed object, every default in `VOLUME_STEM_DEFAULTS`, validated
 * by `resolveVolumeStemConfig` with errors that name the field, what it must be and what arrived.
 */
import { configChecks } from '@goe/tf';
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

const check = configChecks((field, expected, received) => new VolumeStemConfigError(field, expected, received));

/**
 * Merges `partial` over `VOLUME_STEM_DEFAULTS` and validates every field.
 * @throws VolumeStemConfigError naming the first unknown key or bad value.
 */
export function resolveVolumeStemConfig(partial: VolumeStemConfigInput = {}): VolumeStemConfig {
  const p = check.merge(VOLUME_STEM_DEFAULTS, partial);
  const cfg: VolumeStemConfig = {
    d: check.int('d', p['d'], 1),
    da: check.int('da', p['da'], 1),
    cell: check.triple('cell', p['cell'], (f, x) => check.int(f, x, 1)),
    convChannels: check.int('convChannels', p['convChannels'], 0),
    activation: check.oneOf('activation', p['activation'], ['silu', 'gelu', 'relu'] as const),
    voxelSizeUm: check.triple('voxelSizeUm', p['voxelSizeUm'], (f, x) => check.above(f, x)),
    pyramidLevel: check.int('pyramidLevel', p['pyramidLevel'], 0),
    positional: check.oneOf('positional', p['positional'], ['sinusoidal', 'none'] as const),
    minWavelengthUm: check.above('minWavelengthUm', p['minWavelengthUm']),
    maxWavelengthUm: check.above('maxWavelengthUm', p['maxWavelengthUm']),
    orientationDescriptors: check.bool('orientationDescriptors', p['orientationDescriptors']),
    descriptorEps: check.above('descriptorEps', p['descriptorEps']),
  };
  if (cfg.maxWavelengthUm < cfg.minWavelengthUm) {
    throw new VolumeStemConfigError('maxWavelengthUm', `>= minWavelengthUm (${cfg.minWavelengthUm})`, cfg.maxWavelengthUm);
  }
  if (cfg.positional === 'sinusoidal' && cfg.d < 6) {
    throw new VolumeStemConfigError('d', "at least 6 with positional 'sinusoidal' (sin and cos per axis)", cfg.d);
  }
  return cfg;
}
