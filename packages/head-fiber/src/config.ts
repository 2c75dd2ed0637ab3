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
}

export type FiberHeadConfigInput = Partial<FiberHeadConfig>;

/** Every default of the fiber head, in one place. */
export const FIBER_HEAD_DEFAULTS: Readonly<FiberHeadConfig> = Object.freeze({
  d: 64,
  norm: true,
  hidden: 0,
  eps: 1e-8,
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
  return { d: check.int('d', p['d'], 1), norm, hidden: check.int('hidden', p['hidden'], 0), eps };
}
