/**
 * Typed errors of @goe/core. Each names the offending field or input so that a bad config or a
 * mis-shaped tensor never produces a silent wrong answer.
 */

/** A GoE config field has an unknown name or a bad value. */
export class GoeConfigError extends Error {
  override readonly name = 'GoeConfigError';
  constructor(
    /** Dotted path of the field, e.g. `k` or `regularisers.balance`. */
    readonly field: string,
    /** What the field must be, in words. */
    readonly expected: string,
    /** What arrived. */
    readonly received: unknown,
    options?: { cause?: unknown },
  ) {
    super(`GoE config: '${field}' must be ${expected}; got ${describe(received)}`, options);
  }
}

/** A tensor handed to a GoE layer has the wrong shape or dtype. */
export class GoeInputError extends Error {
  override readonly name = 'GoeInputError';
  constructor(
    /** Which input, e.g. `tokens` or `aux`. */
    readonly input: string,
    readonly expected: string,
    readonly received: string,
    options?: { cause?: unknown },
  ) {
    super(`GoE input '${input}': expected ${expected}, got ${received}`, options);
  }
}

/** A name was registered twice in one of the registries (routers, experts, graphs). */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    readonly registry: string,
    readonly key: string,
    message: string,
  ) {
    super(`${registry} registry, '${key}': ${message}`);
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (v === undefined) return 'undefined';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
