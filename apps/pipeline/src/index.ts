/**
 * @goe/pipeline: the `goe` command's building blocks — configs, the training loop and its tasks (ink
 * segmentation behind the volume stem, masked-byte modelling behind the sequence stem), checkpoints,
 * segmentation and evaluation over scroll chunks, plots — for use from scripts as well as from the CLI.
 */
export { main, mainHelp } from './cli.js';
export {
  DEFAULT_TRAIN_CONFIG,
  learningRate,
  resolveTrainConfig,
  parseHeads,
  type DataConfig,
  type DeepPartial,
  type ModelConfig,
  type OptimConfig,
  type TextDataConfig,
  type TrainConfig,
} from './config.js';
export { CheckpointError, ConfigError, NonFiniteLossError } from './errors.js';
export {
  CHECKPOINT_FORMAT,
  assignVariables,
  loadCheckpoint,
  loadModel,
  saveCheckpoint,
  saveModelCheckpoint,
  type CheckpointManifest,
  type ModelCheckpointInput,
  type RestoredModel,
} from './checkpoint.js';
export {
  evaluate,
  formatEvalTable,
  formatRegion,
  inkLabelCandidates,
  besideCandidates,
  AngleAccumulator,
  type AngleSummary,
  type FiberEvalMetrics,
  type GeometryEvalMetrics,
  type EvalOptions,
  type EvalResult,
} from './eval.js';
export { findProjectRoot, projectDocumentation, readTextFiles, type TextFile } from './docs.js';
export {
  ByteModel,
  VolumeModel,
  buildModel,
  buildTrunk,
  normaliseIntensity,
  patchBatch,
  ROUTER_HEALTH_KEYS,
  type ByteForward,
  type VolumeForward,
  type PatchBatch,
  type PatchBatchOptions,
  type RouterHealth,
  type VolumeLossParts,
  type VolumePredictions,
  type PipelineModel,
  type Trunk,
} from './model.js';
export { lineChartSvg, niceTicks, writeLineChartPng, type LineChartOptions, type Series } from './plot.js';
export { Progress, formatDuration } from './progress.js';
export {
  KNOWN_HEADS,
  SEGMENT_DEFAULTS,
  checkpointThreshold,
  dtypeMax,
  loadVolumeModel,
  parseShard,
  regionBlocks,
  segment,
  segmentFragmentWith,
  segmentGrid,
  segmentVolume,
  shardBlocks,
  type FragmentOutput,
  type SegmentGrid,
  type SegmentOptions,
  type SegmentResult,
  type SegmentVolumeOptions,
} from './segment.js';
export {
  FIBER_CHANNELS,
  encodeFiber,
  probabilityByte,
  tokenTensorsToVoxels,
  volumePredictor,
  type PredictorOutput,
  type WindowPredictor,
} from './predictor.js';
export { sequenceTask, type WindowBatch } from './sequence-task.js';
export { TRAIN_PRESETS, layerPreset, mergePartial, parseConfigText, presetConfig, readConfigFile, type TrainPreset } from './presets.js';
export { haltingByClass, tokenClassesFromLabels, writeHaltingPng, type ClassHalting, type TokenClasses } from './halting.js';
export {
  STEM_KINDS,
  VOLUME_HEADS,
  volumeHeads,
  resolveModelSpec,
  restoreModelSpec,
  type ModelSpec,
  type SequenceModelSpec,
  type StemKind,
  type VolumeHeadName,
  type VolumeModelSpec,
} from './spec.js';
export type { LossParts, TrainTask, ValidationResult } from './task.js';
export { createTask, prepareRun, resumeTraining, runTraining, train, type MetricsRecord, type ResumePoint, type TrainOptions, type TrainResult } from './train.js';
export { volumeTask } from './volume-task.js';
