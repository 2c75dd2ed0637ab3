/**
 * @goe/pipeline: the `goe` command's building blocks — configs, the training loop, checkpoints,
 * segmentation, plots — for use from scripts as well as from the CLI.
 */
export { main, mainHelp } from './cli.js';
export {
  DEFAULT_TRAIN_CONFIG,
  learningRate,
  resolveTrainConfig,
  type DataConfig,
  type DeepPartial,
  type ModelConfig,
  type OptimConfig,
  type TrainConfig,
} from './config.js';
export { CheckpointError, ConfigError, NonFiniteLossError } from './errors.js';
export { CHECKPOINT_FORMAT, assignVariables, loadCheckpoint, saveCheckpoint, type CheckpointManifest } from './checkpoint.js';
export { InkModel, normaliseIntensity, patchBatch, type InkForward, type PatchBatch } from './model.js';
export { lineChartSvg, niceTicks, writeLineChartPng, type LineChartOptions, type Series } from './plot.js';
export { Progress, formatDuration } from './progress.js';
export { segment, type SegmentOptions, type SegmentResult } from './segment.js';
export { train, type MetricsRecord, type TrainOptions, type TrainResult } from './train.js';
