import type { AbsolutePath, AsyncReadable } from '@zarrita/storage';
import { type Dtype, isFloatDtype, v2DtypeString } from './dtype.js';
import { ZarrMetadataError, ZarrNotFoundError, ZarrUnsupportedError } from './errors.js';
import { childLocation } from './store.js';

/** Compressors this package writes (and reads); all are read by zarr-python 2.13 in v2 arrays. */
export type Compressor = 'blosc-lz4' | 'blosc-zstd' | 'zstd' | 'zlib' | 'gzip' | 'none';

export const COMPRESSORS: readonly Compressor[] = ['blosc-lz4', 'blosc-zstd', 'zstd', 'zlib', 'gzip', 'none'];

/** An array's metadata, normalised across Zarr v2 and v3. */
export interface ArrayMeta {
  zarrFormat: 2 | 3;
  shape: number[];
  /** Chunk shape of the chunk grid (for sharded v3 arrays: the shard shape). */
  gridChunks: number[];
  dtype: Dtype;
  fillValue: number;
  attributes: Record<string, unknown>;
  dimensionNames?: string[];
  /** Chunk key of grid chunk coordinates, relative to the array (e.g. `0.1.2`, `0/1/2`, `c/0/1/2`). */
  chunkKey: (coords: readonly number[]) => string;
  /** True when chunks are v3 shards holding inner chunks. */
  sharded: boolean;
  /** The compressor, when it is one this package can also write (undefined: read-only layout). */
  writableAs?: { compressor: Compressor; level?: number };
  /** Why the array cannot be written, when `writableAs` is undefined. */
  notWritableBecause?: string;
  /**
   * Set when every chunk is a plain C-order, little-endian (or single-byte) array stored raw or
   * compressed by blosc (any inner codec) or zstd alone: the layout the native chunk reader
   * (native/reader.c) reads without zarrita's codec pipeline.
   */
  plainCodec?: PlainCodec;
}

/** Chunk encodings the native reader decodes: none, blosc, zstd. */
export type PlainCodec = 'raw' | 'blosc' | 'zstd';

/** A node found at a location. */
export type ZarrNode =
  | { kind: 'array'; zarrFormat: 2 | 3; meta: ArrayMeta }
  | { kind: 'group'; zarrFormat: 2 | 3; attributes: Record<string, unknown> };

const V2_DTYPES: Record<string, Dtype> = {
  u1: 'uint8',
  i1: 'int8',
  u2: 'uint16',
  i2: 'int16',
  u4: 'uint32',
  i4: 'int32',
  f4: 'float32',
  f8: 'float64',
};

async function getBytes(store: AsyncReadable, key: string, file: string): Promise<Uint8Array | undefined> {
  try {
    return await store.get(`/${key}` as AbsolutePath);
  } catch (cause) {
    throw new ZarrMetadataError(file, key, `cannot be read: ${(cause as Error).message}`, { cause });
  }
}

async function getJson(store: AsyncReadable, key: string, file: string): Promise<Record<string, unknown> | undefined> {
  const bytes = await getBytes(store, key, file);
  if (!bytes) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch (cause) {
    throw new ZarrMetadataError(file, key, `is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ZarrMetadataError(file, key, 'is not a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/**
 * Finds the Zarr node at `location` (v3 `zarr.json` first, then v2 `.zarray` / `.zgroup`) and parses
 * its metadata. Throws {@link ZarrNotFoundError} naming the files looked for when there is none.
 */
export async function probeNode(location: string, store: AsyncReadable): Promise<ZarrNode> {
  const v3file = childLocation(location, 'zarr.json');
  const v3 = await getJson(store, 'zarr.json', v3file);
  if (v3) {
    if (v3.node_type === 'group') return { kind: 'group', zarrFormat: 3, attributes: objectField(v3, 'attributes', v3file) };
    if (v3.node_type === 'array') return { kind: 'array', zarrFormat: 3, meta: parseV3(v3, v3file) };
    throw new ZarrMetadataError(v3file, 'node_type', `expected 'array' or 'group', found ${JSON.stringify(v3.node_type)}`);
  }
  const zarrayFile = childLocation(location, '.zarray');
  const zattrsFile = childLocation(location, '.zattrs');
  const zarray = await getJson(store, '.zarray', zarrayFile);
  if (zarray) {
    const attrs = (await getJson(store, '.zattrs', zattrsFile)) ?? {};
    return { kind: 'array', zarrFormat: 2, meta: parseV2(zarray, attrs, zarrayFile) };
  }
  const zgroupFile = childLocation(location, '.zgroup');
  const zgroup = await getJson(store, '.zgroup', zgroupFile);
  if (zgroup) {
    const attrs = (await getJson(store, '.zattrs', zattrsFile)) ?? {};
    return { kind: 'group', zarrFormat: 2, attributes: attrs };
  }
  throw new ZarrNotFoundError(location, [v3file, zarrayFile, zgroupFile]);
}

function objectField(doc: Record<string, unknown>, field: string, file: string): Record<string, unknown> {
  const v = doc[field];
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ZarrMetadataError(file, field, 'is not an object');
  return v as Record<string, unknown>;
}

function intList(doc: Record<string, unknown>, field: string, file: string, min: number): number[] {
  const v = doc[field];
  if (!Array.isArray(v) || !v.every((x) => Number.isSafeInteger(x) && (x as number) >= min)) {
    throw new ZarrMetadataError(file, field, `expected a list of integers >= ${min}, found ${JSON.stringify(v)}`);
  }
  return v as number[];
}

function parseFill(value: unknown, dtype: Dtype, file: string, field: string): number {
  if (value === null || value === undefined) return 0;
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (isFloatDtype(dtype)) {
    if (value === 'NaN') return NaN;
    if (value === 'Infinity') return Infinity;
    if (value === '-Infinity') return -Infinity;
  }
  throw new ZarrMetadataError(file, field, `unsupported fill value ${JSON.stringify(value)} for ${dtype}`);
}

function parseV2(doc: Record<string, unknown>, attributes: Record<string, unknown>, file: string): ArrayMeta {
  if (doc.zarr_format !== 2) throw new ZarrMetadataError(file, 'zarr_format', `expected 2, found ${JSON.stringify(doc.zarr_format)}`);
  const shape = intList(doc, 'shape', file, 0);
  const chunks = intList(doc, 'chunks', file, 1);
  if (chunks.length !== shape.length) {
    throw new ZarrMetadataError(file, 'chunks', `has ${chunks.length} dimensions, shape has ${shape.length}`);
  }
  const dt = doc.dtype;
  const m = typeof dt === 'string' ? /^([<>|])([uif]\d)$/.exec(dt) : null;
  const dtype = m ? V2_DTYPES[m[2]] : undefined;
  if (!dtype) throw new ZarrUnsupportedError(`${file}: dtype ${JSON.stringify(dt)} is not supported (expected one of u1 i1 u2 i2 u4 i4 f4 f8)`, file);
  const sep = doc.dimension_separator ?? '.';
  if (sep !== '.' && sep !== '/') throw new ZarrMetadataError(file, 'dimension_separator', `expected '.' or '/', found ${JSON.stringify(sep)}`);
  const meta: ArrayMeta = {
    zarrFormat: 2,
    shape,
    gridChunks: chunks,
    dtype,
    fillValue: parseFill(doc.fill_value, dtype, file, 'fill_value'),
    attributes,
    dimensionNames: Array.isArray(attributes._ARRAY_DIMENSIONS) ? (attributes._ARRAY_DIMENSIONS as string[]) : undefined,
    chunkKey: (c) => (c.length === 0 ? '0' : c.join(sep)),
    sharded: false,
  };
  // What we can write back: little-endian, C order, no filters, a compressor we can encode.
  const bigEndian = m![1] === '>';
  const filters = doc.filters;
  const comp = doc.compressor as Record<string, unknown> | null | undefined;
  if (bigEndian) meta.notWritableBecause = 'big-endian dtype';
  else if (doc.order !== undefined && doc.order !== 'C') meta.notWritableBecause = `order ${JSON.stringify(doc.order)}`;
  else if (filters !== null && filters !== undefined && !(Array.isArray(filters) && filters.length === 0)) meta.notWritableBecause = 'filters';
  else {
    const w = v2CompressorToOption(comp);
    if (w) meta.writableAs = w;
    else meta.notWritableBecause = `compressor ${JSON.stringify(comp)}`;
    meta.plainCodec = comp === null || comp === undefined ? 'raw' : comp.id === 'blosc' ? 'blosc' : comp.id === 'zstd' ? 'zstd' : undefined;
  }
  return meta;
}

function v2CompressorToOption(c: Record<string, unknown> | null | undefined): ArrayMeta['writableAs'] {
  if (c === null || c === undefined) return { compressor: 'none' };
  const level = typeof c.clevel === 'number' ? c.clevel : typeof c.level === 'number' ? c.level : undefined;
  if (c.id === 'blosc' && (c.cname === 'lz4' || c.cname === 'zstd')) return { compressor: `blosc-${c.cname}`, level };
  if (c.id === 'zstd' || c.id === 'zlib' || c.id === 'gzip') return { compressor: c.id, level };
  return undefined;
}

function parseV3(doc: Record<string, unknown>, file: string): ArrayMeta {
  if (doc.zarr_format !== 3) throw new ZarrMetadataError(file, 'zarr_format', `expected 3, found ${JSON.stringify(doc.zarr_format)}`);
  const shape = intList(doc, 'shape', file, 0);
  const dt = doc.data_type;
  const dtype = typeof dt === 'string' && (Object.values(V2_DTYPES) as string[]).includes(dt) ? (dt as Dtype) : undefined;
  if (!dtype) throw new ZarrUnsupportedError(`${file}: data_type ${JSON.stringify(dt)} is not supported`, file);
  const grid = doc.chunk_grid as { name?: unknown; configuration?: Record<string, unknown> } | undefined;
  if (!grid || grid.name !== 'regular' || !grid.configuration) {
    throw new ZarrMetadataError(file, 'chunk_grid', `expected a regular chunk grid, found ${JSON.stringify(grid)}`);
  }
  const chunks = intList(grid.configuration, 'chunk_shape', file, 1);
  if (chunks.length !== shape.length) {
    throw new ZarrMetadataError(file, 'chunk_grid.configuration.chunk_shape', `has ${chunks.length} dimensions, shape has ${shape.length}`);
  }
  const enc = (doc.chunk_key_encoding ?? { name: 'default' }) as { name?: unknown; configuration?: { separator?: unknown } };
  let chunkKey: ArrayMeta['chunkKey'];
  if (enc.name === 'default') {
    const sep = enc.configuration?.separator ?? '/';
    if (sep !== '.' && sep !== '/') throw new ZarrMetadataError(file, 'chunk_key_encoding.configuration.separator', `found ${JSON.stringify(sep)}`);
    chunkKey = (c) => ['c', ...c].join(sep);
  } else if (enc.name === 'v2') {
    const sep = enc.configuration?.separator ?? '.';
    if (sep !== '.' && sep !== '/') throw new ZarrMetadataError(file, 'chunk_key_encoding.configuration.separator', `found ${JSON.stringify(sep)}`);
    chunkKey = (c) => (c.length === 0 ? '0' : c.join(sep));
  } else {
    throw new ZarrMetadataError(file, 'chunk_key_encoding', `unknown encoding ${JSON.stringify(enc.name)}`);
  }
  const codecs = doc.codecs;
  if (!Array.isArray(codecs)) throw new ZarrMetadataError(file, 'codecs', 'expected a list of codecs');
  const names = codecs.map((c) => (c as { name?: unknown }).name);
  const meta: ArrayMeta = {
    zarrFormat: 3,
    shape,
    gridChunks: chunks,
    dtype,
    fillValue: parseFill(doc.fill_value, dtype, file, 'fill_value'),
    attributes: objectField(doc, 'attributes', file),
    dimensionNames: Array.isArray(doc.dimension_names) ? (doc.dimension_names as string[]) : undefined,
    chunkKey,
    sharded: names.includes('sharding_indexed'),
  };
  const w = v3CodecsToOption(codecs as Record<string, unknown>[]);
  if (w) meta.writableAs = w;
  else meta.notWritableBecause = `codecs ${JSON.stringify(names)}`;
  meta.plainCodec = meta.sharded ? undefined : v3PlainCodec(codecs as Record<string, unknown>[], dtype);
  return meta;
}

function v3PlainCodec(codecs: Record<string, unknown>[], dtype: Dtype): PlainCodec | undefined {
  const [first, ...rest] = codecs;
  const endian = ((first?.configuration ?? {}) as Record<string, unknown>).endian;
  const singleByte = dtype === 'uint8' || dtype === 'int8';
  if (first?.name !== 'bytes' || (endian !== 'little' && !(singleByte && endian === undefined))) return undefined;
  if (rest.length === 0) return 'raw';
  if (rest.length === 1 && (rest[0].name === 'blosc' || rest[0].name === 'zstd')) return rest[0].name;
  return undefined;
}

function v3CodecsToOption(codecs: Record<string, unknown>[]): ArrayMeta['writableAs'] {
  const [first, ...rest] = codecs;
  const cfg = (first?.configuration ?? {}) as Record<string, unknown>;
  if (first?.name !== 'bytes' || (cfg.endian !== undefined && cfg.endian !== 'little')) return undefined;
  if (rest.length === 0) return { compressor: 'none' };
  if (rest.length > 1) return undefined;
  const c = rest[0];
  const cc = (c.configuration ?? {}) as Record<string, unknown>;
  const level = typeof cc.clevel === 'number' ? cc.clevel : typeof cc.level === 'number' ? cc.level : undefined;
  if (c.name === 'blosc' && (cc.cname === 'lz4' || cc.cname === 'zstd')) return { compressor: `blosc-${cc.cname}`, level };
  if (c.name === 'zstd' || c.name === 'gzip') return { compressor: c.name, level };
  return undefined;
}

/** Default compression level per compressor: fast settings, since chunks are written while training. */
export function defaultLevel(compressor: Compressor): number | undefined {
  switch (compressor) {
    case 'blosc-lz4':
      return 5; // zarr-python's default Blosc(cname='lz4', clevel=5)
    case 'blosc-zstd':
    case 'zstd':
      return 3;
    case 'zlib':
    case 'gzip':
      return 1;
    case 'none':
      return undefined;
  }
}

function jsonFill(fill: number): number | string {
  if (Number.isNaN(fill)) return 'NaN';
  if (fill === Infinity) return 'Infinity';
  if (fill === -Infinity) return '-Infinity';
  return fill;
}

export interface ArrayMetaSpec {
  shape: number[];
  chunks: number[];
  dtype: Dtype;
  fillValue: number;
  compressor: Compressor;
  level?: number;
  dimensionSeparator: '.' | '/';
  dimensionNames?: string[];
  attributes: Record<string, unknown>;
}

/** The metadata documents (file name -> JSON object) of a new v2 array, as zarr-python 2.13 writes them. */
export function v2ArrayDocuments(spec: ArrayMetaSpec): Record<string, Record<string, unknown>> {
  const level = spec.level ?? defaultLevel(spec.compressor);
  let compressor: Record<string, unknown> | null;
  switch (spec.compressor) {
    case 'blosc-lz4':
    case 'blosc-zstd':
      compressor = { blocksize: 0, clevel: level, cname: spec.compressor.slice(6), id: 'blosc', shuffle: 1 };
      break;
    case 'zstd':
    case 'zlib':
    case 'gzip':
      compressor = { id: spec.compressor, level };
      break;
    case 'none':
      compressor = null;
  }
  const docs: Record<string, Record<string, unknown>> = {
    '.zarray': {
      chunks: spec.chunks,
      compressor,
      dimension_separator: spec.dimensionSeparator,
      dtype: v2DtypeString(spec.dtype),
      fill_value: jsonFill(spec.fillValue),
      filters: null,
      order: 'C',
      shape: spec.shape,
      zarr_format: 2,
    },
  };
  const attrs = { ...spec.attributes };
  // xarray's convention for dimension names in v2, which zarrita also reads.
  if (spec.dimensionNames) attrs._ARRAY_DIMENSIONS = spec.dimensionNames;
  if (Object.keys(attrs).length > 0) docs['.zattrs'] = attrs;
  return docs;
}

/** The `zarr.json` of a new v3 array. */
export function v3ArrayDocument(spec: ArrayMetaSpec): Record<string, unknown> {
  const level = spec.level ?? defaultLevel(spec.compressor);
  const codecs: Record<string, unknown>[] = [{ name: 'bytes', configuration: { endian: 'little' } }];
  switch (spec.compressor) {
    case 'blosc-lz4':
    case 'blosc-zstd':
      codecs.push({
        name: 'blosc',
        configuration: { cname: spec.compressor.slice(6), clevel: level, shuffle: 'shuffle', typesize: bytesOf(spec.dtype), blocksize: 0 },
      });
      break;
    case 'zstd':
      codecs.push({ name: 'zstd', configuration: { level, checksum: false } });
      break;
    case 'gzip':
      codecs.push({ name: 'gzip', configuration: { level } });
      break;
    case 'zlib':
      throw new ZarrUnsupportedError(`compressor 'zlib' is not a Zarr v3 codec; use 'gzip' for v3 arrays`, '');
    case 'none':
      break;
  }
  const doc: Record<string, unknown> = {
    zarr_format: 3,
    node_type: 'array',
    shape: spec.shape,
    data_type: spec.dtype,
    chunk_grid: { name: 'regular', configuration: { chunk_shape: spec.chunks } },
    chunk_key_encoding: { name: 'default', configuration: { separator: spec.dimensionSeparator } },
    fill_value: jsonFill(spec.fillValue),
    codecs,
    attributes: spec.attributes,
  };
  if (spec.dimensionNames) doc.dimension_names = spec.dimensionNames;
  return doc;
}

function bytesOf(dtype: Dtype): number {
  return Number(/\d+$/.exec(v2DtypeString(dtype))![0]);
}
