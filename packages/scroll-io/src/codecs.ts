import { availableParallelism } from 'node:os';
import { registry } from 'zarrita';
import { bloscDecodedSize, CorruptChunkError, decodeNative, type NativeCodecName } from './decode-worker.js';
import { ScrollIoOptionError } from './errors.js';
import { setOutputPoolLimit } from './native.js';
import { DecodePool, DecodeWorkerError } from './pool.js';
import { chunkBuffers } from './store.js';

/** How chunk bytes are decoded (see {@link configureDecoding}). */
export interface DecodingConfig {
  /**
   * Decode blosc (lz4, zstd, zlib inner codecs; byte shuffle), zstd, gzip and zlib with native code
   * (lz4-napi, zstd-napi, node:zlib) instead of zarrita's WASM codecs, which are several times slower.
   * The blosclz/snappy inner codecs, and bit-shuffled blocks ending in a partial group of 8 elements,
   * always use the WASM codec. Default true.
   */
  native: boolean;
  /** Worker threads for native decoding; 0 decodes in the calling thread. Default: number of cores. */
  threads: number;
  /**
   * Chunks whose decoded size (blosc: from its header; others: estimated as 4x the compressed size)
   * is below this many bytes decode in the calling thread: a round trip to a worker costs more than
   * decoding them. Default 65536.
   */
  minPooledBytes: number;
  /**
   * Read local chunks stored raw or compressed by blosc or zstd (C order, little endian, no filters,
   * not sharded) with the compiled reader (native/reader.c) when it was built: file read, decode and
   * the copy into the output all run on libuv's thread pool, with the system's C blosc and libzstd.
   * Everything else (sharded arrays, http, gzip/zlib, filters) goes through zarrita with the decoders
   * above. Default true.
   */
  nativeReader: boolean;
  /**
   * Most bytes of dropped compiled-reader outputs (regions of 2 MiB and more, in huge pages) kept for
   * the next reads to reuse: part of the memory bound, beside the chunk cache and prefetch queues.
   * Default 128 MiB.
   */
  outputPoolBytes: number;
  /**
   * Let the event loop's thread read a lone zstd or raw chunk of at most 4 MiB itself (the only chunk
   * of a read, through the compiled reader) when it would otherwise sleep until a pool thread had
   * read it: this saves two thread wake-ups per read, and the loop then answers its next event up to
   * one chunk's decode later (about 1.5 ms for 2 MiB of zstd). Turn it off where the loop's latency
   * matters more than a lone read's. Default true.
   */
  idleLoopReads: boolean;
}

const DEFAULTS: DecodingConfig = {
  native: true,
  threads: availableParallelism(),
  minPooledBytes: 65536,
  nativeReader: true,
  outputPoolBytes: 128 * 1024 * 1024,
  idleLoopReads: true,
};

/**
 * Fills in defaults and checks a partial {@link DecodingConfig}.
 * @throws ScrollIoOptionError naming the field for unknown keys or bad values
 */
export function resolveDecodingConfig(partial: Partial<DecodingConfig> = {}): DecodingConfig {
  for (const key of Object.keys(partial)) {
    if (!(key in DEFAULTS)) throw new ScrollIoOptionError(key, `unknown decoding option (expected one of ${Object.keys(DEFAULTS).join(', ')})`);
  }
  const c = { ...DEFAULTS, ...partial };
  if (!Number.isSafeInteger(c.outputPoolBytes) || c.outputPoolBytes < 0) {
    throw new ScrollIoOptionError('outputPoolBytes', `expected an integer >= 0, received ${JSON.stringify(c.outputPoolBytes)}`);
  }
  if (typeof c.idleLoopReads !== 'boolean') throw new ScrollIoOptionError('idleLoopReads', `expected a boolean, received ${JSON.stringify(c.idleLoopReads)}`);
  if (typeof c.nativeReader !== 'boolean') throw new ScrollIoOptionError('nativeReader', `expected a boolean, received ${JSON.stringify(c.nativeReader)}`);
  if (typeof c.native !== 'boolean') throw new ScrollIoOptionError('native', `expected a boolean, received ${JSON.stringify(c.native)}`);
  if (!Number.isSafeInteger(c.threads) || c.threads < 0) throw new ScrollIoOptionError('threads', `expected an integer >= 0, received ${JSON.stringify(c.threads)}`);
  if (!Number.isSafeInteger(c.minPooledBytes) || c.minPooledBytes < 0) {
    throw new ScrollIoOptionError('minPooledBytes', `expected an integer >= 0, received ${JSON.stringify(c.minPooledBytes)}`);
  }
  return c;
}

/** Counters of where chunks were decoded, for benchmarks and tests. */
export interface DecodingStats {
  /** Chunks decoded natively on a worker thread. */
  pooled: number;
  /** Chunks decoded natively in the calling thread. */
  inThread: number;
  /** Chunks decoded by zarrita's reference (WASM/JS) codec. */
  reference: number;
  /** Chunks read and decoded by the compiled reader (native/reader.c). */
  compiled: number;
}

let config = resolveDecodingConfig();
let pool: DecodePool | null = null;
const stats: DecodingStats = { pooled: 0, inThread: 0, reference: 0, compiled: 0 };

/** Counts a chunk read by the compiled reader. */
export function countCompiledChunk(): void {
  stats.compiled++;
}

/**
 * Sets how every reader in the process decodes chunks (the setting is process-wide, like the codec
 * registry it plugs into). Options left out return to their defaults. A running worker pool is
 * closed when the thread count changes.
 */
export async function configureDecoding(partial: Partial<DecodingConfig> = {}): Promise<DecodingConfig> {
  const next = resolveDecodingConfig(partial);
  if (pool && (pool.size !== next.threads || !next.native)) {
    const old = pool;
    pool = null;
    await old.close();
  }
  config = next;
  setOutputPoolLimit(config.outputPoolBytes);
  return { ...config };
}

/** Whether the event loop's thread may read a lone chunk itself (see {@link DecodingConfig.idleLoopReads}). */
export function useIdleLoopReads(): boolean {
  return config.idleLoopReads;
}

/** The decoding configuration in force. */
export function decodingConfig(): DecodingConfig {
  return { ...config };
}

/** Whether local plain-codec chunks go through the compiled reader (see {@link DecodingConfig.nativeReader}). */
export function useNativeReader(): boolean {
  return config.nativeReader;
}

/** A copy of the process-wide decode counters. */
export function decodingStats(): DecodingStats {
  return { ...stats };
}

function activePool(): DecodePool | null {
  if (config.threads === 0) return null;
  pool ??= new DecodePool(config.threads, {
    take: (n) => chunkBuffers.takeExact(n),
    give: (buf) => {
      // Transferred back from a worker: a new buffer object, owned by the pool alone.
      chunkBuffers.markRecyclable(buf);
      chunkBuffers.give(buf);
    },
  });
  return pool.available ? pool : null;
}

/**
 * Decodes one chunk's bytes natively, on a worker when the chunk is large enough and workers work,
 * else in this thread. Null when the reference codec must decode it.
 */
async function decodeFast(codec: NativeCodecName, bytes: Uint8Array): Promise<Uint8Array | null> {
  if (!config.native) return null;
  const knownSize = codec === 'blosc' ? bloscDecodedSize(bytes) : codec === 'zstd' ? zstdFrameContentSize(bytes) : -1;
  const decodedSize = knownSize >= 0 ? knownSize : bytes.length * 4;
  const p = decodedSize >= config.minPooledBytes ? activePool() : null;
  if (p) {
    try {
      const out = await p.decode(codec, bytes, knownSize);
      if (out) {
        stats.pooled++;
        recyclable(out);
      }
      return out;
    } catch (err) {
      if (err instanceof DecodeWorkerError && err.corrupt) throw new CorruptChunkError(err.message);
      // The worker itself failed (the pool is now unavailable): decode here instead.
    }
  }
  const target = knownSize > 0 ? chunkBuffers.takeExact(knownSize) : undefined;
  let out: Uint8Array | null = null;
  try {
    out = decodeNative(codec, bytes, target);
  } finally {
    // Not decoded into (size mismatch, reference codec, corrupt bytes): still unreferenced, keep it.
    if (target && out?.buffer !== target) chunkBuffers.give(target);
  }
  if (out) {
    stats.inThread++;
    recyclable(out);
  }
  return out;
}

/**
 * The decoded size a zstd stream's first frame declares (RFC 8878 §3.1.1.1), or -1 when it declares
 * none or the bytes are not a zstd frame. A hint for picking reused output memory only: the decoder
 * checks the real size.
 */
export function zstdFrameContentSize(b: Uint8Array): number {
  if (b.length < 6 || b[0] !== 0x28 || b[1] !== 0xb5 || b[2] !== 0x2f || b[3] !== 0xfd) return -1;
  const fhd = b[4];
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const pos = 5 + (single ? 0 : 1) + [0, 1, 2, 4][fhd & 3];
  const fcsBytes = fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag];
  if (fcsBytes === 0 || pos + fcsBytes > b.length) return -1;
  if (fcsBytes === 1) return b[pos];
  if (fcsBytes === 2) return (b[pos] | (b[pos + 1] << 8)) + 256;
  const lo = (b[pos] | (b[pos + 1] << 8) | (b[pos + 2] << 16)) + b[pos + 3] * 2 ** 24;
  if (fcsBytes === 4) return lo;
  const hi = b[pos + 4] | (b[pos + 5] << 8) | (b[pos + 6] << 16) | (b[pos + 7] << 24);
  return hi === 0 ? lo : -1;
}

/**
 * Registers a native decoder's output with the chunk buffer recycler: a worker's output is
 * transferred to this thread whole, and an in-thread output that spans its own buffer is referenced
 * by nothing else, so the reader may reuse the memory once no one holds the chunk.
 */
function recyclable(out: Uint8Array): void {
  if (out.byteOffset === 0 && out.byteLength === out.buffer.byteLength && out.buffer instanceof ArrayBuffer) chunkBuffers.markRecyclable(out.buffer);
}

/** A bytes-to-bytes codec as zarrita calls it. */
export interface ByteCodec {
  kind?: string;
  encode(data: Uint8Array): Uint8Array | Promise<Uint8Array>;
  decode(data: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

type Loader = () => Promise<{ fromConfig: (config: unknown, meta: never) => unknown }>;

/**
 * A zarrita codec class that decodes with {@link decodeFast} and leaves encoding (and whatever the
 * native decoders do not handle) to the reference codec registered before it.
 */
function nativeCodecClass(codec: NativeCodecName, reference: Loader) {
  return class NativeCodec {
    readonly kind = 'bytes_to_bytes' as const;
    readonly #config: unknown;
    readonly #meta: unknown;
    #reference: Promise<ByteCodec> | undefined;

    constructor(cfg: unknown, meta: unknown) {
      this.#config = cfg;
      this.#meta = meta;
    }

    static fromConfig(cfg: unknown, meta: unknown): NativeCodec {
      return new NativeCodec(cfg, meta);
    }

    #ref(): Promise<ByteCodec> {
      this.#reference ??= reference().then((C) => C.fromConfig(this.#config, this.#meta as never) as ByteCodec);
      return this.#reference;
    }

    async encode(data: Uint8Array): Promise<Uint8Array> {
      return (await this.#ref()).encode(data);
    }

    async decode(data: Uint8Array): Promise<Uint8Array> {
      const out = await decodeFast(codec, data);
      if (out) return out;
      stats.reference++;
      return (await this.#ref()).decode(data);
    }
  };
}

const NATIVE: Record<string, NativeCodecName> = {
  blosc: 'blosc',
  'numcodecs.blosc': 'blosc',
  zstd: 'zstd',
  'numcodecs.zstd': 'zstd',
  gzip: 'gzip',
  'numcodecs.gzip': 'gzip',
  zlib: 'zlib',
  'numcodecs.zlib': 'zlib',
};

/** The codecs zarrita had registered before the native ones replaced them. */
const references = new Map<string, Loader>();

/**
 * Replaces zarrita's blosc, zstd, gzip and zlib codecs (Zarr v3 names and numcodecs v2 names) with
 * native decoders; idempotent. Called when this module loads, so importing the package is enough.
 */
export function registerNativeCodecs(): void {
  for (const [name, codec] of Object.entries(NATIVE)) {
    if (references.has(name)) continue;
    const original = registry.get(name);
    if (!original) continue;
    references.set(name, original as Loader);
    const Cls = nativeCodecClass(codec, original as Loader);
    registry.set(name, () => Promise.resolve(Cls as never));
  }
}

/**
 * The codec zarrita registered under `name` before {@link registerNativeCodecs} (its WASM/JS codec):
 * the reference the native decoders are checked against.
 */
export async function referenceCodec(name: string, cfg: unknown = {}): Promise<ByteCodec> {
  const loader = references.get(name) ?? registry.get(name);
  if (!loader) throw new Error(`codec ${name} is not registered in zarrita`);
  return (await loader()).fromConfig(cfg, undefined as never) as ByteCodec;
}

registerNativeCodecs();
