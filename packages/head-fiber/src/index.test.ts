import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('@goe/head-fiber public API', () => {
  it('exports exactly these runtime names (a change here is a change to the package contract)', () => {
    expect(Object.keys(api).sort()).toEqual([
      'FIBER_HEAD_DEFAULTS',
      'FIBER_OUTPUTS',
      'FiberHead',
      'FiberHeadConfigError',
      'FiberInputError',
      'SHEET_FEATURE_NAMES',
      'SHEET_FEATURE_WIDTH',
      'SYMMETRIC_ENTRIES',
      'angularErrorDegrees',
      'fiberErrorByFace',
      'fiberLoss',
      'fiberTargetsFromVoxels',
      'fiberTensorLoss',
      'resolveFiberHeadConfig',
      'sheetFrameFeatures',
      'sheetFrameFibers',
      'structureTensorFibers',
      'symmetricEigen3',
      'tensorFibers',
    ]);
  });
});
