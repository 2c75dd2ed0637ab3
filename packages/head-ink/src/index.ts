/**
 * @goe/head-ink: token grid -> voxel ink logits, the depth collapse to a 2D map for fragments, the
 * BCE + Dice loss, Kaggle-style F0.5 metrics and the competition's run-length encoding.
 */
export { INK_HEAD_DEFAULTS, resolveInkHeadConfig, type InkHeadConfig, type InkHeadConfigInput } from './config.js';
export { InkHeadConfigError, InkInputError } from './errors.js';
// The voxel decoder's building blocks live in @goe/tf (shared with the other per-voxel head); re-exported
// here because they are part of this package's contract.
export { SeparableSmoothing, unpatchifyCells, type TokenGrid } from '@goe/tf';
export { InkHead } from './head.js';
export {
  DEPTH_COLLAPSE_DEFAULTS,
  DEPTH_COLLAPSE_MODES,
  collapseDepth,
  resolveDepthCollapse,
  type DepthCollapseConfig,
  type DepthCollapseInput,
  type DepthCollapseMode,
} from './collapse.js';
export { inkLoss, type InkLoss, type InkLossOptions } from './loss.js';
export {
  INK_THRESHOLDS,
  inkMetrics,
  rankAuc,
  type InkMetricOptions,
  type InkMetrics,
  type InkThresholdPoint,
} from './metrics.js';
export { rleDecode, rleEncode } from './rle.js';
export {
  AUC_BINS,
  AUC_LOGIT_RANGE,
  InkMetricAccumulator,
  type InkMetricAccumulatorOptions,
  type StreamedInkMetrics,
} from './stream.js';
