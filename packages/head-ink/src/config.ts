/**
 * The ink head's configuration: one typed object, every default in `INK_HEAD_DEFAULTS`, validated by
 * `resolveInkHeadConfig` with errors that name the field, what it must be and what arrived.
 */
import { configChecks } from '@goe/tf';
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

const check = configChecks((field, expected, received) => new InkHeadConfigError(field, expected, received));

/**
 * Merges `partial` over `INK_HEAD_DEFAULTS` and validates every field.
 * @throws InkHeadConfigError naming the first unknown key or bad value.
 */
export function resolveInkHeadConfig(partial: InkHeadConfigInput = {}): InkHeadConfig {
  const p = check.merge(INK_HEAD_DEFAULTS, partial);
  const cell = check.triple('cell', p['cell'], (f, v) => check.int(f, v, 1), '[cz, cy, cx]');
  return {
    d: check.int('d', p['d'], 1),
    cell,
    norm: check.bool('norm', p['norm']),
    hidden: check.int('hidden', p['hidden'], 0),
    smoothing: check.bool('smoothing', p['smoothing']),
  };
}
