import { afterAll, describe, expect, it } from 'vitest';
import { makeRng, tf, useBackend } from '@goe/tf';
import { MASK_BYTE } from '@goe/sequence-stem';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadCheckpoint } from './checkpoint.js';
import type { DeepPartial, TrainConfig } from './config.js';
import { ConfigError } from './errors.js';
import { buildTrunk } from './model.js';
import { smallTrainConfig } from './small-config.js';
import { resolveModelSpec } from './spec.js';
import { createTask, prepareRun, runTraining, train, type MetricsRecord } from './train.js';

const root = mkdtempSync(join(tmpdir(), 'goe-seq-'));

afterAll(async () => {
  await useBackend('cpu');
});

/** 30 steps of the small config; one model section for both stems: the same widths, encoder and GoE layer. */
function config(out: string, over: DeepPartial<TrainConfig> = {}): TrainConfig {
  return smallTrainConfig(out, { steps: 30, ...over });
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

async function values(vars: Map<string, tf.Variable>): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [k, v] of vars) out.set(k, (await v.data()) as Float32Array);
  return out;
}

function changed(a: Map<string, Float32Array>, b: Map<string, Float32Array>): string[] {
  return [...a.keys()].filter((k) => a.get(k)!.some((v, i) => v !== b.get(k)![i]));
}

describe('swapping stems', () => {
  it('one encoder + GoE layer trains behind the volume stem on phantom patches, then behind the sequence stem on masked bytes; both losses fall', async () => {
    const volCfg = config(join(root, 'swap-volume'));
    // Half the bytes masked: 64 targets a step, so a 30-step curve is not dominated by sampling noise.
    const seqCfg = config(join(root, 'swap-sequence'), {
      data: { validationFraction: 1 / 3, text: { maskFraction: 0.5 } },
      optim: { lr: 1e-2, warmupSteps: 5 },
      model: { stemKind: 'sequence' },
    });
    const volSpec = resolveModelSpec(volCfg.model);
    const seqSpec = resolveModelSpec(seqCfg.model);
    // The encoder and the GoE layer are configured identically for both: nothing in them knows the modality.
    expect(seqSpec.encoder).toEqual(volSpec.encoder);
    expect(seqSpec.core).toEqual(volSpec.core);
    const trunk = buildTrunk(volSpec, makeRng(11));
    const trunkVars = new Map([...trunk.encoder.variables('encoder.'), ...trunk.core.variables('core.')]);

    const volRun = await prepareRun(volCfg);
    const volTask = await createTask(volCfg, volRun.runDir, trunk);
    expect(volTask.model.encoder).toBe(trunk.encoder);
    expect(volTask.model.core).toBe(trunk.core);
    const t0 = await values(trunkVars);
    const vol = await runTraining(volTask, volCfg, volRun, { progressStream: null });
    const t1 = await values(trunkVars);

    const seqRun = await prepareRun(seqCfg);
    const seqTask = await createTask(seqCfg, seqRun.runDir, trunk);
    expect(seqTask.model.encoder).toBe(trunk.encoder);
    expect(seqTask.model.core).toBe(trunk.core);
    const seqCounts: number[] = [];
    const seq = await runTraining(seqTask, seqCfg, seqRun, {
      progressStream: null,
      // Tensors other than variables: Adam's moments are variables, made on a variable's first
      // gradient, which depends on routing and so on the text (the project's own docs).
      onLog: () => void seqCounts.push(tf.memory().numTensors - Object.keys(tf.engine().state.registeredVariables).length),
    });
    const t2 = await values(trunkVars);

    // Both losses fall clearly: the ink loss, and the bits per byte of the masked bytes.
    const volLoss = vol.history.map((r) => r['total'] as number);
    expect(volLoss).toHaveLength(30);
    expect(mean(volLoss.slice(-5))).toBeLessThan(0.8 * mean(volLoss.slice(0, 5)));
    const bpb = seq.history.map((r) => r['bpb'] as number);
    expect(bpb).toHaveLength(30);
    for (const v of bpb) expect(Number.isFinite(v)).toBe(true);
    // An untrained head is near uniform over 256 values: about 8 bits per byte.
    expect(bpb[0]).toBeGreaterThan(7);
    expect(mean(bpb.slice(-5))).toBeLessThan(0.8 * mean(bpb.slice(0, 5)));
    // The shared trunk was trained by both runs: every variable moved in each, except the halting head,
    // whose only gradient is the halting regulariser (weight 0 by default).
    const trained = [...trunkVars.keys()].filter((k) => !k.startsWith('core.halt.'));
    expect(trained.length).toBe(trunkVars.size - 2);
    expect(changed(t0, t1)).toEqual(trained);
    expect(changed(t1, t2)).toEqual(trained);
    // The sequence loop holds no more tensors after a step than after the first: it leaks nothing.
    expect(seqCounts).toHaveLength(30);
    expect(new Set(seqCounts).size).toBe(1);

    // The sequence run folder has what the volume one has, with text predictions in place of the PNG.
    expect(readdirSync(seq.runDir).sort()).toEqual(['checkpoint', 'config.json', 'loss.png', 'metrics.jsonl', 'predictions.txt', 'routing']);
    const lines = readFileSync(join(seq.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as MetricsRecord);
    expect(lines.filter((l) => l.split === 'train')).toHaveLength(30);
    const val = lines.filter((l) => l.split === 'val');
    expect(val).toHaveLength(1);
    // 4 windows of 32 bytes, 16 masked in each.
    expect(val[0]).toMatchObject({ step: 30, maskedBytes: 64 });
    for (const k of ['loss', 'bpb', 'accuracy', 'unigramBpb']) expect(Number.isFinite(val[0]![k])).toBe(true);
    const meta = await sharp(seq.lossCurvePng).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 800, 450]);
    const example = readFileSync(seq.predictions, 'utf8').split('\n');
    expect(example[0]).toMatch(/^window at byte 0 of the validation text: \d+ of 16 masked bytes right$/);
    expect(example[1]!.length).toBe('input: '.length + 32);
    expect(example[1]!.split('_').length - 1).toBeGreaterThanOrEqual(16);
    const ckpt = await loadCheckpoint(seq.checkpoint);
    expect(ckpt.manifest.model).toEqual(seqSpec);
    expect((ckpt.manifest.state['sampler'] as { text: { files: string[] } }).text.files.some((f) => f.endsWith('README.md'))).toBe(true);

    // The volume model's own parts (stem, ink head); the shared trunk goes with the sequence model.
    volTask.model.disposeOwnParts();
    seqTask.model.dispose();
  }, 60_000);
});

describe('goe train with the sequence stem', () => {
  it('the same seed gives the same loss curve on cpu and wasm', async () => {
    const curves: number[][] = [];
    for (const backend of ['cpu', 'wasm']) {
      const r = await train(
        config(join(root, `det-${backend}`), { steps: 3, backend, validationPatches: 1, batch: 2, model: { stemKind: 'sequence' } }),
        { progressStream: null },
      );
      curves.push(r.history.map((h) => h['total'] as number));
    }
    const [cpu, wasm] = curves as [number[], number[]];
    expect(cpu).toHaveLength(3);
    cpu.forEach((l, i) => expect(Math.abs(l - wasm[i]!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(l))));
  });

  it('trains on given text files; validation never sees a training byte', async () => {
    // Two files whose halves differ: every training byte is 'a'-'e', every validation byte 'v'-'z'.
    const files = ['one', 'two'].map((name, i) => {
      const path = join(root, `${name}.txt`);
      writeFileSync(path, 'abcde'.repeat(20 + i * 4) + 'vwxyz'.repeat(10 + i * 2));
      return path;
    });
    const r = await train(
      config(join(root, 'files'), {
        steps: 2,
        batch: 2,
        validationPatches: 3,
        data: { validationFraction: 1 / 3, text: { files, maskFraction: 0.5 } },
        model: { stemKind: 'sequence', sequenceLength: 16 },
      }),
      { progressStream: null },
    );
    const example = readFileSync(r.predictions, 'utf8').split('\n');
    const truth = example.filter((l) => l.startsWith('truth: ')).map((l) => l.slice(7));
    expect(truth.length).toBeGreaterThan(0);
    for (const t of truth) expect(t).toMatch(/^[v-z⏎]+$/);
    const input = example.filter((l) => l.startsWith('input: ')).map((l) => l.slice(7));
    for (const t of input) expect(t.split('_').length - 1).toBe(8);
    expect(String.fromCharCode(MASK_BYTE)).not.toMatch(/[a-z]/);
    const ckpt = await loadCheckpoint(r.checkpoint);
    expect((ckpt.manifest.state['sampler'] as { text: { files: string[]; bytes: number } }).text).toMatchObject({ files, bytes: 150 + 180 });
  });

  it('a window longer than the validation text, or a missing file, is a config error naming the field', async () => {
    const short = join(root, 'short.txt');
    writeFileSync(short, 'x'.repeat(60));
    const run = (over: DeepPartial<TrainConfig>) =>
      train(config(join(root, 'bad'), { steps: 1, ...over, model: { stemKind: 'sequence', ...over.model } }), { progressStream: null });
    await expect(run({ data: { text: { files: [short] } }, model: { sequenceLength: 32 } })).rejects.toThrow(
      /^model\.sequenceLength: 32 bytes is longer than the validation text \(20 bytes\)/,
    );
    await expect(run({ data: { text: { files: [join(root, 'nope.txt')] } } })).rejects.toThrow(ConfigError);
    await expect(run({ data: { text: { files: [join(root, 'nope.txt')] } } })).rejects.toThrow(/^data\.text\.files: cannot read .*nope\.txt/);
  });
});
