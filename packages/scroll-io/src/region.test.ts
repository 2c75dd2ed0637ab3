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
