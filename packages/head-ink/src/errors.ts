/**
 * Typed errors of @goe/head-ink. Each names the offending field or input.
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

/** An ink-head config field has an unknown name or a bad value. */
export class InkHeadConfigError extends Error {
  override readonly name = 'InkHeadConfigError';
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly received: unknown,
    options?: { cause?: unknown },
  ) {
    super(`ink-head config: '${field}' must be ${expected}; got ${describe(received)}`, options);
  }
}

/** A tensor or array handed to the ink head, loss or metrics has the wrong shape or length. */
export class InkInputError extends Error {
  override readonly name = 'InkInputError';
  constructor(
    readonly input: string,
    readonly expected: string,
    readonly received: string,
    options?: { cause?: unknown },
  ) {
    super(`ink input '${input}': expected ${expected}, got ${received}`, options);
  }
}
