/**
 * The ink head's configuration: the voxel decoder settings shared with the other voxel heads
 * (@goe/tf `VoxelDecoderConfig`), validated by `resolveInkHeadConfig` with errors that name the field,
 * what it must be and what arrived.
 */
import { VOXEL_DECODER_DEFAULTS, configChecks, resolveVoxelDecoderFields, type VoxelDecoderConfig } from '@goe/tf';
import { InkHeadConfigError } from './errors.js';

export type InkHeadConfig = VoxelDecoderConfig;

export type InkHeadConfigInput = Partial<Omit<InkHeadConfig, 'cell'>> & { cell?: number | readonly number[] };

/** Every default of the ink head, in one place. */
export const INK_HEAD_DEFAULTS: Readonly<InkHeadConfig> = VOXEL_DECODER_DEFAULTS;

const check = configChecks((field, expected, received) => new InkHeadConfigError(field, expected, received));

/**
 * Merges `partial` over `INK_HEAD_DEFAULTS` and validates every field.
 * @throws InkHeadConfigError naming the first unknown key or bad value.
 */
export function resolveInkHeadConfig(partial: InkHeadConfigInput = {}): InkHeadConfig {
  return resolveVoxelDecoderFields(check, check.merge(INK_HEAD_DEFAULTS, partial));
}
