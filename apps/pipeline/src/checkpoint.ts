/**
 * Checkpoints: a folder `RUN/checkpoint/` holding `manifest.json` (format, step, config, the name,
 * shape and byte range of every tensor, and any JSON state the caller adds) and `weights.bin` (raw
 * little-endian float32). The folder is written beside the old one and swapped in by rename, so a
 * kill at any moment leaves either the old or the new checkpoint whole, never a mix.
 */
import { tf } from '@goe/tf';
import { replaceDirectory } from '@goe/scroll-io';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CheckpointError } from './errors.js';

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
  tensors: TensorEntry[];
  /** Free-form JSON state (optimizer step, RNG and sampler state, …). */
  state: Record<string, unknown>;
}

export interface SaveCheckpointInput {
  step: number;
  config: unknown;
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
