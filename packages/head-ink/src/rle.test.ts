import { describe, expect, it } from 'vitest';
import { makeRng } from '@goe/tf';
import { InkInputError } from './errors.js';
import { rleDecode, rleEncode } from './rle.js';

/** The definition, written as plainly as possible: every maximal run of ink, 1-based. */
function naiveRuns(mask: ArrayLike<number>): [number, number][] {
  const runs: [number, number][] = [];
  for (let i = 0; i < mask.length; i++) {
    if ((mask[i] as number) > 0.5 && (i === 0 || (mask[i - 1] as number) <= 0.5)) {
      let j = i;
      while (j < mask.length && (mask[j] as number) > 0.5) j++;
      runs.push([i + 1, j - i]);
    }
  }
  return runs;
}

describe('competition run-length encoding', () => {
  it('encodes hand-made masks, runs at the first and last pixel included', () => {
    // 3 x 4, row-major: row 0 = 1 1 0 0, row 1 = 0 1 1 1, row 2 = 1 0 0 1
    const m = [1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1];
    expect(rleEncode(m)).toBe('1 2 6 4 12 1');
    expect(rleEncode(new Array(12).fill(0))).toBe('');
    expect(rleEncode(new Array(12).fill(1))).toBe('1 12');
    // Probabilities: strictly above the threshold is ink.
    expect(rleEncode([0.2, 0.5, 0.51, 0.9, 0.1])).toBe('3 2');
    expect(rleEncode([0.2, 0.5, 0.51, 0.9, 0.1], 0.3)).toBe('2 3');
  });

  it('decodes hand-made encodings, and decoding inverts encoding on random masks of several densities', () => {
    expect(Array.from(rleDecode('1 2 6 4 12 1', 3, 4))).toEqual([1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1]);
    expect(Array.from(rleDecode('', 2, 2))).toEqual([0, 0, 0, 0]);
    expect(Array.from(rleDecode('  1 4 ', 2, 2))).toEqual([1, 1, 1, 1]);
    const rng = makeRng(5);
    for (const p of [0.02, 0.3, 0.7, 0.98]) {
      const [h, w] = [37, 53];
      const mask = Uint8Array.from({ length: h * w }, () => (rng.next() < p ? 1 : 0));
      const rle = rleEncode(mask);
      expect(rle.split(' ').filter(Boolean).map(Number)).toEqual(naiveRuns(mask).flat());
      expect(rleDecode(rle, h, w)).toEqual(mask);
    }
  });

  it('bad encodings and sizes are typed errors naming the problem', () => {
    const bad: [string, number, number, RegExp][] = [
      ['1', 2, 2, /even number/],
      ['0 2', 2, 2, /positive integer pairs.*'0 2'/],
      ['1 x', 2, 2, /positive integer pairs/],
      ['1.5 2', 2, 2, /positive integer pairs/],
      ['3 1 1 1', 2, 2, /increasing order.*run 2/],
      ['1 2 2 1', 2, 2, /increasing order/],
      ['3 3', 2, 2, /inside the 2x2 image.*ends at pixel 5/],
    ];
    for (const [rle, h, w, re] of bad) {
      expect(() => rleDecode(rle, h, w), rle).toThrow(InkInputError);
      expect(() => rleDecode(rle, h, w), rle).toThrow(re);
    }
    expect(() => rleDecode('', 0, 2)).toThrow(/height/);
    expect(() => rleDecode('', 2, 1.5)).toThrow(/width/);
    expect(() => rleEncode([0, NaN])).toThrow(/NaN at pixel 1/);
  });
});
