/**
 * @goe/head-geometry: papyrus sheet mask per voxel and sheet normals per token, their loss, Dice and
 * normal angular error, and surface distances (mean, 95th percentile, maximum) between sheet masks.
 */
export {
  GEOMETRY_HEAD_DEFAULTS,
  resolveGeometryHeadConfig,
  type GeometryHeadConfig,
  type GeometryHeadConfigInput,
} from './config.js';
export { GeometryHeadConfigError, GeometryInputError } from './errors.js';
// The voxel decoder's building blocks live in @goe/tf (shared with the other per-voxel head); re-exported
// here because they are part of this package's contract.
export { SeparableSmoothing, unpatchifyCells, type TokenGrid } from '@goe/tf';
export {
  GeometryHead,
  geometryLoss,
  type GeometryLoss,
  type GeometryOutput,
  type GeometryTargets,
} from './head.js';
export { dice, normalAngularError, type NormalAngularError } from './metrics.js';
export {
  squaredDistanceTransform,
  surfaceDistance,
  surfaceVoxels,
  type SurfaceDistance,
  type SurfaceDistanceOptions,
} from './surface.js';
