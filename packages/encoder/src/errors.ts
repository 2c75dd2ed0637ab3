/**
 * Typed errors of @goe/encoder. Each names the offending field or input.
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

/** An encoder config field has an unknown name or a bad value. */
export class EncoderConfigError extends Error {
  override readonly name = 'EncoderConfigError';
  constructor(
    /** The field, e.g. `heads`. */
    readonly field: string,
    /** What the field must be, in words. */
    readonly expected: string,
    /** What arrived. */
    readonly received: unknown,
    options?: { cause?: unknown },
  ) {
    super(`encoder config: '${field}' must be ${expected}; got ${describe(received)}`, options);
  }
}

/** A tensor handed to the encoder has the wrong shape. */
export class EncoderInputError extends Error {
  override readonly name = 'EncoderInputError';
  constructor(
    /** Which input, e.g. `tokens`, `aux` or `mask`. */
    readonly input: string,
    readonly expected: string,
    readonly received: string,
    options?: { cause?: unknown },
  ) {
    super(`encoder input '${input}': expected ${expected}, got ${received}`, options);
  }
}
