/**
 * The fiber head's configuration: one typed object, every default in `FIBER_HEAD_DEFAULTS`, validated by
 * `resolveFiberHeadConfig` with errors that name the field, what it must be and what arrived.
 */
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

/**
 * Merges `partial` over `FIBER_HEAD_DEFAULTS` and validates every field.
 * @throws FiberHeadConfigError naming the first unknown key or bad value.
 */
export function resolveFiberHeadConfig(partial: FiberHeadConfigInput = {}): FiberHeadConfig {
  if (typeof partial !== 'object' || partial === null || Array.isArray(partial)) {
    throw new FiberHeadConfigError('(config)', 'an object', partial);
  }
  for (const key of Object.keys(partial)) {
    if (!(key in FIBER_HEAD_DEFAULTS)) {
      throw new FiberHeadConfigError(key, `a known key (${Object.keys(FIBER_HEAD_DEFAULTS).join(', ')})`, key);
    }
  }
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const p = { ...FIBER_HEAD_DEFAULTS, ...given } as Record<string, unknown>;
  const int = (field: string, min: number): number => {
    const v = p[field];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new FiberHeadConfigError(field, `an integer >= ${min}`, v);
    return v;
  };
  if (typeof p['norm'] !== 'boolean') throw new FiberHeadConfigError('norm', 'true or false', p['norm']);
  const eps = p['eps'];
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps)) throw new FiberHeadConfigError('eps', 'a finite number > 0', eps);
  return { d: int('d', 1), norm: p['norm'], hidden: int('hidden', 0), eps };
}
