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

/**
 * One convolution of φ (draft eq. 1): conv -> optional LayerNorm over channels -> the stem's activation.
 * Strides shrink the feature map; `cell` is counted in feature-map voxels, so a token covers
 * `cell × (product of strides)` input voxels per axis.
 */
export interface ConvLayerConfig {
  /** Output channels. */
  channels: number;
  /** Kernel `[kz, ky, kx]`. */
  kernel: Triple;
  /** Stride `[sz, sy, sx]`; every feature-map size must be a multiple of it. */
  stride: Triple;
  /** 'layer': LayerNorm over the channels of each voxel, before the activation. */
  norm: 'none' | 'layer';
}

/** What `convLayers` accepts per layer: `channels` and any subset of the rest; triples may be one number. */
export interface ConvLayerConfigInput {
  channels: number;
  kernel?: number | readonly number[];
  stride?: number | readonly number[];
  norm?: 'none' | 'layer';
}

/** Defaults of one `convLayers` entry (`channels` has none). */
export const CONV_LAYER_DEFAULTS: Readonly<Omit<ConvLayerConfig, 'channels'>> = Object.freeze({
  kernel: [3, 3, 3] as Triple,
  stride: [1, 1, 1] as Triple,
  norm: 'none' as const,
});

export interface VolumeStemConfig {
  /** Token width d (tokens are `[B, N, d]`). */
  d: number;
  /** Aux routing-feature width da (aux is `[B, N, da]`). */
  da: number;
  /** Voxels per token `[cz, cy, cx]` (anisotropic allowed); the input size must be a multiple. */
  cell: Triple;
  /**
   * Output channels of φ (draft eq. 1), i.e. of its last layer; 0 = no convolution (raw voxels). With
   * `convLayers` absent, φ is one 3x3x3 layer of this many channels.
   */
  convChannels: number;
  /**
   * The layers of φ in order. Absent in the input: derived from `convChannels` (one 3x3x3 layer, stride
   * 1, no norm; none for 0), so configs and checkpoints written before this field mean what they meant.
   */
  convLayers: ConvLayerConfig[];
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

/** The layer that `convChannels` alone stands for: today's single 3x3x3 convolution (fresh arrays). */
function defaultConvLayer(channels: number): ConvLayerConfig {
  const { kernel, stride, norm } = CONV_LAYER_DEFAULTS;
  return { channels, kernel: [...kernel], stride: [...stride], norm };
}

/** What `resolveVolumeStemConfig` accepts: any subset; `cell` and `voxelSizeUm` may be one number. */
export type VolumeStemConfigInput = Partial<Omit<VolumeStemConfig, 'cell' | 'voxelSizeUm' | 'convLayers'>> & {
  cell?: number | readonly number[];
  convLayers?: readonly ConvLayerConfigInput[];
  voxelSizeUm?: number | readonly number[];
};

/** Every default of the stem, in one place (small enough for a few hundred CPU steps in minutes). */
export const VOLUME_STEM_DEFAULTS: Readonly<VolumeStemConfig> = Object.freeze({
  d: 64,
  da: 16,
  cell: [4, 4, 4] as Triple,
  convChannels: 4,
  convLayers: [defaultConvLayer(4)],
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
    ...resolveConvLayers(partial as Record<string, unknown>, p),
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

/**
 * `convChannels` and `convLayers` together: the layers when given (then `convChannels`, if given too, must
 * equal the last layer's channels: a restored resolved config carries both), else derived from
 * `convChannels`.
 */
function resolveConvLayers(
  partial: Record<string, unknown>,
  p: Record<string, unknown>,
): Pick<VolumeStemConfig, 'convChannels' | 'convLayers'> {
  if (partial['convLayers'] === undefined) {
    const convChannels = check.int('convChannels', p['convChannels'], 0);
    return { convChannels, convLayers: convChannels > 0 ? [defaultConvLayer(convChannels)] : [] };
  }
  const list = partial['convLayers'];
  if (!Array.isArray(list)) throw new VolumeStemConfigError('convLayers', 'a list of layers', list);
  const convLayers = list.map((layer: unknown, i) => resolveConvLayer(`convLayers[${i}]`, layer));
  const last = convLayers.at(-1)?.channels ?? 0;
  if (partial['convChannels'] !== undefined && partial['convChannels'] !== last) {
    throw new VolumeStemConfigError('convChannels', `${last} (the last layer's channels) or absent with convLayers`, partial['convChannels']);
  }
  return { convChannels: last, convLayers };
}

function resolveConvLayer(field: string, layer: unknown): ConvLayerConfig {
  if (typeof layer !== 'object' || layer === null || Array.isArray(layer)) {
    throw new VolumeStemConfigError(field, '{ channels, kernel?, stride?, norm? }', layer);
  }
  const known = ['channels', ...Object.keys(CONV_LAYER_DEFAULTS)];
  for (const key of Object.keys(layer)) {
    if (!known.includes(key)) throw new VolumeStemConfigError(`${field}.${key}`, `a known key (${known.join(', ')})`, key);
  }
  const given = Object.entries(layer).filter(([, v]) => v !== undefined);
  const l: Record<string, unknown> = { ...CONV_LAYER_DEFAULTS, ...Object.fromEntries(given) };
  return {
    channels: check.int(`${field}.channels`, l['channels'], 1),
    kernel: check.triple(`${field}.kernel`, l['kernel'], (f, x) => check.int(f, x, 1)),
    stride: check.triple(`${field}.stride`, l['stride'], (f, x) => check.int(f, x, 1)),
    norm: check.oneOf(`${field}.norm`, l['norm'], ['none', 'layer'] as const),
  };
}

/**
 * Input voxels per token `[z, y, x]`: `cell` (counted in feature-map voxels) times the product of the
 * layers' strides. This is the token grid's `cell`, which heads that decode back to voxels must match.
 */
export function tokenCellVoxels(config: Pick<VolumeStemConfig, 'cell' | 'convLayers'>): Triple {
  return config.convLayers.reduce((c, l) => c.map((v, a) => v * l.stride[a]!) as Triple, [...config.cell] as Triple);
}
