/**
 * The ink head's configuration: one typed object, every default in `INK_HEAD_DEFAULTS`, validated by
 * `resolveInkHeadConfig` with errors that name the field, what it must be and what arrived.
 */
import { InkHeadConfigError } from './errors.js';

export interface InkHeadConfig {
  /** Token width d. */
  d: number;
  /** Voxels per token `[cz, cy, cx]`; must equal the stem's cell (the grid's `cell` is checked at apply). */
  cell: [number, number, number];
  /** LayerNorm on the tokens before the decoder. */
  norm: boolean;
  /** Width of one GELU hidden layer before the per-cell logits; 0 = a single Linear d -> cell voxels. */
  hidden: number;
  /**
   * Learned separable 3-tap smoothing of the voxel logits along z, y and x (9 weights, identity at
   * start), so that neighbouring cells can agree across their shared faces.
   */
  smoothing: boolean;
}

export type InkHeadConfigInput = Partial<Omit<InkHeadConfig, 'cell'>> & { cell?: number | readonly number[] };

/** Every default of the ink head, in one place (`cell` matches the volume stem's default). */
export const INK_HEAD_DEFAULTS: Readonly<InkHeadConfig> = Object.freeze({
  d: 64,
  cell: [4, 4, 4] as [number, number, number],
  norm: true,
  hidden: 0,
  smoothing: true,
});

function int(field: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new InkHeadConfigError(field, `an integer >= ${min}`, v);
  return v;
}

function bool(field: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new InkHeadConfigError(field, 'true or false', v);
  return v;
}

/**
 * Merges `partial` over `INK_HEAD_DEFAULTS` and validates every field.
 * @throws InkHeadConfigError naming the first unknown key or bad value.
 */
export function resolveInkHeadConfig(partial: InkHeadConfigInput = {}): InkHeadConfig {
  if (typeof partial !== 'object' || partial === null || Array.isArray(partial)) {
    throw new InkHeadConfigError('(config)', 'an object', partial);
  }
  for (const key of Object.keys(partial)) {
    if (!(key in INK_HEAD_DEFAULTS)) {
      throw new InkHeadConfigError(key, `a known key (${Object.keys(INK_HEAD_DEFAULTS).join(', ')})`, key);
    }
  }
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const p = { ...INK_HEAD_DEFAULTS, ...given } as Record<string, unknown>;
  const c = p['cell'];
  let cell: [number, number, number];
  if (typeof c === 'number') cell = [int('cell', c, 1), c, c];
  else if (Array.isArray(c) && c.length === 3) cell = [int('cell[0]', c[0], 1), int('cell[1]', c[1], 1), int('cell[2]', c[2], 1)];
  else throw new InkHeadConfigError('cell', 'a number or [cz, cy, cx]', c);
  return {
    d: int('d', p['d'], 1),
    cell,
    norm: bool('norm', p['norm']),
    hidden: int('hidden', p['hidden'], 0),
    smoothing: bool('smoothing', p['smoothing']),
  };
}
