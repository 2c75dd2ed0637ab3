/**
 * @goe/encoder: the modality-agnostic transformer encoder and the aux refinement path (GoE draft §3.1.2).
 */
export { ENCODER_DEFAULTS, resolveEncoderConfig, type AuxRefine, type EncoderConfig, type EncoderConfigInput } from './config.js';
export { EncoderConfigError, EncoderInputError } from './errors.js';
export {
  MASKED_SCORE,
  MultiHeadCrossAttention,
  MultiHeadSelfAttention,
  attendRows,
  mergeHeads,
  scaledDotProductAttention,
  splitHeads,
  type AttendOptions,
} from './attention.js';
export { dropout } from './dropout.js';
export {
  Encoder,
  EncoderBlock,
  type EncoderApplyOptions,
  type EncoderInput,
  type EncoderOutput,
} from './encoder.js';
