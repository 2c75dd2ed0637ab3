/**
 * Typed errors of @goe/head-geometry. Each names the offending field or input.
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

/** A geometry-head config field has an unknown name or a bad value. */
export class GeometryHeadConfigError extends Error {
  override readonly name = 'GeometryHeadConfigError';
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly received: unknown,
    options?: { cause?: unknown },
  ) {
    super(`geometry-head config: '${field}' must be ${expected}; got ${describe(received)}`, options);
  }
}

/** A tensor or array handed to the geometry head, loss or metrics has the wrong shape or length. */
export class GeometryInputError extends Error {
  override readonly name = 'GeometryInputError';
  constructor(
    readonly input: string,
    readonly expected: string,
    readonly received: string,
    options?: { cause?: unknown },
  ) {
    super(`geometry input '${input}': expected ${expected}, got ${received}`, options);
  }
}
