/**
 * The training loop: patches stream from the volume through scroll-io's prefetching sampler into
 * volume stem -> encoder -> GoE layer -> ink head; Adam with warm-up, cosine decay and global-norm
 * clipping; a progress line, `metrics.jsonl`, periodic validation, atomic checkpoints and a loss-curve
 * PNG in the run folder.
 */
import { Adam, initBackend, makeRng, tf, type BackendChoice } from '@goe/tf';
import { atomicWriteFile, openVolume, PatchSampler, type Volume } from '@goe/scroll-io';
import { summarizeProvenance, writeProvenancePictures } from '@goe/core';
import { resolvePhantomConfig, writePhantom } from '@goe/phantom';
import { inkMetrics } from '@goe/head-ink';
import { mkdir, writeFile, appendFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { learningRate, type TrainConfig } from './config.js';
import { saveCheckpoint } from './checkpoint.js';
import { NonFiniteLossError } from './errors.js';
import { InkModel, patchBatch, type PatchBatch } from './model.js';
import { writeInkPanelsPng, writeLineChartPng } from './plot.js';
import { Progress } from './progress.js';

/** One `metrics.jsonl` record. */
export interface MetricsRecord {
  step: number;
  split: 'train' | 'val';
  [key: string]: number | string;
}

export interface TrainResult {
  runDir: string;
  backend: BackendChoice;
  /** Training loss per logged step. */
  history: MetricsRecord[];
  validation: MetricsRecord[];
  checkpoint: string;
  lossCurvePng: string;
  /** Middle slices of validation patches: image, label, prediction, overlay. */
  predictionsPng: string;
  /** Mean seconds per step over the run. */
  secondsPerStep: number;
}

export interface TrainOptions {
  /** Where progress goes (stderr by default); `null` silences it. */
  progressStream?: NodeJS.WriteStream | null;
  /** Called after each logged step (tests stop early or inspect values). */
  onLog?: (r: MetricsRecord) => void;
}

interface DataSources {
  volume: Volume;
  ink: Volume;
  /** Training region (z below the validation slab) and validation region. */
  trainRegion: { offset: number[]; shape: number[] };
  valRegion: { offset: number[]; shape: number[] };
}

async function prepareData(c: TrainConfig, runDir: string): Promise<DataSources> {
  let volumePath = c.data.volume;
  let inkPath = c.data.inkLabels;
  if (c.data.source === 'phantom') {
    const pc = resolvePhantomConfig({ shape: c.data.phantomShape, seed: c.seed, preset: c.data.phantomPreset });
    const written = await writePhantom(join(runDir, 'data'), pc, { overwrite: true });
    volumePath = written.image;
    inkPath = written.labels.ink;
  }
  const volume = await openVolume(volumePath);
  const ink = await openVolume(inkPath);
  if (volume.shape.join(',') !== ink.shape.join(',')) {
    throw new Error(`ink labels ${inkPath} have shape [${ink.shape}] but the volume ${volumePath} has [${volume.shape}]`);
  }
  const [D, H, W] = volume.shape as [number, number, number];
  const valD = Math.floor(D * c.data.validationFraction);
  return {
    volume,
    ink,
    trainRegion: { offset: [0, 0, 0], shape: [D - valD, H, W] },
    valRegion: { offset: [D - valD, 0, 0], shape: [valD, H, W] },
  };

}

function globalNormClip(grads: tf.NamedTensorMap, maxNorm: number): { grads: tf.NamedTensorMap; norm: tf.Scalar } {
  return tf.tidy(() => {
    const sq = Object.values(grads).map((g) => tf.sum(tf.square(g)));
    const norm = tf.sqrt(tf.addN(sq)) as tf.Scalar;
    if (maxNorm <= 0) return { grads: { ...grads }, norm };
    // Scale = min(1, maxNorm / norm): the update direction is kept, only its length is bounded.
    const scale = tf.minimum(tf.scalar(1), tf.div(tf.scalar(maxNorm), tf.add(norm, 1e-6)));
    const out: tf.NamedTensorMap = {};
    for (const [k, g] of Object.entries(grads)) out[k] = tf.mul(g, scale);
    return { grads: out, norm };
  });
}

/**
 * Trains the ink model per `c` and writes the run folder (`checkpoint/`, `metrics.jsonl`,
 * `loss.png`, `config.json`).
 */
export async function train(c: TrainConfig, options: TrainOptions = {}): Promise<TrainResult> {
  const backend = await initBackend({ backend: c.backend === 'auto' ? undefined : c.backend });
  const runDir = resolve(c.out);
  await mkdir(runDir, { recursive: true });
  const metricsPath = join(runDir, 'metrics.jsonl');
  await rm(metricsPath, { force: true });
  await writeFile(join(runDir, 'config.json'), `${JSON.stringify(c, null, 2)}\n`);

  const data = await prepareData(c, runDir);
  const rng = makeRng(c.seed);
  const model = new InkModel(c.model, rng);
  const sampler = new PatchSampler({
    volume: data.volume,
    labels: { ink: data.ink },
    patchShape: c.model.patch,
    region: data.trainRegion,
    seed: c.seed,
    prefetch: c.data.prefetch,
  });
  // A fixed validation set: the same patches every time, from the held-out slab.
  const valSampler = new PatchSampler({
    volume: data.volume,
    labels: { ink: data.ink },
    patchShape: c.model.patch,
    region: data.valRegion,
    seed: c.seed + 1,
    prefetch: 0,
  });
  const valBatches: PatchBatch[] = [];
  for (let i = 0; i < c.validationPatches; i += c.batch) {
    const n = Math.min(c.batch, c.validationPatches - i);
    const patches = [];
    for (let j = 0; j < n; j++) patches.push(await valSampler.next());
    valBatches.push(patchBatch(patches, c.model.patch));
  }
  valSampler.close();

  const optimizer = new Adam({ beta1: c.optim.beta1, beta2: c.optim.beta2 });
  const vars = model.variables();
  const trainable = new Map([...vars].filter(([, v]) => v.trainable));
  // tf.variableGrads keys gradients by the engine's variable name; map them back to parameter paths.
  const pathOf = new Map([...trainable].map(([k, v]) => [v.name, k]));
  const progress =
    options.progressStream === null
      ? undefined
      : new Progress({ total: c.steps, unit: 'patches', perStep: c.batch, every: c.logEvery, stream: options.progressStream });
  progress?.log(`model: ${model.parameterCount().toLocaleString('en')} parameters; run folder ${runDir}`);

  const history: MetricsRecord[] = [];
  const validation: MetricsRecord[] = [];
  const ckptDir = join(runDir, 'checkpoint');
  let lastCheckpoint: string | undefined;
  const t0 = performance.now();

  const predictionsPng = join(runDir, 'predictions.png');
  const routingDir = join(runDir, 'routing');
  const validate = async (step: number): Promise<void> => {
    const probs: Float32Array[] = [];
    const labels: Uint8Array[] = [];
    let lossSum = 0;
    for (const b of valBatches) {
      const out = tf.tidy(() => {
        const f = model.forward(b.x, { training: false });
        const l = model.loss(f, b.ink);
        return { prob: tf.sigmoid(f.logits), loss: l.total };
      });
      probs.push((await out.prob.data()) as Float32Array);
      labels.push(b.inkLabels);
      lossSum += (await out.loss.data())[0] as number;
      tf.dispose([out.prob, out.loss]);
    }
    const prob = concatF32(probs);
    const label = concatU8(labels);
    const first = valBatches[0];
    if (first) {
      const [pd, ph, pw] = c.model.patch;
      const b = first.inkLabels.length / (pd * ph * pw);
      await writeInkPanelsPng(predictionsPng, {
        image: first.image,
        label: first.inkLabels,
        prob: (probs[0] as Float32Array).subarray(0, first.inkLabels.length),
        shape: [b, pd, ph, pw],
      });
      // How the validation patches were routed: the learned expert graph, the transitions between
      // experts from cycle to cycle and the expert load, as pictures and a JSON summary.
      const arrays = await model.routing(first.x);
      const summary = summarizeProvenance(arrays, { router: model.core.config.router, k: model.core.config.k });
      await writeProvenancePictures(routingDir, arrays, summary);
      await atomicWriteFile(join(routingDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    }
    const m = inkMetrics(prob, label);
    const rec: MetricsRecord = {
      step,
      split: 'val',
      loss: lossSum / valBatches.length,
      f05: m.f05,
      precision: m.precision,
      recall: m.recall,
      auc: m.auc,
      threshold: m.threshold,
    };
    validation.push(rec);
    await appendFile(metricsPath, `${JSON.stringify(rec)}\n`);
    progress?.log(
      `validation @ step ${step}: loss ${rec.loss.toString().slice(0, 6)}, F0.5 ${m.f05.toFixed(3)} (threshold ${m.threshold.toFixed(2)}), AUC ${m.auc.toFixed(3)}`,
    );
  };

  const checkpoint = async (step: number): Promise<void> => {
    const tensors = new Map<string, tf.Tensor>();
    for (const [k, v] of vars) tensors.set(`model/${k}`, v);
    const opt = optimizer.state();
    for (const [k, t] of opt.tensors) tensors.set(`optimizer/${k}`, t);
    await saveCheckpoint(ckptDir, {
      step,
      config: c,
      tensors,
      state: { sampler: sampler.state(), optimizerSteps: opt.steps, backend: backend.name },
    });
    lastCheckpoint = ckptDir;
  };

  for (let step = 0; step < c.steps; step++) {
    const patches = [];
    for (let j = 0; j < c.batch; j++) patches.push(await sampler.next());
    const batch = patchBatch(patches, c.model.patch);
    const lr = learningRate(c.optim, step, c.steps);

    const { parts, gradNorm } = tf.tidy(() => {
      let partsInner: Record<string, tf.Scalar> = {};
      const { value, grads } = tf.variableGrads(() => {
        const f = model.forward(batch.x, { training: true });
        const l = model.loss(f, batch.ink);
        partsInner = Object.fromEntries(Object.entries(l).map(([k, v]) => [k, tf.keep(v)]));
        return l.total;
      }, [...trainable.values()]);
      const clipped = globalNormClip(grads, c.optim.clipNorm);
      const byPath = new Map<string, tf.Tensor>();
      for (const [name, g] of Object.entries(clipped.grads)) byPath.set(pathOf.get(name) ?? name, g);
      optimizer.apply(trainable, byPath, lr);
      tf.keep(value);
      return { parts: partsInner, gradNorm: tf.keep(clipped.norm) };
    });
    tf.dispose([batch.x, batch.ink]);

    const logNow = (step + 1) % c.logEvery === 0 || step === 0 || step === c.steps - 1;
    if (logNow) {
      const rec: MetricsRecord = { step: step + 1, split: 'train', lr };
      for (const [k, v] of Object.entries(parts)) {
        const val = (await v.data())[0] as number;
        if (!Number.isFinite(val)) throw new NonFiniteLossError(step + 1, k, val, lastCheckpoint);
        rec[k] = val;
      }
      rec['gradNorm'] = (await gradNorm.data())[0] as number;
      rec['seconds'] = (performance.now() - t0) / 1000;
      history.push(rec);
      await appendFile(metricsPath, `${JSON.stringify(rec)}\n`);
      options.onLog?.(rec);
      const shown: Record<string, number> = { loss: rec['total'] as number };
      for (const k of ['bce', 'dice', 'router']) if (typeof rec[k] === 'number') shown[k] = rec[k] as number;
      progress?.update(step + 1, shown);
    }
    tf.dispose([...Object.values(parts), gradNorm]);

    if (c.validateEvery > 0 && (step + 1) % c.validateEvery === 0 && step + 1 < c.steps) await validate(step + 1);
    if (c.checkpointEvery > 0 && (step + 1) % c.checkpointEvery === 0 && step + 1 < c.steps) await checkpoint(step + 1);
  }
  const secondsPerStep = (performance.now() - t0) / 1000 / c.steps;
  progress?.done();
  await validate(c.steps);
  await checkpoint(c.steps);
  sampler.close();

  const lossCurvePng = join(runDir, 'loss.png');
  const x = history.map((r) => r.step);
  await writeLineChartPng(
    lossCurvePng,
    [
      { name: 'train loss', x, y: history.map((r) => r['total'] as number) },
      ...(history[0] && 'bce' in history[0]
        ? [{ name: 'train BCE', x, y: history.map((r) => r['bce'] as number) }]
        : []),
      { name: 'validation loss', x: validation.map((r) => r.step), y: validation.map((r) => r['loss'] as number) },
    ],
    { title: `Training loss (${backend.name}, seed ${c.seed})`, xLabel: 'step', yLabel: 'loss', logY: true },
  );
  optimizer.dispose();
  model.dispose();
  return { runDir, backend, history, validation, checkpoint: ckptDir, lossCurvePng, predictionsPng, secondsPerStep };
}

function concatF32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function concatU8(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
