import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readPng } from '@goe/scroll-io';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PhantomConfigError, resolvePhantomConfig } from './config.js';
import { phantomRegion } from './phantom.js';
import { writePhantomPreview } from './preview.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'phantom-preview-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('writePhantomPreview', () => {
  // Thick letters on a small scroll, and a z slice through a line of text.
  const config = resolvePhantomConfig({ preset: 'easy', shape: [24, 56, 48], seed: 2 });
  const [D, H, W] = config.shape;

  /** The middle z slice with at least one ink voxel nearest to the middle, so that the test has ink to look at. */
  const inkedZ = (() => {
    for (let d = 0; d < D; d++)
      for (const z of [Math.floor(D / 2) - d, Math.floor(D / 2) + d]) {
        if (z >= 0 && z < D && phantomRegion(config, { offset: [z, 0, 0], shape: [1, H, W] }).ink.some((v) => v === 1)) return z;
      }
    throw new Error('no ink in the test phantom');
  })();

  it('writes grey slices on top and ink (red) and wrap tints over them below, air left grey', async () => {
    const path = join(dir, 'a.png');
    const p = await writePhantomPreview(path, config, { z: inkedZ });
    const png = await readPng(path);
    expect(png.bitDepth).toBe(8);
    expect(png.channels).toBe(3);
    // Panels z (H x W), y (D x W), x (D x H) side by side, 4 pixels apart; two rows of the tallest.
    expect([png.width, png.height]).toEqual([W + 4 + W + 4 + H, 2 * Math.max(H, D) + 4]);
    expect([p.width, p.height]).toEqual([png.width, png.height]);
    expect(p.panels.map((q) => [q.axis, q.index, q.left, q.width, q.height])).toEqual([
      ['z', inkedZ, 0, W, H],
      ['y', Math.floor(H / 2), W + 4, W, D],
      ['x', Math.floor(W / 2), 2 * W + 8, H, D],
    ]);

    const px = (row: number, col: number) => Array.from(png.data.subarray((row * png.width + col) * 3, (row * png.width + col) * 3 + 3));
    const slice = phantomRegion(config, { offset: [inkedZ, 0, 0], shape: [1, H, W] });
    const z = p.panels[0];
    const tints = [new Set<string>(), new Set<string>()];
    let ink = 0;
    let air = 0;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const i = y * W + x;
        const g = slice.image[i];
        expect(px(z.top + y, z.left + x)).toEqual([g, g, g]);
        const [r, gr, b] = px(z.overlayTop + y, z.left + x);
        if (slice.ink[i]) {
          ink++;
          expect(r).toBeGreaterThan(2 * Math.max(gr, b));
        } else if (slice.wrap[i] === 0) {
          air++;
          expect([r, gr, b]).toEqual([g, g, g]);
        } else {
          // Papyrus: not grey, and one of two tints by the parity of the wrap index.
          expect(r === gr && gr === b).toBe(false);
          tints[slice.wrap[i] % 2].add(b > r ? 'blue' : 'yellow');
        }
      }
    expect(ink).toBeGreaterThan(0);
    expect(air).toBeGreaterThan(0);
    // Neighbouring wraps (odd and even index) are told apart.
    expect([...tints[0]]).toHaveLength(1);
    expect([...tints[1]]).toHaveLength(1);
    expect([...tints[0]][0]).not.toBe([...tints[1]][0]);

    // The y panel shows the phantom's middle y slice, rows z and columns x.
    const y = p.panels[1];
    const ys = phantomRegion(config, { offset: [0, y.index, 0], shape: [D, 1, W] });
    for (let zz = 0; zz < D; zz += 5) for (let x = 0; x < W; x += 3) expect(px(y.top + zz, y.left + x)[0]).toBe(ys.image[zz * W + x]);
  });

  it('scales a uint16 image to 8 bits', async () => {
    const c16 = { ...config, dtype: 'uint16' as const };
    const path = join(dir, 'b.png');
    const p = await writePhantomPreview(path, c16);
    const png = await readPng(path);
    expect(png.bitDepth).toBe(8);
    const x = p.panels[2];
    const xs = phantomRegion(c16, { offset: [0, 0, x.index], shape: [D, H, 1] });
    for (let zz = 0; zz < D; zz += 3)
      for (let yy = 0; yy < H; yy += 5) expect(png.data[((x.top + zz) * png.width + x.left + yy) * 3]).toBe(Math.round(xs.image[zz * H + yy] / 257));
  });

  it('refuses a slice outside the volume, naming it', async () => {
    await expect(writePhantomPreview(join(dir, 'c.png'), config, { y: H })).rejects.toThrow(PhantomConfigError);
    await expect(writePhantomPreview(join(dir, 'c.png'), config, { y: H })).rejects.toMatchObject({ field: 'preview.y' });
  });
});
