/**
 * @goe/head-ink: token grid -> voxel ink logits, the BCE + Dice loss and Kaggle-style F0.5 metrics.
 */
export { INK_HEAD_DEFAULTS, resolveInkHeadConfig, type InkHeadConfig, type InkHeadConfigInput } from './config.js';
export { InkHeadConfigError, InkInputError } from './errors.js';
export { SeparableSmoothing, unpatchifyCells, type TokenGrid } from './upsample.js';
export { InkHead } from './head.js';
export { inkLoss, type InkLoss, type InkLossOptions } from './loss.js';
export {
  INK_THRESHOLDS,
  inkMetrics,
  rankAuc,
  type InkMetricOptions,
  type InkMetrics,
  type InkThresholdPoint,
} from './metrics.js';
