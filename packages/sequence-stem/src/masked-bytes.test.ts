import { describe, expect, it } from 'vitest';
import { SequenceStemInputError } from './config.js';
import {
  MASK_BYTE,
  MaskedByteSampler,
  evenMaskedWindows,
  splitByPosition,
  unigramBitsPerByte,
  type MaskedByteBatch,
} from './masked-bytes.js';

const text = new TextEncoder().encode(
  'Graph-of-Experts routes every token through a small graph of experts; the stem decides what a token is. '.repeat(4),
);

/** Checks every row of a batch against the stream it was cut from. */
function checkRows(batch: MaskedByteBatch, stream: Uint8Array, masked: number): void {
  const [b, n] = batch.shape;
  for (let r = 0; r < b; r++) {
    const start = batch.starts[r] as number;
    expect(start).toBeGreaterThanOrEqual(0);
    expect(start + n).toBeLessThanOrEqual(stream.length);
    let count = 0;
    for (let i = 0; i < n; i++) {
      const k = r * n + i;
      expect(batch.target[k]).toBe(stream[start + i]);
      if (batch.weight[k] === 1) {
        count++;
        expect(batch.input[k]).toBe(MASK_BYTE);
      } else {
        expect(batch.weight[k]).toBe(0);
        expect(batch.input[k]).toBe(stream[start + i]);
      }
    }
    expect(count).toBe(masked);
  }
}

describe('masked-byte windows', () => {
  it('the mask byte never occurs in UTF-8 text', () => {
    const all = new TextEncoder().encode('aé€😀\u{10FFFF}\uFFFF');
    expect(all.includes(MASK_BYTE)).toBe(false);
  });

  it('training windows hold the stream bytes, with exactly round(f·N) masked positions', () => {
    const s = new MaskedByteSampler(text, { length: 40, maskFraction: 0.15, seed: 1 });
    expect(s.masked).toBe(6);
    const b = s.next(5);
    expect(b.shape).toEqual([5, 40]);
    checkRows(b, text, 6);
    // Starts and masks vary between windows.
    expect(new Set(b.starts).size).toBeGreaterThan(1);
    const firstMasks = (r: number): string => Array.from(b.weight.subarray(r * 40, r * 40 + 40)).join('');
    expect(firstMasks(0)).not.toBe(firstMasks(1));
    // A tiny fraction still masks one position.
    checkRows(new MaskedByteSampler(text, { length: 10, maskFraction: 0.01, seed: 1 }).next(3), text, 1);
  });

  it('the same seed gives the same windows, and a saved state resumes the sequence', () => {
    const a = new MaskedByteSampler(text, { length: 32, maskFraction: 0.25, seed: 7 });
    const b = new MaskedByteSampler(text, { length: 32, maskFraction: 0.25, seed: 7 });
    expect(a.next(3)).toEqual(b.next(3));
    const state = a.state();
    const resumed = new MaskedByteSampler(text, { length: 32, maskFraction: 0.25, seed: 0, state });
    expect(resumed.next(4)).toEqual(a.next(4));
    expect(new MaskedByteSampler(text, { length: 32, maskFraction: 0.25, seed: 8 }).next(3)).not.toEqual(b.next(3));
  });

  it('evaluation windows are spread evenly from the first byte to the last, the same every time', () => {
    const batches = evenMaskedWindows(text, { length: 50, maskFraction: 0.2, count: 7, batch: 3, seed: 2 });
    expect(batches.map((b) => b.shape)).toEqual([[3, 50], [3, 50], [1, 50]]);
    const starts = batches.flatMap((b) => b.starts);
    const last = text.length - 50;
    expect(starts).toEqual(Array.from({ length: 7 }, (_, i) => Math.round((i * last) / 6)));
    for (const b of batches) checkRows(b, text, 10);
    expect(evenMaskedWindows(text, { length: 50, maskFraction: 0.2, count: 7, batch: 3, seed: 2 })).toEqual(batches);
    expect(evenMaskedWindows(text, { length: 50, maskFraction: 0.2, count: 1, batch: 3, seed: 2 })[0]!.starts).toEqual([0]);
  });

  it('a stream shorter than one window, or a bad fraction, is an input error naming it', () => {
    expect(() => new MaskedByteSampler(text.subarray(0, 5), { length: 8, maskFraction: 0.1, seed: 0 })).toThrow(SequenceStemInputError);
    expect(() => new MaskedByteSampler(text.subarray(0, 5), { length: 8, maskFraction: 0.1, seed: 0 })).toThrow(/input 'stream': expected at least 8 bytes/);
    expect(() => new MaskedByteSampler(text, { length: 8, maskFraction: 0, seed: 0 })).toThrow(/input 'maskFraction'/);
    expect(() => evenMaskedWindows(text, { length: 8, maskFraction: 0.5, count: 0, batch: 1, seed: 0 })).toThrow(/input 'count'/);
  });
});

describe('splitByPosition', () => {
  it('holds out the tail of every document; the parts rebuild each document and never overlap', () => {
    const docs = [new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), new Uint8Array([21, 22, 23, 24]), new Uint8Array([31])];
    const { train, validation } = splitByPosition(docs, 0.3, 0);
    // floor(10·0.3) = 3, floor(4·0.3) = 1, floor(1·0.3) = 0 bytes held out.
    expect(Array.from(train)).toEqual([1, 2, 3, 4, 5, 6, 7, 0, 21, 22, 23, 0, 31]);
    expect(Array.from(validation)).toEqual([8, 9, 10, 0, 24]);
    expect(() => splitByPosition(docs, 1)).toThrow(/validationFraction/);
  });
});

describe('unigramBitsPerByte', () => {
  it('is the cross-entropy of add-one byte frequencies on the masked targets', () => {
    const train = new Uint8Array([65, 65, 65, 66]);
    const batch: MaskedByteBatch = {
      input: new Int32Array([MASK_BYTE, 66, MASK_BYTE]),
      target: new Int32Array([65, 66, 67]),
      weight: new Float32Array([1, 0, 1]),
      starts: [0],
      shape: [1, 3],
    };
    const total = 4 + 256;
    const want = -(Math.log2(4 / total) + Math.log2(1 / total)) / 2;
    expect(unigramBitsPerByte(train, [batch])).toBeCloseTo(want, 12);
  });
});
