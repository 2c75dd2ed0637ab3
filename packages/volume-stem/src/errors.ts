/**
 * Typed errors of @goe/volume-stem. Each names the offending field or input so that a bad config or a
 * mis-shaped volume never produces a silent wrong answer.
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

/** A volume-stem config field has an unknown name or a bad value. */
export class VolumeStemConfigError extends Error {
  override readonly name = 'VolumeStemConfigError';
  constructor(
    /** The field, e.g. `cell` or `convChannels`. */
    readonly field: string,
    /** What the field must be, in words. */
    readonly expected: string,
    /** What arrived. */
    readonly received: unknown,
    options?: { cause?: unknown },
  ) {
    super(`volume-stem config: '${field}' must be ${expected}; got ${describe(received)}`, options);
  }
}

/** A volume handed to the stem has the wrong rank, channels or a size the token cell does not divide. */
export class VolumeStemInputError extends Error {
  override readonly name = 'VolumeStemInputError';
  constructor(
    /** Which input, e.g. `x` or `origin`. */
    readonly input: string,
    readonly expected: string,
    readonly received: string,
    options?: { cause?: unknown },
  ) {
    super(`volume-stem input '${input}': expected ${expected}, got ${received}`, options);
  }
}
