import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('@goe/head-geometry public API', () => {
  it('exports exactly these runtime names (a change here is a change to the package contract)', () => {
    expect(Object.keys(api).sort()).toEqual([
      'GEOMETRY_HEAD_DEFAULTS',
      'GeometryHead',
      'GeometryHeadConfigError',
      'GeometryInputError',
      'SeparableSmoothing',
      'dice',
      'geometryLoss',
      'normalAngularError',
      'resolveGeometryHeadConfig',
      'squaredDistanceTransform',
      'surfaceDistance',
      'surfaceVoxels',
      'unpatchifyCells',
    ]);
  });
});
