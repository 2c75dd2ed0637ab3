/**
 * Typed errors of @goe/head-ink. Each names the offending field or input.
 */
import { ConfigFieldError, InputShapeError } from '@goe/tf';

/** An ink-head config field has an unknown name or a bad value. */
export class InkHeadConfigError extends ConfigFieldError {
  override readonly name = 'InkHeadConfigError';
  constructor(field: string, expected: string, received: unknown, options?: { cause?: unknown }) {
    super('ink-head', field, expected, received, options);
  }
}

/** A tensor or array handed to the ink head, loss or metrics has the wrong shape or length. */
export class InkInputError extends InputShapeError {
  override readonly name = 'InkInputError';
  constructor(input: string, expected: string, received: string, options?: { cause?: unknown }) {
    super('ink', input, expected, received, options);
  }
}
