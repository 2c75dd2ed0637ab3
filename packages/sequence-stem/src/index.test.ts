import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('@goe/sequence-stem public API', () => {
  it('exports exactly these values', () => {
    expect(Object.keys(api).sort()).toEqual(
      [
        'SEQUENCE_STEM_DEFAULTS',
        'SequenceStem',
        'SequenceStemConfigError',
        'SequenceStemInputError',
        'encodeBytes',
        'resolveSequenceStemConfig',
        'shiftSequence',
        'sinusoidalPositions',
        'windowOffsets',
      ].sort(),
    );
  });
});
