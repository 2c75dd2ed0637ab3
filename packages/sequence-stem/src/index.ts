/**
 * @goe/sequence-stem: byte-level tokens, a temporal convolution encoder with sinusoidal positions,
 * and attention-pooled aux routing features — the sequence counterpart of the volume stem, feeding
 * the same encoder and GoE core.
 */
export { encodeBytes, sinusoidalPositions, type ByteBatch } from './bytes.js';
export {
  SEQUENCE_STEM_DEFAULTS,
  SequenceStemConfigError,
  SequenceStemInputError,
  resolveSequenceStemConfig,
  type SequenceStemConfig,
} from './config.js';
export {
  SequenceStem,
  shiftSequence,
  windowOffsets,
  type SequenceStemApplyOptions,
  type SequenceStemOutput,
} from './stem.js';
