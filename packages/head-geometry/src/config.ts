/**
 * The geometry head's configuration: one typed object, every default in `GEOMETRY_HEAD_DEFAULTS`,
 * validated by `resolveGeometryHeadConfig` with errors that name the field, what it must be and what
 * arrived.
 */
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

/**
 * Merges `partial` over `GEOMETRY_HEAD_DEFAULTS` and validates every field.
 * @throws GeometryHeadConfigError naming the first unknown key or bad value.
 */
export function resolveGeometryHeadConfig(partial: GeometryHeadConfigInput = {}): GeometryHeadConfig {
  if (typeof partial !== 'object' || partial === null || Array.isArray(partial)) {
    throw new GeometryHeadConfigError('(config)', 'an object', partial);
  }
  for (const key of Object.keys(partial)) {
    if (!(key in GEOMETRY_HEAD_DEFAULTS)) {
      throw new GeometryHeadConfigError(key, `a known key (${Object.keys(GEOMETRY_HEAD_DEFAULTS).join(', ')})`, key);
    }
  }
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const p = { ...GEOMETRY_HEAD_DEFAULTS, ...given } as Record<string, unknown>;
  const int = (field: string, v: unknown, min: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new GeometryHeadConfigError(field, `an integer >= ${min}`, v);
    return v;
  };
  const bool = (field: string): boolean => {
    const v = p[field];
    if (typeof v !== 'boolean') throw new GeometryHeadConfigError(field, 'true or false', v);
    return v;
  };
  const c = p['cell'];
  let cell: [number, number, number];
  if (typeof c === 'number') cell = [int('cell', c, 1), c, c];
  else if (Array.isArray(c) && c.length === 3) cell = [int('cell[0]', c[0], 1), int('cell[1]', c[1], 1), int('cell[2]', c[2], 1)];
  else throw new GeometryHeadConfigError('cell', 'a number or [cz, cy, cx]', c);
  return {
    d: int('d', p['d'], 1),
    cell,
    norm: bool('norm'),
    hidden: int('hidden', p['hidden'], 0),
    smoothing: bool('smoothing'),
    normals: bool('normals'),
  };
}
