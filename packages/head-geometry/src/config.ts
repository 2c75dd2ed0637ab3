/**
 * The geometry head's configuration: one typed object, every default in `GEOMETRY_HEAD_DEFAULTS`,
 * validated by `resolveGeometryHeadConfig` with errors that name the field, what it must be and what
 * arrived.
 */
import { configChecks } from '@goe/tf';
import { GeometryHeadConfigError } from './errors.js';

export interface GeometryHeadConfig {
  /** Token width d. */
  d: number;
  /** Voxels per token `[cz, cy, cx]`; must equal the stem's cell (checked against the grid at apply). */
  cell: [number, number, number];
  /** LayerNorm on the tokens before the decoders. */
  norm: boolean;
  /** Width of one shared GELU hidden layer before the outputs; 0 = linear outputs from the tokens. */
  hidden: number;
  /** Learned separable 3-tap smoothing of the sheet logits (identity at start). */
  smoothing: boolean;
  /** Also predict one sheet normal per token. */
  normals: boolean;
}

export type GeometryHeadConfigInput = Partial<Omit<GeometryHeadConfig, 'cell'>> & { cell?: number | readonly number[] };

/** Every default of the geometry head, in one place (`cell` matches the volume stem's default). */
export const GEOMETRY_HEAD_DEFAULTS: Readonly<GeometryHeadConfig> = Object.freeze({
  d: 64,
  cell: [4, 4, 4] as [number, number, number],
  norm: true,
  hidden: 0,
  smoothing: true,
  normals: true,
});

const check = configChecks((field, expected, received) => new GeometryHeadConfigError(field, expected, received));

/**
 * Merges `partial` over `GEOMETRY_HEAD_DEFAULTS` and validates every field.
 * @throws GeometryHeadConfigError naming the first unknown key or bad value.
 */
export function resolveGeometryHeadConfig(partial: GeometryHeadConfigInput = {}): GeometryHeadConfig {
  const p = check.merge(GEOMETRY_HEAD_DEFAULTS, partial);
  const cell = check.triple('cell', p['cell'], (f, v) => check.int(f, v, 1), '[cz, cy, cx]');
  return {
    d: check.int('d', p['d'], 1),
    cell,
    norm: check.bool('norm', p['norm']),
    hidden: check.int('hidden', p['hidden'], 0),
    smoothing: check.bool('smoothing', p['smoothing']),
    normals: check.bool('normals', p['normals']),
  };
}
