/**
 * @goe/head-fiber: sign-free papyrus fibre direction per token, its loss, angular-error metrics, target
 * derivation from voxel labels and the classical structure-tensor estimate.
 */
export { FIBER_HEAD_DEFAULTS, FIBER_OUTPUTS, resolveFiberHeadConfig, type FiberHeadConfig, type FiberHeadConfigInput, type FiberOutput } from './config.js';
export { FiberHeadConfigError, FiberInputError } from './errors.js';
export { FiberHead, fiberLoss, fiberTensorLoss, tensorFibers, type FiberLossOptions } from './head.js';
export {
  SHEET_FEATURE_NAMES,
  SHEET_FEATURE_WIDTH,
  sheetFrameFeatures,
  sheetFrameFibers,
  type SheetFrame,
  type SheetFrameOptions,
} from './features.js';
export {
  angularErrorDegrees,
  fiberErrorByFace,
  fiberTargetsFromVoxels,
  structureTensorFibers,
  SYMMETRIC_ENTRIES,
  symmetricEigen3,
  type AngularError,
  type FiberErrorByFace,
  type FiberTargets,
  type SymmetricEigen3,
  type TokenGrid,
} from './metrics.js';
