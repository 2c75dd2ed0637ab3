import { describe, expect, it } from 'vitest';
import { tf } from '@goe/tf';
import { mkdtempSync, readdirSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assignVariables, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { CheckpointError } from './errors.js';

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
