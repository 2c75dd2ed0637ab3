import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('@goe/encoder public API', () => {
  it('exports exactly these runtime names (a change here is a change to the package contract)', () => {
    expect(Object.keys(api).sort()).toEqual([
      'ENCODER_DEFAULTS',
      'Encoder',
      'EncoderBlock',
      'EncoderConfigError',
      'EncoderInputError',
      'MASKED_SCORE',
      'MultiHeadCrossAttention',
      'MultiHeadSelfAttention',
      'attendRows',
      'dropout',
      'mergeHeads',
      'resolveEncoderConfig',
      'scaledDotProductAttention',
      'splitHeads',
    ]);
  });
});
