/**
 * Fragments go through the same stem as scroll patches: a surface volume `[layers, H, W]` is a
 * `[D, H, W]` patch whose depth axis is the layer axis. Here a phantom fragment (one wrap flattened,
 * layers sampled along the sheet normal: @goe/phantom) is written in the Kaggle layout, read back
 * through @goe/scroll-io's `openFragment`, and tokenised; the descriptors must see what a flattened
 * sheet is: intensity changing across the layers, not along them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectNoLeak, makeRng, tf, useBackend } from '@goe/tf';
import { openFragment } from '@goe/scroll-io';
import { resolvePhantomConfig, writePhantomFragment } from '@goe/phantom';
import { DESCRIPTOR_NAMES, VolumeStem, resolveVolumeStemConfig } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'goe-stem-fragment-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('a fragment through the volume stem', () => {
  it('layers are the depth axis: tokens on the token grid, and the sheet is planar with its gradient across the layers', async () => {
    await useBackend('wasm');
    const config = resolvePhantomConfig({ preset: 'easy', shape: [24, 96, 96], seed: 4 });
    const written = await writePhantomFragment(dir, config, { layers: 16 });
    const fragment = await openFragment(written.dir);
    const [L, H, W] = fragment.shape as [number, number, number];
    expect(L).toBe(16);
    const shape: [number, number, number] = [16, 16, 32];
    expect(H).toBeGreaterThanOrEqual(shape[1]);
    expect(W).toBeGreaterThanOrEqual(shape[2]);
    const window = await fragment.read({ offset: [0, 4, 8], shape });
    const scale = config.dtype === 'uint16' ? 65535 : 255;
    const x = Float32Array.from(window.data as ArrayLike<number>, (v) => v / scale);

    const stem = new VolumeStem(resolveVolumeStemConfig({ d: 24, da: 8 }), makeRng(1));
    await expectNoLeak(async () => {
      const input = tf.tensor5d(x, [1, ...shape, 1]);
      const out = stem.apply(input, { withDescriptors: true });
      expect(out.grid.dims).toEqual([4, 4, 8]);
      expect(out.grid.inputShape).toEqual(shape);
      expect(out.tokens.shape).toEqual([1, 128, 24]);
      expect(out.aux.shape).toEqual([1, 128, 8]);
      const desc = (await out.descriptors!.data()) as Float32Array;
      tf.dispose([input, out.tokens, out.aux, out.descriptors!, ...(out.positions ? [out.positions] : [])]);

      // The tokens where the intensity changes most (the sheet's faces): their structure tensor is
      // dominated by the layer (z) axis, and they are planar rather than linear.
      const nd = DESCRIPTOR_NAMES.length;
      const col = (name: (typeof DESCRIPTOR_NAMES)[number]) => DESCRIPTOR_NAMES.indexOf(name);
      const rows = Array.from({ length: 128 }, (_, t) => desc.subarray(t * nd, (t + 1) * nd));
      const strong = [...rows].sort((a, b) => (b[col('gradMag')] as number) - (a[col('gradMag')] as number)).slice(0, 32);
      const mean = (name: (typeof DESCRIPTOR_NAMES)[number]) => strong.reduce((s, r) => s + (r[col(name)] as number), 0) / strong.length;
      expect(mean('Jzz')).toBeGreaterThan(2 * mean('Jyy'));
      expect(mean('Jzz')).toBeGreaterThan(2 * mean('Jxx'));
      expect(mean('planarity')).toBeGreaterThan(mean('linearity'));
    });
  });
});
