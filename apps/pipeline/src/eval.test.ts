import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { makeRng, tf, useBackend } from '@goe/tf';
import { inkMetrics } from '@goe/head-ink';
import { fiberErrorByFace, fiberTargetsFromVoxels, structureTensorFibers } from '@goe/head-fiber';
import { dice, normalAngularError } from '@goe/head-geometry';
import { createVolume, openVolume } from '@goe/scroll-io';
import { resolvePhantomConfig, writePhantom } from '@goe/phantom';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assignVariables, loadCheckpoint, loadModel } from './checkpoint.js';
import { main } from './cli.js';
import { resolveTrainConfig } from './config.js';
import { evaluate, type EvalResult } from './eval.js';
import { VolumeModel, normaliseIntensity } from './model.js';
import { smallTrainConfig } from './small-config.js';
import { resolveModelSpec, type VolumeModelSpec } from './spec.js';
import { train } from './train.js';

const root = mkdtempSync(join(tmpdir(), 'goe-eval-'));
const SHAPE = [12, 40, 36] as const;
let runDir: string;
let scroll: { root: string; image: string; ink: string };
/** The model's float32 ink probability over the whole volume `[D*H*W]`, and the ink labels. */
let fullProb: Float32Array;
let fullLabel: Uint8Array;

/**
 * The reference prediction, computed apart from `evaluate`: a fresh model with the checkpoint's
 * weights run on every 8x32x32 tile of the volume's grid, one tile per pass, edges padded with zeros.
 */
async function referencePrediction(): Promise<Float32Array> {
  const ckpt = await loadCheckpoint(join(runDir, 'checkpoint'));
  const config = resolveTrainConfig(ckpt.manifest.config as Record<string, unknown>);
  const model = new VolumeModel(resolveModelSpec(config.model) as VolumeModelSpec, makeRng(config.seed));
  assignVariables(ckpt, new Map([...model.variables()].map(([k, v]) => [`model/${k}`, v])), 'test');
  const [D, H, W] = SHAPE;
  const [pd, ph, pw] = config.model.patch;
  const src = await openVolume(scroll.image);
  const out = new Float32Array(D * H * W);
  for (let z0 = 0; z0 < D; z0 += pd)
    for (let y0 = 0; y0 < H; y0 += ph)
      for (let x0 = 0; x0 < W; x0 += pw) {
        const tile = await src.read({ offset: [z0, y0, x0], shape: [pd, ph, pw] });
        const x = Float32Array.from(tile.data as Uint8Array, (v) => normaliseIntensity(v));
        const prob = tf.tidy(() => tf.sigmoid(model.forward(tf.tensor5d(x, [1, pd, ph, pw, 1]), { training: false }).logits!));
        const p = (await prob.data()) as Float32Array;
        prob.dispose();
        for (let z = 0; z < pd && z0 + z < D; z++)
          for (let y = 0; y < ph && y0 + y < H; y++)
            for (let xx = 0; xx < pw && x0 + xx < W; xx++) out[((z0 + z) * H + y0 + y) * W + x0 + xx] = p[(z * ph + y) * pw + xx]!;
      }
  model.dispose();
  return out;
}

/** Voxels of the whole-volume arrays inside `offset`/`shape`, C order. */
function cut<T extends Float32Array | Uint8Array>(a: T, offset: number[], shape: number[]): number[] {
  const [, H, W] = SHAPE;
  const out: number[] = [];
  for (let z = 0; z < shape[0]!; z++)
    for (let y = 0; y < shape[1]!; y++) for (let x = 0; x < shape[2]!; x++) out.push(a[((offset[0]! + z) * H + offset[1]! + y) * W + offset[2]! + x]!);
  return out;
}

/** Streamed metrics equal `inkMetrics` on the same voxels: the sweep exactly, the AUC within its bound. */
function expectMatches(got: NonNullable<EvalResult['heads']['ink']>, prob: ArrayLike<number>, label: ArrayLike<number>): void {
  // Every field of inkMetrics equal (sweep, best threshold, counts); the AUC within the reported bound.
  const { auc, aucResolution, ...exact } = got;
  const { auc: wantAuc, ...wantExact } = inkMetrics(prob, label);
  expect(exact).toEqual(wantExact);
  expect(Math.abs(auc - wantAuc)).toBeLessThanOrEqual(aucResolution + 1e-12);
  // The 8-step model's probabilities crowd in a narrow band, so many ink / non-ink pairs share a bin.
  expect(aucResolution).toBeLessThan(0.01);
}

beforeAll(async () => {
  const run = await train(smallTrainConfig(join(root, 'run'), { steps: 8, validationPatches: 1 }), { progressStream: null });
  runDir = run.runDir;
  const w = await writePhantom(join(root, 'vol'), resolvePhantomConfig({ shape: [...SHAPE], seed: 9, preset: 'easy' }));
  scroll = { root: w.root, image: w.image, ink: w.labels['ink']! };
  fullProb = await referencePrediction();
  fullLabel = (await (await openVolume(scroll.ink)).read({ offset: [0, 0, 0], shape: [...SHAPE] })).data as Uint8Array;
}, 120_000);

afterAll(async () => {
  await useBackend('cpu');
});

afterEach(() => vi.restoreAllMocks());

describe('goe eval', () => {
  it('scores the whole volume tile by tile: the metrics of inkMetrics on the full-volume prediction', async () => {
    const r = await evaluate({ checkpoint: runDir, data: scroll.root, backend: 'wasm', batch: 1 });
    expect(r.region).toBe('0:12,0:40,0:36');
    expect(r.labels.ink).toBe(scroll.ink);
    expect(r.tiles).toBe(2 * 2 * 2);
    expect(r.heads.ink!.count).toBe(12 * 40 * 36);
    // The phantom has ink, and the prediction is not constant: the comparison is not a trivial one.
    expect(r.heads.ink!.positives).toBeGreaterThan(0);
    expect(Math.max(...fullProb) - Math.min(...fullProb)).toBeGreaterThan(0.01);
    expectMatches(r.heads.ink!, fullProb, fullLabel);
  });

  it('a sub-region gives the metrics of that region only, the same voxels cut from the full-volume prediction', async () => {
    const offset = [3, 5, 4];
    const shape = [7, 30, 26];
    const r = await evaluate({ checkpoint: runDir, data: scroll.image, region: '3:10,5:35,4:30', backend: 'wasm', batch: 1 });
    expect(r.region).toBe('3:10,5:35,4:30');
    // A level array (scroll.zarr/0) finds the labels of the group that holds it.
    expect(r.labels.ink).toBe(scroll.ink);
    expect(r.tiles).toBe(2 * 2 * 1);
    expectMatches(r.heads.ink!, cut(fullProb, offset, shape), cut(fullLabel, offset, shape));
    expect(r.heads.ink!.count).toBe(7 * 30 * 26);
    // Not the whole volume's metrics: the region's own.
    expect(r.heads.ink!.count).toBeLessThan(fullLabel.length);
  });

  it('holds no tensors per tile: a run over 8 tiles leaves no more behind than a run over 1', async () => {
    const left = async (region: string) => {
      const before = tf.memory().numTensors;
      await evaluate({ checkpoint: runDir, data: scroll.root, region, backend: 'wasm' });
      return tf.memory().numTensors - before;
    };
    const one = await left('0:8,0:32,0:32');
    const all = await left('0:12,0:40,0:36');
    expect(all).toBe(one);
    // Building the model leaves at most one tensor: the ink head's smoothing taps (assigned from a
    // temporary that @goe/tf's SeparableSmoothing does not dispose); a leak per tile would be 8x.
    expect(one).toBeLessThanOrEqual(1);
  });

  it('the CLI prints one JSON object with every trained head, and a table without --json', async () => {
    const out: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
    expect(await main(['eval', '--checkpoint', runDir, '--data', scroll.root, '--region', '0:8,0:32,0:32', '--backend', 'wasm', '--json'])).toBe(0);
    const r = JSON.parse(out.at(-1)!) as EvalResult;
    expect(Object.keys(r.heads)).toEqual(['ink']);
    expect(r).toMatchObject({ checkpoint: join(runDir, 'checkpoint'), data: scroll.root, region: '0:8,0:32,0:32' });
    for (const k of ['f05', 'threshold', 'precision', 'recall', 'auc', 'count', 'positives']) expect(typeof r.heads.ink![k as 'f05']).toBe('number');
    expectMatches(r.heads.ink!, cut(fullProb, [0, 0, 0], [8, 32, 32]), cut(fullLabel, [0, 0, 0], [8, 32, 32]));
    expect(await main(['eval', '--checkpoint', runDir, '--data', scroll.root, '--region', '0:8,0:32,0:32', '--backend', 'wasm'])).toBe(0);
    expect(out.at(-1)).toContain(`ink   ${r.heads.ink!.f05.toFixed(4)}`);
    expect(out.at(-1)).toContain('threshold sweep');
  });

  it('bad flags, missing labels, a region outside the volume and labels of another shape exit non-zero naming the flag and path', async () => {
    const err: string[] = [];
    vi.spyOn(console, 'log').mockImplementation(() => undefined);
    vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
    const other = await writePhantom(join(root, 'other'), resolvePhantomConfig({ shape: [8, 32, 32], seed: 1, preset: 'easy' }));
    // A bare Zarr array: nothing beside it.
    const bare = join(root, 'bare.zarr');
    await createVolume(bare, { shape: [...SHAPE], chunks: [8, 32, 32], dtype: 'uint8', fillValue: 0 });
    const base = ['eval', '--checkpoint', runDir, '--backend', 'wasm'];
    const cases: [string[], number, RegExp][] = [
      [['--data', scroll.root, '--region', '0:12,0:40,0:37'], 2, /--region: '0:12,0:40,0:37' reaches x = 37, outside .* of shape \[12, 40, 36\]/],
      [['--data', scroll.root, '--region', '0:12,0:40'], 2, /--region: has 2 ranges/],
      [['--data', scroll.root, '--region', '2:2,0:40,0:36'], 2, /--region: '2:2,0:40,0:36' is empty along z/],
      [['--data', scroll.root, '--labels', join(root, 'none.zarr')], 2, /--labels: no ink labels found at .*none\.zarr/],
      [['--data', bare], 2, /--labels: no ink labels found at .*bare\.zarr\/labels\/ink \(pass --labels PATH\)/],
      [['--data', scroll.root, '--labels', other.labels['ink']!], 2, /--labels: .*other.* has shape \[8, 32, 32\] but .* has \[12, 40, 36\]/],
      [['--data', scroll.root, '--batch', '0'], 2, /--batch: expected an integer >= 1/],
      [['--data', scroll.root, '--ignore-value', 'none'], 2, /--ignore-value: expected an integer/],
      [['--region', '0:1,0:1,0:1'], 2, /--data: is required/],
      [['--data', join(root, 'missing.zarr'), '--labels', scroll.ink], 1, /missing\.zarr/],
    ];
    for (const [flags, code, message] of cases) {
      expect(await main([...base, ...flags]), flags.join(' ')).toBe(code);
      expect(err.at(-1)).toMatch(message);
    }
  });
});

describe('goe eval with the fibre and geometry heads', () => {
  const MSHAPE = [16, 64, 64] as const;
  let multiRun: string;
  let multiScroll: Awaited<ReturnType<typeof writePhantom>>;

  beforeAll(async () => {
    const run = await train(smallTrainConfig(join(root, 'multi'), { steps: 8, validationPatches: 1, model: { heads: ['ink', 'fiber', 'geometry'] } }), { progressStream: null });
    multiRun = run.runDir;
    multiScroll = await writePhantom(join(root, 'mvol'), resolvePhantomConfig({ shape: [...MSHAPE], seed: 4, preset: 'easy' }));
  }, 120_000);

  it("scores every head: the metrics @goe/head-fiber and @goe/head-geometry compute on the whole-volume prediction", async () => {
    const r = await evaluate({ checkpoint: multiRun, data: multiScroll.root, backend: 'wasm', batch: 3 });
    expect(Object.keys(r.heads)).toEqual(['ink', 'fiber', 'geometry']);
    expect(r.labels).toEqual({ ink: multiScroll.labels.ink, papyrus: multiScroll.labels.papyrus, fibre: multiScroll.fields.fibre, normal: multiScroll.fields.normal });
    expect(r.tiles).toBe(2 * 2 * 2);

    // The reference: the restored model on each tile alone, targets from the fields by the packages'
    // own functions, metrics by the packages' own (non-streaming) functions over all tokens and voxels.
    const restored = await loadModel(multiRun);
    const model = restored.model as VolumeModel;
    const grid = { dims: [2, 8, 8] as [number, number, number], cell: [4, 4, 4] as [number, number, number], inputShape: [8, 32, 32] as [number, number, number] };
    const img = await openVolume(multiScroll.image);
    const pap = await openVolume(multiScroll.labels.papyrus);
    const fib = await openVolume(multiScroll.fields.fibre);
    const nrm = await openVolume(multiScroll.fields.normal);
    const fibrePred: number[] = [];
    const classical: number[] = [];
    const fibreTrue: number[] = [];
    const normalPred: number[] = [];
    const normalTrue: number[] = [];
    const sheetProb: number[] = [];
    const sheetTrue: number[] = [];
    const toLast = (f: ArrayLike<number>, n: number) => Float32Array.from({ length: 3 * n }, (_, i) => f[(i % 3) * n + Math.floor(i / 3)] as number);
    for (let z = 0; z < 16; z += 8)
      for (let y = 0; y < 64; y += 32)
        for (let x = 0; x < 64; x += 32) {
          const box = { offset: [z, y, x], shape: [8, 32, 32] };
          const xs = Float32Array.from((await img.read(box)).data as Uint8Array, (v) => normaliseIntensity(v));
          classical.push(...structureTensorFibers(xs, grid, 1).direction);
          const skip = model.fiberFeatures(xs, 1, [8, 32, 32]);
          const out = tf.tidy(() => {
            const f = model.forward(tf.tensor5d(xs, [1, 8, 32, 32, 1]), { training: false, fiberSkip: skip });
            return [f.fiber!, tf.sigmoid(f.geometry!.sheetLogits), f.geometry!.normals!];
          });
          const [fp, sp, np] = await Promise.all(out.map((t) => t.data()));
          tf.dispose([...out, ...(skip ? [skip] : [])]);
          fibrePred.push(...fp!);
          normalPred.push(...np!);
          sheetProb.push(...sp!);
          sheetTrue.push(...(await pap.read(box)).data);
          const fbox = { offset: [0, ...box.offset], shape: [3, ...box.shape] };
          fibreTrue.push(...fiberTargetsFromVoxels(toLast((await fib.read(fbox)).data, 8 * 32 * 32), grid, 1).target);
          normalTrue.push(...fiberTargetsFromVoxels(toLast((await nrm.read(fbox)).data, 8 * 32 * 32), grid, 1).target);
        }
    model.dispose();
    const want = fiberErrorByFace(fibrePred, fibreTrue);
    const got = r.heads.fiber!;
    for (const part of ['all', 'horizontal', 'vertical'] as const) {
      expect(got[part].count).toBe(want[part].count);
      expect(got[part].count).toBeGreaterThan(0);
      expect(got[part].mean).toBeCloseTo(want[part].mean, 3);
      expect(Math.abs(got[part].median - want[part].median)).toBeLessThanOrEqual(0.0051);
    }
    const st = fiberErrorByFace(classical, fibreTrue).all;
    expect(got.structureTensor.count).toBe(st.count);
    expect(got.structureTensor.mean).toBeCloseTo(st.mean, 3);
    const g = r.heads.geometry!;
    expect(g.dice).toBeCloseTo(dice(sheetProb, sheetTrue), 10);
    const wantNormal = normalAngularError(normalPred, normalTrue);
    expect(g.normal!.count).toBe(wantNormal.count);
    expect(g.normal!.mean).toBeCloseTo(wantNormal.mean, 3);
    expect(Number.isFinite(g.surfaceMean) && g.surfaceMean >= 0).toBe(true);
    expect(g.surfaceP95).toBeGreaterThanOrEqual(0);
  });

  it('a sub-region counts only the tokens whose cell centre lies in it; missing fields are errors naming the flag', async () => {
    const whole = await evaluate({ checkpoint: multiRun, data: multiScroll.root, backend: 'wasm' });
    const half = await evaluate({ checkpoint: multiRun, data: multiScroll.root, region: '0:16,0:64,0:32', backend: 'wasm' });
    const other = await evaluate({ checkpoint: multiRun, data: multiScroll.root, region: '0:16,0:64,32:64', backend: 'wasm' });
    expect(half.heads.fiber!.all.count + other.heads.fiber!.all.count).toBe(whole.heads.fiber!.all.count);
    const pooled = (half.heads.fiber!.all.mean * half.heads.fiber!.all.count + other.heads.fiber!.all.mean * other.heads.fiber!.all.count) / whole.heads.fiber!.all.count;
    expect(pooled).toBeCloseTo(whole.heads.fiber!.all.mean, 6);
    await expect(evaluate({ checkpoint: multiRun, data: multiScroll.root, fibreField: join(root, 'nofield.zarr'), backend: 'wasm' })).rejects.toThrow(/--fibre-field: no fibre direction field found at .*nofield\.zarr/);
    await expect(evaluate({ checkpoint: multiRun, data: multiScroll.root, normalField: multiScroll.labels.ink, backend: 'wasm' })).rejects.toThrow(/--normal-field: .* has shape \[16, 64, 64\] but .* sheet normal field must be \[3, 16, 64, 64\]/);
  });
});
