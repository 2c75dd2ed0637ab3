/**
 * Typed errors of @goe/core. Each names the offending field or input so that a bad config or a
 * mis-shaped tensor never produces a silent wrong answer.
 */
import { ConfigFieldError, InputShapeError } from '@goe/tf';

/** A GoE config field has an unknown name or a bad value. */
export class GoeConfigError extends ConfigFieldError {
  override readonly name = 'GoeConfigError';
  constructor(field: string, expected: string, received: unknown, options?: { cause?: unknown }) {
    super('GoE', field, expected, received, options);
  }
}

/** A tensor handed to a GoE layer has the wrong shape or dtype. */
export class GoeInputError extends InputShapeError {
  override readonly name = 'GoeInputError';
  constructor(input: string, expected: string, received: string, options?: { cause?: unknown }) {
    super('GoE', input, expected, received, options);
  }
}

/** A name was registered twice in one of the registries (routers, experts, graphs). */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  constructor(
    readonly registry: string,
    readonly key: string,
    message: string,
  ) {
    super(`${registry} registry, '${key}': ${message}`);
  }
}
