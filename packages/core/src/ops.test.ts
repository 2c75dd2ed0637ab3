import { backendsUnderTest, makeRng, tf, useBackend } from '@goe/tf';
import { describe, expect, it } from 'vitest';
import { topKIds } from './ops.js';

describe('topKIds', async () => {
  const backends = await backendsUnderTest();
  it.each(backends)('equals tf.topk, ties to the lower index, on %s', async (backend) => {
    await useBackend(backend);
    const rng = makeRng(9);
    for (const [rows, m, k, levels] of [
      [64, 5, 2, 0],
      [200, 32, 2, 0],
      [50, 33, 4, 3], // three distinct values per row: ties everywhere
      [40, 8, 8, 2],
      [30, 16, 1, 4],
    ] as const) {
      const v = Float32Array.from({ length: rows * m }, () => (levels ? rng.int(levels) : rng.normal()));
      const s = tf.tensor2d(v, [rows, m]);
      const got = topKIds(s, k);
      const want = tf.topk(s, k).indices;
      expect(got.shape).toEqual([rows, k]);
      expect(got.dtype).toBe('int32');
      expect(Array.from(await got.data()), `${rows}x${m} k ${k}`).toEqual(Array.from(await want.data()));
      // Independently: descending scores, and an equal score never ranked before a lower index.
      const ids = await got.data();
      for (let r = 0; r < rows; r++) {
        for (let j = 1; j < k; j++) {
          const [a, b] = [ids[r * k + j - 1]!, ids[r * k + j]!];
          expect(v[r * m + a]! > v[r * m + b]! || (v[r * m + a] === v[r * m + b] && a < b)).toBe(true);
        }
      }
      tf.dispose([s, got, want]);
    }
  });
});
