import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf, useBackend } from '@goe/tf';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadCheckpoint } from './checkpoint.js';
import { smallTrainConfig } from './small-config.js';
import { resolveModelSpec, type VolumeModelSpec } from './spec.js';
import { resumeTraining, train, type TrainResult } from './train.js';
import { NonFiniteLossError } from './errors.js';

/** Small enough for CI: 8x32x32 patches of a 24x64x64 phantom. */
const small = smallTrainConfig;

let run: TrainResult;
const liveTensors: number[] = [];
const root = mkdtempSync(join(tmpdir(), 'goe-train-'));

beforeAll(async () => {
  run = await train(small(join(root, 'run')), {
    progressStream: null,
    onLog: () => void liveTensors.push(tf.memory().numTensors),
  });
});

afterAll(async () => {
  await useBackend('cpu');
});

describe('goe train', () => {
  it('the loss falls clearly on a short run', () => {
    const losses = run.history.map((r) => r['total'] as number);
    expect(losses).toHaveLength(40);
    for (const l of losses) expect(Number.isFinite(l)).toBe(true);
    const head = losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const tail = losses.slice(-5).reduce((a, b) => a + b) / 5;
    expect(tail).toBeLessThan(0.8 * head);
  });

  it('trains behind a strided stem: the ink head decodes tokens that cover cell x stride input voxels', async () => {
    // Two conv layers, the second at stride 2, cells of 2 feature voxels: tokens of 4^3 input voxels.
    const cfg = small(join(root, 'strided'), {
      steps: 6,
      model: { stem: { convLayers: [{ channels: 4 }, { channels: 8, stride: 2, norm: 'layer' }], cell: [2, 2, 2] } },
    });
    const spec = resolveModelSpec(cfg.model) as VolumeModelSpec;
    expect(spec.head?.cell).toEqual([4, 4, 4]);
    const r = await train(cfg, { progressStream: null });
    const losses = r.history.map((h) => h['total'] as number);
    expect(losses).toHaveLength(6);
    for (const l of losses) expect(Number.isFinite(l)).toBe(true);
  });

  it('a non-finite loss stops the run at its step, naming the loss part and the last good checkpoint', async () => {
    // A learning rate of 1e30 blows the weights up on the first update, so step 2's loss is not finite.
    // Logged every 5 steps only: the check must not wait for a logged step (nor let step 2 be saved).
    const cfg = small(join(root, 'nan'), { steps: 8, logEvery: 5, checkpointEvery: 1, optim: { lr: 1e30, warmupSteps: 0 } });
    const err = await train(cfg, { progressStream: null }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NonFiniteLossError);
    const e = err as NonFiniteLossError;
    expect(e.step).toBe(2);
    expect(Number.isFinite(e.value)).toBe(false);
    expect(e.part).not.toBe('');
    expect(e.lastCheckpoint).toBe(join(root, 'nan', 'checkpoint'));
    expect(e.message).toMatch(new RegExp(`loss part '${e.part}' is .* at step 2; last good checkpoint: .*nan/checkpoint`));
    // The checkpoint on disk is the one from before the blow-up, with finite weights.
    const saved = await loadCheckpoint(join(root, 'nan', 'checkpoint'));
    expect(saved.manifest.step).toBe(1);
    for (const t of saved.values.values()) expect(t.data.every(Number.isFinite)).toBe(true);
  });

  it('--resume after a crash continues from the last checkpoint: the loss curve equals an uninterrupted run step for step', async () => {
    const cfg = (out: string) => small(join(root, out), { steps: 12, checkpointEvery: 4, validateEvery: 6 });
    const whole = await train(cfg('whole'), { progressStream: null });
    // The crash: the run dies after logging step 7; its last checkpoint is step 4, and steps 5-7 were
    // logged after it.
    const crash = new Error('killed');
    const died = await train(cfg('crashed'), {
      progressStream: null,
      onLog: (r) => {
        if (r.step === 7) throw crash;
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(died).toBe(crash);
    const resumed = await resumeTraining(join(root, 'crashed'), { progressStream: null });
    const curve = (file: string) =>
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, number | string>)
        .map(({ seconds: _s, ...rest }) => rest);
    const a = curve(join(root, 'whole', 'metrics.jsonl'));
    const b = curve(join(root, 'crashed', 'metrics.jsonl'));
    expect(b.map((r) => `${r['split']}@${r['step']}`)).toEqual(a.map((r) => `${r['split']}@${r['step']}`));
    expect(b).toEqual(a); // every loss part, learning rate, gradient norm and validation metric, exactly
    expect(resumed.history.map((r) => r['total'])).toEqual(whole.history.map((r) => r['total']));
    // The checkpoints agree too.
    const ca = await loadCheckpoint(join(root, 'whole', 'checkpoint'));
    const cb = await loadCheckpoint(join(root, 'crashed', 'checkpoint'));
    expect(cb.manifest.step).toBe(12);
    for (const [k, v] of ca.values) expect(Array.from(cb.values.get(k)!.data), k).toEqual(Array.from(v.data));
    // A finished run is not resumed again.
    await expect(resumeTraining(join(root, 'crashed'), { progressStream: null })).rejects.toThrow(/step 12 of 12: the run is complete/);
  }, 60_000);

  it('holds no more tensors at the end of a step than after the first (no leaks)', () => {
    expect(liveTensors).toHaveLength(40);
    // Adam's moments appear on the first update; from then on the count must not grow.
    expect(new Set(liveTensors.slice(1)).size).toBe(1);
  });

  it('logs router health every logged step: load balance in [1, M], routing entropy in [0, ln M], cycles in [1, K]', () => {
    const M = 8; // the GoE layer's default experts
    const K = 3; // and cycles
    for (const r of run.history) {
      expect(r['balance']).toBeGreaterThanOrEqual(1 - 1e-6);
      expect(r['balance']).toBeLessThanOrEqual(M + 1e-6);
      expect(r['entropy']).toBeGreaterThanOrEqual(0);
      expect(r['entropy']).toBeLessThanOrEqual(Math.log(M) + 1e-6);
      expect(r['cycles']).toBeGreaterThanOrEqual(1);
      expect(r['cycles']).toBeLessThanOrEqual(K);
    }
  });

  it('writes the run folder: checkpoint, metrics.jsonl, loss.png, config', async () => {
    const dir = run.runDir;
    expect(readdirSync(dir).sort()).toEqual(['checkpoint', 'config.json', 'data', 'loss.png', 'metrics.jsonl', 'predictions.png', 'routing']);
    // The routing of the validation patches: the learned graph, transitions and load as pictures.
    expect(readdirSync(join(dir, 'routing')).sort()).toEqual(['adjacency.png', 'graph.png', 'halting.png', 'load.png', 'summary.json', 'transitions.png']);
    const routing = JSON.parse(readFileSync(join(dir, 'routing', 'summary.json'), 'utf8')) as { load: number[][] };
    for (const cycle of routing.load) expect(cycle.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const trainLines = lines.filter((l) => l['split'] === 'train');
    const valLines = lines.filter((l) => l['split'] === 'val');
    expect(trainLines.map((l) => l['step'])).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(trainLines[0]).toHaveProperty('bce');
    expect(trainLines[0]).toHaveProperty('dice');
    expect(trainLines[0]).toHaveProperty('router');
    expect(valLines).toHaveLength(1);
    const f05 = valLines[0]?.['f05'] as number;
    expect(f05).toBeGreaterThanOrEqual(0);
    expect(f05).toBeLessThanOrEqual(1);
    const meta = await sharp(join(dir, 'loss.png')).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 800, 450]);
    const ckpt = await loadCheckpoint(run.checkpoint);
    expect(ckpt.manifest.step).toBe(40);
    expect(ckpt.manifest.config).toEqual(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')));
    expect([...ckpt.values.keys()].some((k) => k.startsWith('optimizer/'))).toBe(true);
  });

  it('the same seed gives the same loss curve on cpu and wasm', async () => {
    const curves: number[][] = [];
    for (const backend of ['cpu', 'wasm']) {
      const r = await train(
        small(join(root, `det-${backend}`), {
          steps: 4,
          backend,
          validationPatches: 1,
          batch: 2,
          model: { patch: [8, 16, 16], width: 16, auxWidth: 8 },
        }),
        { progressStream: null },
      );
      curves.push(r.history.map((h) => h['total'] as number));
    }
    const [cpu, wasm] = curves as [number[], number[]];
    expect(cpu).toHaveLength(4);
    cpu.forEach((l, i) => expect(Math.abs(l - wasm[i]!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(l))));
  });
});
