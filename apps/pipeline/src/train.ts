/**
 * The training loop, one for every stem: batches from a task (volume patches or masked byte windows)
 * go through stem -> encoder -> GoE layer -> head; Adam with warm-up, cosine decay and global-norm
 * clipping; a progress line, `metrics.jsonl`, periodic validation with routing pictures, atomic
 * checkpoints (weights, optimiser state, the training config and the resolved model spec) and a
 * loss-curve PNG in the run folder.
 */
import { Adam, initBackend, makeRng, tf, type BackendChoice } from '@goe/tf';
import { atomicWriteFile } from '@goe/scroll-io';
import { summarizeProvenance, writeProvenancePictures } from '@goe/core';
import { existsSync } from 'node:fs';
import { mkdir, writeFile, appendFile, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { learningRate, type TrainConfig } from './config.js';
import { assignVariables, loadModel, saveModelCheckpoint } from './checkpoint.js';
import { CheckpointError, NonFiniteLossError } from './errors.js';
import { buildModel, type ByteModel, type VolumeModel, type Trunk } from './model.js';
import { haltingByClass, writeHaltingPng } from './halting.js';
import { writeLineChartPng } from './plot.js';
import { Progress } from './progress.js';
import { sequenceTask } from './sequence-task.js';
import { resolveModelSpec } from './spec.js';
import type { TrainTask } from './task.js';
import { volumeTask } from './volume-task.js';

/** One `metrics.jsonl` record. */
export interface MetricsRecord {
  step: number;
  split: 'train' | 'val';
  [key: string]: number | string;
}

export interface TrainResult {
  runDir: string;
  backend: BackendChoice;
  /** The stem the model was trained behind, and the run's total steps. */
  stem: 'volume' | 'sequence';
  steps: number;
  /** Training loss per logged step. */
  history: MetricsRecord[];
  validation: MetricsRecord[];
  checkpoint: string;
  lossCurvePng: string;
  /**
   * The last validation's example predictions: `predictions.png` (middle slices of validation patches:
   * image, label, prediction, overlay) for the volume stem, `predictions.txt` (masked windows, the
   * truth and the model's guesses) for the sequence stem.
   */
  predictions: string;
  /** Mean seconds per step over the run. */
  secondsPerStep: number;
}

export interface TrainOptions {
  /** Where progress goes (stderr by default); `null` silences it. */
  progressStream?: NodeJS.WriteStream | null;
  /** Called after each logged step (tests stop early or inspect values). */
  onLog?: (r: MetricsRecord) => void;
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
 * Starts a run: chooses the backend, creates `c.out` and writes `config.json` and a fresh
 * `metrics.jsonl` there.
 */
export async function prepareRun(c: TrainConfig): Promise<{ runDir: string; backend: BackendChoice }> {
  const backend = await initBackend({ backend: c.backend === 'auto' ? undefined : c.backend });
  const runDir = resolve(c.out);
  await mkdir(runDir, { recursive: true });
  await rm(join(runDir, 'metrics.jsonl'), { force: true });
  await writeFile(join(runDir, 'config.json'), `${JSON.stringify(c, null, 2)}\n`);
  return { runDir, backend };
}

/**
 * The task `c.model.stemKind` names, for a model built from `c` (around `trunk` when given, so one
 * encoder and GoE layer can train behind either stem).
 */
export async function createTask(c: TrainConfig, runDir: string, trunk?: Trunk): Promise<TrainTask<unknown>> {
  const model = buildModel(resolveModelSpec(c.model), makeRng(c.seed), trunk);
  try {
    const task =
      model.spec.stemKind === 'sequence'
        ? await sequenceTask(c, runDir, model as ByteModel)
        : await volumeTask(c, runDir, model as VolumeModel);
    return task as TrainTask<unknown>;
  } catch (err) {
    // The model's variables are not the caller's yet; the shared trunk stays the caller's.
    if (trunk) model.disposeOwnParts();
    else model.dispose();
    throw err;
  }
}

/**
 * Trains `task.model` on `task` per `c` in `runDir` (see `prepareRun`), writing `metrics.jsonl`,
 * validation outputs, `routing/`, `checkpoint/` and `loss.png`. The model is left to the caller (it may
 * share its trunk with another); the task is closed.
 */
export async function runTraining<B>(
  task: TrainTask<B>,
  c: TrainConfig,
  run: { runDir: string; backend: BackendChoice; resume?: ResumePoint },
  options: TrainOptions = {},
): Promise<TrainResult> {
  const { runDir, backend, resume } = run;
  const { model } = task;
  const metricsPath = join(runDir, 'metrics.jsonl');
  const optimizer = new Adam({ beta1: c.optim.beta1, beta2: c.optim.beta2 });
  if (resume) {
    optimizer.restore(resume.optimizer, resume.optimizerSteps);
    task.restore(resume.sampler);
  }
  const vars = model.variables();
  const trainable = new Map([...vars].filter(([, v]) => v.trainable));
  // tf.variableGrads keys gradients by the engine's variable name; map them back to parameter paths.
  const pathOf = new Map([...trainable].map(([k, v]) => [v.name, k]));
  const progress =
    options.progressStream === null
      ? undefined
      : new Progress({ total: c.steps, unit: task.unit, perStep: task.perStep, every: c.logEvery, stream: options.progressStream });
  progress?.log(`model: ${model.spec.stemKind} stem, ${model.parameterCount().toLocaleString('en')} parameters; run folder ${runDir}`);
  progress?.log(task.description);

  const history: MetricsRecord[] = resume ? resume.records.filter((r) => r.split === 'train') : [];
  const validation: MetricsRecord[] = resume ? resume.records.filter((r) => r.split === 'val') : [];
  const ckptDir = join(runDir, 'checkpoint');
  let lastCheckpoint: string | undefined = resume ? ckptDir : undefined;
  const first = resume?.step ?? 0;
  const t0 = performance.now();
  const routingDir = join(runDir, 'routing');

  const validate = async (step: number): Promise<void> => {
    const v = await task.validate(step);
    // How the validation inputs were routed: the learned expert graph, the transitions between
    // experts from cycle to cycle and the expert load, as pictures and a JSON summary.
    const arrays = await task.routing();
    const summary = summarizeProvenance(arrays, { router: model.core.config.router, k: model.core.config.k });
    await writeProvenancePictures(routingDir, arrays, summary);
    // Cycles spent per token class (GoE draft §3.1.5): where the router keeps refining.
    const halting = task.tokenClasses ? haltingByClass(arrays, task.tokenClasses()) : undefined;
    if (halting) await writeHaltingPng(join(routingDir, 'halting.png'), halting);
    await atomicWriteFile(join(routingDir, 'summary.json'), `${JSON.stringify({ ...summary, ...(halting ? { haltingByClass: halting } : {}) }, null, 2)}\n`);
    const rec: MetricsRecord = { step, split: 'val', ...v.metrics };
    for (const [name, h] of Object.entries(halting ?? {})) if (h.tokens > 0) rec[`halting${name[0]!.toUpperCase()}${name.slice(1)}`] = h.meanCycles;
    validation.push(rec);
    await appendFile(metricsPath, `${JSON.stringify(rec)}\n`);
    progress?.log(`validation @ step ${step}: ${v.line}`);
  };

  const checkpoint = async (step: number): Promise<void> => {
    const opt = optimizer.state();
    await saveModelCheckpoint(ckptDir, {
      step,
      config: c,
      model,
      optimizer: opt.tensors,
      state: { sampler: task.state(), optimizerSteps: opt.steps, backend: backend.name },
    });
    lastCheckpoint = ckptDir;
  };

  try {
    for (let step = first; step < c.steps; step++) {
      const batch = await task.nextBatch();
      const lr = learningRate(c.optim, step, c.steps);

      const { parts, gradNorm } = tf.tidy(() => {
        let partsInner: Record<string, tf.Scalar> = {};
        const { value, grads } = tf.variableGrads(() => {
          const l = task.losses(batch, true);
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
      task.disposeBatch(batch);

      // Every step, not only logged ones: a non-finite loss must stop the run before a checkpoint can
      // save the weights it produced. One scalar read per step; the parts are read only to name one.
      const total = (await (parts['total'] as tf.Scalar).data())[0] as number;
      if (!Number.isFinite(total)) {
        let part = 'total';
        let value = total;
        for (const [k, v] of Object.entries(parts)) {
          const val = (await v.data())[0] as number;
          if (k !== 'total' && !Number.isFinite(val)) [part, value] = [k, val];
        }
        tf.dispose([...Object.values(parts), gradNorm]);
        throw new NonFiniteLossError(step + 1, part, value, lastCheckpoint);
      }

      const logNow = (step + 1) % c.logEvery === 0 || step === 0 || step === c.steps - 1;
      if (logNow) {
        const rec: MetricsRecord = { step: step + 1, split: 'train', lr };
        for (const [k, v] of Object.entries(parts)) {
          rec[k] = (await v.data())[0] as number;
        }
        rec['gradNorm'] = (await gradNorm.data())[0] as number;
        rec['seconds'] = (performance.now() - t0) / 1000;
        history.push(rec);
        await appendFile(metricsPath, `${JSON.stringify(rec)}\n`);
        options.onLog?.(rec);
        const shown: Record<string, number> = { loss: rec['total'] as number };
        for (const k of task.shown) if (typeof rec[k] === 'number') shown[k] = rec[k] as number;
        progress?.update(step + 1, shown);
      }
      tf.dispose([...Object.values(parts), gradNorm]);

      if (c.validateEvery > 0 && (step + 1) % c.validateEvery === 0 && step + 1 < c.steps) await validate(step + 1);
      if (c.checkpointEvery > 0 && (step + 1) % c.checkpointEvery === 0 && step + 1 < c.steps) await checkpoint(step + 1);
    }
    const secondsPerStep = (performance.now() - t0) / 1000 / Math.max(1, c.steps - first);
    progress?.done();
    await validate(c.steps);
    await checkpoint(c.steps);

    const lossCurvePng = join(runDir, 'loss.png');
    const x = history.map((r) => r.step);
    const plotted = task.plotted;
    await writeLineChartPng(
      lossCurvePng,
      [
        { name: 'train loss', x, y: history.map((r) => r['total'] as number) },
        ...(plotted && history[0] && plotted.key in history[0]
          ? [{ name: plotted.name, x, y: history.map((r) => r[plotted.key] as number) }]
          : []),
        { name: 'validation loss', x: validation.map((r) => r.step), y: validation.map((r) => r['loss'] as number) },
      ],
      {
        title: `Training loss (${model.spec.stemKind} stem, ${backend.name}, seed ${c.seed})`,
        xLabel: 'step',
        yLabel: 'loss',
        logY: true,
      },
    );
    return {
      runDir,
      backend,
      stem: model.spec.stemKind,
      steps: c.steps,
      history,
      validation,
      checkpoint: ckptDir,
      lossCurvePng,
      predictions: task.predictions,
      secondsPerStep,
    };
  } finally {
    optimizer.dispose();
    task.close();
  }
}

/** Where a resumed run continues: the checkpoint's step, optimiser state, sampler state, and the log so far. */
export interface ResumePoint {
  step: number;
  optimizer: Map<string, { shape: number[]; data: Float32Array }>;
  optimizerSteps: Record<string, number>;
  sampler: unknown;
  /** `metrics.jsonl` records up to and including `step` (later ones were logged after the checkpoint). */
  records: MetricsRecord[];
}

/**
 * Continues the run in `runDir` from its last checkpoint, as if it had never stopped (a run killed at
 * any point, `kill -9` included): the checkpoint's config, weights, Adam state and sampler state, the
 * steps after it run again, and `metrics.jsonl` loses the records logged after the checkpoint, so the
 * continued loss curve equals an uninterrupted run's step for step.
 * @throws CheckpointError when the folder has no readable checkpoint, or the run had already finished
 */
export async function resumeTraining(runDir: string, options: TrainOptions & { backend?: string } = {}): Promise<TrainResult> {
  const dir = resolve(runDir);
  const ckptDir = join(dir, 'checkpoint');
  const restored = await loadModel(ckptDir);
  const c: TrainConfig = { ...restored.config, out: dir, ...(options.backend ? { backend: options.backend } : {}) };
  const m = restored.checkpoint.manifest;
  restored.model.dispose();
  if (m.step >= c.steps) throw new CheckpointError(ckptDir, `is at step ${m.step} of ${c.steps}: the run is complete`);
  const state = (m.state ?? {}) as { sampler?: unknown; optimizerSteps?: Record<string, number> };
  if (state.sampler === undefined || state.optimizerSteps === undefined) throw new CheckpointError(ckptDir, 'holds no sampler or optimiser state to resume from');
  const optimizer = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [k, v] of restored.checkpoint.values) if (k.startsWith('optimizer/')) optimizer.set(k.slice('optimizer/'.length), v);

  const metricsPath = join(dir, 'metrics.jsonl');
  const lines = existsSync(metricsPath) ? (await readFile(metricsPath, 'utf8')).split('\n').filter((l) => l.trim() !== '') : [];
  const records: MetricsRecord[] = [];
  for (const l of lines) {
    let r: MetricsRecord;
    try {
      r = JSON.parse(l) as MetricsRecord;
    } catch {
      break; // a line cut short by the kill: nothing after it was written
    }
    if (r.step <= m.step) records.push(r);
  }
  await atomicWriteFile(metricsPath, records.map((r) => `${JSON.stringify(r)}\n`).join(''));

  const backend = await initBackend({ backend: c.backend === 'auto' ? undefined : c.backend });
  const task = await createTask(c, dir);
  try {
    assignVariables(restored.checkpoint, new Map([...task.model.variables()].map(([k, v]) => [`model/${k}`, v])), ckptDir);
    return await runTraining(task, c, { runDir: dir, backend, resume: { step: m.step, optimizer, optimizerSteps: state.optimizerSteps, sampler: state.sampler, records } }, options);
  } finally {
    task.model.dispose();
  }
}

/**
 * Trains the model `c.model.stemKind` names and writes the run folder (`checkpoint/`,
 * `metrics.jsonl`, `loss.png`, `config.json`, the validation's predictions and `routing/`).
 */
export async function train(c: TrainConfig, options: TrainOptions = {}): Promise<TrainResult> {
  const run = await prepareRun(c);
  const task = await createTask(c, run.runDir);
  try {
    return await runTraining(task, c, run, options);
  } finally {
    task.model.dispose();
  }
}
