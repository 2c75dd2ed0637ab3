import { mkdir, rm, stat, statfs, unlink } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { AbsolutePath, AsyncReadable } from '@zarrita/storage';
import * as zarr from 'zarrita';
import { atomicWriteFile } from './atomic.js';
import { ChunkCache, defaultChunkCache } from './cache.js';
// Registers the native (and worker-thread) decoders in zarrita's codec registry before any array opens.
import { countCompiledChunk, useIdleLoopReads, useNativeReader } from './codecs.js';
import { allocate, bytesPerElement, describeType, type Dtype, type DtypeArrayMap, dtypeOf, isDtype, viewOf, type VolumeArray } from './dtype.js';
import { makeEncoder, type ChunkEncoder } from './encode.js';
import {
  ScrollIoOptionError,
  ZarrChunkError,
  ZarrDtypeError,
  ZarrError,
  ZarrExistsError,
  ZarrShapeMismatchError,
  ZarrUnsupportedError,
} from './errors.js';
import { type ArrayMeta, COMPRESSORS, type Compressor, probeNode, v2ArrayDocuments, v3ArrayDocument } from './metadata.js';
import { NATIVE_CODEC, type NativeReadError, type NativeReaderBinding, nativeReaderBinding, nativeReaderHandles } from './native.js';
import { checkInside, checkRegion, chunksTouching, copyBox, cStrides, fillBox, mapLimit, product, type Region } from './region.js';
import { chunkBuffers, HandoffStore, isUrl, normalizeLocation, readableStore } from './store.js';

/** Voxels of a region: C-order data (last axis fastest) and its shape. */
export interface RegionData<A extends VolumeArray = VolumeArray> {
  /** `[shape[0], …, shape[n-1]]` flattened in C order. */
  data: A;
  shape: number[];
}

/** A chunked n-dimensional array that can be read by region. */
export interface Volume {
  /** Where the array lives (filesystem path or URL of the array itself, e.g. `scroll.zarr/0`). */
  readonly path: string;
  readonly shape: number[];
  /** Read granularity: the chunk shape (for sharded v3 arrays, the inner chunk shape). */
  readonly chunks: number[];
  readonly dtype: Dtype;
  /** Value of voxels in absent chunks and outside the array. */
  readonly fillValue: number;
  /** Zarr format of the store, for volumes backed by Zarr (absent for computed or TIFF-backed volumes). */
  readonly zarrFormat?: 2 | 3;
  /** Physical size of one voxel per axis (OME-Zarr `scale`), when known. */
  readonly voxelSize?: number[];
  /** Axis names (OME-Zarr `axes`, v3 `dimension_names`), when known. */
  readonly axes?: string[];
  /** Unit of the spatial axes (e.g. `micrometer`), when known. */
  readonly unit?: string;
  /** The array's own attributes. */
  readonly attributes: Record<string, unknown>;
  /**
   * Reads any box of voxels: unaligned, empty, or partly/wholly outside the array (those voxels, and
   * those of absent chunks, take the fill value).
   * @param region `{ offset: [n], shape: [n] }` in voxels
   * @returns data of `region.shape`, C order
   */
  read(region: Region): Promise<RegionData>;
}

/** A {@link Volume} that can also be written. */
export interface WritableVolume extends Volume {
  /**
   * Writes `data` (C order, `region.shape`, the array's dtype) into `region`, which must lie inside the
   * array. Chunks wholly covered are written outright; partly covered ones are read, merged and
   * rewritten. Every chunk file is replaced atomically, and writes to one chunk are serialised within
   * the process (different processes must write disjoint chunks).
   */
  write(region: Region, data: VolumeArray): Promise<void>;
}

export interface OpenArrayOptions {
  /** Chunk cache to use (default: the process-wide {@link defaultChunkCache}). */
  cache?: ChunkCache;
  /** Most chunk reads in flight per `read` call (default 8). */
  concurrency?: number;
}

interface Spatial {
  voxelSize?: number[];
  axes?: string[];
  unit?: string;
}

/** A Zarr v2/v3 array read through zarrita's codec pipeline, with a shared chunk cache. */
export class ZarrVolume implements Volume {
  readonly path: string;
  readonly shape: number[];
  readonly chunks: number[];
  readonly dtype: Dtype;
  readonly fillValue: number;
  readonly zarrFormat: 2 | 3;
  readonly voxelSize?: number[];
  readonly axes?: string[];
  readonly unit?: string;
  readonly attributes: Record<string, unknown>;
  protected readonly meta: ArrayMeta;
  protected readonly cache: ChunkCache;
  readonly #concurrency: number;
  readonly #store: HandoffStore;
  readonly #array: zarr.Array<zarr.DataType, HandoffStore>;
  readonly #cachePrefix: string;
  /** `path` with a trailing separator, for local arrays: chunk keys (digits and separators) are appended. */
  readonly #chunkDir: string;
  /** Bytes of one decoded chunk. */
  readonly #chunkBytes: number;
  /** A zero per dimension (the box origin of a whole-chunk read). */
  readonly #zeros: number[];
  /** On a local file system: the event loop may read a lone chunk itself (DecodingConfig.idleLoopReads). */
  readonly #localDisk: boolean;

  protected constructor(
    path: string,
    meta: ArrayMeta,
    store: HandoffStore,
    array: zarr.Array<zarr.DataType, HandoffStore>,
    localDisk: boolean,
    spatial: Spatial,
    options: OpenArrayOptions,
  ) {
    this.path = path;
    this.meta = meta;
    this.shape = meta.shape.slice();
    // zarrita reports the inner chunk shape of sharded arrays: the unit a read decodes.
    this.chunks = array.chunks.slice();
    this.dtype = meta.dtype;
    this.fillValue = meta.fillValue;
    this.zarrFormat = meta.zarrFormat;
    this.attributes = meta.attributes;
    this.voxelSize = spatial.voxelSize;
    this.axes = spatial.axes ?? meta.dimensionNames;
    this.unit = spatial.unit;
    this.cache = options.cache ?? defaultChunkCache;
    this.#concurrency = options.concurrency ?? 8;
    this.#store = store;
    this.#array = array;
    this.#cachePrefix = `${path}\u0000`;
    this.#chunkDir = join(path, '/');
    this.#chunkBytes = product(this.chunks) * bytesPerElement(this.dtype);
    this.#zeros = this.chunks.map(() => 0);
    this.#localDisk = localDisk;
  }

  /** Opens the array at `path` (which must be an array, not a group). */
  static async open(path: string, meta: ArrayMeta, spatial: Spatial, options: OpenArrayOptions = {}): Promise<ZarrVolume> {
    const { store, array, localDisk } = await openZarrita(path, meta);
    return new ZarrVolume(path, meta, store, array, localDisk, spatial, options);
  }

  /** Opens the zarrita array over a fresh store; shared by subclasses. */
  protected static parts(path: string, meta: ArrayMeta) {
    return openZarrita(path, meta);
  }

  read(region: Region): Promise<RegionData> {
    try {
      checkRegion(this.path, this.shape.length, region);
      const compiled = this.#compiled();
      if (!compiled) return this.#readZarrita(region);
      // A whole chunk with no cache to fill skips the general path's bookkeeping (below).
      if (this.cache.budget < this.#chunkBytes && this.#isWholeChunk(region)) return this.#readWholeChunkCompiled(region, compiled.binding, compiled.codec);
      return this.#readCompiled(region, compiled.binding, compiled.codec);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A read through zarrita's codec pipeline, chunk by chunk through the cache. */
  async #readZarrita(region: Region): Promise<RegionData> {
    const whole = await this.#readWholeChunk(region);
    if (whole) return whole;
    const out = allocate(this.dtype, product(region.shape));
    if (this.fillValue !== 0) out.fill(this.fillValue);
    const lo = region.offset.map((o) => Math.max(o, 0));
    const hi = region.offset.map((o, i) => Math.min(o + region.shape[i], this.shape[i]));
    if (lo.some((l, i) => l >= hi[i])) return { data: out, shape: region.shape.slice() };
    await mapLimit(chunksTouching(lo, hi, this.chunks), this.#concurrency, async (c) => {
      const { data: chunk, owned } = await this.cache.getOrLoadOwned(this.cacheKey(c), () => this.loadChunk(c));
      if (!chunk) return; // absent: already fill
      const c0 = c.map((ci, i) => ci * this.chunks[i]);
      const bLo = c0.map((s, i) => Math.max(s, lo[i]));
      const bHi = c0.map((s, i) => Math.min(s + this.chunks[i], hi[i]));
      copyBox(
        chunk,
        this.chunks,
        bLo.map((b, i) => b - c0[i]),
        out,
        region.shape,
        bLo.map((b, i) => b - region.offset[i]),
        bLo.map((b, i) => bHi[i] - b),
      );
      // A chunk no one else holds (not cached, not shared with a concurrent read) is recycled for the
      // next chunk file read: fresh memory costs more than the read itself (see BufferRecycler).
      if (owned) chunkBuffers.give(chunk.buffer as ArrayBuffer);
    });
    return { data: out, shape: region.shape.slice() };
  }

  /** The compiled reader and its codec number for this array, or null when reads go through zarrita. */
  #compiled(): { binding: NativeReaderBinding; codec: number } | null {
    const codec = this.meta.plainCodec;
    if (codec === undefined || isUrl(this.path) || !useNativeReader()) return null;
    const binding = nativeReaderBinding();
    if (!binding || !nativeReaderHandles(binding, codec)) return null;
    return { binding, codec: NATIVE_CODEC[codec] };
  }

  /**
   * A read through the compiled reader: every chunk is read, decoded and copied into the output on
   * libuv's thread pool, several chunks at once; a read of one chunk lets C blosc split that chunk's
   * blocks over every core instead. Outputs of 2 MiB and more live in huge pages recycled after they are dropped
   * (fresh memory's page faults cost more than decoding). With a chunk cache that can hold a chunk,
   * each decoded chunk is also kept there.
   */
  async #readCompiled(region: Region, binding: NativeReaderBinding, codec: number): Promise<RegionData> {
    const cacheable = this.cache.budget >= this.#chunkBytes;
    const shape = region.shape.slice();
    const n = product(shape);
    const lo = region.offset.map((o) => Math.max(o, 0));
    const hi = region.offset.map((o, i) => Math.min(o + shape[i], this.shape[i]));
    const inside = lo.every((l, i) => l === region.offset[i] && hi[i] === region.offset[i] + shape[i]);
    const bytes = n * bytesPerElement(this.dtype);
    // Outputs are zeroed (or filled) up front only where chunks will not cover them.
    const out = compiledMemory(binding, this.dtype, bytes, !inside && this.fillValue === 0);
    if (!inside && this.fillValue !== 0) out.fill(this.fillValue);
    if (lo.some((l, i) => l >= hi[i])) return { data: out, shape };
    const coords = [...chunksTouching(lo, hi, this.chunks)];
    const alone = coords.length === 1;
    const readOne = async (c: number[]): Promise<void> => {
      const c0 = c.map((ci, i) => ci * this.chunks[i]);
      const bLo = c0.map((s, i) => Math.max(s, lo[i]));
      const extent = c0.map((s, i) => Math.min(s + this.chunks[i], hi[i]) - bLo[i]);
      const srcStart = bLo.map((b, i) => b - c0[i]);
      const dstStart = bLo.map((b, i) => b - region.offset[i]);
      // A whole chunk whose rows are whole output rows lands in one contiguous range: decode it there.
      const direct = extent.every((e, i) => e === this.chunks[i] && (i === 0 || shape[i] === e));
      const box = { out, shape, srcStart, dstStart, extent, direct };
      let present: boolean;
      if (!cacheable) present = await this.#compiledRead(binding, codec, alone, c, box, null);
      else {
        let copied = false;
        const data = await this.cache.getOrLoad(this.cacheKey(c), async () => {
          const keep = compiledMemory(binding, this.dtype, this.#chunkBytes, false);
          copied = true;
          return (await this.#compiledRead(binding, codec, alone, c, box, keep)) ? keep : null;
        });
        present = data !== null;
        if (data && !copied) copyBox(data, this.chunks, srcStart, out, shape, dstStart, extent);
      }
      // Absent chunks read as the fill value (the output may be recycled memory).
      if (!present) fillBox(out, shape, dstStart, extent, this.fillValue);
    };
    if (coords.length === 1) await readOne(coords[0]);
    else await mapLimit(coords, this.#concurrency, readOne);
    return { data: out, shape };
  }

  /** Whether `region` is exactly one chunk of the array (aligned, chunk-shaped, inside). */
  #isWholeChunk(region: Region): boolean {
    for (let i = 0; i < this.chunks.length; i++) {
      const o = region.offset[i];
      const c = this.chunks[i];
      if (region.shape[i] !== c || o % c !== 0 || o < 0 || o + c > this.shape[i]) return false;
    }
    return this.chunks.length > 0;
  }

  /**
   * A read of exactly one chunk with no chunk cache to fill: the chunk file decodes straight into the
   * output. Kept apart from the general path, whose bookkeeping took the main thread 45 us per read
   * before the addon was called, against 23 us here and 18 us calling the addon directly (medians,
   * the bench's single-chunk zstd reads): as much as the thread hand-off this path exists to save.
   */
  #readWholeChunkCompiled(region: Region, binding: NativeReaderBinding, codec: number): Promise<RegionData> {
    const out = compiledMemory(binding, this.dtype, this.#chunkBytes, false);
    const coords = region.offset.map((o, i) => o / this.chunks[i]);
    const box = { out, shape: this.chunks, srcStart: this.#zeros, dstStart: this.#zeros, extent: this.chunks, direct: true };
    return this.#compiledRead(binding, codec, true, coords, box, null).then((present) => {
      // An absent chunk reads as the fill value (the output may be recycled memory).
      if (!present) out.fill(this.fillValue);
      return { data: out, shape: region.shape.slice() };
    });
  }

  /**
   * One chunk through the compiled reader; false when its file does not exist. A chunk read `alone`
   * (the only one its caller waits for) may use blosc's threads for its blocks, or be run by the
   * event loop's thread when that would otherwise sleep until a pool thread had done it
   * ({@link DecodingConfig.idleLoopReads}).
   */
  async #compiledRead(
    binding: NativeReaderBinding,
    codec: number,
    alone: boolean,
    coords: readonly number[],
    box: { out: VolumeArray; shape: number[]; srcStart: number[]; dstStart: number[]; extent: number[]; direct: boolean } | null,
    keep: VolumeArray | null,
  ): Promise<boolean> {
    const key = this.meta.chunkKey(coords);
    try {
      const status = await binding.readChunk(
        this.#chunkDir + key,
        codec,
        alone ? CORES : 1,
        this.#chunkBytes,
        bytesPerElement(this.dtype),
        this.chunks,
        box ? box.out : null,
        box ? box.shape : [],
        box ? box.srcStart : [],
        box ? box.dstStart : [],
        box ? box.extent : [],
        keep,
        box ? box.direct : false,
        alone && this.#localDisk && useIdleLoopReads(),
      );
      if (status === 1) return false;
      countCompiledChunk();
      return true;
    } catch (cause) {
      const e = cause as NativeReadError;
      const what = e.corrupt ? `cannot be decoded (${e.fileBytes} bytes)` : 'cannot be read';
      throw new ZarrChunkError(this.path, key, `${what}: ${e.message}`, { cause });
    }
  }

  /**
   * A read of exactly one chunk that lies inside the array: the decoded chunk itself is the answer
   * when no one else holds it (not cached, not shared with a concurrent read) and it spans its own
   * buffer, which spares allocating, page-faulting and copying a chunk-sized output. Undefined for
   * any other region.
   */
  async #readWholeChunk(region: Region): Promise<RegionData | undefined> {
    if (!this.#isWholeChunk(region)) return undefined;
    const c = region.offset.map((o, i) => o / this.chunks[i]);
    const { data, owned } = await this.cache.getOrLoadOwned(this.cacheKey(c), () => this.loadChunk(c));
    const shape = region.shape.slice();
    if (data && owned && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) return { data, shape };
    const out = allocate(this.dtype, product(shape));
    if (data) (out as Uint8Array).set(data as Uint8Array);
    else if (this.fillValue !== 0) out.fill(this.fillValue);
    if (data && owned) chunkBuffers.give(data.buffer as ArrayBuffer);
    return { data: out, shape };
  }

  /**
   * One decoded chunk through the shared cache: the chunk's C-order data (shared; do not modify), or
   * null when the chunk is absent from the store (all fill value).
   * @param coords chunk coordinates `[n]` (voxel offset = coords * chunks)
   */
  readChunk(coords: readonly number[]): Promise<VolumeArray | null> {
    return this.cache.getOrLoad(this.#cachePrefix + coords.join(','), () => this.loadChunk(coords));
  }

  /** The chunk key of chunk coordinates, for messages (e.g. `0.1.2`, `c/0/1/2`). */
  chunkKey(coords: readonly number[]): string {
    if (!this.meta.sharded) return this.meta.chunkKey(coords);
    const per = this.meta.gridChunks.map((g, i) => g / this.chunks[i]);
    return `${this.meta.chunkKey(coords.map((c, i) => Math.floor(c / per[i])))} (inner chunk ${coords.join(',')})`;
  }

  /** Forgets this array's chunks in the cache (after the store changed behind the reader's back). */
  invalidateCache(): void {
    this.cache.invalidatePrefix(this.#cachePrefix);
  }

  protected cacheKey(coords: readonly number[]): string {
    return this.#cachePrefix + coords.join(',');
  }

  /** Reads and decodes one chunk without the cache; null when absent. */
  protected async loadChunk(coords: readonly number[]): Promise<VolumeArray | null> {
    const compiled = this.#compiled();
    if (compiled) {
      const keep = compiledMemory(compiled.binding, this.dtype, this.#chunkBytes, false);
      return (await this.#compiledRead(compiled.binding, compiled.codec, false, coords, null, keep)) ? keep : null;
    }
    const key = this.chunkKey(coords);
    let decoded: zarr.Chunk<zarr.DataType>;
    if (this.meta.sharded) {
      // Sharded reads go through zarrita's shard index (range reads); absent inner chunks come back filled.
      try {
        decoded = await this.#array.getChunk(coords as number[]);
      } catch (cause) {
        throw new ZarrChunkError(this.path, key, `cannot be read or decoded: ${(cause as Error).message}`, { cause });
      }
    } else {
      const abs = `/${key}` as AbsolutePath;
      let bytes: Uint8Array | undefined;
      try {
        bytes = await this.#store.get(abs);
      } catch (cause) {
        throw new ZarrChunkError(this.path, key, `cannot be read: ${(cause as Error).message}`, { cause });
      }
      if (!bytes) return null;
      // Typed-array views in the raw codec need an aligned buffer.
      if (bytes.byteOffset % 8 !== 0) bytes = bytes.slice();
      try {
        this.#store.hold(abs, bytes);
        const pending = this.#array.getChunk(coords as number[]);
        this.#store.release(abs);
        decoded = await pending;
        // The compressed bytes were read for this decode alone and are spent once it is done.
        if ((decoded.data as VolumeArray).buffer !== bytes.buffer) chunkBuffers.give(bytes.buffer as ArrayBuffer);
      } catch (cause) {
        this.#store.release(abs);
        throw new ZarrChunkError(this.path, key, `cannot be decoded (${bytes.byteLength} bytes): ${(cause as Error).message}`, { cause });
      }
    }
    return this.#toCOrder(decoded, key);
  }

  #toCOrder(chunk: zarr.Chunk<zarr.DataType>, key: string): VolumeArray {
    const data = chunk.data as unknown;
    const n = product(this.chunks);
    if (dtypeOf(data) !== this.dtype || (data as VolumeArray).length !== n) {
      throw new ZarrChunkError(
        this.path,
        key,
        `decoded to ${describeType(data)}[${(data as { length?: number }).length}], expected ${this.dtype}[${n}] (chunk shape [${this.chunks.join(', ')}])`,
      );
    }
    const arr = data as VolumeArray;
    const want = cStrides(this.chunks);
    if (chunk.stride.every((s, i) => s === want[i] || this.chunks[i] === 1)) return arr;
    // Fortran-ordered (or otherwise transposed) chunks: gather into C order once, at load time.
    const out = allocate(this.dtype, n);
    const idx = new Array<number>(this.chunks.length).fill(0);
    for (let o = 0; o < n; o++) {
      let s = 0;
      for (let i = 0; i < idx.length; i++) s += idx[i] * chunk.stride[i];
      out[o] = arr[s];
      for (let k = idx.length - 1; k >= 0; k--) {
        if (++idx[k] < this.chunks[k]) break;
        idx[k] = 0;
      }
    }
    return out;
  }
}

/** Cores for blosc to split one chunk's blocks over (read once: it is a system call). */
const CORES = availableParallelism();

/**
 * Outputs of at least this many bytes are allocated by the compiled reader (huge pages, recycled);
 * a mapping is whole 2 MiB pages, so smaller outputs would take up to twice their size or more.
 */
const HUGE_OUTPUT_BYTES = 2 << 20;

/**
 * Memory for a compiled read's output or a chunk cache entry: from `HUGE_OUTPUT_BYTES` on, the
 * reader's recycled huge pages (zeroed only when `zero`), else a plain ArrayBuffer. Fresh memory's
 * page faults cost more than decoding: cache entries allocated fresh made reads that fill the cache
 * 1.2-2x slower (16 random 128^3 chunks; `npx nx run scroll-io:bench -- --cache 512`).
 */
function compiledMemory<D extends Dtype>(binding: NativeReaderBinding, dtype: D, bytes: number, zero: boolean): DtypeArrayMap[D] {
  return viewOf(dtype, bytes >= HUGE_OUTPUT_BYTES ? binding.allocOutput(bytes, zero) : new ArrayBuffer(bytes));
}

async function openZarrita(path: string, meta: ArrayMeta) {
  const store = new HandoffStore(readableStore(path));
  try {
    const array = meta.zarrFormat === 2 ? await zarr.open.v2(store, { kind: 'array' }) : await zarr.open.v3(store, { kind: 'array' });
    return { store, array, localDisk: await onLocalDisk(path) };
  } catch (cause) {
    throw new ZarrError(`${path}: zarrita cannot open the array: ${(cause as Error).message}`, path, { cause });
  }
}

/**
 * Linux `statfs` magic numbers of local file systems, where opening a file never waits on a network:
 * ext2/3/4, XFS, Btrfs, tmpfs, ramfs, overlayfs, ZFS, F2FS, bcachefs. NFS, SMB, FUSE, Lustre, GPFS,
 * Ceph and anything unknown are left out: there the event loop does not read chunks itself.
 */
const LOCAL_FILE_SYSTEMS = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x858458f6, 0x794c7630, 0x2fc12fc1, 0xf2f52010, 0xca451a4e]);

/** Whether a local path lies on a local file system (see {@link LOCAL_FILE_SYSTEMS}); false for URLs. */
async function onLocalDisk(path: string): Promise<boolean> {
  if (isUrl(path)) return false;
  try {
    return LOCAL_FILE_SYSTEMS.has((await statfs(path)).type);
  } catch {
    return false;
  }
}

export interface WritableOptions extends OpenArrayOptions {
  /**
   * Write chunks that hold only the fill value (default false: such chunks are deleted instead, and
   * read back as fill; label volumes are mostly empty).
   */
  writeEmptyChunks?: boolean;
  /** Most chunks encoded and written at once per `write` call (default 4). */
  writeConcurrency?: number;
}

/** A local Zarr array opened for reading and writing. */
export class WritableZarrVolume extends ZarrVolume implements WritableVolume {
  readonly #encode: ChunkEncoder;
  readonly #writeEmpty: boolean;
  readonly #writeConcurrency: number;
  readonly #locks = new Map<string, Promise<void>>();
  readonly #dirs = new Set<string>();

  private constructor(path: string, meta: ArrayMeta, parts: Awaited<ReturnType<typeof openZarrita>>, encode: ChunkEncoder, spatial: Spatial, options: WritableOptions) {
    super(path, meta, parts.store, parts.array, parts.localDisk, spatial, options);
    this.#encode = encode;
    this.#writeEmpty = options.writeEmptyChunks ?? false;
    this.#writeConcurrency = options.writeConcurrency ?? 4;
  }

  /** Opens an existing local array for writing. */
  static async openWritable(path: string, meta: ArrayMeta, spatial: Spatial, options: WritableOptions = {}): Promise<WritableZarrVolume> {
    if (isUrl(path)) throw new ZarrUnsupportedError(`${path}: writing is supported for local paths only`, path);
    if (meta.sharded || !meta.writableAs) {
      throw new ZarrUnsupportedError(`${path}: cannot write this array (${meta.sharded ? 'sharded' : meta.notWritableBecause})`, path);
    }
    const encode = await makeEncoder(meta.writableAs.compressor, meta.writableAs.level);
    const parts = await ZarrVolume.parts(path, meta);
    return new WritableZarrVolume(path, meta, parts, encode, spatial, options);
  }

  async write(region: Region, data: VolumeArray): Promise<void> {
    checkRegion(this.path, this.shape.length, region);
    checkInside(this.path, this.shape, region);
    const got = dtypeOf(data);
    if (got !== this.dtype) throw new ZarrDtypeError(this.path, this.dtype, describeType(data));
    const n = product(region.shape);
    if (data.length !== n) throw new ZarrShapeMismatchError(this.path, region.shape, n, data.length);
    if (n === 0) return;
    const lo = region.offset;
    const hi = lo.map((o, i) => o + region.shape[i]);
    await mapLimit(chunksTouching(lo, hi, this.chunks), this.#writeConcurrency, (c) =>
      this.#locked(this.cacheKey(c), () => this.#writeChunk(c, region, data)),
    );
  }

  async #locked(key: string, fn: () => Promise<void>): Promise<void> {
    const before = this.#locks.get(key) ?? Promise.resolve();
    const mine = before.then(fn, fn);
    const tail = mine.catch(() => undefined);
    this.#locks.set(key, tail);
    try {
      await mine;
    } finally {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    }
  }

  async #writeChunk(c: number[], region: Region, data: VolumeArray): Promise<void> {
    const ch = this.chunks;
    const c0 = c.map((ci, i) => ci * ch[i]);
    const cEnd = c0.map((s, i) => Math.min(s + ch[i], this.shape[i]));
    const bLo = c0.map((s, i) => Math.max(s, region.offset[i]));
    const bHi = cEnd.map((e, i) => Math.min(e, region.offset[i] + region.shape[i]));
    const covers = bLo.every((b, i) => b === c0[i] && bHi[i] === cEnd[i]);
    let buf: VolumeArray;
    if (covers) {
      buf = allocate(this.dtype, product(ch));
      // Edge chunks are stored full-size; the part beyond the array holds the fill value.
      if (this.fillValue !== 0) buf.fill(this.fillValue);
    } else {
      const existing = await this.loadChunk(c);
      if (existing) buf = existing.slice();
      else {
        buf = allocate(this.dtype, product(ch));
        if (this.fillValue !== 0) buf.fill(this.fillValue);
      }
    }
    copyBox(
      data,
      region.shape,
      bLo.map((b, i) => b - region.offset[i]),
      buf,
      ch,
      bLo.map((b, i) => b - c0[i]),
      bLo.map((b, i) => bHi[i] - b),
    );
    const key = this.meta.chunkKey(c);
    const file = join(this.path, key);
    try {
      if (!this.#writeEmpty && isAllFill(buf, this.fillValue)) {
        await unlink(file).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        });
      } else {
        const bytes = await this.#encode(buf);
        const dir = join(file, '..');
        if (!this.#dirs.has(dir)) {
          await mkdir(dir, { recursive: true });
          this.#dirs.add(dir);
        }
        await atomicWriteFile(file, bytes, { mkdir: false });
      }
    } catch (cause) {
      throw new ZarrChunkError(this.path, key, `cannot be written: ${(cause as Error).message}`, { cause });
    } finally {
      this.cache.invalidate(this.cacheKey(c));
    }
  }
}

function isAllFill(buf: VolumeArray, fill: number): boolean {
  if (Number.isNaN(fill)) {
    for (let i = 0; i < buf.length; i++) if (!Number.isNaN(buf[i])) return false;
    return true;
  }
  for (let i = 0; i < buf.length; i++) if (buf[i] !== fill) return false;
  return true;
}

/** Options of {@link createVolume}. */
export interface CreateVolumeOptions extends WritableOptions {
  /** Array shape, e.g. `[D, H, W]`. */
  shape: number[];
  /** Chunk shape, same rank as `shape`. */
  chunks: number[];
  dtype: Dtype;
  /** Default `'blosc-lz4'` (zarr-python's default; read by zarr-python 2.13, zarrita and tensorstore). */
  compressor?: Compressor;
  /** Compression level (default: a fast level per compressor). */
  compressionLevel?: number;
  /** Default 2 (what zarr-python 2.x and most scroll tooling read). */
  zarrFormat?: 2 | 3;
  /** Default 0. */
  fillValue?: number;
  /** Array attributes (`.zattrs` for v2, `attributes` in `zarr.json` for v3). */
  attributes?: Record<string, unknown>;
  /** Axis names (v3 `dimension_names`; v2 `_ARRAY_DIMENSIONS` attribute). */
  dimensionNames?: string[];
  /** Chunk key separator (default `'/'`: nested directories, as in the scroll volumes). */
  dimensionSeparator?: '.' | '/';
  /** Replace an existing array or group at `path` (its directory is deleted first). Default false. */
  overwrite?: boolean;
}

const INT_RANGES: Partial<Record<Dtype, [number, number]>> = {
  uint8: [0, 255],
  int8: [-128, 127],
  uint16: [0, 65535],
  int16: [-32768, 32767],
  uint32: [0, 4294967295],
  int32: [-2147483648, 2147483647],
};

/** True when `path` holds Zarr metadata (an array or a group). */
export async function zarrNodeExists(path: string): Promise<boolean> {
  for (const f of ['zarr.json', '.zarray', '.zgroup']) {
    try {
      await stat(join(path, f));
      return true;
    } catch {
      // keep looking
    }
  }
  return false;
}

/** Removes the node at `path` when `overwrite`, or throws {@link ZarrExistsError} if one is there. */
export async function prepareNewNode(path: string, overwrite: boolean): Promise<void> {
  if (!(await zarrNodeExists(path))) return;
  if (!overwrite) throw new ZarrExistsError(path);
  await rm(path, { recursive: true, force: true });
}

/**
 * Creates a local Zarr v2 (default) or v3 array and returns it open for writing. Metadata files are
 * written atomically; no chunks are written until `write`.
 * @param path directory of the new array
 */
export async function createVolume(path: string, options: CreateVolumeOptions): Promise<WritableVolume> {
  if (isUrl(path)) throw new ZarrUnsupportedError(`${path}: writing is supported for local paths only`, path);
  const loc = normalizeLocation(path);
  const spec = validateCreate(options);
  await prepareNewNode(loc, options.overwrite ?? false);
  await mkdir(loc, { recursive: true });
  if (spec.zarrFormat === 2) {
    const docs = v2ArrayDocuments(spec);
    // .zattrs first: a reader that sees .zarray sees the attributes too.
    if (docs['.zattrs']) await atomicWriteFile(join(loc, '.zattrs'), JSON.stringify(docs['.zattrs'], null, 2));
    await atomicWriteFile(join(loc, '.zarray'), JSON.stringify(docs['.zarray'], null, 2));
  } else {
    await atomicWriteFile(join(loc, 'zarr.json'), JSON.stringify(v3ArrayDocument(spec), null, 2));
  }
  return openWritableVolume(loc, options);
}

function validateCreate(o: CreateVolumeOptions) {
  const isIntList = (x: unknown, min: number) => Array.isArray(x) && x.every((v) => Number.isSafeInteger(v) && v >= min);
  if (!isIntList(o.shape, 0)) throw new ScrollIoOptionError('shape', `expected a list of integers >= 0, received ${JSON.stringify(o.shape)}`);
  if (!isIntList(o.chunks, 1) || o.chunks.length !== o.shape.length) {
    throw new ScrollIoOptionError('chunks', `expected ${o.shape.length} integers >= 1, received ${JSON.stringify(o.chunks)}`);
  }
  if (!isDtype(o.dtype)) throw new ScrollIoOptionError('dtype', `expected one of uint8 int8 uint16 int16 uint32 int32 float32 float64, received ${JSON.stringify(o.dtype)}`);
  const zarrFormat = o.zarrFormat ?? 2;
  if (zarrFormat !== 2 && zarrFormat !== 3) throw new ScrollIoOptionError('zarrFormat', `expected 2 or 3, received ${JSON.stringify(o.zarrFormat)}`);
  const compressor = o.compressor ?? 'blosc-lz4';
  if (!COMPRESSORS.includes(compressor)) throw new ScrollIoOptionError('compressor', `expected one of ${COMPRESSORS.join(', ')}, received ${JSON.stringify(o.compressor)}`);
  if (zarrFormat === 3 && compressor === 'zlib') throw new ScrollIoOptionError('compressor', `'zlib' is not a Zarr v3 codec; use 'gzip' (or zarrFormat 2)`);
  const fillValue = o.fillValue ?? 0;
  const range = INT_RANGES[o.dtype];
  if (typeof fillValue !== 'number' || (range && (!Number.isInteger(fillValue) || fillValue < range[0] || fillValue > range[1]))) {
    throw new ScrollIoOptionError('fillValue', `${JSON.stringify(fillValue)} is not a ${o.dtype} value`);
  }
  const sep = o.dimensionSeparator ?? '/';
  if (sep !== '.' && sep !== '/') throw new ScrollIoOptionError('dimensionSeparator', `expected '.' or '/', received ${JSON.stringify(sep)}`);
  if (o.dimensionNames && (!Array.isArray(o.dimensionNames) || o.dimensionNames.length !== o.shape.length)) {
    throw new ScrollIoOptionError('dimensionNames', `expected ${o.shape.length} names, received ${JSON.stringify(o.dimensionNames)}`);
  }
  return {
    zarrFormat,
    shape: o.shape.slice(),
    chunks: o.chunks.slice(),
    dtype: o.dtype,
    fillValue,
    compressor,
    level: o.compressionLevel,
    dimensionSeparator: sep,
    dimensionNames: o.dimensionNames,
    attributes: o.attributes ?? {},
  };
}

/** Opens an existing local Zarr array for reading and writing (e.g. to resume an interrupted job). */
export async function openWritableVolume(path: string, options: WritableOptions = {}): Promise<WritableVolume> {
  const loc = normalizeLocation(path);
  const node = await probeNode(loc, readableStore(loc));
  if (node.kind !== 'array') throw new ZarrError(`${loc} is a group, not an array: open one of its arrays for writing`, loc);
  return WritableZarrVolume.openWritable(loc, node.meta, {}, options);
}

/** Reads the typed array type for a dtype (helper for callers that allocate buffers). */
export type ArrayOf<D extends Dtype> = DtypeArrayMap[D];

export type { AsyncReadable };
