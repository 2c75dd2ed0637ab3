/**
 * Zarr groups and the OME-Zarr layout of the scroll volumes: a multiscale image group (`0/ … n/`
 * arrays, axes z, y, x with a `scale` per level) and `labels/NAME` multiscale groups beside it
 * (OME-NGFF 0.4 for Zarr v2, 0.5 for Zarr v3).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWriteFile } from './atomic.js';
import { ScrollIoOptionError, ZarrError, ZarrMetadataError, ZarrUnsupportedError } from './errors.js';
import { probeNode } from './metadata.js';
import { childLocation, isUrl, normalizeLocation, readableStore } from './store.js';
import {
  type CreateVolumeOptions,
  type OpenArrayOptions,
  prepareNewNode,
  type Volume,
  type WritableOptions,
  type WritableVolume,
  WritableZarrVolume,
  ZarrVolume,
  createVolume,
} from './volume.js';

/** A Zarr group: a directory (or URL) with attributes. */
export interface ZarrGroup {
  readonly path: string;
  readonly zarrFormat: 2 | 3;
  readonly attributes: Record<string, unknown>;
}

export interface CreateGroupOptions {
  zarrFormat?: 2 | 3;
  attributes?: Record<string, unknown>;
  /** Replace an existing node at the path (its directory is deleted first). Default false. */
  overwrite?: boolean;
}

/** Opens the group at `path` (local or http(s)); throws if it is an array or absent. */
export async function openGroup(path: string): Promise<ZarrGroup> {
  const loc = normalizeLocation(path);
  const node = await probeNode(loc, readableStore(loc));
  if (node.kind !== 'group') throw new ZarrError(`${loc} is an array, not a group`, loc);
  return { path: loc, zarrFormat: node.zarrFormat, attributes: node.attributes };
}

/** Creates a local group (v2 `.zgroup` + `.zattrs`, or v3 `zarr.json`), metadata written atomically. */
export async function createGroup(path: string, options: CreateGroupOptions = {}): Promise<ZarrGroup> {
  if (isUrl(path)) throw new ZarrUnsupportedError(`${path}: writing is supported for local paths only`, path);
  const loc = normalizeLocation(path);
  const zarrFormat = options.zarrFormat ?? 2;
  if (zarrFormat !== 2 && zarrFormat !== 3) throw new ScrollIoOptionError('zarrFormat', `expected 2 or 3, received ${JSON.stringify(zarrFormat)}`);
  await prepareNewNode(loc, options.overwrite ?? false);
  await mkdir(loc, { recursive: true });
  const attributes = options.attributes ?? {};
  await writeGroupMetadata(loc, zarrFormat, attributes);
  return { path: loc, zarrFormat, attributes };
}

/** Replaces a local group's attributes (atomically). */
export async function setGroupAttributes(group: ZarrGroup, attributes: Record<string, unknown>): Promise<ZarrGroup> {
  await writeGroupMetadata(group.path, group.zarrFormat, attributes);
  return { ...group, attributes };
}

async function writeGroupMetadata(loc: string, zarrFormat: 2 | 3, attributes: Record<string, unknown>): Promise<void> {
  if (zarrFormat === 2) {
    await atomicWriteFile(join(loc, '.zattrs'), JSON.stringify(attributes, null, 2));
    await atomicWriteFile(join(loc, '.zgroup'), JSON.stringify({ zarr_format: 2 }, null, 2));
  } else {
    await atomicWriteFile(join(loc, 'zarr.json'), JSON.stringify({ zarr_format: 3, node_type: 'group', attributes }, null, 2));
  }
}

/** One level of an OME-Zarr multiscale image. */
export interface MultiscaleLevel {
  /** Array path relative to the group, e.g. `0`. */
  path: string;
  /** Voxel size of this level per axis (`scale` transformations composed). */
  scale?: number[];
}

/** The parts of OME-Zarr `multiscales[0]` this package uses. */
export interface Multiscales {
  version?: string;
  name?: string;
  axes: string[];
  /** Unit of the first spatial axis that names one. */
  unit?: string;
  levels: MultiscaleLevel[];
}

function composeScale(file: string, field: string, transforms: unknown): number[] | undefined {
  if (transforms === undefined) return undefined;
  if (!Array.isArray(transforms)) throw new ZarrMetadataError(file, field, 'expected a list of transformations');
  let scale: number[] | undefined;
  for (const t of transforms as Record<string, unknown>[]) {
    if (t?.type !== 'scale') continue;
    const s = t.scale;
    if (!Array.isArray(s) || !s.every((v) => typeof v === 'number' && v > 0)) {
      throw new ZarrMetadataError(file, `${field}.scale`, `expected positive numbers, found ${JSON.stringify(s)}`);
    }
    scale = scale ? scale.map((v, i) => v * (s[i] as number)) : (s as number[]).slice();
  }
  return scale;
}

/**
 * Parses OME-Zarr `multiscales` from group attributes (0.4: `attributes.multiscales`, 0.5:
 * `attributes.ome.multiscales`); undefined when the group has none.
 * @param file the group's location, for messages
 */
export function parseMultiscales(attributes: Record<string, unknown>, file: string): Multiscales | undefined {
  const ome = attributes.ome as Record<string, unknown> | undefined;
  const list = (attributes.multiscales ?? ome?.multiscales) as unknown;
  if (list === undefined) return undefined;
  const field = attributes.multiscales !== undefined ? 'multiscales' : 'ome.multiscales';
  if (!Array.isArray(list) || list.length === 0) throw new ZarrMetadataError(file, field, 'expected a non-empty list');
  const ms = list[0] as Record<string, unknown>;
  const datasets = ms.datasets;
  if (!Array.isArray(datasets) || datasets.length === 0) throw new ZarrMetadataError(file, `${field}[0].datasets`, 'expected a non-empty list');
  let axes: string[] = [];
  let unit: string | undefined;
  if (Array.isArray(ms.axes)) {
    // 0.3: axis names as strings; 0.4+: objects with name, type, unit.
    axes = ms.axes.map((a, i) => {
      if (typeof a === 'string') return a;
      const o = a as Record<string, unknown>;
      if (typeof o?.name !== 'string') throw new ZarrMetadataError(file, `${field}[0].axes[${i}].name`, 'missing');
      if (unit === undefined && o.type === 'space' && typeof o.unit === 'string') unit = o.unit;
      return o.name;
    });
  }
  const global = composeScale(file, `${field}[0].coordinateTransformations`, ms.coordinateTransformations);
  const levels = datasets.map((d, i) => {
    const ds = d as Record<string, unknown>;
    if (typeof ds?.path !== 'string') throw new ZarrMetadataError(file, `${field}[0].datasets[${i}].path`, 'missing');
    let scale = composeScale(file, `${field}[0].datasets[${i}].coordinateTransformations`, ds.coordinateTransformations);
    if (scale && global) scale = scale.map((v, k) => v * global[k]);
    return { path: ds.path, scale: scale ?? global };
  });
  const version = (ms.version ?? ome?.version) as string | undefined;
  return { version, name: ms.name as string | undefined, axes, unit, levels };
}

export interface OpenVolumeOptions extends OpenArrayOptions {
  /** Multiscale level to open when `path` is an OME-Zarr group (default 0, full resolution). */
  level?: number;
}

/**
 * Opens a Zarr v2/v3 array, or an OME-Zarr multiscale group (one `level` of it, with axes, voxel size
 * and unit from its `multiscales` metadata), for region reads. `path` is a local path or an
 * http(s) URL.
 */
export async function openVolume(path: string, options: OpenVolumeOptions = {}): Promise<Volume> {
  const loc = normalizeLocation(path);
  const node = await probeNode(loc, readableStore(loc));
  if (node.kind === 'array') {
    if (options.level !== undefined && options.level !== 0) {
      throw new ScrollIoOptionError('level', `${loc} is a single array, not a multiscale group; level ${options.level} does not exist`);
    }
    return ZarrVolume.open(loc, node.meta, {}, options);
  }
  const { arrayPath, spatial } = resolveLevel(loc, node.attributes, options.level ?? 0);
  const arrNode = await probeNode(arrayPath, readableStore(arrayPath));
  if (arrNode.kind !== 'array') throw new ZarrMetadataError(loc, 'multiscales[0].datasets', `${arrayPath} is a group, not an array`);
  return ZarrVolume.open(arrayPath, arrNode.meta, checkSpatial(loc, spatial, arrNode.meta.shape.length), options);
}

/** Opens one level of a local OME-Zarr group (or a plain array) for reading and writing. */
export async function openWritableOmeLevel(path: string, options: WritableOptions & { level?: number } = {}): Promise<WritableVolume> {
  const loc = normalizeLocation(path);
  const node = await probeNode(loc, readableStore(loc));
  if (node.kind === 'array') return WritableZarrVolume.openWritable(loc, node.meta, {}, options);
  const { arrayPath, spatial } = resolveLevel(loc, node.attributes, options.level ?? 0);
  const arrNode = await probeNode(arrayPath, readableStore(arrayPath));
  if (arrNode.kind !== 'array') throw new ZarrMetadataError(loc, 'multiscales[0].datasets', `${arrayPath} is a group, not an array`);
  return WritableZarrVolume.openWritable(arrayPath, arrNode.meta, checkSpatial(loc, spatial, arrNode.meta.shape.length), options);
}

function resolveLevel(loc: string, attributes: Record<string, unknown>, level: number) {
  const ms = parseMultiscales(attributes, loc);
  if (!ms) {
    throw new ZarrMetadataError(loc, 'multiscales', 'this group has no OME-Zarr multiscales metadata; open one of its arrays directly');
  }
  if (!Number.isInteger(level) || level < 0 || level >= ms.levels.length) {
    throw new ScrollIoOptionError('level', `${loc} has levels 0..${ms.levels.length - 1}, received ${level}`);
  }
  const lv = ms.levels[level];
  return {
    arrayPath: childLocation(loc, lv.path),
    spatial: { voxelSize: lv.scale, axes: ms.axes.length > 0 ? ms.axes : undefined, unit: ms.unit },
  };
}

function checkSpatial(loc: string, s: { voxelSize?: number[]; axes?: string[]; unit?: string }, ndim: number) {
  if (s.axes && s.axes.length !== ndim) throw new ZarrMetadataError(loc, 'multiscales[0].axes', `names ${s.axes.length} axes, the array has ${ndim} dimensions`);
  if (s.voxelSize && s.voxelSize.length !== ndim) {
    throw new ZarrMetadataError(loc, 'multiscales[0].coordinateTransformations', `scale has ${s.voxelSize.length} entries, the array has ${ndim} dimensions`);
  }
  return s;
}

/** Options of {@link createOmeZarr}. */
export interface CreateOmeZarrOptions extends Omit<CreateVolumeOptions, 'attributes' | 'dimensionNames' | 'overwrite'> {
  /** Axis names (default `['z', 'y', 'x']` for 3-D arrays). */
  axes?: string[];
  /** Voxel size per axis at level 0 (default all 1). */
  voxelSize?: number[];
  /** Unit of the spatial axes (default `'micrometer'`). */
  unit?: string;
  /** Image name in the multiscales metadata. */
  name?: string;
  /**
   * Number of resolution levels (default 1). Level i halves every spatial axis i times (rounding up)
   * and doubles its voxel size; the arrays are created empty, to be filled by the caller (or by
   * downsampling level 0 with `buildPyramid`).
   */
  levels?: number;
  /** Extra group attributes, merged beside the multiscales metadata. */
  attributes?: Record<string, unknown>;
  overwrite?: boolean;
}

/** A created OME-Zarr multiscale image. */
export interface OmeImage {
  group: ZarrGroup;
  /** The level arrays, level 0 (full resolution) first. */
  levels: WritableVolume[];
}

const SPATIAL = new Set(['x', 'y', 'z']);

/**
 * The OME-NGFF multiscales attributes of a group with `levels` levels, for Zarr v2 (0.4) or v3 (0.5).
 * @param voxelSize level-0 voxel size per axis
 */
export function omeMultiscalesAttributes(opts: { axes: string[]; voxelSize: number[]; unit: string; levels: number; name?: string; zarrFormat: 2 | 3 }): Record<string, unknown> {
  const axes = opts.axes.map((name) => {
    if (SPATIAL.has(name)) return { name, type: 'space', unit: opts.unit };
    if (name === 'c') return { name, type: 'channel' };
    if (name === 't') return { name, type: 'time' };
    return { name };
  });
  const datasets = Array.from({ length: opts.levels }, (_, i) => ({
    path: String(i),
    coordinateTransformations: [{ type: 'scale', scale: opts.axes.map((a, k) => (SPATIAL.has(a) ? opts.voxelSize[k] * 2 ** i : opts.voxelSize[k])) }],
  }));
  const ms: Record<string, unknown> = { axes, datasets };
  if (opts.name !== undefined) ms.name = opts.name;
  if (opts.zarrFormat === 2) return { multiscales: [{ version: '0.4', ...ms }] };
  return { ome: { version: '0.5', multiscales: [ms] } };
}

/**
 * Creates a local OME-Zarr multiscale image group with empty level arrays `0/ … (levels-1)/`.
 * @param path the group's directory (e.g. `scroll.zarr`)
 */
export async function createOmeZarr(path: string, options: CreateOmeZarrOptions): Promise<OmeImage> {
  const ndim = options.shape?.length ?? 0;
  const axes = options.axes ?? (ndim === 3 ? ['z', 'y', 'x'] : undefined);
  if (!axes || axes.length !== ndim) throw new ScrollIoOptionError('axes', `expected ${ndim} axis names, received ${JSON.stringify(options.axes)}`);
  const voxelSize = options.voxelSize ?? axes.map(() => 1);
  if (!Array.isArray(voxelSize) || voxelSize.length !== ndim || !voxelSize.every((v) => typeof v === 'number' && v > 0)) {
    throw new ScrollIoOptionError('voxelSize', `expected ${ndim} positive numbers, received ${JSON.stringify(options.voxelSize)}`);
  }
  const levels = options.levels ?? 1;
  if (!Number.isInteger(levels) || levels < 1) throw new ScrollIoOptionError('levels', `expected an integer >= 1, received ${levels}`);
  const zarrFormat = options.zarrFormat ?? 2;
  const attributes = {
    ...(options.attributes ?? {}),
    ...omeMultiscalesAttributes({ axes, voxelSize, unit: options.unit ?? 'micrometer', levels, name: options.name, zarrFormat }),
  };
  const group = await createGroup(path, { zarrFormat, attributes, overwrite: options.overwrite });
  const arrays: WritableVolume[] = [];
  for (let i = 0; i < levels; i++) {
    const shape = options.shape.map((s, k) => (SPATIAL.has(axes[k]) ? Math.ceil(s / 2 ** i) : s));
    arrays.push(
      await createVolume(childLocation(group.path, String(i)), {
        ...options,
        shape,
        chunks: options.chunks.map((c, k) => Math.max(1, Math.min(c, shape[k] || 1))),
        zarrFormat,
        dimensionNames: zarrFormat === 3 ? axes : undefined,
        attributes: {},
        overwrite: false,
      }),
    );
  }
  return { group, levels: arrays };
}

/** Options of {@link createOmeLabel}. */
export interface CreateOmeLabelOptions extends Partial<Omit<CreateVolumeOptions, 'shape' | 'attributes' | 'dimensionNames' | 'zarrFormat' | 'overwrite'>> {
  /** OME `image-label.colors`: display colour per label value. */
  colors?: { 'label-value': number; rgba: [number, number, number, number] }[];
  /** Replace an existing label of this name. Default false. */
  overwrite?: boolean;
}

const labelLocks = new Map<string, Promise<unknown>>();

/**
 * Adds the label image `labels/NAME` to a local OME-Zarr image group: a multiscale group with one
 * level `0/` of the image's level-0 shape and voxel size (default uint8, the image's chunks), an
 * `image-label` entry pointing back at the image, and NAME listed in `labels/` attributes.
 * @param image the image group (or its path)
 */
export async function createOmeLabel(image: ZarrGroup | string, name: string, options: CreateOmeLabelOptions = {}): Promise<OmeImage> {
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name === '.' || name === '..') {
    throw new ScrollIoOptionError('name', `label name must be a plain directory name, received ${JSON.stringify(name)}`);
  }
  const img = typeof image === 'string' ? await openGroup(image) : image;
  const ms = parseMultiscales(img.attributes, img.path);
  if (!ms) throw new ZarrMetadataError(img.path, 'multiscales', 'the image group has no OME-Zarr multiscales metadata');
  const level0 = await openVolume(img.path, { level: 0 });
  const labelsPath = childLocation(img.path, 'labels');
  const ome = img.zarrFormat === 3;
  // Serialise label-list updates of one image within the process (read-modify-write of labels/).
  const prev = labelLocks.get(labelsPath) ?? Promise.resolve();
  const run = prev.then(async () => {
    let names: string[] = [];
    try {
      const lg = await openGroup(labelsPath);
      const list = (ome ? (lg.attributes.ome as Record<string, unknown> | undefined)?.labels : lg.attributes.labels) as unknown;
      if (Array.isArray(list)) names = list.filter((x): x is string => typeof x === 'string');
    } catch (err) {
      if (!(err instanceof ZarrError)) throw err;
    }
    if (!names.includes(name)) names.push(name);
    const attrs = ome ? { ome: { version: '0.5', labels: names } } : { labels: names };
    await mkdir(labelsPath, { recursive: true });
    await writeGroupMetadata(labelsPath, img.zarrFormat, attrs);
  });
  labelLocks.set(labelsPath, run.catch(() => undefined));
  await run;
  const imageLabel: Record<string, unknown> = { source: { image: '../../' } };
  if (options.colors) imageLabel.colors = options.colors;
  const extra = ome ? {} : { 'image-label': { version: '0.4', ...imageLabel } };
  const created = await createOmeZarr(childLocation(labelsPath, name), {
    ...options,
    shape: level0.shape,
    chunks: options.chunks ?? level0.chunks,
    dtype: options.dtype ?? 'uint8',
    axes: ms.axes.length > 0 ? ms.axes : undefined,
    voxelSize: level0.voxelSize,
    unit: ms.unit ?? 'micrometer',
    zarrFormat: img.zarrFormat,
    name,
    levels: 1,
    attributes: extra,
    overwrite: options.overwrite,
  });
  if (ome) {
    // 0.5 keeps image-label inside the `ome` object.
    const attrs = created.group.attributes as { ome: Record<string, unknown> };
    const group = await setGroupAttributes(created.group, { ...attrs, ome: { ...attrs.ome, 'image-label': imageLabel } });
    return { group, levels: created.levels };
  }
  return created;
}
