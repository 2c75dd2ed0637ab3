import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from './backend.js';
import { makeRng } from './rng.js';
import { expectNoLeak, maxAbsDiff } from './testing.js';
import { SeparableSmoothing, unpatchifyCells, type TokenGrid } from './upsample.js';

function gridOf(inputShape: [number, number, number], cell: [number, number, number]): TokenGrid {
  return { dims: [inputShape[0] / cell[0], inputShape[1] / cell[1], inputShape[2] / cell[2]], cell, inputShape };
}

/** Float64 separable 3-tap filter with replicated edges: x, then y, then z (taps rows z, y, x). */
function refSmooth(x: Float32Array, [B, D, H, W]: number[], taps: number[]): Float64Array {
  const dims = [D!, H!, W!];
  let v = Float64Array.from(x);
  for (const axis of [2, 1, 0]) {
    const [t0, t1, t2] = taps.slice(axis * 3, axis * 3 + 3) as [number, number, number];
    const out = new Float64Array(v.length);
    const n = dims[axis]!;
    const stride = axis === 2 ? 1 : axis === 1 ? W! : H! * W!;
    for (let i = 0; i < v.length; i++) {
      const j = Math.floor(i / stride) % n;
      const prev = i - (j > 0 ? stride : 0);
      const next = i + (j < n - 1 ? stride : 0);
      out[i] = t0 * v[prev]! + t1 * v[i]! + t2 * v[next]!;
    }
    v = out;
  }
  expect(v.length).toBe(B! * D! * H! * W!);
  return v;
}

describe('unpatchifyCells', () => {
  it('is the exact inverse of cutting a volume into cells', async () => {
    await useBackend('cpu');
    const grid = gridOf([4, 6, 8], [2, 3, 4]);
    const [D, H, W] = grid.inputShape;
    const vol = Float32Array.from({ length: 2 * D * H * W }, (_, i) => i);
    // cells[t, k] = vol at (cell origin + in-cell offset k), by direct indexing.
    const cells = new Float32Array(vol.length);
    let o = 0;
    for (let b = 0; b < 2; b++)
      for (let tz = 0; tz < 2; tz++)
        for (let ty = 0; ty < 2; ty++)
          for (let tx = 0; tx < 2; tx++)
            for (let z = 0; z < 2; z++)
              for (let y = 0; y < 3; y++)
                for (let x = 0; x < 4; x++) cells[o++] = vol[((b * D + tz * 2 + z) * H + ty * 3 + y) * W + tx * 4 + x]!;
    const out = tf.tidy(() => unpatchifyCells(tf.tensor2d(cells, [16, 24]), 2, grid));
    expect(Array.from(await out.data())).toEqual(Array.from(vol));
    out.dispose();
  });
});

describe('SeparableSmoothing', () => {
  it('building one and disposing it leaves no tensor behind', async () => {
    await useBackend('cpu');
    await expectNoLeak(() => new SeparableSmoothing(makeRng(2)).dispose(), 'construct + dispose');
  });

  it('starts as the identity and matches a float64 separable filter with replicated edges', async () => {
    await useBackend('cpu');
    const shape = [2, 3, 4, 5];
    const rng = makeRng(5);
    const data = Float32Array.from({ length: 2 * 3 * 4 * 5 }, () => rng.normal());
    const s = new SeparableSmoothing(makeRng(1));
    const x = tf.tensor4d(data, shape as [number, number, number, number]);
    await expectNoLeak(async () => {
      const id = s.apply(x);
      expect(maxAbsDiff(await id.data(), data)).toBeLessThan(1e-6);
      id.dispose();
    }, 'identity smoothing');
    const taps = [0.2, 0.7, 0.1, 0.3, 0.5, 0.25, 0.15, 0.6, 0.3];
    const t = tf.tensor2d(taps, [3, 3]);
    s.taps.assign(t);
    t.dispose();
    const ref = refSmooth(data, shape, taps);
    await expectNoLeak(async () => {
      const y = s.apply(x);
      expect(y.shape).toEqual(shape);
      expect(maxAbsDiff(await y.data(), ref)).toBeLessThan(1e-5);
      y.dispose();
    }, 'learned smoothing');
    x.dispose();
    s.dispose();
  });
});
