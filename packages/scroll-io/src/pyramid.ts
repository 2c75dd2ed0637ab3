/**
 * Fills the coarser levels of an OME-Zarr multiscale group by 2x downsampling of every spatial axis,
 * level i+1 from level i, one destination chunk at a time: each step reads the source box under one
 * destination chunk (at most 2^n source-chunk volumes), reduces it and writes the chunk, so memory
 * stays at a few chunks per level whatever the volume size.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWriteFile } from './atomic.js';
import type { ChunkCache } from './cache.js';
import { allocate, type VolumeArray } from './dtype.js';
import { ScrollIoOptionError, ZarrMetadataError, ZarrUnsupportedError } from './errors.js';
import { openGroup, openWritableOmeLevel, parseMultiscales, setGroupAttributes, type ZarrGroup } from './ome.js';
import { mapLimit, product, type Region } from './region.js';
import { childLocation, isUrl } from './store.js';
import { zarrNodeExists, type Volume, type WritableVolume } from './volume.js';

/** How a 2x2x2 block becomes one voxel. */
export type PyramidMethod = 'mean' | 'max' | 'mode';
export const PYRAMID_METHODS: readonly PyramidMethod[] = ['mean', 'max', 'mode'];

/** Options of {@link buildPyramid}. */
export interface BuildPyramidOptions {
  /**
   * Total number of levels, level 0 included (default: the group's existing level count when it has
   * more than one, else halve until every spatial axis fits in one chunk).
   */
  levels?: number;
  /**
   * `mean` (images; integers rounded to nearest), `max`, or `mode` (most frequent value, ties to the
   * smallest). Default `mode` for label groups (`image-label`), `mean` otherwise. Label groups refuse
   * `mean`, which would invent label values that are not in the data.
   */
  method?: PyramidMethod;
  /** Chunk cache for reading the source levels (default: the process-wide cache). */
  cache?: ChunkCache;
  /** Destination chunks processed at once (default 2). */
  concurrency?: number;
}

/** What {@link buildPyramid} did. */
export interface PyramidResult {
  group: ZarrGroup;
  method: PyramidMethod;
  /** Shape of every level, level 0 first. */
  shapes: number[][];
  /** Destination chunks written per built level (index 0 is level 1). */
  chunksWritten: number[];
}

const SPATIAL = new Set(['x', 'y', 'z']);
const DEFAULTS = { concurrency: 2 };

function resolveOptions(options: BuildPyramidOptions) {
  const known = new Set(['levels', 'method', 'cache', 'concurrency']);
  for (const k of Object.keys(options)) if (!known.has(k)) throw new ScrollIoOptionError(k, 'unknown option of buildPyramid');
  if (options.levels !== undefined && (!Number.isInteger(options.levels) || options.levels < 1)) {
    throw new ScrollIoOptionError('levels', `expected an integer >= 1, received ${JSON.stringify(options.levels)}`);
  }
  if (options.method !== undefined && !PYRAMID_METHODS.includes(options.method)) {
    throw new ScrollIoOptionError('method', `expected one of ${PYRAMID_METHODS.join(', ')}, received ${JSON.stringify(options.method)}`);
  }
  const concurrency = options.concurrency ?? DEFAULTS.concurrency;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new ScrollIoOptionError('concurrency', `expected an integer >= 1, received ${concurrency}`);
  return { ...options, concurrency };
}

function isLabelGroup(attributes: Record<string, unknown>): boolean {
  const ome = attributes.ome as Record<string, unknown> | undefined;
  return attributes['image-label'] !== undefined || ome?.['image-label'] !== undefined;
}

/**
 * Downsamples level i into level i+1 for every level of an OME-Zarr image (or label) group, creating
 * missing levels (same dtype, codec and chunks as level 0, chunks clamped to the level's shape) and
 * extending the multiscales metadata: each new level's `scale` is the previous one doubled on the
 * spatial axes (x, y, z), as OME-NGFF 0.4/0.5 requires for a 2x pyramid.
 * Odd sizes round up; the edge voxels reduce only the source voxels that exist.
 * @param group a local OME-Zarr multiscale group (or its path)
 */
export async function buildPyramid(group: ZarrGroup | string, options: BuildPyramidOptions = {}): Promise<PyramidResult> {
  const opts = resolveOptions(options);
  const path = typeof group === 'string' ? group : group.path;
  if (isUrl(path)) throw new ZarrUnsupportedError(`${path}: writing is supported for local paths only`, path);
  const g = await openGroup(path);
  const ms = parseMultiscales(g.attributes, g.path);
  if (!ms) throw new ZarrMetadataError(g.path, 'multiscales', 'the group has no OME-Zarr multiscales metadata');
  const label = isLabelGroup(g.attributes);
  const method = opts.method ?? (label ? 'mode' : 'mean');
  if (label && method === 'mean') throw new ScrollIoOptionError('method', `${g.path} is a label image: 'mean' would invent label values; use 'mode' or 'max'`);

  const level0 = await openWritableOmeLevel(g.path, { level: 0, cache: opts.cache });
  const ndim = level0.shape.length;
  const axes = ms.axes.length === ndim ? ms.axes : level0.shape.map((_, k) => (ndim - k <= 3 ? 'zyx'[3 - (ndim - k)] : `d${k}`));
  const factor = axes.map((a) => (SPATIAL.has(a) ? 2 : 1));
  const shapeAt = (i: number) => level0.shape.map((s, k) => (factor[k] === 2 ? Math.ceil(s / 2 ** i) : s));

  let count = opts.levels;
  if (count === undefined) {
    if (ms.levels.length > 1) count = ms.levels.length;
    else {
      count = 1;
      while (count < 32 && shapeAt(count - 1).some((s, k) => factor[k] === 2 && s > level0.chunks[k])) count++;
    }
  }

  // The raw multiscales entry, to extend its datasets in place (keeping any fields we do not model).
  const ome = g.attributes.ome as Record<string, unknown> | undefined;
  const msList = (g.attributes.multiscales ?? ome?.multiscales) as Record<string, unknown>[];
  const datasets = (msList[0].datasets as Record<string, unknown>[]).map((d) => ({ ...d }));

  const shapes = [level0.shape.slice()];
  const chunksWritten: number[] = [];
  let src: WritableVolume = level0;
  for (let i = 1; i < count; i++) {
    const shape = shapeAt(i);
    let dst: WritableVolume;
    if (i < datasets.length) {
      dst = await openWritableOmeLevel(g.path, { level: i, cache: opts.cache });
      if (dst.shape.length !== ndim || dst.shape.some((s, k) => s !== shape[k])) {
        throw new ZarrMetadataError(g.path, `multiscales[0].datasets[${i}]`, `level ${i} has shape [${dst.shape.join(', ')}], a 2x pyramid needs [${shape.join(', ')}]`);
      }
    } else {
      const prev = datasets[i - 1];
      const sub = String(i);
      if (datasets.some((d) => d.path === sub)) throw new ZarrMetadataError(g.path, 'multiscales[0].datasets', `path ${sub} is already used by another level`);
      await createLevelLike(childLocation(g.path, String(prev.path)), childLocation(g.path, sub), shape, g.zarrFormat);
      datasets.push({ path: sub, coordinateTransformations: [{ type: 'scale', scale: doubledScale(prev, factor) }] });
      // Written before the chunks so openWritableOmeLevel can resolve the new level.
      await writeDatasets(g, datasets);
      dst = await openWritableOmeLevel(g.path, { level: i, cache: opts.cache });
    }
    chunksWritten.push(await downsampleLevel(src, dst, factor, method, opts.concurrency));
    shapes.push(shape);
    src = dst;
  }
  const final = await openGroup(g.path);
  return { group: final, method, shapes, chunksWritten };
}

function doubledScale(prev: Record<string, unknown>, factor: number[]): number[] {
  const ts = (prev.coordinateTransformations ?? []) as Record<string, unknown>[];
  const t = ts.find((x) => x?.type === 'scale');
  const s = (t?.scale as number[] | undefined) ?? factor.map(() => 1);
  return s.map((v, k) => v * factor[k]);
}

async function writeDatasets(g: ZarrGroup, datasets: Record<string, unknown>[]): Promise<void> {
  const cur = await openGroup(g.path);
  const attrs = structuredClone(cur.attributes);
  const ome = attrs.ome as Record<string, unknown> | undefined;
  const list = (attrs.multiscales ?? ome?.multiscales) as Record<string, unknown>[];
  list[0].datasets = datasets;
  await setGroupAttributes(cur, attrs);
}

/** Creates an empty array at `to` with the metadata of the array at `from` and a new shape. */
async function createLevelLike(from: string, to: string, shape: number[], zarrFormat: 2 | 3): Promise<void> {
  if (await zarrNodeExists(to)) throw new ZarrMetadataError(to, 'multiscales[0].datasets', 'a node already exists where the new level would go');
  if (zarrFormat === 2) {
    const meta = JSON.parse(await readFile(join(from, '.zarray'), 'utf8')) as Record<string, unknown>;
    meta.shape = shape;
    meta.chunks = (meta.chunks as number[]).map((c, k) => Math.max(1, Math.min(c, shape[k] || 1)));
    try {
      const attrs = await readFile(join(from, '.zattrs'), 'utf8');
      await atomicWriteFile(join(to, '.zattrs'), attrs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await atomicWriteFile(join(to, '.zarray'), JSON.stringify(meta, null, 2));
  } else {
    const meta = JSON.parse(await readFile(join(from, 'zarr.json'), 'utf8')) as Record<string, unknown>;
    meta.shape = shape;
    const grid = meta.chunk_grid as { configuration: { chunk_shape: number[] } };
    grid.configuration.chunk_shape = grid.configuration.chunk_shape.map((c, k) => Math.max(1, Math.min(c, shape[k] || 1)));
    await atomicWriteFile(join(to, 'zarr.json'), JSON.stringify(meta, null, 2));
  }
}

/** Fills `dst` from `src`, one destination chunk at a time; returns the number of chunks processed. */
async function downsampleLevel(src: Volume, dst: WritableVolume, factor: number[], method: PyramidMethod, concurrency: number): Promise<number> {
  const grid = dst.shape.map((s, k) => Math.ceil(s / dst.chunks[k]));
  const total = product(grid);
  const coords: number[][] = [];
  for (let f = 0; f < total; f++) {
    const c: number[] = [];
    let r = f;
    for (let k = grid.length - 1; k >= 0; k--) {
      c[k] = r % grid[k];
      r = Math.floor(r / grid[k]);
    }
    coords.push(c);
  }
  await mapLimit(coords, concurrency, async (c) => {
    const lo = c.map((ci, k) => ci * dst.chunks[k]);
    const out: Region = { offset: lo, shape: lo.map((o, k) => Math.min(dst.chunks[k], dst.shape[k] - o)) };
    const srcLo = lo.map((o, k) => o * factor[k]);
    const srcRegion: Region = {
      offset: srcLo,
      shape: srcLo.map((o, k) => Math.min(out.shape[k] * factor[k], src.shape[k] - o)),
    };
    const { data } = await src.read(srcRegion);
    const reduced = reduceBlocks(data, srcRegion.shape, out.shape, factor, method, dst);
    await dst.write(out, reduced);
  });
  return total;
}

/**
 * Reduces each `factor`-sized block of `data` (C order, `srcShape`) to one voxel of `outShape`;
 * blocks cut by the source edge reduce only their existing voxels.
 */
export function reduceBlocks(data: VolumeArray, srcShape: number[], outShape: number[], factor: number[], method: PyramidMethod, like: { dtype: Volume['dtype'] }): VolumeArray {
  const n = outShape.length;
  const out = allocate(like.dtype, product(outShape));
  const isInt = !like.dtype.startsWith('float');
  if (n === 3 && factor.every((f) => f === 2)) {
    reduce3d(data, srcShape, outShape, method, isInt, out);
    return out;
  }
  const stride = new Array<number>(n);
  let acc = 1;
  for (let k = n - 1; k >= 0; k--) {
    stride[k] = acc;
    acc *= srcShape[k];
  }
  // Block corners: every 0/1 offset vector on the downsampled axes.
  const corners: number[][] = [[]];
  for (let k = 0; k < n; k++) {
    const next: number[][] = [];
    for (const c of corners) for (let o = 0; o < factor[k]; o++) next.push([...c, o]);
    corners.splice(0, corners.length, ...next);
  }
  const vals = new Float64Array(corners.length);
  const d = new Array<number>(n).fill(0);
  for (let o = 0; o < out.length; o++) {
    let m = 0;
    for (const c of corners) {
      let idx = 0;
      let ok = true;
      for (let k = 0; k < n; k++) {
        const s = d[k] * factor[k] + c[k];
        if (s >= srcShape[k]) {
          ok = false;
          break;
        }
        idx += s * stride[k];
      }
      if (ok) vals[m++] = data[idx];
    }
    out[o] = reduce(vals, m, method, isInt);
    for (let k = n - 1; k >= 0; k--) {
      if (++d[k] < outShape[k]) break;
      d[k] = 0;
    }
  }
  return out;
}

/** The [D, H, W] 2x2x2 case without the generic corner bookkeeping (about 3x faster). */
function reduce3d(data: VolumeArray, srcShape: number[], outShape: number[], method: PyramidMethod, isInt: boolean, out: VolumeArray): void {
  const [Z, Y, X] = srcShape;
  const [oz, oy, ox] = outShape;
  const vals = new Float64Array(8);
  let o = 0;
  for (let z = 0; z < oz; z++) {
    const nz = 2 * z + 1 < Z ? 2 : 1;
    for (let y = 0; y < oy; y++) {
      const ny = 2 * y + 1 < Y ? 2 : 1;
      for (let x = 0; x < ox; x++) {
        const nx = 2 * x + 1 < X ? 2 : 1;
        let m = 0;
        for (let dz = 0; dz < nz; dz++) {
          for (let dy = 0; dy < ny; dy++) {
            const row = ((2 * z + dz) * Y + 2 * y + dy) * X + 2 * x;
            vals[m++] = data[row];
            if (nx === 2) vals[m++] = data[row + 1];
          }
        }
        out[o++] = reduce(vals, m, method, isInt);
      }
    }
  }
}

function reduce(vals: Float64Array, m: number, method: PyramidMethod, isInt: boolean): number {
  if (method === 'mean') {
    let s = 0;
    for (let i = 0; i < m; i++) s += vals[i];
    return isInt ? Math.round(s / m) : s / m;
  }
  if (method === 'max') {
    let best = vals[0];
    for (let i = 1; i < m; i++) if (vals[i] > best) best = vals[i];
    return best;
  }
  // Mode, ties to the smallest value: m <= 2^n is tiny, so quadratic counting beats a map.
  let best = vals[0];
  let bestCount = 0;
  for (let i = 0; i < m; i++) {
    let cnt = 0;
    for (let j = 0; j < m; j++) if (vals[j] === vals[i]) cnt++;
    if (cnt > bestCount || (cnt === bestCount && vals[i] < best)) {
      best = vals[i];
      bestCount = cnt;
    }
  }
  return best;
}
