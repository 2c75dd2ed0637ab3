/**
 * `goe segment`: a trained model run over a scroll volume (or a fragment) in overlapping windows,
 * blended, and written chunk by chunk into an OME-Zarr group, one multiscale uint8 image per head.
 *
 * The geometry, fixed by the volume shape and the settings alone (never by the region, the shard or
 * what is already on disk), is what makes every result exact whatever the tiling:
 *
 * - windows: the model's input `[D, H, W]` on a global grid over the whole level (scroll-io's
 *   `tileRegion` per axis: stride `window - overlap` from voxel 0, the last window flush with the far
 *   edge), each weighted by a Gaussian (nnU-Net's sigma = window / 8, Isensee et al. 2021); an output
 *   voxel is `sum_w g_w p_w / sum_w g_w` over the windows covering it;
 * - chunks: the output arrays' chunks (default 128^3, the scroll layout);
 * - blocks: the footprint of one chunk of the coarsest pyramid level (`chunk * 2^(levels-1)` voxels).
 *   Every pyramid chunk depends on one block's level-0 voxels only, so a block is the unit of shards
 *   and of pyramid building: shards never touch one another's chunks at any level;
 * - parts: a block cut into at most `partVoxels` voxels (chunk-aligned), the unit of memory and of
 *   resume. A part runs exactly the windows touching its non-empty chunks, in global grid order, in
 *   batches of those windows alone, and keeps one float32 accumulator per channel plus the weight sum
 *   over the part: memory is one part whatever the volume size. Its result depends only on the windows
 *   touching it, so a region, a shard or a resumed run writes exactly the bytes a whole run writes.
 *
 * Done markers (`OUT/.segment/parts/…` after a part's chunks, `OUT/.segment/blocks/…` after a block's
 * pyramid) are written atomically in a dot-folder that Zarr readers never list; `--resume` skips what
 * they name. Chunk writes are atomic (scroll-io writes a hidden temporary file and renames it), so a
 * killed run leaves whole chunks or none, and a resumed run sweeps the temporary files of the parts it
 * redoes. Metadata is a pure function of the settings (no times, pids or hosts), written by every
 * shard: identical bytes, or an error naming `--out` when an existing output was made otherwise.
 */
import { initBackend, type BackendChoice } from '@goe/tf';
import { rleEncode } from '@goe/head-ink';
import {
  atomicWriteFile,
  ChunkCache,
  createGroup,
  createOmeZarr,
  gaussianWeights,
  openFragment,
  openVolume,
  openWritableOmeLevel,
  product,
  readPng,
  reduceBlocks,
  ScrollIoOptionError,
  tileRegion,
  writePng,
  type Region,
  type Volume,
  type WritableVolume,
} from '@goe/scroll-io';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { loadModel, type RestoredModel } from './checkpoint.js';
import { ConfigError } from './errors.js';
import { resolveRegionSpec } from './region.js';
import { VOLUME_HEADS } from './spec.js';
import { VolumeModel, normaliseIntensity } from './model.js';
import { probabilityByte, volumePredictor, type WindowPredictor } from './predictor.js';
import { Progress } from './progress.js';

type Vec3 = [number, number, number];

/** Every default of `goe segment`, in one place. */
export const SEGMENT_DEFAULTS = {
  /** Windows per forward pass (wasm, 8x32x32 windows: 45 ms a window at batch 4, 15 at 8, 12 at 16). */
  batch: 8,
  /** Output chunk `[z, y, x]`: the scroll volumes' layout. */
  chunks: [128, 128, 128] as Vec3,
  /** Pyramid levels at most (level 0 included); fewer when the volume fits in fewer. */
  maxLevels: 3,
  /** Largest part (voxels): bounds the accumulators, 2^24 voxels = 64 MiB per channel. */
  partVoxels: 2 ** 24,
  /** Window overlap as a fraction of the window (nnU-Net uses 1/2; 1/4 costs ~1.8x less compute in 3D). */
  overlapFraction: 0.25,
  /** Decoded input and output chunks kept (bytes). */
  cacheBytes: 256 * 1024 * 1024,
  /** Gaussian sigma as a fraction of the window (nnU-Net: 1/8). */
  sigmaFraction: 0.125,
  /** PNG previews: z-slices per head, and the longest side in pixels. */
  previewSlices: 3,
  previewSize: 1024,
  /** Fragment RLE threshold when the checkpoint records none. */
  threshold: 0.5,
};

/** Heads a volume model may be trained for (the checkpoint says which it has). */
export const KNOWN_HEADS = VOLUME_HEADS;

export interface SegmentOptions {
  /** A run folder (holding `checkpoint/`) or a checkpoint folder. */
  checkpoint: string;
  /** Input volume: Zarr array or OME-Zarr group, local path or http(s) URL. Exclusive with `fragment`. */
  volume?: string;
  /** A fragment folder (`surface_volume/NN.tif` or `layers/NN.tif`, `mask.png`): writes PNG + RLE. */
  fragment?: string;
  /** Output: OME-Zarr group for a volume; a folder for a fragment (default `FRAGMENT/prediction`). */
  out?: string;
  /** `z0:z1,y0:y1,x0:x1` (half-open, inside the level) or a Region; default the whole level. */
  region?: string | Region;
  /** Multiscale level of an OME-Zarr input (default 0). */
  level?: number;
  /** Heads to write (default every head the checkpoint has). */
  heads?: string[];
  /** uint8 Zarr array of the level's shape: chunks where it is all 0 are skipped, voxels where it is 0 are 0. */
  mask?: string;
  /** `i/n`: this run does the i-th of n balanced, disjoint shares of the blocks (default `0/1`). */
  shard?: string;
  /** Continue an interrupted run (or join sibling shards): skip parts and blocks already marked done. */
  resume?: boolean;
  /** Folder for PNG previews (a few z-slices per head). */
  png?: string;
  /** Replace an existing output (not with a shard count above 1: it would delete the siblings' work). */
  overwrite?: boolean;
  /** Window overlap per axis (voxels, `0 <= overlap < window`); default a quarter of the window. */
  overlap?: number | number[];
  /** Output chunk `[z, y, x]` (default 128^3). */
  chunks?: number[];
  /** Pyramid levels including level 0 (default: halve until the volume fits one chunk, at most 3). */
  levels?: number;
  /** Largest part in voxels (default 2^24). */
  partVoxels?: number;
  backend?: string;
  /** Windows per forward pass (default 8). */
  batch?: number;
  progressStream?: NodeJS.WriteStream | null;
}

export interface SegmentResult {
  out: string;
  /** The level's shape `[z, y, x]` (a fragment: `[layers, height, width]`). */
  shape: number[];
  /** The region written. */
  region: Region;
  heads: string[];
  /** Model windows run by this process. */
  tiles: number;
  /** Level-0 chunks written by this process (all heads; skipped and already-done ones excluded). */
  chunksWritten: number;
  /** Level-0 chunks skipped as empty input or masked out (all heads). */
  chunksSkipped: number;
  /** Parts done by this process, and parts found done (resume). */
  parts: number;
  partsAlreadyDone: number;
  shard: { index: number; count: number };
  seconds: number;
  /** Region voxels of this shard's parts per second of wall time. */
  voxelsPerSecond: number;
  backend: BackendChoice;
  /** PNG files written. */
  previews: string[];
  /** Fragment mode: the files written and the RLE threshold used, with where it came from. */
  fragment?: FragmentOutput;
}

export interface FragmentOutput {
  png: string;
  csv: string;
  threshold: number;
  thresholdSource: string;
  inkPixels: number;
}

/** Largest intensity of a volume dtype: the scale `normaliseIntensity` divides by. */
export function dtypeMax(dtype: string, flag = '--volume'): number {
  if (dtype === 'uint8') return 255;
  if (dtype === 'uint16') return 65535;
  if (dtype === 'float32' || dtype === 'float64') return 1;
  throw new ConfigError(flag, `unsupported dtype '${dtype}' (expected uint8, uint16 or float32)`);
}

/**
 * Loads a checkpoint's model and checks that it is a volume-stem model; `what` says what it is
 * needed for, in the error.
 */
export async function loadVolumeModel(checkpoint: string, what: string): Promise<{ model: VolumeModel; restored: RestoredModel }> {
  const restored = await loadModel(checkpoint);
  if (!(restored.model instanceof VolumeModel)) {
    restored.model.dispose();
    throw new ConfigError('--checkpoint', `${checkpoint} holds a ${restored.spec.stemKind}-stem model; ${what} needs a volume-stem model`);
  }
  return { model: restored.model, restored };
}

// ---------------------------------------------------------------------------------------------------
// Geometry: windows, chunks, parts, blocks, shards. Pure functions of the shape and the settings.

/** A box per axis: `[lo, hi)` voxel ranges. */
interface Box {
  lo: Vec3;
  hi: Vec3;
}

function intersect(a: Box, b: Box): Box | undefined {
  const lo = a.lo.map((v, k) => Math.max(v, b.lo[k]!)) as Vec3;
  const hi = a.hi.map((v, k) => Math.min(v, b.hi[k]!)) as Vec3;
  return lo.every((v, k) => v < hi[k]!) ? { lo, hi } : undefined;
}

function boxShape(b: Box): Vec3 {
  return b.hi.map((v, k) => v - b.lo[k]!) as Vec3;
}

function boxVoxels(b: Box): number {
  return product(boxShape(b));
}

/** Every index vector of a C-order grid from `lo` (inclusive) to `hi` (exclusive). */
function* gridRange(lo: readonly number[], hi: readonly number[]): Generator<Vec3> {
  if (lo.some((v, k) => v >= hi[k]!)) return;
  for (let z = lo[0]!; z < hi[0]!; z++) for (let y = lo[1]!; y < hi[1]!; y++) for (let x = lo[2]!; x < hi[2]!; x++) yield [z, y, x];
}

/** The segmentation grid of one volume level: see the module comment. */
export interface SegmentGrid {
  shape: Vec3;
  window: Vec3;
  overlap: Vec3;
  /** Window origins per axis (the 3-D windows are their product). */
  origins: [number[], number[], number[]];
  /** Level-0 output chunk, clamped to the shape. */
  chunks: Vec3;
  levels: number;
  /** Block and part extents in voxels (multiples of the chunk; a part divides a block). */
  block: Vec3;
  part: Vec3;
}

/**
 * Lays out windows, chunks, blocks and parts over a level of `shape`.
 * @param overlap per axis, `0 <= overlap < window`
 */
export function segmentGrid(o: { shape: readonly number[]; window: readonly number[]; overlap: readonly number[]; chunks: readonly number[]; levels: number; partVoxels: number }): SegmentGrid {
  const shape = [...o.shape] as Vec3;
  const window = [...o.window] as Vec3;
  const overlap = [...o.overlap] as Vec3;
  const origins = shape.map((s, k) => tileRegion([s], [window[k]!], overlap[k]!).map((v) => v[0]!)) as [number[], number[], number[]];
  // createOmeZarr clamps chunks to the shape: the grid uses the chunks the arrays really have.
  const chunks = o.chunks.map((c, k) => Math.max(1, Math.min(c, shape[k]!))) as Vec3;
  const block = chunks.map((c) => c * 2 ** (o.levels - 1)) as Vec3;
  // Halve the longest axis of the part (in chunks, by powers of two so parts tile the block) until
  // it fits the voxel budget; no smaller than one chunk.
  const part = block.slice() as Vec3;
  for (;;) {
    const clipped = part.map((p, k) => Math.min(p, shape[k]!));
    if (product(clipped) <= o.partVoxels) break;
    const k = [0, 1, 2].filter((a) => part[a]! > chunks[a]!).sort((a, b) => part[b]! - part[a]! || a - b)[0];
    if (k === undefined) break;
    part[k] = part[k]! / 2;
  }
  return { shape, window, overlap, origins, chunks, levels: o.levels, block, part };
}

/** Blocks (grid indices) intersecting `region`, C order, with their level-0 chunk count inside it. */
export function regionBlocks(g: SegmentGrid, region: Box): { index: Vec3; box: Box; chunks: number }[] {
  const lo = region.lo.map((v, k) => Math.floor(v / g.block[k]!));
  const hi = region.hi.map((v, k) => Math.ceil(v / g.block[k]!));
  const out: { index: Vec3; box: Box; chunks: number }[] = [];
  for (const b of gridRange(lo, hi)) {
    const box = clipToShape(g, { lo: b.map((v, k) => v * g.block[k]!) as Vec3, hi: b.map((v, k) => (v + 1) * g.block[k]!) as Vec3 });
    const inside = intersect(box, region);
    if (!inside) continue;
    const chunks = product(inside.lo.map((v, k) => Math.ceil(inside.hi[k]! / g.chunks[k]!) - Math.floor(v / g.chunks[k]!)));
    out.push({ index: b, box, chunks });
  }
  return out;
}

function clipToShape(g: { shape: Vec3 }, b: Box): Box {
  return { lo: b.lo, hi: b.hi.map((v, k) => Math.min(v, g.shape[k]!)) as Vec3 };
}

/** Parts of a block (boxes clipped to the shape), C order. */
function blockParts(g: SegmentGrid, block: Box): Box[] {
  const out: Box[] = [];
  const n = boxShape(block).map((s, k) => Math.ceil(s / g.part[k]!));
  for (const p of gridRange([0, 0, 0], n)) {
    const lo = p.map((v, k) => block.lo[k]! + v * g.part[k]!) as Vec3;
    out.push({ lo, hi: lo.map((v, k) => Math.min(v + g.part[k]!, block.hi[k]!)) as Vec3 });
  }
  return out;
}

/**
 * The blocks of shard `index` of `count`: contiguous runs of the C-ordered block list cut where the
 * running chunk count crosses multiples of total/count (by each block's midpoint), so every block is
 * in exactly one shard and each shard's chunk count is within one block of total/count. Contiguous
 * runs keep a shard's reads local (neighbouring blocks share input chunks at their borders).
 * @param weights level-0 chunks per block, in block order
 * @returns the block indices (positions in `weights`) of the shard
 */
export function shardBlocks(weights: readonly number[], index: number, count: number): number[] {
  const total = weights.reduce((a, w) => a + w, 0);
  const out: number[] = [];
  let before = 0;
  weights.forEach((w, j) => {
    const s = total === 0 ? Math.min(count - 1, Math.floor((j * count) / weights.length)) : Math.min(count - 1, Math.floor((count * (before + w / 2)) / total));
    if (s === index) out.push(j);
    before += w;
  });
  return out;
}

/** Parses `i/n` (0 <= i < n). */
export function parseShard(spec: string | undefined): { index: number; count: number } {
  if (spec === undefined) return { index: 0, count: 1 };
  const m = /^(\d+)\/(\d+)$/.exec(spec.trim());
  if (!m) throw new ConfigError('--shard', `expected i/n (e.g. 0/8), got '${spec}'`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (count < 1) throw new ConfigError('--shard', `the shard count must be at least 1, got '${spec}'`);
  if (index >= count) throw new ConfigError('--shard', `index ${index} is not below the count ${count} (shards are numbered 0..${count - 1}), got '${spec}'`);
  return { index, count };
}

/** Parses `--overlap`: one integer >= 0, or `D,H,W`. */
export function parseOverlap(spec: string | undefined): number | number[] | undefined {
  if (spec === undefined) return undefined;
  const parts = spec.split(',').map((p) => p.trim());
  if (!(parts.length === 1 || parts.length === 3) || !parts.every((p) => /^\d+$/.test(p))) {
    throw new ConfigError('--overlap', `expected one integer >= 0 or D,H,W, got '${spec}'`);
  }
  return parts.length === 1 ? Number(parts[0]) : parts.map(Number);
}

function resolveOverlap(overlap: number | number[] | undefined, window: Vec3): Vec3 {
  if (overlap === undefined) return window.map((w) => Math.floor(w * SEGMENT_DEFAULTS.overlapFraction)) as Vec3;
  const ov = typeof overlap === 'number' ? [overlap, overlap, overlap] : overlap;
  if (ov.length !== 3 || !ov.every((v, k) => Number.isInteger(v) && v >= 0 && v < window[k]!)) {
    throw new ConfigError('--overlap', `expected integers 0 <= overlap < window [${window.join(', ')}] (one, or one per axis), got ${JSON.stringify(overlap)}`);
  }
  return ov as Vec3;
}

/** Default level count: halve until every axis fits one chunk, at most `maxLevels`. */
function defaultLevels(shape: Vec3, chunks: readonly number[]): number {
  let levels = 1;
  while (levels < SEGMENT_DEFAULTS.maxLevels && shape.some((s, k) => Math.ceil(s / 2 ** (levels - 1)) > chunks[k]!)) levels++;
  return levels;
}

// ---------------------------------------------------------------------------------------------------
// Blending: one part's windows, weighted, accumulated and normalised.

/** Where a part's blended output goes. */
interface PartSink {
  /**
   * @param box the chunk box (level 0, clipped to the shape and region)
   * @param blended per head `[C, V]` (V = voxels of box), the weighted mean; masked voxels are already 0
   */
  chunk(box: Box, blended: Record<string, Float32Array>): Promise<void>;
}

interface EngineContext {
  predictor: WindowPredictor;
  volume: Volume;
  mask?: Volume;
  grid: SegmentGrid;
  heads: string[];
  batch: number;
  scale: number;
  /** `[D*H*W]` Gaussian window weights. */
  weights: Float32Array;
}

interface PartRun {
  /** Windows run. */
  tiles: number;
  /** The region's chunks skipped (all heads). */
  skipped: number;
}

function readsAllFill(data: ArrayLike<number>, fill: number): boolean {
  for (let i = 0; i < data.length; i++) if (data[i] !== fill) return false;
  return true;
}

/** A chunk of a part with input to segment: `write` is its part inside the region (none: context only). */
interface ActiveChunk {
  chunk: Box;
  write?: Box;
  /** The mask over the whole chunk, when there is one. */
  mask?: Uint8Array;
}

/**
 * The chunks of a part with input to segment (not all-fill input, not an all-zero mask), and the
 * number of the region's chunks skipped. Every chunk of the part counts, inside the region or not,
 * so a region run runs the very windows, in the very batches, that a whole run runs for the part:
 * bytes then agree even on a backend whose results depend on the batch a window is in.
 */
async function partChunks(ctx: EngineContext, part: Box, region: Box): Promise<{ active: ActiveChunk[]; skipped: number }> {
  const { grid } = ctx;
  const lo = part.lo.map((v, k) => Math.floor(v / grid.chunks[k]!));
  const hi = part.hi.map((v, k) => Math.ceil(v / grid.chunks[k]!));
  const active: ActiveChunk[] = [];
  let skipped = 0;
  for (const c of gridRange(lo, hi)) {
    const chunk = clipToShape(grid, { lo: c.map((v, k) => v * grid.chunks[k]!) as Vec3, hi: c.map((v, k) => (v + 1) * grid.chunks[k]!) as Vec3 });
    const write = intersect(chunk, region);
    const r: Region = { offset: [...chunk.lo], shape: boxShape(chunk) };
    const mask = ctx.mask ? ((await ctx.mask.read(r)).data as Uint8Array) : undefined;
    if ((mask && readsAllFill(mask, 0)) || readsAllFill((await ctx.volume.read(r)).data, ctx.volume.fillValue)) {
      if (write) skipped++;
      continue;
    }
    active.push({ chunk, write, mask });
  }
  return { active, skipped };
}

/** Window origins touching any of `boxes`, in global C order (the accumulation order of every run). */
function windowsTouching(g: SegmentGrid, part: Box, boxes: Box[]): Vec3[] {
  const per = g.origins.map((os, k) => os.filter((o) => o < part.hi[k]! && o + g.window[k]! > part.lo[k]!));
  const out: Vec3[] = [];
  for (const z of per[0]!)
    for (const y of per[1]!)
      for (const x of per[2]!) {
        const w: Box = { lo: [z, y, x], hi: [z + g.window[0], y + g.window[1], x + g.window[2]] };
        if (boxes.some((b) => intersect(w, b))) out.push([z, y, x]);
      }
  return out;
}

/**
 * Runs one part: its active chunks' windows in batches, blended into per-channel float32
 * accumulators over the part (GoE-independent: any {@link WindowPredictor}), then each active chunk's
 * weighted mean handed to `sink`.
 */
async function runPart(ctx: EngineContext, part: Box, region: Box, sink: PartSink): Promise<PartRun> {
  const { grid, predictor, heads } = ctx;
  const { active, skipped } = await partChunks(ctx, part, region);
  const writes = active.filter((a): a is ActiveChunk & { write: Box } => a.write !== undefined);
  if (writes.length === 0) return { tiles: 0, skipped: skipped * heads.length };
  const pShape = boxShape(part);
  const pVox = product(pShape);
  const channels = heads.map((h) => predictor.outputs.find((o) => o.name === h)!.channels);
  const acc = channels.map((c) => new Float32Array(c * pVox)); // per head [C, part voxels]
  const wsum = new Float32Array(pVox);
  const windows = windowsTouching(grid, part, active.map((a) => a.chunk));
  const [D, H, W] = grid.window;
  const n = D * H * W;
  const read = async (group: Vec3[]): Promise<Float32Array> => {
    const x = new Float32Array(group.length * n);
    const reads = await Promise.all(group.map((o) => ctx.volume.read({ offset: [...o], shape: [D, H, W] })));
    reads.forEach((r, b) => {
      for (let j = 0; j < n; j++) x[b * n + j] = normaliseIntensity(r.data[j] as number, ctx.scale);
    });
    return x;
  };
  let next = windows.length > 0 ? read(windows.slice(0, ctx.batch)) : undefined;
  for (let i = 0; i < windows.length; i += ctx.batch) {
    const group = windows.slice(i, i + ctx.batch);
    const x = await next!;
    // Read the next batch while this one runs.
    next = i + ctx.batch < windows.length ? read(windows.slice(i + ctx.batch, i + 2 * ctx.batch)) : undefined;
    const out = await predictor.predict(x, group.length);
    group.forEach((o, b) => {
      const clip = intersect({ lo: o, hi: o.map((v, k) => v + grid.window[k]!) as Vec3 }, part)!;
      const [cz, cy, cx] = boxShape(clip);
      for (let z = 0; z < cz; z++)
        for (let y = 0; y < cy; y++) {
          const wz = clip.lo[0] + z - o[0];
          const wy = clip.lo[1] + y - o[1];
          const wRow = (wz * H + wy) * W + (clip.lo[2] - o[2]);
          const pRow = ((clip.lo[0] + z - part.lo[0]) * pShape[1] + clip.lo[1] + y - part.lo[1]) * pShape[2] + (clip.lo[2] - part.lo[2]);
          for (let x2 = 0; x2 < cx; x2++) wsum[pRow + x2] += ctx.weights[wRow + x2]!;
          heads.forEach((h, hi) => {
            const p = out[h]!;
            const a = acc[hi]!;
            for (let c = 0; c < channels[hi]!; c++) {
              const src = (b * channels[hi]! + c) * n + wRow;
              const dst = c * pVox + pRow;
              for (let x2 = 0; x2 < cx; x2++) a[dst + x2] += ctx.weights[wRow + x2]! * p[src + x2]!;
            }
          });
        }
    });
  }
  for (const a of writes) {
    const s = boxShape(a.write);
    const v = product(s);
    const blended: Record<string, Float32Array> = {};
    heads.forEach((h, hi) => {
      const C = channels[hi]!;
      const b = new Float32Array(C * v);
      let k = 0;
      for (let c = 0; c < C; c++)
        for (let z = 0; z < s[0]; z++)
          for (let y = 0; y < s[1]; y++) {
            const pRow = ((a.write.lo[0] + z - part.lo[0]) * pShape[1] + a.write.lo[1] + y - part.lo[1]) * pShape[2] + (a.write.lo[2] - part.lo[2]);
            for (let x2 = 0; x2 < s[2]; x2++) b[k++] = acc[hi]![c * pVox + pRow + x2]! / wsum[pRow + x2]!;
          }
      if (a.mask) {
        // Voxels outside the mask are 0: index the mask (whole chunk) at the written box.
        const cs = boxShape(a.chunk);
        let i = 0;
        for (let z = 0; z < s[0]; z++)
          for (let y = 0; y < s[1]; y++)
            for (let x2 = 0; x2 < s[2]; x2++, i++) {
              const m = a.mask[((a.write.lo[0] + z - a.chunk.lo[0]) * cs[1] + a.write.lo[1] + y - a.chunk.lo[1]) * cs[2] + a.write.lo[2] + x2 - a.chunk.lo[2]];
              if (m === 0) for (let c = 0; c < C; c++) b[c * v + i] = 0;
            }
      }
      blended[h] = b;
    });
    await sink.chunk(a.write, blended);
  }
  return { tiles: windows.length, skipped: skipped * heads.length };
}

// ---------------------------------------------------------------------------------------------------
// The OME-Zarr output: metadata written identically by every shard, markers, pyramid.

const MARKERS = '.segment';

function key(v: readonly number[]): string {
  return v.join('.');
}

/** Every file under `dir`, dot-folders included, as sorted paths. */
export async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesUnder(p)));
    else out.push(p);
  }
  return out.sort();
}

/**
 * Writes the output's metadata: built once in a private temporary folder with scroll-io's own
 * writers, then each file copied into `out` atomically when absent, or compared byte for byte when
 * present. Every shard writes the same bytes, so shards may start in any order or all at once; a
 * file that differs means `out` was made with other settings.
 */
async function writeMetadata(out: string, attributes: Record<string, unknown>, heads: { name: string; channels: number }[], g: SegmentGrid, voxelSize: number[] | undefined): Promise<void> {
  const tmp = await mkdtemp(join(tmpdir(), 'goe-segment-meta-'));
  try {
    const root = join(tmp, 'out.zarr');
    await createGroup(root, { attributes });
    for (const h of heads) {
      const multi = h.channels > 1;
      await createOmeZarr(join(root, h.name), {
        shape: multi ? [h.channels, ...g.shape] : [...g.shape],
        chunks: multi ? [h.channels, ...g.chunks] : [...g.chunks],
        axes: multi ? ['c', 'z', 'y', 'x'] : ['z', 'y', 'x'],
        voxelSize: voxelSize ? (multi ? [1, ...voxelSize] : voxelSize) : undefined,
        dtype: 'uint8',
        fillValue: 0,
        levels: g.levels,
        name: h.name,
      });
    }
    const files = await filesUnder(root);
    // Arrays before the group documents that name them: a reader that sees the root sees whole heads.
    files.sort((a, b) => relative(root, b).split('/').length - relative(root, a).split('/').length || a.localeCompare(b));
    for (const f of files) {
      const rel = relative(root, f);
      const bytes = await readFile(f);
      const target = join(out, rel);
      let existing: Buffer | undefined;
      try {
        existing = await readFile(target);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (existing === undefined) await atomicWriteFile(target, bytes);
      else if (!existing.equals(bytes)) {
        throw new ConfigError('--out', `${out} was written with other settings (${rel} differs: checkpoint, volume, level, region, heads, chunks or overlap changed); use another --out, or --overwrite to replace it`);
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/**
 * Removes the hidden temporary files a killed write leaves in `dir` (scroll-io's `.NAME.….tmp`). In
 * folders only this shard writes (its parts' chunk folders) every one goes; in folders every shard
 * writes (metadata, markers) only those older than `minAgeMs`, which no live write can own (a write
 * takes milliseconds), so a sibling's write in flight is never pulled from under it.
 */
async function sweepTemps(dir: string, minAgeMs = 0): Promise<void> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  const now = Date.now();
  for (const n of names.filter((x) => x.startsWith('.') && x.endsWith('.tmp'))) {
    const f = join(dir, n);
    if (minAgeMs > 0) {
      const t = await stat(f).then((st) => st.mtimeMs, () => now);
      if (now - t < minAgeMs) continue;
    }
    await unlink(f).catch(() => undefined);
  }
}

/** Age after which a temporary file in a folder all shards write is a killed write's leftover. */
const STALE_TEMP_MS = 60 * 60 * 1000;

/** Chunk directories (parents of chunk files, `/`-separated keys) of level arrays under a box. */
function chunkDirs(level: WritableVolume, box: Box, factor: number): string[] {
  const spatial = level.chunks.slice(-3);
  const lead = level.chunks.length === 4 ? ['0'] : [];
  const lo = box.lo.map((v, k) => Math.floor(Math.floor(v / factor) / spatial[k]!));
  const hi = box.hi.map((v, k) => Math.ceil(Math.ceil(v / factor) / spatial[k]!));
  const out: string[] = [];
  for (let z = lo[0]!; z < hi[0]!; z++) for (let y = lo[1]!; y < hi[1]!; y++) out.push(join(level.path, ...lead, String(z), String(y)));
  return out;
}

/** SHA-256 over a checkpoint folder's files (names and bytes): its identity on any machine. */
async function checkpointDigest(dir: string): Promise<string> {
  const h = createHash('sha256');
  for (const f of await filesUnder(dir)) {
    h.update(relative(dir, f));
    h.update(await readFile(f));
  }
  return h.digest('hex');
}

/** How an input is named in the metadata: URLs whole; local paths by their last part, since each machine may mount them elsewhere. */
function sourceName(path: string): string {
  return /^https?:\/\//.test(path) ? path : basename(resolve(path));
}

function writeSink(levels: Map<string, WritableVolume>, channels: Map<string, number>, predictor: WindowPredictor, count: { n: number }): PartSink {
  return {
    async chunk(box, blended) {
      const v = boxVoxels(box);
      for (const [h, b] of Object.entries(blended)) {
        const enc = predictor.encode(h, b, v);
        const dst = levels.get(h)!;
        const C = channels.get(h)!;
        if (enc.channels !== C) throw new RangeError(`encode('${h}') gave ${enc.channels} channels, the array has ${C}`);
        const region: Region = C > 1 ? { offset: [0, ...box.lo], shape: [C, ...boxShape(box)] } : { offset: [...box.lo], shape: boxShape(box) };
        await dst.write(region, enc.data);
        count.n++;
      }
    },
  };
}

/** Builds levels 1.. of one head inside one block from the level below (2x mean, as buildPyramid). */
async function blockPyramid(levels: WritableVolume[], block: Box, region: Box): Promise<void> {
  for (let k = 1; k < levels.length; k++) {
    const src = levels[k - 1]!;
    const dst = levels[k]!;
    const lead = dst.shape.length - 3;
    const spatialShape = dst.shape.slice(lead);
    const ch = dst.chunks.slice(lead);
    const f = 2 ** k;
    const lo = block.lo.map((v, a) => Math.floor(v / f / ch[a]!));
    const hi = block.hi.map((v, a) => Math.ceil(Math.ceil(v / f) / ch[a]!));
    for (const c of gridRange(lo, hi)) {
      const oLo = c.map((v, a) => v * ch[a]!);
      const oShape = oLo.map((v, a) => Math.min(ch[a]!, spatialShape[a]! - v));
      // A chunk whose level-0 footprint misses the region holds only zeros: nothing to write.
      if (!intersect({ lo: oLo.map((v) => v * f) as Vec3, hi: oLo.map((v, a) => (v + oShape[a]!) * f) as Vec3 }, region)) continue;
      const sLo = oLo.map((v) => 2 * v);
      const sShape = sLo.map((v, a) => Math.min(2 * oShape[a]!, src.shape[lead + a]! - v));
      const leadShape = dst.shape.slice(0, lead);
      const { data } = await src.read({ offset: [...leadShape.map(() => 0), ...sLo], shape: [...leadShape, ...sShape] });
      const factor = [...leadShape.map(() => 1), 2, 2, 2];
      const reduced = reduceBlocks(data, [...leadShape, ...sShape], [...leadShape, ...oShape], factor, 'mean', dst);
      await dst.write({ offset: [...leadShape.map(() => 0), ...oLo], shape: [...leadShape, ...oShape] }, reduced);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Entry points.

function resolveHeads(predictor: WindowPredictor, heads: string[] | undefined): string[] {
  const have = predictor.outputs.map((o) => o.name);
  if (heads === undefined) return have;
  if (heads.length === 0) throw new ConfigError('--heads', `names no head (this checkpoint has ${have.join(', ')})`);
  for (const h of heads) {
    if (have.includes(h)) continue;
    if ((KNOWN_HEADS as readonly string[]).includes(h)) throw new ConfigError('--heads', `'${h}' is not trained in this checkpoint (it has ${have.join(', ')})`);
    throw new ConfigError('--heads', `unknown head '${h}' (heads: ${KNOWN_HEADS.join(', ')}; this checkpoint has ${have.join(', ')})`);
  }
  // The checkpoint's order, whatever order the flag gave: shards given `ink,fiber` and `fiber,ink` agree.
  return have.filter((h) => heads.includes(h));
}

function checkPositive(v: number | undefined, flag: string): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new ConfigError(flag, `expected an integer >= 1, got ${v}`);
}

/** The checks of a volume run that need neither the model nor the volume (so they fail at once). */
function checkVolumeFlags(o: { shard?: string; batch?: number; partVoxels?: number; level?: number; overwrite?: boolean; resume?: boolean; out: string }) {
  const shard = parseShard(o.shard);
  checkPositive(o.batch, '--batch');
  checkPositive(o.partVoxels, 'partVoxels');
  if (o.level !== undefined && !(Number.isInteger(o.level) && o.level >= 0)) throw new ConfigError('--level', `expected an integer >= 0, got ${o.level}`);
  if (o.overwrite && shard.count > 1) {
    throw new ConfigError('--overwrite', `cannot be used with --shard ${o.shard}: it would delete what the other shards wrote; remove ${o.out} once before starting the shards`);
  }
  const out = resolve(o.out);
  if (existsSync(out) && !o.resume && !o.overwrite && shard.count === 1) {
    throw new ConfigError('--out', `${out} exists (pass --resume to finish it, or --overwrite to replace it)`);
  }
  return { shard, out };
}

/** Options of {@link segmentVolume}: everything of {@link SegmentOptions} but the checkpoint. */
export interface SegmentVolumeOptions extends Omit<SegmentOptions, 'checkpoint' | 'backend' | 'fragment'> {
  volume: string;
  out: string;
  /** Recorded in the metadata as the model's identity (e.g. a checkpoint digest). */
  modelId: string;
  /** Called after every part with this shard's region voxels done so far, and their total. */
  onPart?: (done: number, total: number) => void;
}

/**
 * Segments a volume with any {@link WindowPredictor} into the OME-Zarr group `o.out`: the engine
 * behind `goe segment --volume`. The predictor is not disposed.
 */
export async function segmentVolume(predictor: WindowPredictor, o: SegmentVolumeOptions): Promise<Omit<SegmentResult, 'backend'>> {
  const t0 = performance.now();
  const heads = resolveHeads(predictor, o.heads);
  const { shard, out } = checkVolumeFlags(o);
  const cache = new ChunkCache(SEGMENT_DEFAULTS.cacheBytes);
  let volume: Volume;
  try {
    volume = await openVolume(o.volume, { level: o.level, cache });
  } catch (err) {
    if (err instanceof ScrollIoOptionError && err.field === 'level') throw new ConfigError('--level', err.message.replace(/^option 'level': /, ''), { cause: err });
    throw err;
  }
  if (volume.shape.length !== 3) throw new ConfigError('--volume', `${o.volume} has ${volume.shape.length} dimensions; expected 3 (z, y, x)`);
  const scale = dtypeMax(volume.dtype);
  const shape = volume.shape as Vec3;
  const region = resolveRegionSpec(o.region, shape, { field: '--region', source: o.volume });
  let mask: Volume | undefined;
  if (o.mask !== undefined) {
    mask = await openVolume(o.mask, { cache }).catch((err: unknown) => {
      throw new ConfigError('--mask', `cannot open ${o.mask}: ${(err as Error).message}`, { cause: err });
    });
    if (mask.dtype !== 'uint8') throw new ConfigError('--mask', `${o.mask} is ${mask.dtype}; expected a uint8 array`);
    if (mask.shape.join(',') !== shape.join(',')) {
      throw new ConfigError('--mask', `${o.mask} has shape [${mask.shape.join(', ')}] but ${o.volume} (level ${o.level ?? 0}) has [${shape.join(', ')}]`);
    }
  }
  const window = predictor.window;
  const overlap = resolveOverlap(o.overlap, window);
  const chunks = o.chunks ?? SEGMENT_DEFAULTS.chunks;
  if (chunks.length !== 3 || !chunks.every((c) => Number.isInteger(c) && c >= 1)) throw new ConfigError('chunks', `expected three integers >= 1, got ${JSON.stringify(chunks)}`);
  const levels = o.levels ?? defaultLevels(shape, chunks);
  checkPositive(levels, 'levels');
  const grid = segmentGrid({ shape, window, overlap, chunks, levels, partVoxels: o.partVoxels ?? SEGMENT_DEFAULTS.partVoxels });
  const regionBox: Box = { lo: region.offset as Vec3, hi: region.offset.map((v, k) => v + region.shape[k]!) as Vec3 };

  if (o.overwrite) await rm(out, { recursive: true, force: true });
  const outputs = heads.map((h) => {
    const C = predictor.outputs.find((x) => x.name === h)!.channels;
    return { name: h, channels: predictor.encode(h, new Float32Array(C), 1).channels };
  });
  // The output's identity: everything that decides its bytes, nothing of the machine or the moment.
  const attributes = {
    goe: {
      kind: 'segmentation',
      heads: outputs,
      encoding: 'uint8: round(probability * 255); fill 0 where the input is empty or masked out',
      model: o.modelId,
      source: { volume: sourceName(o.volume), level: o.level ?? 0, shape, dtype: volume.dtype, mask: o.mask === undefined ? null : sourceName(o.mask) },
      region: { offset: region.offset, shape: region.shape },
      window: grid.window,
      overlap: grid.overlap,
      blending: `gaussian, sigma = ${SEGMENT_DEFAULTS.sigmaFraction} * window`,
      chunks: grid.chunks,
      levels: grid.levels,
      block: grid.block,
      part: grid.part,
    },
  };
  await writeMetadata(out, attributes, outputs, grid, volume.voxelSize);
  const partsDir = join(out, MARKERS, 'parts');
  const blocksDir = join(out, MARKERS, 'blocks');
  if (o.resume) {
    for (const d of [out, partsDir, blocksDir, ...heads.flatMap((h) => [join(out, h), ...Array.from({ length: grid.levels }, (_, k) => join(out, h, String(k)))])]) {
      await sweepTemps(d, STALE_TEMP_MS);
    }
  }

  const blocks = regionBlocks(grid, regionBox);
  const mine = shardBlocks(
    blocks.map((b) => b.chunks),
    shard.index,
    shard.count,
  ).map((j) => blocks[j]!);
  if (shard.count > 1 && !o.resume) {
    for (const b of mine) {
      for (const p of blockParts(grid, b.box)) {
        if (intersect(p, regionBox) && (await exists(join(partsDir, key(p.lo))))) {
          throw new ConfigError('--out', `shard ${shard.index}/${shard.count} has already written parts of ${out} (pass --resume to finish it)`);
        }
      }
    }
  }
  const headLevels = new Map<string, WritableVolume[]>();
  for (const h of heads) {
    const ls: WritableVolume[] = [];
    for (let k = 0; k < grid.levels; k++) ls.push(await openWritableOmeLevel(join(out, h), { level: k, cache }));
    headLevels.set(h, ls);
  }
  const level0 = new Map(heads.map((h) => [h, headLevels.get(h)![0]!]));
  const channels = new Map(outputs.map((x) => [x.name, x.channels]));
  const written = { n: 0 };
  const sink = writeSink(level0, channels, predictor, written);
  const ctx: EngineContext = { predictor, volume, mask, grid, heads, batch: o.batch ?? SEGMENT_DEFAULTS.batch, scale, weights: gaussianWeights([...window], SEGMENT_DEFAULTS.sigmaFraction) };

  const total = mine.reduce((a, b) => a + boxVoxels(intersect(b.box, regionBox)!), 0);
  const progress =
    o.progressStream === null || total === 0
      ? undefined
      : new Progress({ total, label: 'voxels', unit: 'voxels', perStep: 1, every: 1, stream: o.progressStream });
  let done = 0;
  let lastPrint = 0;
  let tiles = 0;
  let skipped = 0;
  let parts = 0;
  let partsAlreadyDone = 0;
  progress?.log(
    `segmenting ${o.volume} level ${o.level ?? 0} [${shape.join(', ')}], region ${formatRegion(region)}, heads ${heads.join(', ')}; shard ${shard.index}/${shard.count}: ${mine.length} of ${blocks.length} blocks, ${total.toLocaleString('en')} voxels`,
  );
  for (const b of mine) {
    const bKey = key(b.box.lo);
    if (o.resume && (await exists(join(blocksDir, bKey)))) {
      done += boxVoxels(intersect(b.box, regionBox)!);
      partsAlreadyDone += blockParts(grid, b.box).filter((p) => intersect(p, regionBox)).length;
      continue;
    }
    // Level-0 chunks the block's parts wrote: none (air, masked out) means an all-zero pyramid, nothing to build.
    let blockWritten = 0;
    for (const p of blockParts(grid, b.box)) {
      const inside = intersect(p, regionBox);
      if (!inside) continue;
      const marker = join(partsDir, key(p.lo));
      if (o.resume && (await exists(marker))) {
        partsAlreadyDone++;
        blockWritten += await readFile(marker, 'utf8').then(
          (t) => (JSON.parse(t) as { chunks: number }).chunks,
          () => Infinity,
        );
      } else {
        if (o.resume) for (const h of heads) for (const d of chunkDirs(level0.get(h)!, p, 1)) await sweepTemps(d);
        const before = written.n;
        const r = await runPart(ctx, p, regionBox, sink);
        tiles += r.tiles;
        skipped += r.skipped;
        parts++;
        // The marker records what the part wrote: deterministic, so every run writes the same bytes.
        await atomicWriteFile(marker, `${JSON.stringify({ chunks: written.n - before, skipped: r.skipped })}\n`);
        blockWritten += written.n - before;
      }
      done += boxVoxels(inside);
      o.onPart?.(done, total);
      const now = performance.now();
      if (progress && (lastPrint === 0 || now - lastPrint > 2000 || done === total)) {
        lastPrint = now;
        progress.update(done, {});
      }
    }
    if (grid.levels > 1 && blockWritten > 0) {
      for (const h of heads) {
        const ls = headLevels.get(h)!;
        if (o.resume) for (let k = 1; k < ls.length; k++) for (const d of chunkDirs(ls[k]!, b.box, 2 ** k)) await sweepTemps(d);
        await blockPyramid(ls, b.box, regionBox);
      }
    }
    await atomicWriteFile(join(blocksDir, bKey), `${JSON.stringify({ parts: blockParts(grid, b.box).filter((p) => intersect(p, regionBox)).length })}\n`);
  }
  progress?.done();
  const previews = o.png ? await writePreviews(o.png, volume, out, heads, channels, region) : [];
  const seconds = (performance.now() - t0) / 1000;
  return {
    out,
    shape: [...shape],
    region,
    heads,
    tiles,
    chunksWritten: written.n,
    chunksSkipped: skipped,
    parts,
    partsAlreadyDone,
    shard,
    seconds,
    voxelsPerSecond: total / seconds,
    previews,
  };
}

function formatRegion(r: Region): string {
  return r.offset.map((v, k) => `${v}:${v + r.shape[k]!}`).join(',');
}

/** Overlay colour of one-channel heads: ink red, the geometry head's sheet probability green. */
const PREVIEW_COLOURS: Record<string, [number, number, number]> = { ink: [255, 0, 0], geometry: [0, 255, 96] };

/**
 * PNG previews: per head, a few z-slices of the region, subsampled to at most `previewSize` pixels
 * on a side. One channel: the probability in the head's colour over the grey input (alpha =
 * probability); three or more channels: the first three as RGB (a fibre direction's |v|), shaded by
 * the input; each PNG written atomically.
 * Reads the output back from disk, so it shows whatever every shard has written so far.
 */
async function writePreviews(dir: string, volume: Volume, out: string, heads: string[], channels: Map<string, number>, region: Region): Promise<string[]> {
  const files: string[] = [];
  const [z0, y0, x0] = region.offset as Vec3;
  const [Z, Y, X] = region.shape as Vec3;
  const step = Math.max(1, Math.ceil(Math.max(Y, X) / SEGMENT_DEFAULTS.previewSize));
  const h = Math.ceil(Y / step);
  const w = Math.ceil(X / step);
  const zs = [...new Set(Array.from({ length: SEGMENT_DEFAULTS.previewSlices }, (_, i) => z0 + Math.floor(((i + 1) * Z) / (SEGMENT_DEFAULTS.previewSlices + 1))))];
  const scale = dtypeMax(volume.dtype);
  for (const z of zs) {
    const grey = (await volume.read({ offset: [z, y0, x0], shape: [1, Y, X] })).data;
    for (const head of heads) {
      const C = channels.get(head)!;
      const arr = await openVolume(join(out, head));
      const pred = (await arr.read(C > 1 ? { offset: [0, z, y0, x0], shape: [C, 1, Y, X] } : { offset: [z, y0, x0], shape: [1, Y, X] })).data;
      const rgb = new Uint8Array(h * w * 3);
      for (let i = 0; i < h; i++)
        for (let j = 0; j < w; j++) {
          const src = i * step * X + j * step;
          const g = Math.max(0, Math.min(255, Math.round(((grey[src] as number) / scale) * 255)));
          const o = (i * w + j) * 3;
          if (C === 1) {
            const a = (pred[src] as number) / 255;
            const colour = PREVIEW_COLOURS[head] ?? PREVIEW_COLOURS['ink']!;
            for (let c = 0; c < 3; c++) rgb[o + c] = Math.round(g * (1 - a) + colour[c]! * a);
          } else {
            // Colour of the first three channels (|v| of a direction, or class probabilities), shaded by the input.
            for (let c = 0; c < 3; c++) rgb[o + c] = c < C ? Math.round((((pred[c * Y * X + src] as number) / 255) * (128 + g)) / 1.5) : 0;
          }
        }
      const file = join(dir, `${head}-z${String(z).padStart(5, '0')}.png`);
      await writePng(file, rgb, { width: w, height: h, channels: 3 });
      files.push(file);
    }
  }
  return files;
}

/** The RLE threshold a checkpoint's validation kept: the last validation record at or before its step. */
export async function checkpointThreshold(restored: RestoredModel): Promise<{ threshold: number; source: string }> {
  const step = restored.checkpoint.manifest.step;
  const metrics = join(dirname(restored.dir), 'metrics.jsonl');
  let text = '';
  try {
    text = await readFile(metrics, 'utf8');
  } catch {
    // No log beside the checkpoint: fall through to the default.
  }
  let best: { threshold: number; step: number } | undefined;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as Record<string, unknown>;
      if (r['split'] === 'val' && typeof r['threshold'] === 'number' && typeof r['step'] === 'number' && r['step'] <= step) best = { threshold: r['threshold'], step: r['step'] };
    } catch {
      // A torn last line of a killed run: ignore it.
    }
  }
  if (best) return { threshold: best.threshold, source: `the validation F0.5 threshold at step ${best.step} (${metrics})` };
  return { threshold: SEGMENT_DEFAULTS.threshold, source: `default ${SEGMENT_DEFAULTS.threshold}: the checkpoint records no validation threshold` };
}

/**
 * Fragment mode: the blended ink probability over the fragment's (layer, y, x) volume, collapsed to
 * `[height, width]` by the maximum over layers (the depth collapse the ink head trains with on
 * fragments), written as an 8-bit PNG (round(p * 255)) and as the competition's run-length encoding at
 * `threshold`. Pixels outside the fragment's `mask.png` are 0.
 * @returns the map `[height, width]` float32 and the files written
 */
export async function segmentFragmentWith(
  predictor: WindowPredictor,
  o: { fragment: string; out: string; threshold: number; thresholdSource: string; overwrite?: boolean; batch?: number; overlap?: number | number[]; chunks?: number[]; partVoxels?: number; progressStream?: NodeJS.WriteStream | null },
): Promise<{ map: Float32Array; shape: Vec3; tiles: number; output: FragmentOutput }> {
  const frag = await openFragment(o.fragment);
  const shape = frag.shape as Vec3;
  const out = resolve(o.out);
  const png = join(out, 'inkpred.png');
  const csv = join(out, 'submission.csv');
  if ((existsSync(png) || existsSync(csv)) && !o.overwrite) throw new ConfigError('--out', `${out} already holds a prediction (pass --overwrite to replace it)`);
  const [, H, W] = shape;
  let mask2d: Uint8Array | undefined;
  if (frag.maskPath) {
    const m = await readPng(frag.maskPath);
    mask2d = new Uint8Array(H * W);
    for (let i = 0; i < H * W; i++) mask2d[i] = (m.data[i * m.channels] as number) > 0 ? 1 : 0;
  }
  // The fragment mask as a (layer, y, x) volume, so masked-out chunks are skipped like a scroll's.
  const maskVolume: Volume | undefined = mask2d && {
    path: frag.maskPath!,
    shape: [...shape],
    chunks: [...shape],
    dtype: 'uint8',
    fillValue: 0,
    attributes: {},
    async read(r: Region) {
      const data = new Uint8Array(product(r.shape));
      let k = 0;
      for (let z = 0; z < r.shape[0]!; z++)
        for (let y = 0; y < r.shape[1]!; y++)
          for (let x = 0; x < r.shape[2]!; x++, k++) {
            const yy = r.offset[1]! + y;
            const xx = r.offset[2]! + x;
            data[k] = yy >= 0 && yy < H && xx >= 0 && xx < W ? mask2d![yy * W + xx]! : 0;
          }
      return { data, shape: [...r.shape] };
    },
  };
  const window = predictor.window;
  const overlap = resolveOverlap(o.overlap, window);
  const chunks = o.chunks ?? SEGMENT_DEFAULTS.chunks;
  const grid = segmentGrid({ shape, window, overlap, chunks, levels: 1, partVoxels: o.partVoxels ?? SEGMENT_DEFAULTS.partVoxels });
  const ctx: EngineContext = {
    predictor,
    volume: frag,
    mask: maskVolume,
    grid,
    heads: ['ink'],
    batch: o.batch ?? SEGMENT_DEFAULTS.batch,
    scale: dtypeMax(frag.dtype, '--fragment'),
    weights: gaussianWeights([...window], SEGMENT_DEFAULTS.sigmaFraction),
  };
  // Max over layers: exact whatever the order parts arrive in.
  const map = new Float32Array(H * W);
  const sink: PartSink = {
    async chunk(box, blended) {
      const p = blended['ink']!;
      const [sz, sy, sx] = boxShape(box);
      let k = 0;
      for (let z = 0; z < sz; z++)
        for (let y = 0; y < sy; y++)
          for (let x = 0; x < sx; x++, k++) {
            const i = (box.lo[1] + y) * W + box.lo[2] + x;
            if (p[k]! > map[i]!) map[i] = p[k]!;
          }
    },
  };
  const full: Box = { lo: [0, 0, 0], hi: shape };
  const all = regionBlocks(grid, full).flatMap((b) => blockParts(grid, b.box));
  const progress =
    o.progressStream === null ? undefined : new Progress({ total: product(shape), label: 'voxels', unit: 'voxels', perStep: 1, every: 1, stream: o.progressStream });
  let tiles = 0;
  let done = 0;
  for (const p of all) {
    tiles += (await runPart(ctx, p, full, sink)).tiles;
    done += boxVoxels(p);
    progress?.update(done, {});
  }
  progress?.done();
  const bytes = Uint8Array.from(map, probabilityByte);
  await writePng(png, bytes, { width: W, height: H, channels: 1 });
  const rle = rleEncode(map, o.threshold);
  await atomicWriteFile(csv, `Id,Predicted\n${basename(resolve(o.fragment))},${rle}\n`);
  let inkPixels = 0;
  for (const v of map) if (v > o.threshold) inkPixels++;
  return { map, shape, tiles, output: { png, csv, threshold: o.threshold, thresholdSource: o.thresholdSource, inkPixels } };
}

/** `goe segment`: loads the checkpoint, then segments a volume (OME-Zarr out) or a fragment (PNG + RLE). */
export async function segment(o: SegmentOptions): Promise<SegmentResult> {
  if ((o.volume === undefined) === (o.fragment === undefined)) {
    throw new ConfigError(o.volume === undefined ? '--volume' : '--fragment', 'give exactly one of --volume (a scroll volume) and --fragment (a fragment folder)');
  }
  if (o.volume !== undefined && o.out === undefined) throw new ConfigError('--out', 'is required with --volume');
  if (o.fragment !== undefined) {
    for (const [flag, v] of [['--region', o.region], ['--level', o.level], ['--mask', o.mask], ['--shard', o.shard], ['--resume', o.resume], ['--png', o.png]] as const) {
      if (v !== undefined && v !== false) throw new ConfigError(flag, 'applies to --volume only (a fragment is segmented whole, with its own mask.png)');
    }
  }
  if (o.volume !== undefined) checkVolumeFlags({ ...o, out: o.out! });
  const backend = await initBackend({ backend: o.backend });
  const { model, restored } = await loadVolumeModel(o.checkpoint, 'segmentation');
  const predictor = volumePredictor(model, restored.config.model.patch);
  const t0 = performance.now();
  try {
    if (o.fragment !== undefined) {
      resolveHeads(predictor, o.heads);
      const { threshold, source } = await checkpointThreshold(restored);
      const out = o.out ?? join(o.fragment, 'prediction');
      const r = await segmentFragmentWith(predictor, { ...o, fragment: o.fragment, out, threshold, thresholdSource: source });
      const seconds = (performance.now() - t0) / 1000;
      return {
        out: resolve(out),
        shape: [...r.shape],
        region: { offset: [0, 0, 0], shape: [...r.shape] },
        heads: ['ink'],
        tiles: r.tiles,
        chunksWritten: 0,
        chunksSkipped: 0,
        parts: 0,
        partsAlreadyDone: 0,
        shard: { index: 0, count: 1 },
        seconds,
        voxelsPerSecond: product(r.shape) / seconds,
        backend,
        previews: [],
        fragment: r.output,
      };
    }
    const modelId = `sha256:${await checkpointDigest(restored.dir)} (step ${restored.checkpoint.manifest.step})`;
    const r = await segmentVolume(predictor, { ...o, volume: o.volume!, out: o.out!, modelId });
    return { ...r, backend };
  } finally {
    predictor.dispose();
  }
}
