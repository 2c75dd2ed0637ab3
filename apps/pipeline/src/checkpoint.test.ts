import { describe, expect, it } from 'vitest';
import { makeRng, maxAbsDiff, tf } from '@goe/tf';
import { mkdtempSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assignVariables, loadCheckpoint, loadModel, saveCheckpoint, saveModelCheckpoint } from './checkpoint.js';
import { resolveTrainConfig } from './config.js';
import { CheckpointError } from './errors.js';
import { ByteModel, buildModel, type VolumeModel } from './model.js';
import { resolveModelSpec } from './spec.js';

describe('checkpoints', () => {
  it('round-trips tensors, config and state exactly, replacing the old one atomically', async () => {
    const root = mkdtempSync(join(tmpdir(), 'goe-ckpt-'));
    const dir = join(root, 'checkpoint');
    const a = tf.tensor2d([[1.5, -2], [3.25, 1e-7]]);
    const b = tf.tensor1d([Math.PI]);
    await saveCheckpoint(dir, { step: 3, config: { x: 1 }, tensors: new Map<string, tf.Tensor>([['a', a], ['b', b]]), state: { rng: 42 } });
    await saveCheckpoint(dir, { step: 4, config: { x: 2 }, tensors: new Map<string, tf.Tensor>([['a', a], ['b', b]]), state: { rng: 43 } });
    expect(readdirSync(root)).toEqual(['checkpoint']);
    const c = await loadCheckpoint(dir);
    expect(c.manifest.step).toBe(4);
    expect(c.manifest.config).toEqual({ x: 2 });
    expect(c.manifest.state).toEqual({ rng: 43 });
    expect(Array.from(c.values.get('a')!.data)).toEqual(Array.from(await a.data()));
    expect(c.values.get('b')!.data[0]).toBe(Math.fround(Math.PI));

    const va = tf.variable(tf.zeros([2, 2]));
    const vb = tf.variable(tf.zeros([1]));
    assignVariables(c, new Map<string, tf.Variable>([['a', va], ['b', vb]]), dir);
    expect(Array.from(await va.data())).toEqual(Array.from(await a.data()));
    const wrong = tf.variable(tf.zeros([3]));
    expect(() => assignVariables(c, new Map([['b', wrong]]), dir)).toThrow(/tensor 'b' has shape \[1\], the model expects \[3\]/);
    expect(() => assignVariables(c, new Map([['zz', wrong]]), dir)).toThrow(/has no tensor 'zz'/);
    tf.dispose([a, b, va, vb, wrong]);
  });

  it('a truncated weights file or a missing manifest is a CheckpointError naming the file', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'goe-ckpt-')), 'checkpoint');
    const t = tf.ones([10]);
    await saveCheckpoint(dir, { step: 1, config: {}, tensors: new Map([['t', t]]) });
    truncateSync(join(dir, 'weights.bin'), 20);
    await expect(loadCheckpoint(dir)).rejects.toThrow(CheckpointError);
    await expect(loadCheckpoint(dir)).rejects.toThrow(/weights\.bin: tensor 't'/);
    await expect(loadCheckpoint(join(dir, 'nope'))).rejects.toThrow(/manifest\.json: missing/);
    t.dispose();
  });
});

describe('model checkpoints', () => {
  it.each(['volume', 'sequence'] as const)(
    'the %s stem: stem and encoder configs come back as saved, and the restored model gives the same outputs',
    async (stemKind) => {
      const root = mkdtempSync(join(tmpdir(), 'goe-ckpt-'));
      // Non-default stem and encoder fields, so that defaults alone could not pass.
      const stem = stemKind === 'volume' ? { cell: [2, 4, 4], convChannels: 6 } : { kernel: 3, causal: true, auxWindow: 5 };
      const config = resolveTrainConfig({
        seed: 5,
        out: root,
        model: { stemKind, patch: [8, 16, 16], sequenceLength: 12, width: 16, auxWidth: 4, stem, encoder: { depth: 1, heads: 2, mlpRatio: 3 }, core: { experts: 4, cycles: 2 } },
      });
      const spec = resolveModelSpec(config.model);
      const model = buildModel(spec, makeRng(config.seed));
      // Weights that differ from a fresh model built from the same seed.
      for (const v of model.trainableVariables()) tf.tidy(() => v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.05, 'float32', 1))));
      const dir = join(root, 'checkpoint');
      await saveModelCheckpoint(dir, { step: 7, config, model });

      const restored = await loadModel(root);
      expect(restored.dir).toBe(dir);
      expect(restored.spec).toEqual(spec);
      expect(restored.config).toEqual(config);
      expect(restored.model.stem.config).toEqual(model.stem.config);
      expect(restored.model.encoder.config).toEqual(model.encoder.config);
      expect(restored.model.core.config).toEqual(model.core.config);
      expect([...restored.model.variables().keys()]).toEqual([...model.variables().keys()]);
      expect(restored.model.encoder.config).toMatchObject({ depth: 1, heads: 2, mlpRatio: 3 });

      const run = async (m: typeof model): Promise<Float32Array> => {
        const out = tf.tidy(() => {
          if (m instanceof ByteModel) {
            const bytes = tf.tensor2d(Int32Array.from({ length: 2 * 12 }, (_, i) => (i * 53 + 7) % 256), [2, 12], 'int32');
            return m.forward(bytes, { training: false }).logits;
          }
          const x = tf.tensor5d(Float32Array.from({ length: 8 * 16 * 16 }, (_, i) => Math.sin(i * 0.37)), [1, 8, 16, 16, 1]);
          return (m as VolumeModel).forward(x, { training: false }).logits!;
        });
        const data = (await out.data()) as Float32Array;
        out.dispose();
        return data;
      };
      const want = await run(model);
      const got = await run(restored.model);
      expect(got.length).toBe(stemKind === 'volume' ? 8 * 16 * 16 : 2 * 12 * 256);
      expect(maxAbsDiff(got, want)).toBe(0);
      // A fresh model from the same seed differs: the outputs come from the saved weights.
      const fresh = buildModel(spec, makeRng(config.seed));
      expect(maxAbsDiff(await run(fresh), want)).toBeGreaterThan(1e-4);
      [model, restored.model, fresh].forEach((m) => m.dispose());
    },
  );

  it('a saved spec that its package no longer accepts, or that is missing a part, is a CheckpointError naming it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'goe-ckpt-'));
    const config = resolveTrainConfig({ out: root, model: { stemKind: 'sequence', width: 8, auxWidth: 4 } });
    const model = buildModel(resolveModelSpec(config.model), makeRng(0));
    const dir = join(root, 'checkpoint');
    await saveModelCheckpoint(dir, { step: 1, config, model });
    const manifestPath = join(dir, 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as { model: Record<string, Record<string, unknown>> };
    const edit = async (change: (m: Record<string, Record<string, unknown>>) => void): Promise<void> => {
      const m = structuredClone(manifest.model);
      change(m);
      writeFileSync(manifestPath, JSON.stringify({ ...manifest, model: m }));
    };
    await edit((m) => void (m['stem']!['kernel'] = 0));
    await expect(loadModel(root)).rejects.toThrow(CheckpointError);
    await expect(loadModel(root)).rejects.toThrow(/model spec part 'stem' is not valid: .*'kernel'/);
    await edit((m) => void delete m['encoder']);
    await expect(loadModel(root)).rejects.toThrow(/model spec has no part 'encoder'/);
    await edit((m) => void (m['stemKind'] = 'audio' as never));
    await expect(loadModel(root)).rejects.toThrow(/no stemKind of volume or sequence/);
    model.dispose();
  });
});
