import { endianness } from 'node:os';
import { promisify } from 'node:util';
import { deflate, gzip } from 'node:zlib';
import { registry } from 'zarrita';
import type { VolumeArray } from './dtype.js';
import { ZarrUnsupportedError } from './errors.js';
import { type Compressor, defaultLevel } from './metadata.js';

const deflateAsync = promisify(deflate);
const gzipAsync = promisify(gzip);

/** Encodes one C-order chunk into the bytes of its chunk file. */
export type ChunkEncoder = (chunk: VolumeArray) => Promise<Uint8Array>;

interface BytesCodec {
  encode(data: Uint8Array): Uint8Array | Promise<Uint8Array>;
}

async function numcodec(name: string, config: Record<string, unknown>): Promise<BytesCodec> {
  const entry = await registry.get(name)?.();
  if (!entry) throw new ZarrUnsupportedError(`codec ${name} is not registered in zarrita`, '');
  // numcodecs codecs take their configuration alone; the chunk metadata argument is unused by them.
  return (entry.fromConfig as (c: unknown, m: unknown) => BytesCodec)(config, undefined);
}

/**
 * An encoder for `compressor`. Blosc and zstd use zarrita's codec registry (numcodecs WASM); zlib and
 * gzip use Node's native zlib on the libuv thread pool, so they overlap with other work.
 */
export async function makeEncoder(compressor: Compressor, level?: number): Promise<ChunkEncoder> {
  if (endianness() !== 'LE') {
    throw new ZarrUnsupportedError('writing Zarr chunks needs a little-endian machine (chunks are stored little-endian)', '');
  }
  const lvl = level ?? defaultLevel(compressor);
  const raw = (chunk: VolumeArray) => new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  switch (compressor) {
    case 'none':
      // A copy, so the caller may reuse its buffer while the write is in flight.
      return async (chunk) => raw(chunk).slice();
    case 'zlib':
      return async (chunk) => new Uint8Array(await deflateAsync(raw(chunk), { level: lvl }));
    case 'gzip':
      return async (chunk) => new Uint8Array(await gzipAsync(raw(chunk), { level: lvl }));
    case 'zstd': {
      const codec = await numcodec('numcodecs.zstd', { level: lvl });
      return async (chunk) => codec.encode(raw(chunk));
    }
    case 'blosc-lz4':
    case 'blosc-zstd': {
      const codec = await numcodec('numcodecs.blosc', { cname: compressor.slice(6), clevel: lvl, shuffle: 1, blocksize: 0 });
      return async (chunk) => codec.encode(raw(chunk));
    }
  }
}
