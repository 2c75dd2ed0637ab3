/**
 * @goe/sequence-stem: byte-level tokens, a temporal convolution encoder with sinusoidal positions,
 * and attention-pooled aux routing features — the sequence counterpart of the volume stem, feeding
 * the same encoder and GoE core — plus the byte head and the masked-byte modelling task that train
 * behind it.
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
export {
  BYTE_HEAD_DEFAULTS,
  BYTE_VALUES,
  ByteHead,
  ByteHeadConfigError,
  ByteHeadInputError,
  byteLogProbs,
  byteLoss,
  resolveByteHeadConfig,
  type ByteHeadConfig,
  type ByteLoss,
} from './head.js';
export {
  MASK_BYTE,
  MaskedByteSampler,
  evenMaskedWindows,
  splitByPosition,
  unigramBitsPerByte,
  type MaskedByteBatch,
  type MaskedWindowOptions,
} from './masked-bytes.js';
