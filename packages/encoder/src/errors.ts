/**
 * Typed errors of @goe/encoder. Each names the offending field or input.
 */
import { ConfigFieldError, InputShapeError } from '@goe/tf';

/** An encoder config field has an unknown name or a bad value. */
export class EncoderConfigError extends ConfigFieldError {
  override readonly name = 'EncoderConfigError';
  constructor(field: string, expected: string, received: unknown, options?: { cause?: unknown }) {
    super('encoder', field, expected, received, options);
  }
}

/** A tensor handed to the encoder has the wrong shape. */
export class EncoderInputError extends InputShapeError {
  override readonly name = 'EncoderInputError';
  constructor(input: string, expected: string, received: string, options?: { cause?: unknown }) {
    super('encoder', input, expected, received, options);
  }
}
