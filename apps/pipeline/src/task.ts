/**
 * What the training loop needs from a modality: batches, the loss of a batch, validation and a data
 * state to resume from. The loop (train.ts) owns everything else — optimiser, schedule, clipping,
 * progress line, metrics.jsonl, checkpoints, routing pictures and the loss curve — so the volume and
 * the sequence stem train through one loop.
 */
import type { ProvenanceArrays } from '@goe/core';
import type { tf } from '@goe/tf';
import type { TokenClasses } from './halting.js';
import type { PipelineModel } from './model.js';

/** Loss parts of one batch; `total` is what the optimiser sees, the rest are logged. */
export type LossParts = { total: tf.Scalar } & Record<string, tf.Scalar>;

/** The result of one validation: metrics for `metrics.jsonl` (with `loss`) and a line for the log. */
export interface ValidationResult {
  metrics: { loss: number } & Record<string, number>;
  line: string;
}

export interface TrainTask<B> {
  readonly model: PipelineModel;
  /** What the progress line counts (`patches`, `bytes`) and how many of them a step consumes. */
  readonly unit: string;
  readonly perStep: number;
  /** Loss parts shown on the progress line beside the total. */
  readonly shown: readonly string[];
  /** A loss part drawn beside the total in `loss.png`, if any. */
  readonly plotted?: { key: string; name: string };
  /** File the validation writes its example predictions to. */
  readonly predictions: string;
  /** A line describing the data, logged at the start. */
  readonly description: string;
  /** The next training batch (tensors the caller disposes with `disposeBatch`). */
  nextBatch(): Promise<B>;
  /** Forward pass and loss of `batch`; called inside the loop's `tf.tidy`/`variableGrads`. */
  losses(batch: B, training: boolean): LossParts;
  disposeBatch(batch: B): void;
  /** Scores the fixed validation set and writes the example predictions. */
  validate(step: number): Promise<ValidationResult>;
  /** How the first validation batch was routed. */
  routing(): Promise<ProvenanceArrays>;
  /** A class per token of that batch (e.g. air, papyrus, ink), for halting depth per class. */
  tokenClasses?(): TokenClasses;
  /** JSON state of the data stream (saved in checkpoints). */
  state(): unknown;
  /** Continues the batch sequence from a `state()` saved in a checkpoint (`goe train --resume`). */
  restore(state: unknown): void;
  /** Frees the validation tensors and stops any prefetching. */
  close(): void;
}
