/**
 * Bases of the typed config and input errors every model package throws, and the value formatter their
 * messages share. Each package subclasses these under its own name (`VolumeStemConfigError`, …) so that
 * callers can tell which package refused, while the message format stays one format:
 *
 *   `<scope> config: '<field>' must be <expected>; got <received>`
 *   `<scope> input '<input>': expected <expected>, got <received>`
 */

/**
 * How a received value is shown in an error message: strings in single quotes, `undefined` as such,
 * everything else as JSON (falling back to `String` for values JSON cannot show, e.g. BigInt or cycles).
 */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (v === undefined) return 'undefined';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** A config field has an unknown name or a bad value. */
export class ConfigFieldError extends Error {
  override readonly name: string = 'ConfigFieldError';
  constructor(
    /** Which package's config, as it appears in the message, e.g. `volume-stem` or `GoE`. */
    readonly scope: string,
    /** The field (dotted for nested ones), e.g. `cell` or `regularisers.balance`. */
    readonly field: string,
    /** What the field must be, in words. */
    readonly expected: string,
    /** What arrived. */
    readonly received: unknown,
    options?: { cause?: unknown },
  ) {
    super(`${scope} config: '${field}' must be ${expected}; got ${describeValue(received)}`, options);
  }
}

/** A tensor or array handed to a package has the wrong shape, dtype, length or values. */
export class InputShapeError extends Error {
  override readonly name: string = 'InputShapeError';
  constructor(
    /** Which package, as it appears in the message, e.g. `encoder` or `ink`. */
    readonly scope: string,
    /** Which input, e.g. `tokens`, `aux` or `mask`. */
    readonly input: string,
    /** What it must be, in words. */
    readonly expected: string,
    /** What arrived, in words (usually a shape). */
    readonly received: string,
    options?: { cause?: unknown },
  ) {
    super(`${scope} input '${input}': expected ${expected}, got ${received}`, options);
  }
}

/** Builds the error a failed input check throws, e.g. `(i, e, r) => new FiberInputError(i, e, r)`. */
export type InputErrorFactory = (input: string, expected: string, received: string) => Error;
