/**
 * The fiber head's configuration: one typed object, every default in `FIBER_HEAD_DEFAULTS`, validated by
 * `resolveFiberHeadConfig` with errors that name the field, what it must be and what arrived.
 */
import { configChecks } from '@goe/tf';
import { FiberHeadConfigError } from './errors.js';

export interface FiberHeadConfig {
  /** Token width d. */
  d: number;
  /** LayerNorm on the tokens before the projection. */
  norm: boolean;
  /** Width of one GELU hidden layer before the 3-vector; 0 = a single Linear d -> 3. */
  hidden: number;
  /** ε in v / √(|v|² + ε): keeps the normalisation finite (and differentiable) at v = 0. */
  eps: number;
  /**
   * What the head predicts per token. 'vector': a unit direction, trained with 1 − (v·t)². 'tensor':
   * a symmetric orientation tensor (6 numbers), trained toward t tᵀ, read out as its principal
   * eigenvector. Regressing t tᵀ is linear in the target, so the head learns E[t tᵀ | x] and an
   * uncertain token averages the candidate orientations instead of settling on one of them.
   */
  output: FiberOutput;
  /** Width of per-token features concatenated to the (normalised) tokens, e.g. `sheetFrameFeatures`; 0 = none. */
  skip: number;
}

export const FIBER_OUTPUTS = ['vector', 'tensor'] as const;
export type FiberOutput = (typeof FIBER_OUTPUTS)[number];

export type FiberHeadConfigInput = Partial<FiberHeadConfig>;

/** Every default of the fiber head, in one place. */
export const FIBER_HEAD_DEFAULTS: Readonly<FiberHeadConfig> = Object.freeze({
  d: 64,
  norm: true,
  hidden: 0,
  eps: 1e-8,
  output: 'vector',
  skip: 0,
});

const check = configChecks((field, expected, received) => new FiberHeadConfigError(field, expected, received));

/**
 * Merges `partial` over `FIBER_HEAD_DEFAULTS` and validates every field.
 * @throws FiberHeadConfigError naming the first unknown key or bad value.
 */
export function resolveFiberHeadConfig(partial: FiberHeadConfigInput = {}): FiberHeadConfig {
  const p = check.merge(FIBER_HEAD_DEFAULTS, partial);
  const norm = check.bool('norm', p['norm']);
  const eps = check.above('eps', p['eps']);
  const output = check.oneOf('output', p['output'], FIBER_OUTPUTS);
  return { d: check.int('d', p['d'], 1), norm, hidden: check.int('hidden', p['hidden'], 0), eps, output, skip: check.int('skip', p['skip'], 0) };
}
