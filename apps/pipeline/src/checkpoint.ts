/**
 * Checkpoints: a folder `RUN/checkpoint/` holding `manifest.json` (format, step, config, the resolved
 * model spec, the name, shape and byte range of every tensor, and any JSON state the caller adds) and
 * `weights.bin` (raw little-endian float32). The folder is written beside the old one and swapped in
 * by rename, so a kill at any moment leaves either the old or the new checkpoint whole, never a mix.
 */
import { makeRng, tf } from '@goe/tf';
import { replaceDirectory } from '@goe/scroll-io';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveTrainConfig, type TrainConfig } from './config.js';
import { CheckpointError } from './errors.js';
import { buildModel, type PipelineModel } from './model.js';
import { resolveModelSpec, restoreModelSpec, type ModelSpec } from './spec.js';

export const CHECKPOINT_FORMAT = 'goe-checkpoint/1';

interface TensorEntry {
  name: string;
  shape: number[];
  dtype: 'float32';
  offset: number;
  length: number;
}

export interface CheckpointManifest {
  format: string;
  step: number;
  /** The resolved training config the weights belong to. */
  config: unknown;
  /**
   * The model spec (every part's config as its package resolved it) the weights belong to; absent in
   * checkpoints written before it was saved, whose model is rebuilt from `config`.
   */
  model?: unknown;
  tensors: TensorEntry[];
  /** Free-form JSON state (optimizer step, RNG and sampler state, …). */
  state: Record<string, unknown>;
}

export interface SaveCheckpointInput {
  step: number;
  config: unknown;
  /** The resolved model spec (saved as given). */
  model?: unknown;
  /** Tensors by name: model variables and optimizer slots. */
  tensors: Map<string, tf.Tensor>;
  state?: Record<string, unknown>;
}

/** Writes `dir` atomically (sibling temporary folder, then rename). */
export async function saveCheckpoint(dir: string, input: SaveCheckpointInput): Promise<void> {
  const entries: TensorEntry[] = [];
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of input.tensors) {
    if (t.dtype !== 'float32') throw new CheckpointError(dir, `tensor '${name}' has dtype ${t.dtype}; only float32 is saved`);
    const data = (await t.data()) as Float32Array;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    entries.push({ name, shape: t.shape.slice(), dtype: 'float32', offset, length: bytes.byteLength });
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  const manifest: CheckpointManifest = {
    format: CHECKPOINT_FORMAT,
    step: input.step,
    config: input.config,
    ...(input.model === undefined ? {} : { model: input.model }),
    tensors: entries,
    state: input.state ?? {},
  };
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    await writeFile(join(tmp, 'weights.bin'), Buffer.concat(chunks));
    await writeFile(join(tmp, 'manifest.json'), `${JSON.stringify(manifest, null, 1)}\n`);
    await replaceDirectory(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw new CheckpointError(dir, 'could not be written', { cause: err });
  }
}

export interface LoadedCheckpoint {
  manifest: CheckpointManifest;
  /** Float32 values by tensor name (no tensors are created here). */
  values: Map<string, { shape: number[]; data: Float32Array }>;
}

/** Reads a checkpoint folder, checking that every byte range lies inside `weights.bin`. */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const mpath = join(dir, 'manifest.json');
  const wpath = join(dir, 'weights.bin');
  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(await readFile(mpath, 'utf8')) as CheckpointManifest;
  } catch (err) {
    throw new CheckpointError(mpath, 'missing or not valid JSON', { cause: err });
  }
  if (manifest.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointError(mpath, `format '${String(manifest.format)}', expected '${CHECKPOINT_FORMAT}'`);
  }
  let buf: Buffer;
  try {
    buf = await readFile(wpath);
  } catch (err) {
    throw new CheckpointError(wpath, 'missing', { cause: err });
  }
  const values = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const e of manifest.tensors) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (e.length !== n * 4 || e.offset + e.length > buf.byteLength) {
      throw new CheckpointError(wpath, `tensor '${e.name}' (bytes ${e.offset}+${e.length}) does not fit the file of ${buf.byteLength} bytes`);
    }
    const data = new Float32Array(n);
    new Uint8Array(data.buffer).set(buf.subarray(e.offset, e.offset + e.length));
    values.set(e.name, { shape: e.shape, data });
  }
  return { manifest, values };
}

/**
 * Assigns checkpoint values to variables by name; every variable must be present with its shape.
 * @throws CheckpointError naming the first missing or mismatched tensor.
 */
export function assignVariables(ckpt: LoadedCheckpoint, variables: Map<string, tf.Variable>, where: string): void {
  for (const [name, v] of variables) {
    const e = ckpt.values.get(name);
    if (!e) throw new CheckpointError(where, `has no tensor '${name}'`);
    if (e.shape.join(',') !== v.shape.join(',')) {
      throw new CheckpointError(where, `tensor '${name}' has shape [${e.shape}], the model expects [${v.shape}]`);
    }
    tf.tidy(() => v.assign(tf.tensor(e.data, e.shape, 'float32')));
  }
}

/** What `saveModelCheckpoint` writes: a model with its spec, and optionally the optimiser's slots. */
export interface ModelCheckpointInput {
  step: number;
  config: TrainConfig;
  model: PipelineModel;
  /** Optimiser slot tensors by name (saved under `optimizer/`). */
  optimizer?: Map<string, tf.Tensor>;
  state?: Record<string, unknown>;
}

/** Saves `model`'s variables under `model/…` with its spec, and the optimiser's slots under `optimizer/…`. */
export async function saveModelCheckpoint(dir: string, input: ModelCheckpointInput): Promise<void> {
  const tensors = new Map<string, tf.Tensor>();
  for (const [k, v] of input.model.variables()) tensors.set(`model/${k}`, v);
  for (const [k, t] of input.optimizer ?? []) tensors.set(`optimizer/${k}`, t);
  await saveCheckpoint(dir, { step: input.step, config: input.config, model: input.model.spec, tensors, state: input.state });
}

export interface RestoredModel {
  model: PipelineModel;
  spec: ModelSpec;
  config: TrainConfig;
  checkpoint: LoadedCheckpoint;
  /** The checkpoint folder read. */
  dir: string;
}

/**
 * Rebuilds the model a checkpoint holds: from its saved spec (or, for older checkpoints, from its
 * training config), with every weight assigned.
 * @param path a run folder (holding `checkpoint/`) or a checkpoint folder
 * @throws CheckpointError naming the folder and what is missing or does not match
 */
export async function loadModel(path: string): Promise<RestoredModel> {
  const dir = existsSync(join(path, 'checkpoint', 'manifest.json')) ? join(path, 'checkpoint') : path;
  const checkpoint = await loadCheckpoint(dir);
  let config: TrainConfig;
  try {
    config = resolveTrainConfig(checkpoint.manifest.config as Record<string, unknown>);
  } catch (err) {
    throw new CheckpointError(dir, `training config is not valid: ${(err as Error).message}`, { cause: err });
  }
  const spec = checkpoint.manifest.model === undefined ? resolveModelSpec(config.model) : restoreModelSpec(checkpoint.manifest.model, dir);
  const model = buildModel(spec, makeRng(config.seed));
  try {
    assignVariables(checkpoint, new Map([...model.variables()].map(([k, v]) => [`model/${k}`, v])), dir);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return { model, spec, config, checkpoint, dir };
}
