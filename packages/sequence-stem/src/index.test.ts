import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('@goe/sequence-stem public API', () => {
  it('exports exactly these values', () => {
    expect(Object.keys(api).sort()).toEqual(
      [
        'BYTE_HEAD_DEFAULTS',
        'BYTE_VALUES',
        'ByteHead',
        'ByteHeadConfigError',
        'ByteHeadInputError',
        'MASK_BYTE',
        'MaskedByteSampler',
        'SEQUENCE_STEM_DEFAULTS',
        'SequenceStem',
        'SequenceStemConfigError',
        'SequenceStemInputError',
        'byteLogProbs',
        'byteLoss',
        'encodeBytes',
        'evenMaskedWindows',
        'resolveByteHeadConfig',
        'resolveSequenceStemConfig',
        'shiftSequence',
        'sinusoidalPositions',
        'splitByPosition',
        'unigramBitsPerByte',
        'windowOffsets',
      ].sort(),
    );
  });
});
