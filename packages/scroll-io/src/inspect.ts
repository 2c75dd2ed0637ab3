/**
 * `inspectVolume`: what a Zarr array or OME-Zarr group holds (metadata as stored) and, for a region,
 * summary statistics and a SHA-256 of its voxels, so two readers (this package, zarr-python) or two
 * copies of a volume can be compared by a short JSON document.
 */
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import type { AbsolutePath } from '@zarrita/storage';
import type { VolumeArray } from './dtype.js';
import { ScrollIoOptionError, ZarrMetadataError } from './errors.js';
import { type ArrayMeta, probeNode } from './metadata.js';
import { openVolume, parseMultiscales } from './ome.js';
import type { Region } from './region.js';
import { normalizeLocation, readableStore } from './store.js';

/** Statistics of one region's voxels. */
export interface RegionSummary {
  offset: number[];
  shape: number[];
  dtype: string;
  /** Smallest and largest value, and the float64 mean (null for an empty region; NaN as null). */
  min: number | null;
  max: number | null;
  mean: number | null;
  /** Hex SHA-256 of the voxels' bytes in C order, little endian (`numpy.ascontiguousarray(a).astype('<'+dtype).tobytes()`). */
  sha256: string;
}

/** Metadata of one array. */
export interface ArraySummary {
  path: string;
  zarrFormat: 2 | 3;
  shape: number[];
  /** Read granularity (for sharded arrays, the inner chunk shape). */
  chunks: number[];
  dtype: string;
  fillValue: number | null;
  /** The codec chain as stored: v2 `{ compressor, filters }`, v3 `codecs`. */
  codec: unknown;
  dimensionNames?: string[];
}

/** What {@link inspectVolume} reports. */
export interface VolumeInspection {
  path: string;
  kind: 'array' | 'group';
  zarrFormat: 2 | 3;
  /** The array inspected (for a multiscale group: its level 0). */
  array: ArraySummary;
  /** For an OME-Zarr group: every level's path, shape, chunks and voxel size. */
  multiscales?: {
    version?: string;
    name?: string;
    axes: string[];
    unit?: string;
    levels: { path: string; shape: number[]; chunks: number[]; scale?: number[] }[];
  };
  axes?: string[];
  voxelSize?: number[];
  unit?: string;
  region?: RegionSummary;
}

/**
 * Parses `z0:z1,y0:y1,x0:x1` (half-open ranges, one per dimension; `a:b` with `b >= a >= 0`).
 * @returns the region `{ offset: [n], shape: [n] }`
 */
export function parseRegion(spec: string, ndim?: number): Region {
  const parts = spec.split(',').map((p) => p.trim());
  const offset: number[] = [];
  const shape: number[] = [];
  for (const p of parts) {
    const m = /^(\d+):(\d+)$/.exec(p);
    if (!m) throw new ScrollIoOptionError('region', `expected start:stop ranges separated by commas (e.g. 0:64,0:128,0:128), received '${spec}'`);
    const [a, b] = [Number(m[1]), Number(m[2])];
    if (b < a) throw new ScrollIoOptionError('region', `range '${p}' ends before it starts`);
    offset.push(a);
    shape.push(b - a);
  }
  if (ndim !== undefined && parts.length !== ndim) {
    throw new ScrollIoOptionError('region', `has ${parts.length} ranges, the array has ${ndim} dimensions`);
  }
  return { offset, shape };
}

/**
 * Summary statistics and SHA-256 of C-order voxels.
 * @param data voxels `[product(shape)]`, C order
 */
export function summarizeRegion(data: VolumeArray, region: Region, dtype: string): RegionSummary {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  let nan = false;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v !== v) nan = true;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const width = data.BYTES_PER_ELEMENT;
  if (endianness() === 'BE' && width > 1) {
    bytes = bytes.slice();
    for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
  }
  const empty = data.length === 0;
  const num = (v: number) => (empty || nan ? null : v);
  return {
    offset: region.offset.slice(),
    shape: region.shape.slice(),
    dtype,
    min: num(min),
    max: num(max),
    mean: num(sum / data.length),
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
}

async function rawCodec(loc: string, zarrFormat: 2 | 3): Promise<unknown> {
  const store = readableStore(loc);
  const key = (zarrFormat === 2 ? '/.zarray' : '/zarr.json') as AbsolutePath;
  const bytes = await store.get(key);
  if (!bytes) return null;
  const doc = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  return zarrFormat === 2 ? { compressor: doc.compressor ?? null, filters: doc.filters ?? null } : doc.codecs;
}

/**
 * Describes the Zarr array or OME-Zarr group at `path` (local or http(s)) and, when `region` is
 * given, the voxels of that region (of the array, or of the group's level 0).
 * @param region a {@link Region} or a `z0:z1,y0:y1,x0:x1` string
 */
export async function inspectVolume(path: string, region?: Region | string): Promise<VolumeInspection> {
  const loc = normalizeLocation(path);
  const node = await probeNode(loc, readableStore(loc));
  const volume = await openVolume(loc);
  let meta: ArrayMeta;
  if (node.kind === 'array') meta = node.meta;
  else {
    const level = await probeNode(volume.path, readableStore(volume.path));
    if (level.kind !== 'array') throw new ZarrMetadataError(loc, 'multiscales[0].datasets', `${volume.path} is a group, not an array`);
    meta = level.meta;
  }
  const array: ArraySummary = {
    path: volume.path,
    zarrFormat: meta.zarrFormat,
    shape: volume.shape.slice(),
    chunks: volume.chunks.slice(),
    dtype: volume.dtype,
    fillValue: Number.isFinite(volume.fillValue) ? volume.fillValue : null,
    codec: await rawCodec(volume.path, meta.zarrFormat),
  };
  if (meta.dimensionNames) array.dimensionNames = meta.dimensionNames;
  const out: VolumeInspection = { path: loc, kind: node.kind, zarrFormat: node.zarrFormat, array };
  if (node.kind === 'group') {
    const ms = parseMultiscales(node.attributes, loc);
    if (ms) {
      const levels = [];
      for (let i = 0; i < ms.levels.length; i++) {
        const v = i === 0 ? volume : await openVolume(loc, { level: i });
        levels.push({ path: ms.levels[i].path, shape: v.shape.slice(), chunks: v.chunks.slice(), scale: ms.levels[i].scale });
      }
      out.multiscales = { version: ms.version, name: ms.name, axes: ms.axes, unit: ms.unit, levels };
    }
  }
  if (volume.axes) out.axes = volume.axes;
  if (volume.voxelSize) out.voxelSize = volume.voxelSize;
  if (volume.unit) out.unit = volume.unit;
  if (region !== undefined) {
    const r = typeof region === 'string' ? parseRegion(region, volume.shape.length) : region;
    if (r.offset.length !== volume.shape.length) {
      throw new ScrollIoOptionError('region', `has ${r.offset.length} dimensions, the array has ${volume.shape.length}`);
    }
    const { data } = await volume.read(r);
    out.region = summarizeRegion(data, r, volume.dtype);
  }
  return out;
}
