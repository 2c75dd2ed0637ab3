/**
 * Typed errors of @goe/head-fiber. Each names the offending field or input.
 */

function describe(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (v === undefined) return 'undefined';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** A fiber-head config field has an unknown name or a bad value. */
export class FiberHeadConfigError extends Error {
  override readonly name = 'FiberHeadConfigError';
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly received: unknown,
    options?: { cause?: unknown },
  ) {
    super(`fiber-head config: '${field}' must be ${expected}; got ${describe(received)}`, options);
  }
}

/** A tensor or array handed to the fiber head, loss or metrics has the wrong shape or length. */
export class FiberInputError extends Error {
  override readonly name = 'FiberInputError';
  constructor(
    readonly input: string,
    readonly expected: string,
    readonly received: string,
    options?: { cause?: unknown },
  ) {
    super(`fiber input '${input}': expected ${expected}, got ${received}`, options);
  }
}
