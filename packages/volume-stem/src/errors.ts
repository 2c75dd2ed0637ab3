/**
 * Typed errors of @goe/volume-stem. Each names the offending field or input so that a bad config or a
 * mis-shaped volume never produces a silent wrong answer.
 */
import { ConfigFieldError, InputShapeError } from '@goe/tf';

/** A volume-stem config field has an unknown name or a bad value. */
export class VolumeStemConfigError extends ConfigFieldError {
  override readonly name = 'VolumeStemConfigError';
  constructor(field: string, expected: string, received: unknown, options?: { cause?: unknown }) {
    super('volume-stem', field, expected, received, options);
  }
}

/** A volume handed to the stem has the wrong rank, channels or a size the token cell does not divide. */
export class VolumeStemInputError extends InputShapeError {
  override readonly name = 'VolumeStemInputError';
  constructor(input: string, expected: string, received: string, options?: { cause?: unknown }) {
    super('volume-stem', input, expected, received, options);
  }
}
