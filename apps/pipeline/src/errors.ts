/** Errors the `goe` command reports with a non-zero exit and without a stack trace. */

/** A command-line flag or config value is wrong: names the field, what was expected and what came. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly field: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${field}: ${message}`, options);
  }
}

/** Training produced a NaN or infinite loss. */
export class NonFiniteLossError extends Error {
  override readonly name = 'NonFiniteLossError';
  constructor(
    readonly step: number,
    readonly part: string,
    readonly value: number,
    readonly lastCheckpoint: string | undefined,
  ) {
    super(
      `loss part '${part}' is ${value} at step ${step}; last good checkpoint: ${lastCheckpoint ?? 'none written yet'}`,
    );
  }
}

/** A checkpoint folder is missing a file or does not match the model. */
export class CheckpointError extends Error {
  override readonly name = 'CheckpointError';
  constructor(
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${message}`, options);
  }
}
