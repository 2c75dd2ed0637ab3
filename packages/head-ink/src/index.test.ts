import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('@goe/head-ink public API', () => {
  it('exports exactly these runtime names (a change here is a change to the package contract)', () => {
    expect(Object.keys(api).sort()).toEqual([
      'AUC_BINS',
      'AUC_LOGIT_RANGE',
      'DEPTH_COLLAPSE_DEFAULTS',
      'DEPTH_COLLAPSE_MODES',
      'INK_HEAD_DEFAULTS',
      'INK_THRESHOLDS',
      'InkHead',
      'InkHeadConfigError',
      'InkInputError',
      'InkMetricAccumulator',
      'SeparableSmoothing',
      'collapseDepth',
      'inkLoss',
      'inkMetrics',
      'rankAuc',
      'resolveDepthCollapse',
      'resolveInkHeadConfig',
      'rleDecode',
      'rleEncode',
      'unpatchifyCells',
    ]);
  });
});
