/**
 * The geometry head's configuration: the voxel decoder settings shared with the other voxel heads
 * (@goe/tf `VoxelDecoderConfig`) plus per-token normals, validated by `resolveGeometryHeadConfig` with
 * errors that name the field, what it must be and what arrived.
 */
import { VOXEL_DECODER_DEFAULTS, configChecks, resolveVoxelDecoderFields, type VoxelDecoderConfig } from '@goe/tf';
import { GeometryHeadConfigError } from './errors.js';

export interface GeometryHeadConfig extends VoxelDecoderConfig {
  /** Also predict one sheet normal per token. */
  normals: boolean;
}

export type GeometryHeadConfigInput = Partial<Omit<GeometryHeadConfig, 'cell'>> & { cell?: number | readonly number[] };

/** Every default of the geometry head, in one place. */
export const GEOMETRY_HEAD_DEFAULTS: Readonly<GeometryHeadConfig> = Object.freeze({
  ...VOXEL_DECODER_DEFAULTS,
  normals: true,
});

const check = configChecks((field, expected, received) => new GeometryHeadConfigError(field, expected, received));

/**
 * Merges `partial` over `GEOMETRY_HEAD_DEFAULTS` and validates every field.
 * @throws GeometryHeadConfigError naming the first unknown key or bad value.
 */
export function resolveGeometryHeadConfig(partial: GeometryHeadConfigInput = {}): GeometryHeadConfig {
  const p = check.merge(GEOMETRY_HEAD_DEFAULTS, partial);
  return { ...resolveVoxelDecoderFields(check, p), normals: check.bool('normals', p['normals']) };
}
