/**
 * Typed errors of @goe/head-fiber. Each names the offending field or input.
 */
import { ConfigFieldError, InputShapeError } from '@goe/tf';

/** A fiber-head config field has an unknown name or a bad value. */
export class FiberHeadConfigError extends ConfigFieldError {
  override readonly name = 'FiberHeadConfigError';
  constructor(field: string, expected: string, received: unknown, options?: { cause?: unknown }) {
    super('fiber-head', field, expected, received, options);
  }
}

/** A tensor or array handed to the fiber head, loss or metrics has the wrong shape or length. */
export class FiberInputError extends InputShapeError {
  override readonly name = 'FiberInputError';
  constructor(input: string, expected: string, received: string, options?: { cause?: unknown }) {
    super('fiber', input, expected, received, options);
  }
}
