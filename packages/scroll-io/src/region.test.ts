import { describe, expect, it } from 'vitest';
import { chunksTouching, copyBox, mapLimit } from './region.js';

describe('copyBox', () => {
  it('matches element-wise index arithmetic for 1-D to 4-D boxes', () => {
    for (const n of [1, 2, 3, 4]) {
      const srcShape = [5, 4, 6, 3].slice(0, n);
      const dstShape = [4, 6, 3, 5].slice(0, n);
      const box = [2, 3, 2, 2].slice(0, n);
      const srcStart = [1, 0, 3, 1].slice(0, n);
      const dstStart = [2, 1, 0, 2].slice(0, n);
      const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
      const src = Float32Array.from({ length: size(srcShape) }, (_, i) => i + 0.5);
      const dst = new Float32Array(size(dstShape)).fill(-1);
      copyBox(src, srcShape, srcStart, dst, dstShape, dstStart, box);
      const want = new Float32Array(size(dstShape)).fill(-1);
      const flat = (idx: number[], shape: number[]) => idx.reduce((a, v, i) => a * shape[i] + v, 0);
      for (let k = 0; k < size(box); k++) {
        const idx: number[] = [];
        let r = k;
        for (let i = n - 1; i >= 0; i--) {
          idx[i] = r % box[i];
          r = Math.floor(r / box[i]);
        }
        want[flat(idx.map((v, i) => v + dstStart[i]), dstShape)] = src[flat(idx.map((v, i) => v + srcStart[i]), srcShape)];
      }
      expect(Array.from(dst)).toEqual(Array.from(want));
    }
  });
});

describe('copyBox with merged contiguous dimensions', () => {
  // Element-wise reference, independent of the row/plane merging in copyBox.
  const reference = (src: Uint16Array, srcShape: number[], srcStart: number[], dst: Uint16Array, dstShape: number[], dstStart: number[], box: number[]) => {
    const n = box.length;
    const total = box.reduce((a, b) => a * b, 1);
    const flat = (idx: number[], shape: number[]) => idx.reduce((a, v, i) => a * shape[i] + v, 0);
    for (let k = 0; k < total; k++) {
      const idx: number[] = [];
      let r = k;
      for (let i = n - 1; i >= 0; i--) {
        idx[i] = r % box[i];
        r = Math.floor(r / box[i]);
      }
      dst[flat(idx.map((v, i) => v + dstStart[i]), dstShape)] = src[flat(idx.map((v, i) => v + srcStart[i]), srcShape)];
    }
  };
  it('matches the element-wise copy when trailing dimensions are whole in one, both or neither array', () => {
    let seed = 7;
    const rand = (m: number) => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return Math.floor((seed / 2 ** 32) * m);
    };
    const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + rand(4);
      const box = Array.from({ length: n }, () => 1 + rand(4));
      // Each dimension: whole in both (merge), whole in src only, whole in dst only, or whole in neither.
      const mode = Array.from({ length: n }, () => rand(4));
      const srcShape = box.map((b, i) => (mode[i] === 0 || mode[i] === 1 ? b : b + 1 + rand(3)));
      const dstShape = box.map((b, i) => (mode[i] === 0 || mode[i] === 2 ? b : b + 1 + rand(3)));
      const srcStart = box.map((b, i) => rand(srcShape[i] - b + 1));
      const dstStart = box.map((b, i) => rand(dstShape[i] - b + 1));
      const src = Uint16Array.from({ length: size(srcShape) }, (_, i) => i + 1);
      const got = new Uint16Array(size(dstShape));
      const want = new Uint16Array(size(dstShape));
      copyBox(src, srcShape, srcStart, got, dstShape, dstStart, box);
      reference(src, srcShape, srcStart, want, dstShape, dstStart, box);
      expect(Array.from(got), JSON.stringify({ srcShape, dstShape, srcStart, dstStart, box })).toEqual(Array.from(want));
    }
  });
});

describe('copyBox on short rows', () => {
  it('copies float32 rows bit for bit (NaN payloads included) and uint8 rows at unaligned offsets', () => {
    const bits = Uint32Array.from({ length: 4 * 8 * 8 }, (_, i) => (i % 3 === 0 ? 0x7fa00000 + i : 0x3f800000 + i)); // signalling NaNs among normal floats
    const src = new Float32Array(bits.buffer);
    const dst = new Float32Array(4 * 8 * 16);
    copyBox(src, [4, 8, 8], [0, 0, 0], dst, [4, 8, 16], [0, 0, 5], [4, 8, 8]);
    const out = new Uint32Array(dst.buffer);
    for (let z = 0; z < 4; z++) for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) expect(out[(z * 8 + y) * 16 + 5 + x]).toBe(bits[(z * 8 + y) * 8 + x]);
    const u8 = Uint8Array.from({ length: 6 * 64 }, (_, i) => (i * 13) & 255);
    const d8 = new Uint8Array(6 * 70);
    copyBox(u8, [6, 64], [1, 0], d8, [6, 70], [0, 3], [5, 64]); // destination rows start at odd bytes
    for (let y = 0; y < 5; y++) for (let x = 0; x < 64; x++) expect(d8[y * 70 + 3 + x]).toBe(u8[(y + 1) * 64 + x]);
  });
});

describe('chunksTouching', () => {
  it('lists exactly the chunks a box intersects, in C order', () => {
    expect([...chunksTouching([3, 0], [9, 5], [4, 5])]).toEqual([[0, 0], [1, 0], [2, 0]]);
    expect([...chunksTouching([4, 4], [4, 9], [4, 5])]).toEqual([]);
    expect([...chunksTouching([0, 4], [5, 6], [4, 5])]).toEqual([[0, 0], [0, 1], [1, 0], [1, 1]]);
  });
});

describe('mapLimit', () => {
  it('never runs more than the limit at once and rejects with the first error', async () => {
    let live = 0;
    let peak = 0;
    await mapLimit([1, 2, 3, 4, 5, 6, 7], 3, async () => {
      live++;
      peak = Math.max(peak, live);
      await new Promise((r) => setTimeout(r, 2));
      live--;
    });
    expect(peak).toBe(3);
    await expect(mapLimit([1, 2, 3], 2, async (i) => { if (i === 2) throw new Error('boom'); })).rejects.toThrow('boom');
  });
});
