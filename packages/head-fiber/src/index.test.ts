import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('@goe/head-fiber public API', () => {
  it('exports exactly these runtime names (a change here is a change to the package contract)', () => {
    expect(Object.keys(api).sort()).toEqual([
      'FIBER_HEAD_DEFAULTS',
      'FiberHead',
      'FiberHeadConfigError',
      'FiberInputError',
      'angularErrorDegrees',
      'fiberErrorByFace',
      'fiberLoss',
      'fiberTargetsFromVoxels',
      'resolveFiberHeadConfig',
      'structureTensorFibers',
      'symmetricEigen3',
    ]);
  });
});
