/**
 * Training on a fragment (`data.source: fragment`): its layers are the volume, its 2D ink labels score
 * the depth-collapsed map of the ink head's voxel logits, and the mask keeps patches on papyrus.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { useBackend } from '@goe/tf';
import { resolvePhantomConfig, writePhantomFragment } from '@goe/phantom';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { resolveTrainConfig } from './config.js';
import { ConfigError } from './errors.js';
import { smallTrainConfig } from './small-config.js';
import { train } from './train.js';

const root = mkdtempSync(join(tmpdir(), 'goe-fragment-'));
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

afterAll(async () => {
  await useBackend('cpu');
});

describe('goe train on a fragment', () => {
  it('learns the 2D ink labels through the depth collapse: the loss falls and validation scores the collapsed map', async () => {
    // Empty data.fragment: a phantom fragment (one unrolled wrap, 65 layers) is written into the run folder.
    const cfg = smallTrainConfig(join(root, 'run'), {
      steps: 80,
      validationPatches: 8,
      data: { source: 'fragment', phantomShape: [64, 64, 64] },
      model: { patch: [8, 16, 16] },
    });
    const r = await train(cfg, { progressStream: null });
    const bce = r.history.map((h) => h['bce'] as number);
    expect(bce.every(Number.isFinite)).toBe(true);
    // Measured over 80 steps: BCE 0.93 -> 0.43, validation AUC 0.82, F0.5 0.68.
    expect(mean(bce.slice(-5))).toBeLessThan(0.8 * mean(bce.slice(0, 5)));
    const v = r.validation.at(-1)!;
    expect(v['auc']).toBeGreaterThan(0.65);
    expect(v['f05']).toBeGreaterThan(0);
    // Layer, column label, collapsed probability, overlay: 4 columns of 16 pixels, one row per patch.
    const meta = await sharp(r.predictions).metadata();
    expect(meta.width).toBe((4 * 16 + 3 * 2) * 4);
    expect(meta.height).toBe((4 * 16 + 3 * 2) * 4);
  }, 120_000);

  it('other heads, a missing folder, a folder without ink labels and a patch that does not fit are errors naming the key', async () => {
    const fail = async (over: Parameters<typeof smallTrainConfig>[1]): Promise<ConfigError> => {
      try {
        await train(smallTrainConfig(join(root, `bad-${Math.random()}`), over), { progressStream: null });
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return e as ConfigError;
      }
      throw new Error('expected a ConfigError');
    };
    expect(() => resolveTrainConfig({ data: { source: 'fragment' }, model: { heads: ['ink', 'fiber'] } })).toThrow(/model\.heads: a fragment has 2D ink labels only/);
    expect(() => resolveTrainConfig({ data: { source: 'fragment', collapse: { mode: 'median' } } })).toThrow(/data\.collapse\.mode: expected one of max, mean, logsumexp/);
    expect((await fail({ data: { source: 'fragment', fragment: join(root, 'nowhere') } })).field).toBe('data.fragment');
    const made = await writePhantomFragment(join(root, 'nolabels'), resolvePhantomConfig({ shape: [32, 64, 64], seed: 1 }), { layers: 12 });
    rmSync(made.inkLabels);
    const e = await fail({ data: { source: 'fragment', fragment: made.dir }, model: { patch: [8, 8, 8] } });
    expect(e.field).toBe('data.fragment');
    expect(e.message).toMatch(/has no inklabels\.png/);
    expect((await fail({ data: { source: 'fragment', fragment: made.dir }, model: { patch: [16, 8, 8] } })).field).toBe('model.patch');
  }, 60_000);
});
