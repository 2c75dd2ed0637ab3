import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { PlainCodec } from './metadata.js';


/**
 * The compiled chunk reader (native/reader.c, built by `node-gyp` when the package installs): reads
 * a chunk file, decodes it with the system's C blosc or libzstd, and copies the wanted box into the
 * output on libuv's thread pool; allocates large outputs in transparent huge pages and recycles them
 * once JavaScript drops them.
 */
export interface NativeReaderBinding {
  /**
   * Reads one chunk file and copies `extent` voxels from `srcStart` in the chunk to `dstStart` in
   * `out` (C order, `outShape`); with `direct`, the whole chunk is decoded straight into `out`
   * (it must map onto one contiguous range there). `keep`, when given, receives the whole decoded
   * chunk too (for the chunk cache). `alone` marks the only chunk of a read on a local file system:
   * the event loop's thread may then run the job itself if it would otherwise sleep until a pool
   * thread has (zstd and raw chunks of at most 4 MiB whose file is all in the page cache; see
   * native/reader.c).
   * @returns 0 when read, 1 when the file does not exist; rejects with an Error carrying `corrupt`
   *   (the bytes are not a valid chunk) and `fileBytes`
   */
  readChunk(
    path: string,
    codec: number,
    nthreads: number,
    chunkBytes: number,
    itemsize: number,
    chunkShape: readonly number[],
    out: ArrayBufferView | null,
    outShape: readonly number[],
    srcStart: readonly number[],
    dstStart: readonly number[],
    extent: readonly number[],
    keep: ArrayBufferView | null,
    direct: boolean,
    alone: boolean,
  ): Promise<0 | 1>;
  /** An ArrayBuffer of `bytes` in huge pages; recycled memory is zeroed only when `zero`. */
  allocOutput(bytes: number, zero: boolean): ArrayBuffer;
  /**
   * Output memory: `bytes` (in `blocks`) of dropped outputs held for reuse, under `limit`; `live`
   * bytes held by JavaScript buffers now; `reused` and `mapped` count hand-outs from the pool and
   * fresh mappings. Mappings are whole 2 MiB pages, so `live` can exceed the buffers' lengths.
   * `threadBuffers`: bytes of the per-thread file and decode buffers of every thread that has read a
   * chunk (pool threads keep theirs; an env's thread frees its own when the env is torn down).
   * (Node's `process.memoryUsage().arrayBuffers` does not count this memory.)
   */
  poolStats(): { bytes: number; blocks: number; reused: number; mapped: number; limit: number; live: number; threadBuffers: number };
  /** Most bytes of dropped outputs held for reuse (set from {@link DecodingConfig.outputPoolBytes}). */
  setPoolLimit(bytes: number): void;
  /**
   * Which codec libraries (libblosc.so.1, libzstd.so.1) could be opened; whether blosc can decode
   * just the blocks that hold a box (`blosc_getitem`), and how many chunks were read that way;
   * `loopJobs`: how many chunks the event loop's thread read itself (`alone` above).
   */
  codecs(): { blosc: boolean; zstd: boolean; bloscBlocks: boolean; boxBlockDecodes: number; loopJobs: number };
}

/** Codec numbers of {@link NativeReaderBinding.readChunk}. */
export const NATIVE_CODEC: Record<PlainCodec, number> = { raw: 0, blosc: 1, zstd: 2 };

/** Error thrown by a native chunk read. */
export interface NativeReadError extends Error {
  corrupt: boolean;
  fileBytes: number;
}

/** Where `npm install` builds the compiled reader (node-gyp's output, beside `src/` and `dist/`). */
export const NATIVE_READER_FILE = fileURLToPath(new URL('../build/Release/goe_reader.node', import.meta.url));

let binding: NativeReaderBinding | null | undefined;
let loadError: string | undefined;

let poolLimit: number | undefined;

/** The compiled reader, or null when it was not built (no C compiler at install) or cannot load. */
export function nativeReaderBinding(): NativeReaderBinding | null {
  if (binding !== undefined) return binding;
  try {
    binding = createRequire(import.meta.url)(NATIVE_READER_FILE) as NativeReaderBinding;
    if (poolLimit !== undefined) binding.setPoolLimit(poolLimit);
  } catch (err) {
    binding = null;
    loadError = (err as Error).message;
  }
  return binding;
}

/** Sets the output pool's limit now (when the reader is loaded) or when it loads. */
export function setOutputPoolLimit(bytes: number): void {
  poolLimit = bytes;
  binding?.setPoolLimit(bytes);
}

/** Why the compiled reader is unavailable (undefined when it loaded or was never asked for). */
export function nativeReaderLoadError(): string | undefined {
  return loadError;
}

/** True when the compiled reader can decode `codec` on this machine. */
export function nativeReaderHandles(b: NativeReaderBinding, codec: PlainCodec): boolean {
  if (codec === 'raw') return true;
  libraries ??= b.codecs();
  return libraries[codec];
}

let libraries: { blosc: boolean; zstd: boolean } | undefined;
