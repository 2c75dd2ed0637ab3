import { PatchSampler } from '@goe/scroll-io';
import { describe, expect, it } from 'vitest';
import { resolvePhantomConfig } from './config.js';
import { phantomRegion } from './phantom.js';
import { phantomVolumes } from './volume.js';

describe('phantomVolumes', () => {
  const config = resolvePhantomConfig({ preset: 'easy', shape: [16, 40, 36], seed: 4 });
  const whole = phantomRegion(config, { offset: [0, 0, 0], shape: config.shape });
  const at = (a: ArrayLike<number>, z: number, y: number, x: number) =>
    z >= 0 && y >= 0 && x >= 0 && z < 16 && y < 40 && x < 36 ? a[(z * 40 + y) * 36 + x] : 0;

  it('reads any region (partly outside: 0) equal to the whole-volume phantom', async () => {
    const v = phantomVolumes(config);
    expect(v.image.shape).toEqual([16, 40, 36]);
    const region = { offset: [-2, 30, 5], shape: [6, 14, 9] };
    const [img, ink] = await Promise.all([v.image.read(region), v.ink.read(region)]);
    let k = 0;
    for (let z = 0; z < 6; z++)
      for (let y = 0; y < 14; y++)
        for (let x = 0; x < 9; x++, k++) {
          expect(img.data[k]).toBe(at(whole.image, z - 2, y + 30, x + 5));
          expect(ink.data[k]).toBe(at(whole.ink, z - 2, y + 30, x + 5));
        }
  });

  it('feeds a PatchSampler whose patches match the phantom', async () => {
    const v = phantomVolumes(config);
    const s = new PatchSampler({ volume: v.image, labels: { ink: v.ink, papyrus: v.papyrus }, patchShape: [4, 8, 8], seed: 1 });
    for (let n = 0; n < 5; n++) {
      const p = await s.next();
      const [oz, oy, ox] = p.origin;
      let k = 0;
      for (let z = 0; z < 4; z++)
        for (let y = 0; y < 8; y++)
          for (let x = 0; x < 8; x++, k++) {
            expect(p.image[k]).toBe(at(whole.image, oz + z, oy + y, ox + x));
            expect(p.labels.papyrus[k]).toBe(at(whole.papyrus, oz + z, oy + y, ox + x));
          }
    }
    await s.close();
  });

  it('reads wrap labels and the fibre and normal fields ([3, D, H, W]) equal to the whole-volume phantom', async () => {
    const v = phantomVolumes(config);
    expect(v.fibre.shape).toEqual([3, 16, 40, 36]);
    expect(v.wrap.dtype).toBe('uint16');
    const n = 16 * 40 * 36;
    const region = { offset: [1, -2, 30, 5], shape: [3, 6, 14, 9] }; // components 1, 2 and one outside
    const [fib, nor, wrap] = await Promise.all([v.fibre.read(region), v.normal.read(region), v.wrap.read({ offset: [-2, 30, 5], shape: [6, 14, 9] })]);
    let k = 0;
    for (let c = 0; c < 3; c++)
      for (let z = 0; z < 6; z++)
        for (let y = 0; y < 14; y++)
          for (let x = 0; x < 9; x++, k++) {
            const comp = c + 1;
            const want = (a: Float32Array) => (comp < 3 ? at(a.subarray(comp * n, (comp + 1) * n), z - 2, y + 30, x + 5) : 0);
            expect(fib.data[k]).toBe(want(whole.fibre));
            expect(nor.data[k]).toBe(want(whole.normal));
            if (c === 0) expect(wrap.data[k]).toBe(at(whole.wrap, z - 2, y + 30, x + 5));
          }
  });
});
