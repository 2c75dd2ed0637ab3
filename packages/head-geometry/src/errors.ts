/**
 * Typed errors of @goe/head-geometry. Each names the offending field or input.
 */
import { ConfigFieldError, InputShapeError } from '@goe/tf';

/** A geometry-head config field has an unknown name or a bad value. */
export class GeometryHeadConfigError extends ConfigFieldError {
  override readonly name = 'GeometryHeadConfigError';
  constructor(field: string, expected: string, received: unknown, options?: { cause?: unknown }) {
    super('geometry-head', field, expected, received, options);
  }
}

/** A tensor or array handed to the geometry head, loss or metrics has the wrong shape or length. */
export class GeometryInputError extends InputShapeError {
  override readonly name = 'GeometryInputError';
  constructor(input: string, expected: string, received: string, options?: { cause?: unknown }) {
    super('geometry', input, expected, received, options);
  }
}
