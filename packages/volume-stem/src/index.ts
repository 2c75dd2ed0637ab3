/**
 * @goe/volume-stem: X-ray CT patches -> tokens, positions and aux routing features (GoE draft §3.1.1).
 */
export {
  VOLUME_STEM_DEFAULTS,
  resolveVolumeStemConfig,
  tokenCellVoxels,
  type ConvLayerConfig,
  type ConvLayerConfigInput,
  type StemActivation,
  type Triple,
  type VolumeStemConfig,
  type VolumeStemConfigInput,
} from './config.js';
export { VolumeStemConfigError, VolumeStemInputError } from './errors.js';
export { makeTokenGrid, tokenCount, type TokenGrid } from './grid.js';
export {
  positionalWavelengths,
  sinusoidalPositions3d,
  tokenCentresUm,
  type PositionalOptions,
} from './positions.js';
export { cellMean, neighbourhoodColumns, patchifyRows, tapColumn } from './neighbourhood.js';
export {
  DESCRIPTOR_NAMES,
  cellDescriptors,
  descriptorCount,
  symmetricEigenvalues3,
  voxelFeatures,
} from './descriptors.js';
export { VolumeStem, type VolumeStemApplyOptions, type VolumeStemOutput } from './stem.js';
