// Native chunk decoders (blosc, zstd, gzip, zlib) and the entry point of a decode worker thread.
//
// Plain JavaScript importing only Node built-ins and the native (N-API) codec packages, so that the
// same file runs in the main thread (imported from TypeScript under tsx or vitest) and as a
// `worker_threads` entry with no loader at all. Types: decode-worker.d.ts.
//
// Why: zarrita's numcodecs WASM build decodes blosc-lz4 ~80x slower than C blosc (FACTS.md). Blosc's
// container (c-blosc 1.x, blosc.c `blosc_d`) is simple to decode around native LZ4/Zstd/zlib.
import { createRequire } from 'node:module';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { gunzipSync, inflateSync } from 'node:zlib';

const require = createRequire(import.meta.url);
/** @type {typeof import('lz4-napi')} */
const lz4 = require('lz4-napi');
/** @type {typeof import('zstd-napi/binding')} */
const zstdBinding = require('zstd-napi/binding');
/** @type {typeof import('zstd-napi')} */
const zstd = require('zstd-napi');

/** Thrown for a chunk whose bytes are not a valid stream of the codec. */
export class CorruptChunkError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CorruptChunkError';
  }
}

// Blosc 1.x header flags (blosc.h).
const BLOSC_DOSHUFFLE = 0x1;
const BLOSC_MEMCPYED = 0x2;
const BLOSC_DOBITSHUFFLE = 0x4;
const BLOSC_DONT_SPLIT = 0x10;
// Compressor formats stored in flags >> 5.
const FORMAT_LZ4 = 1;
const FORMAT_ZLIB = 3;
const FORMAT_ZSTD = 4;
const BLOSC_HEADER = 16;
// blosc.c: a block is split into `typesize` streams only when typesize <= MAX_SPLITS and each stream
// holds at least MIN_BUFFERSIZE bytes (the rule `blosc_d` applies for compatibility).
const MAX_SPLITS = 16;
const MIN_BUFFERSIZE = 128;

let dctx;
function zstdContext() {
  dctx ??= new zstdBinding.DCtx();
  return dctx;
}

/**
 * Decoded size of a blosc buffer from its header, or -1 when `src` is not a blosc buffer.
 * @param {Uint8Array} src
 */
export function bloscDecodedSize(src) {
  if (src.length < BLOSC_HEADER) return -1;
  return new DataView(src.buffer, src.byteOffset, BLOSC_HEADER).getUint32(4, true);
}

/**
 * Decodes a blosc 1.x buffer, or returns null for what is left to the reference decoder (the
 * blosclz/snappy inner codecs, which have no native package here, and bit-shuffled blocks ending in a
 * partial group of 8 elements).
 * @param {Uint8Array} src
 * @param {ArrayBuffer} [target] a buffer to decode into when it has exactly the decoded size (recycled
 *   memory: fresh memory's first-touch page faults cost more than decoding)
 * @returns {Uint8Array | null}
 */
export function decodeBlosc(src, target) {
  if (src.length < BLOSC_HEADER) throw new CorruptChunkError(`blosc buffer of ${src.length} bytes is shorter than its 16-byte header`);
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const flags = src[2];
  const typesize = src[3];
  const nbytes = view.getUint32(4, true);
  const blocksize = view.getUint32(8, true);
  const cbytes = view.getUint32(12, true);
  if (cbytes > src.length) throw new CorruptChunkError(`blosc buffer truncated: header says ${cbytes} bytes, have ${src.length}`);
  if (nbytes > 0x7fffffff) throw new CorruptChunkError(`blosc header declares ${nbytes} decoded bytes (more than blosc allows)`);
  const out = target && target.byteLength === nbytes ? new Uint8Array(target) : new Uint8Array(nbytes);
  if (nbytes === 0) return out;
  if (flags & BLOSC_MEMCPYED) {
    if (BLOSC_HEADER + nbytes > src.length) throw new CorruptChunkError(`blosc memcpyed buffer truncated: need ${BLOSC_HEADER + nbytes} bytes, have ${src.length}`);
    out.set(src.subarray(BLOSC_HEADER, BLOSC_HEADER + nbytes));
    return out;
  }
  const bitShuffled = (flags & BLOSC_DOBITSHUFFLE) !== 0;
  // Bit shuffle natively only where every block holds whole groups of 8 elements: there c-blosc
  // versions agree (they differ in how they treat the trailing elements of other blocks).
  if (bitShuffled && (blocksize % (8 * typesize) !== 0 || (nbytes % blocksize) % (8 * typesize) !== 0)) return null;
  const format = (flags & 0xe0) >> 5;
  if (format !== FORMAT_LZ4 && format !== FORMAT_ZLIB && format !== FORMAT_ZSTD) return null;
  if (blocksize === 0 || typesize === 0) throw new CorruptChunkError(`blosc header has blocksize ${blocksize}, typesize ${typesize}`);
  const nblocks = Math.ceil(nbytes / blocksize);
  const leftover = nbytes % blocksize;
  if (BLOSC_HEADER + 4 * nblocks > src.length) throw new CorruptChunkError(`blosc block table truncated (${nblocks} blocks, ${src.length} bytes)`);
  const shuffled = (flags & BLOSC_DOSHUFFLE) !== 0 && typesize > 1;
  const dontSplit = (flags & BLOSC_DONT_SPLIT) !== 0;
  const tmp = shuffled || bitShuffled ? new Uint8Array(blocksize) : null;
  for (let j = 0; j < nblocks; j++) {
    const isLeftover = j === nblocks - 1 && leftover > 0;
    const bsize = isLeftover ? leftover : blocksize;
    const blockOut = out.subarray(j * blocksize, j * blocksize + bsize);
    const dest = tmp ? tmp.subarray(0, bsize) : blockOut;
    const nsplits = !dontSplit && typesize <= MAX_SPLITS && Math.floor(bsize / typesize) >= MIN_BUFFERSIZE && !isLeftover ? typesize : 1;
    const neblock = Math.floor(bsize / nsplits);
    let pos = view.getUint32(BLOSC_HEADER + 4 * j, true);
    for (let k = 0; k < nsplits; k++) {
      if (pos + 4 > src.length) throw new CorruptChunkError(`blosc block ${j} starts past the end of the buffer`);
      const cb = view.getInt32(pos, true);
      pos += 4;
      if (cb < 0 || pos + cb > src.length) throw new CorruptChunkError(`blosc block ${j} stream ${k} of ${cb} bytes runs past the end of the buffer`);
      const target = dest.subarray(k * neblock, (k + 1) * neblock);
      const stream = src.subarray(pos, pos + cb);
      if (cb === neblock) target.set(stream);
      else {
        const got = decodeStream(format, stream, target);
        if (got !== neblock) throw new CorruptChunkError(`blosc block ${j} stream ${k} decoded to ${got} bytes, expected ${neblock}`);
      }
      pos += cb;
    }
    if (bitShuffled) bitunshuffle(typesize, bsize, dest, blockOut);
    else if (tmp) unshuffle(typesize, bsize, dest, blockOut);
  }
  return out;
}

// Reused input buffer for lz4-napi (its input needs a 4-byte size prefix the blosc stream lacks).
let lz4Scratch = Buffer.alloc(0);

/** Decodes one blosc stream into `target`; returns the number of bytes written. */
function decodeStream(format, stream, target) {
  if (format === FORMAT_ZSTD) {
    try {
      return zstdContext().decompress(target, stream);
    } catch (err) {
      throw new CorruptChunkError(`zstd stream inside blosc: ${err.message}`);
    }
  }
  let res;
  try {
    if (format === FORMAT_LZ4) {
      // lz4-napi reads raw LZ4 blocks prefixed with their decoded size (u32 little endian); blosc
      // stores bare blocks, so the prefix is added here.
      if (lz4Scratch.length < 4 + stream.length) lz4Scratch = Buffer.allocUnsafeSlow(4 + stream.length);
      const pre = lz4Scratch.subarray(0, 4 + stream.length);
      pre.writeUInt32LE(target.length, 0);
      pre.set(stream, 4);
      res = lz4.uncompressSync(pre);
    } else {
      res = inflateSync(stream);
    }
  } catch (err) {
    throw new CorruptChunkError(`${format === FORMAT_LZ4 ? 'lz4' : 'zlib'} stream inside blosc: ${err.message}`);
  }
  if (res.length !== target.length) return res.length;
  target.set(res);
  return res.length;
}

/**
 * Byte un-shuffle of one block (blosc shuffle.c `unshuffle_generic`): byte i of element j was stored
 * at i * (n / typesize) + j; trailing bytes that do not make a whole element are stored as is.
 */
function unshuffle(typesize, bsize, src, dst) {
  const n = Math.floor(bsize / typesize);
  const whole = n * typesize;
  if (typesize === 2 && dst.byteOffset % 2 === 0) {
    const d = new Uint16Array(dst.buffer, dst.byteOffset, n);
    for (let j = 0; j < n; j++) d[j] = src[j] | (src[n + j] << 8);
  } else if (typesize === 4 && dst.byteOffset % 4 === 0) {
    const d = new Uint32Array(dst.buffer, dst.byteOffset, n);
    const n2 = 2 * n;
    const n3 = 3 * n;
    for (let j = 0; j < n; j++) d[j] = (src[j] | (src[n + j] << 8) | (src[n2 + j] << 16) | (src[n3 + j] << 24)) >>> 0;
  } else {
    for (let i = 0; i < typesize; i++) {
      const base = i * n;
      for (let j = 0; j < n; j++) dst[j * typesize + i] = src[base + j];
    }
  }
  if (whole < bsize) dst.set(src.subarray(whole, bsize), whole);
}

/**
 * Bit un-shuffle of one block (bitshuffle's `bshuf_untrans_bit_elem`, as c-blosc applies it): the
 * block holds 8 * typesize rows of n / 8 bytes; row 8b + i holds bit i of byte b of every element,
 * element j at bit j % 8 of byte j / 8. Each 8x8 bit tile is transposed with 32-bit shifts (Hacker's
 * Delight's transpose8 with bit 8 * row + column). `n` is a multiple of 8 (checked by the caller).
 */
function bitunshuffle(typesize, bsize, src, dst) {
  const n = bsize / typesize;
  const rowBytes = n >>> 3;
  for (let b = 0; b < typesize; b++) {
    const r0 = 8 * b * rowBytes;
    for (let jb = 0; jb < rowBytes; jb++) {
      const p = r0 + jb;
      // Rows i = 0..3 in x, 4..7 in y, row i in byte i % 4 (least significant first).
      let x = src[p] | (src[p + rowBytes] << 8) | (src[p + 2 * rowBytes] << 16) | (src[p + 3 * rowBytes] << 24);
      let y = src[p + 4 * rowBytes] | (src[p + 5 * rowBytes] << 8) | (src[p + 6 * rowBytes] << 16) | (src[p + 7 * rowBytes] << 24);
      let t = (x ^ (x >>> 7)) & 0x00aa00aa;
      x = x ^ t ^ (t << 7);
      t = (y ^ (y >>> 7)) & 0x00aa00aa;
      y = y ^ t ^ (t << 7);
      t = (x ^ (x >>> 14)) & 0x0000cccc;
      x = x ^ t ^ (t << 14);
      t = (y ^ (y >>> 14)) & 0x0000cccc;
      y = y ^ t ^ (t << 14);
      // Swap the 4x4 tiles between the halves: rows 0..3 x columns 4..7 with rows 4..7 x columns 0..3.
      t = (x ^ (y << 4)) & 0xf0f0f0f0;
      x ^= t;
      y ^= t >>> 4;
      const lo = x;
      const hi = y;
      // Column k (element 8 jb + k) is now byte k: 0..3 in lo, 4..7 in hi.
      let o = (jb << 3) * typesize + b;
      dst[o] = lo & 0xff;
      dst[(o += typesize)] = (lo >>> 8) & 0xff;
      dst[(o += typesize)] = (lo >>> 16) & 0xff;
      dst[(o += typesize)] = lo >>> 24;
      dst[(o += typesize)] = hi & 0xff;
      dst[(o += typesize)] = (hi >>> 8) & 0xff;
      dst[(o += typesize)] = (hi >>> 16) & 0xff;
      dst[(o += typesize)] = hi >>> 24;
    }
  }
}

/**
 * Decodes a zstd stream (one or more frames; numcodecs `zstd`, Zarr v3 `zstd`), into `target` when it
 * has exactly the size the single frame declares.
 */
export function decodeZstd(src, target) {
  try {
    const size = zstdBinding.getFrameContentSize(src);
    // One frame that declares its size (what numcodecs writes): decode straight into the output.
    if (size !== null && size <= 0x7fffffff && zstdBinding.findFrameCompressedSize(src) === src.length) {
      const out = target && target.byteLength === size ? new Uint8Array(target) : new Uint8Array(size);
      const got = zstdContext().decompress(out, src);
      if (got !== size) throw new Error(`frame declares ${size} bytes, decoded ${got}`);
      return out;
    }
    // Several frames, or no declared size: the streaming decoder.
    return owned(zstd.decompress(src));
  } catch (err) {
    throw new CorruptChunkError(`zstd: ${err.message}`);
  }
}

/** A Uint8Array that owns its whole buffer from offset 0 (aligned for any typed view; transferable). */
function owned(buf) {
  if (buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength) return new Uint8Array(buf.buffer);
  return new Uint8Array(buf);
}

/**
 * Decodes one chunk's bytes with `codec`; null when this codec configuration is left to the
 * reference (WASM) decoder.
 * @param {'blosc'|'zstd'|'gzip'|'zlib'} codec
 * @param {Uint8Array} src
 * @param {ArrayBuffer} [target] reused output memory (blosc, zstd), used when its size is exact
 * @returns {Uint8Array | null}
 */
export function decodeNative(codec, src, target) {
  switch (codec) {
    case 'blosc':
      return decodeBlosc(src, target);
    case 'zstd':
      return decodeZstd(src, target);
    case 'gzip':
      try {
        return owned(gunzipSync(src));
      } catch (err) {
        throw new CorruptChunkError(`gzip: ${err.message}`);
      }
    case 'zlib':
      try {
        return owned(inflateSync(src));
      } catch (err) {
        throw new CorruptChunkError(`zlib: ${err.message}`);
      }
    default:
      throw new Error(`no native decoder for codec ${codec}`);
  }
}

// Worker entry: one job at a time, answered with the decoded bytes transferred back (no copy).
if (!isMainThread && parentPort && workerData && workerData.role === 'goe-decode') {
  const port = parentPort;
  port.on('message', (job) => {
    // The input buffer goes back with every answer, for the pool to reuse.
    // So does an output buffer the decoder did not use.
    const input = job.bytes;
    const target = job.target;
    const back = (used) => (target && !used ? [input.buffer, target] : [input.buffer]);
    try {
      const out = decodeNative(job.codec, input, target);
      if (out === null) port.postMessage({ id: job.id, input, out: null, target }, back(false));
      else {
        const sendable = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? out : new Uint8Array(out);
        const used = sendable.buffer === target;
        port.postMessage({ id: job.id, input, out: sendable, target: used ? undefined : target }, [sendable.buffer, ...back(used)]);
      }
    } catch (err) {
      port.postMessage({ id: job.id, input, target, error: err instanceof Error ? err.message : String(err), corrupt: err instanceof CorruptChunkError }, back(false));
    }
  });
}
