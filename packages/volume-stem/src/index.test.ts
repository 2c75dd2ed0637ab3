import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('@goe/volume-stem public API', () => {
  it('exports exactly these runtime names (a change here is a change to the package contract)', () => {
    expect(Object.keys(api).sort()).toEqual([
      'DESCRIPTOR_NAMES',
      'VOLUME_STEM_DEFAULTS',
      'VolumeStem',
      'VolumeStemConfigError',
      'VolumeStemInputError',
      'cellDescriptors',
      'cellMean',
      'descriptorCount',
      'makeTokenGrid',
      'neighbourhoodColumns',
      'patchifyRows',
      'positionalWavelengths',
      'resolveVolumeStemConfig',
      'sinusoidalPositions3d',
      'symmetricEigenvalues3',
      'tapColumn',
      'tokenCellVoxels',
      'tokenCentresUm',
      'tokenCount',
      'voxelFeatures',
    ]);
  });
});
