/**
 * The unit of work of the phantom writer, the same in the calling thread and in worker threads: one
 * chunk box computed and written to every array of `scroll.zarr`, or one group's pyramid built.
 */
import { join } from 'node:path';
import { buildPyramid, ChunkCache, openWritableOmeLevel, type PyramidMethod, type WritableVolume } from '@goe/scroll-io';
import type { PhantomConfig } from './config.js';
import { type PhantomBox, phantomRegion } from './phantom.js';

/** The arrays written per chunk: level 0 of the image, of each label and of each vector field. */
export type PhantomArrayName = 'image' | 'ink' | 'papyrus' | 'wrap' | 'fibre' | 'normal';

/** Multiscale groups inside `root` (the image is `root` itself), by array. */
export function phantomGroups(root: string): Record<PhantomArrayName, string> {
  return {
    image: root,
    ink: join(root, 'labels', 'ink'),
    papyrus: join(root, 'labels', 'papyrus'),
    wrap: join(root, 'labels', 'wrap'),
    fibre: join(root, 'fields', 'fibre'),
    normal: join(root, 'fields', 'normal'),
  };
}

export type PhantomArrays = Record<PhantomArrayName, WritableVolume>;

/**
 * Opens level 0 of every array of an existing `scroll.zarr` for writing. No chunk cache: every chunk
 * is written once and never read back here, so caching would only hold memory.
 */
export async function openPhantomArrays(root: string): Promise<PhantomArrays> {
  const groups = phantomGroups(root);
  const names = Object.keys(groups) as PhantomArrayName[];
  const cache = new ChunkCache(0);
  const opened = await Promise.all(names.map((n) => openWritableOmeLevel(groups[n], { level: 0, cache, writeEmptyChunks: false })));
  return Object.fromEntries(names.map((n, i) => [n, opened[i]])) as PhantomArrays;
}

/** Computes the phantom in `box` (one chunk of every array) and writes it to every array. */
export async function writePhantomChunk(arrays: PhantomArrays, config: PhantomConfig, box: PhantomBox): Promise<void> {
  const r = phantomRegion(config, box);
  const vector = { offset: [0, ...box.offset], shape: [3, ...box.shape] };
  await Promise.all([
    arrays.image.write(box, r.image),
    arrays.ink.write(box, r.ink),
    arrays.papyrus.write(box, r.papyrus),
    arrays.wrap.write(box, r.wrap),
    arrays.fibre.write(vector, r.fibre),
    arrays.normal.write(vector, r.normal),
  ]);
}

/** One task of the writer. */
export type WriteTask = { kind: 'chunk'; box: PhantomBox } | { kind: 'pyramid'; group: string; levels: number; method: PyramidMethod };

/** What a worker needs besides its tasks. */
export interface WriteWorkerData {
  root: string;
  config: PhantomConfig;
}

/** Runs one task; `arrays` opens (once) the level-0 arrays the chunk tasks write. */
export async function runWriteTask(task: WriteTask, config: PhantomConfig, arrays: () => Promise<PhantomArrays>): Promise<void> {
  if (task.kind === 'chunk') {
    await writePhantomChunk(await arrays(), config, task.box);
  } else {
    // Each source chunk is read once, so the pyramid needs no cache either.
    await buildPyramid(task.group, { levels: task.levels, method: task.method, cache: new ChunkCache(0) });
  }
}
