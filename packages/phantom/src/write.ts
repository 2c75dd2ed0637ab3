import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { type Compressor, createGroup, createOmeLabel, createOmeZarr, type PyramidMethod } from '@goe/scroll-io';
import { PhantomConfigError, type PhantomConfig } from './config.js';
import { forEachBounded, siblingModule, ThreadPool } from './parallel.js';
import type { PhantomBox } from './phantom.js';
import { writePhantomPreview } from './preview.js';
import { openPhantomArrays, type PhantomArrays, phantomGroups, runWriteTask, type WriteTask, type WriteWorkerData } from './write-chunk.js';

export interface WritePhantomOptions {
  /** Chunk shape `[d, h, w]` (default 64³, clipped to the volume). */
  chunks?: [number, number, number];
  /** Default 2 (read by zarr-python 2.x and the scroll tooling). */
  zarrFormat?: 2 | 3;
  /** Default `'blosc-lz4'`. */
  compressor?: Compressor;
  /** Replace an existing `scroll.zarr` in `outDir`. Default false. */
  overwrite?: boolean;
  /**
   * Resolution levels of the image and label pyramids, level 0 included. Default: halve while the
   * smallest spatial side of the next level is at least 16 voxels, at most 6 levels.
   */
  levels?: number;
  /**
   * Worker threads computing and writing chunks (default `os.availableParallelism()`); 0 or 1
   * computes in the calling thread. The files are byte-identical for every value.
   */
  threads?: number;
  /** Called before the first chunk, after every chunk, and once when the pyramids start. */
  onProgress?: (progress: PhantomProgress) => void;
  /** Also write `outDir/preview.png` ({@link writePhantomPreview}). Default false. */
  preview?: boolean;
}

/** Progress of {@link writePhantom}; counts are of level-0 chunk boxes. */
export interface PhantomProgress {
  /** `'chunks'` while level 0 is computed, `'pyramids'` once, when the coarser levels start. */
  stage: 'chunks' | 'pyramids';
  chunksDone: number;
  chunksTotal: number;
  /** Level-0 voxels computed and written per second so far (0 before the first chunk). */
  voxelsPerSecond: number;
  /** Seconds left for level 0 at that rate (NaN before the first chunk, 0 when done). */
  etaSeconds: number;
}

/** Where {@link writePhantom} put things. */
export interface PhantomPaths {
  /** The OME-Zarr image group, `outDir/scroll.zarr`. */
  root: string;
  /** Level-0 image array (`config.dtype`), `scroll.zarr/0`. */
  image: string;
  /** Pyramid levels of the image and of each label. */
  levels: number;
  /** Label image groups (level `0/` inside each): ink and papyrus uint8 0/1, wrap uint16 (wrap k is k+1, air 0). */
  labels: { ink: string; papyrus: string; wrap: string };
  /** Vector field groups `[3, D, H, W]` float32 (axes c, z, y, x; level `0/` only). */
  fields: { fibre: string; normal: string };
  /** `outDir/preview.png`, when asked for. */
  preview?: string;
}

/** Writing the phantom failed: names the chunk (or the pyramid) that failed; the original error is the cause. */
export class PhantomWriteError extends Error {
  /** The `scroll.zarr` being written. */
  readonly path: string;
  /** Chunk grid coordinates `[z, y, x]` of the failed chunk (absent for a pyramid failure). */
  readonly chunk?: number[];
  /** Voxel box of the failed chunk. */
  readonly region?: PhantomBox;
  constructor(path: string, message: string, options: { chunk?: number[]; region?: PhantomBox; cause: unknown }) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.path = path;
    this.chunk = options.chunk;
    this.region = options.region;
  }
}

const MAX_LEVELS = 6;
const MIN_LEVEL_SIDE = 16;

/** Default pyramid depth: halve while the next level's smallest side is >= 16, at most 6 levels. */
export function defaultPyramidLevels(shape: readonly number[]): number {
  let levels = 1;
  while (levels < MAX_LEVELS && Math.min(...shape.map((s) => Math.ceil(s / 2 ** levels))) >= MIN_LEVEL_SIDE) levels++;
  return levels;
}

/**
 * How each group's coarser levels are made. Papyrus takes the max, not the mode: sheets are 2 to 4
 * voxels thick, so many 2x2x2 blocks on a sheet's edge hold fewer papyrus than air voxels, and the
 * mode (ties to air) thins every sheet level by level until it is gone (default preset: 7.4% of the
 * voxels are papyrus at level 0, 0.5% at level 3 by mode). The max keeps every sheet at every level,
 * thickened, and merged with its neighbour once blocks are wider than the gap between wraps; telling
 * wraps apart is the wrap label's job. With ink also reduced by max, ink stays inside papyrus at every
 * level. The wrap index takes the mode, which never invents an index; it may call a block air where
 * papyrus says sheet.
 */
const PYRAMIDS: { group: 'image' | 'papyrus' | 'ink' | 'wrap'; method: PyramidMethod }[] = [
  { group: 'image', method: 'mean' },
  { group: 'papyrus', method: 'max' },
  { group: 'ink', method: 'max' },
  { group: 'wrap', method: 'mode' },
];

function checkOptions(options: WritePhantomOptions, shape: readonly number[]) {
  const chunks = options.chunks ?? [64, 64, 64];
  if (!Array.isArray(chunks) || chunks.length !== 3 || !chunks.every((c) => Number.isSafeInteger(c) && c >= 1)) {
    throw new PhantomConfigError('chunks', `expected [d, h, w] of integers >= 1, received ${JSON.stringify(chunks)}`);
  }
  const levels = options.levels ?? defaultPyramidLevels(shape);
  if (!Number.isSafeInteger(levels) || levels < 1 || levels > 32) throw new PhantomConfigError('levels', `expected an integer in [1, 32], received ${JSON.stringify(levels)}`);
  const threads = options.threads ?? availableParallelism();
  if (!Number.isSafeInteger(threads) || threads < 0) throw new PhantomConfigError('threads', `expected an integer >= 0, received ${JSON.stringify(threads)}`);
  return { chunks: chunks.map((c, i) => Math.min(c, shape[i])), levels, threads };
}

/** The chunk boxes of the volume, z slowest, with their grid coordinates. */
function* chunkBoxes(shape: readonly number[], ch: readonly number[]): Generator<{ chunk: number[]; box: PhantomBox }> {
  for (let z = 0; z < shape[0]; z += ch[0])
    for (let y = 0; y < shape[1]; y += ch[1])
      for (let x = 0; x < shape[2]; x += ch[2]) {
        const offset = [z, y, x];
        yield { chunk: offset.map((o, i) => o / ch[i]), box: { offset, shape: offset.map((o, i) => Math.min(ch[i], shape[i] - o)) } };
      }
}

/** Creates the groups and empty level-0 arrays of `scroll.zarr` (metadata only). */
async function createLayout(root: string, config: PhantomConfig, options: WritePhantomOptions, chunks: number[]): Promise<void> {
  const vs = config.voxelSize;
  const zarrFormat = options.zarrFormat ?? 2;
  const common = { chunks, compressor: options.compressor ?? 'blosc-lz4', writeEmptyChunks: false } as const;
  const img = await createOmeZarr(root, {
    ...common,
    shape: [...config.shape],
    dtype: config.dtype,
    zarrFormat,
    voxelSize: [vs, vs, vs],
    unit: 'micrometer',
    name: 'phantom',
    overwrite: options.overwrite,
    attributes: { phantom: config, voxel_size_um: [vs, vs, vs] },
  });
  await createOmeLabel(img.group, 'ink', { ...common, colors: [{ 'label-value': 1, rgba: [255, 64, 32, 255] }] });
  await createOmeLabel(img.group, 'papyrus', { ...common, colors: [{ 'label-value': 1, rgba: [230, 200, 120, 255] }] });
  await createOmeLabel(img.group, 'wrap', { ...common, dtype: 'uint16' });
  await createGroup(join(root, 'fields'), { zarrFormat });
  // Vector fields are images, not labels (OME labels are integer). Level 0 only: the mean of unit
  // vectors is not a unit vector (and cancels across a fold), so a 2x mean would be a wrong label.
  const groups = phantomGroups(root);
  for (const name of ['fibre', 'normal'] as const) {
    await createOmeZarr(groups[name], {
      ...common,
      chunks: [3, ...chunks],
      shape: [3, ...config.shape],
      dtype: 'float32',
      zarrFormat,
      axes: ['c', 'z', 'y', 'x'],
      voxelSize: [1, vs, vs, vs],
      unit: 'micrometer',
      name,
      attributes: { phantom_field: { name, components: ['z', 'y', 'x'], unit: true, zero_outside: 'papyrus' } },
    });
  }
}

/**
 * Writes the phantom to `outDir/scroll.zarr`, an OME-Zarr image (`config.dtype`, voxel size in the
 * multiscales `scale`, the configuration in the group attributes) with a 2x pyramid, the OME labels
 * `labels/papyrus`, `labels/ink` and `labels/wrap` with theirs, and the fibre direction and sheet
 * normal as `fields/fibre` and `fields/normal` (`[3, D, H, W]` float32, level 0).
 *
 * Level 0 is streamed one chunk box at a time: each task computes `phantomRegion` for one box and
 * writes that chunk of all six arrays, in worker threads (`threads`) or in this thread. Workers open
 * the arrays by path and write themselves, so chunk compression runs on every thread too and no voxel
 * crosses threads; at most 2 x threads boxes are in flight, so memory stays a few chunks per thread
 * whatever the volume's size. Each chunk is computed and written by exactly one task, and every chunk
 * file is written atomically, so the files are byte-identical for any thread count. The pyramids are
 * then built with scroll-io's `buildPyramid`, one group per task.
 *
 * A failed task rejects with {@link PhantomWriteError} naming the chunk or group, after the running
 * tasks have settled and the workers are terminated.
 */
export async function writePhantom(outDir: string, config: PhantomConfig, options: WritePhantomOptions = {}): Promise<PhantomPaths> {
  const shape = config.shape;
  const { chunks, levels, threads } = checkOptions(options, shape);
  const root = resolve(outDir, 'scroll.zarr');
  await createLayout(root, config, options, chunks);
  const groups = phantomGroups(root);

  const total = shape.reduce((a, b) => a * b, 1);
  const boxes = [...chunkBoxes(shape, chunks)];
  const workers = threads > 1 && boxes.length > 1 ? Math.min(threads, boxes.length) : 0;
  const pool = workers > 0 ? new ThreadPool<WriteTask, void>(siblingModule('write-worker'), workers, { root, config } satisfies WriteWorkerData) : null;
  let arrays: Promise<PhantomArrays> | undefined;
  const run = (task: WriteTask) => (pool ? pool.run(task) : runWriteTask(task, config, () => (arrays ??= openPhantomArrays(root))));

  let chunksDone = 0;
  let voxelsDone = 0;
  const start = performance.now();
  const report = (stage: PhantomProgress['stage']) => {
    if (!options.onProgress) return;
    const seconds = (performance.now() - start) / 1000;
    const voxelsPerSecond = voxelsDone > 0 ? voxelsDone / Math.max(seconds, 1e-9) : 0;
    const etaSeconds = voxelsDone > 0 ? (total - voxelsDone) / voxelsPerSecond : NaN;
    options.onProgress({ stage, chunksDone, chunksTotal: boxes.length, voxelsPerSecond, etaSeconds });
  };
  try {
    report('chunks');
    await forEachBounded(boxes, 2 * Math.max(1, workers), async ({ chunk, box }) => {
      try {
        await run({ kind: 'chunk', box });
      } catch (cause) {
        const e = cause as Error;
        throw new PhantomWriteError(root, `${root}: chunk [${chunk.join(', ')}] (voxels from [${box.offset.join(', ')}], shape [${box.shape.join(', ')}]) failed: ${e?.name}: ${e?.message}`, {
          chunk,
          region: box,
          cause,
        });
      }
      chunksDone++;
      voxelsDone += box.shape[0] * box.shape[1] * box.shape[2];
      report('chunks');
    });
    if (levels > 1) {
      report('pyramids');
      await forEachBounded(PYRAMIDS, Math.max(1, workers), async ({ group, method }) => {
        try {
          await run({ kind: 'pyramid', group: groups[group], levels, method });
        } catch (cause) {
          const e = cause as Error;
          throw new PhantomWriteError(root, `${groups[group]}: building the pyramid (${method}) failed: ${e?.name}: ${e?.message}`, { cause });
        }
      });
    }
  } finally {
    await pool?.close();
  }

  const paths: PhantomPaths = {
    root,
    image: join(root, '0'),
    levels,
    labels: { ink: groups.ink, papyrus: groups.papyrus, wrap: groups.wrap },
    fields: { fibre: groups.fibre, normal: groups.normal },
  };
  if (options.preview) paths.preview = (await writePhantomPreview(resolve(outDir, 'preview.png'), config)).path;
  return paths;
}
