/**
 * 16-bit greyscale TIFF pages through sharp (libvips + libtiff): header reads, exact window reads and
 * atomic writes. libvips reads a window by decoding only the strips or tiles it touches, so a small
 * window of a large layer costs a fraction of the whole layer.
 *
 * sharp's default pipeline converts 16-bit grey to 8-bit sRGB; every read here goes through
 * `.toColourspace('grey16').raw({ depth: 'ushort' })`, which the tests check is exact against files
 * written by tifffile and PIL.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { inflate } from 'node:zlib';
import sharp, { type Metadata } from 'sharp';
import { atomicWriteFile } from './atomic.js';
import { ScrollIoOptionError } from './errors.js';

/** TIFF compressions this package writes. `deflate` and `lzw` use horizontal differencing (predictor 2). */
export const TIFF_COMPRESSIONS = ['none', 'deflate', 'lzw'] as const;
export type TiffCompression = (typeof TIFF_COMPRESSIONS)[number];

/** A TIFF that cannot be read or written as asked: missing, truncated, corrupt, or not 16-bit grey. */
export class TiffError extends Error {
  /** The file at fault. */
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(`${path}: ${message}`, options);
    this.name = new.target.name;
    this.path = path;
  }
}

/** What the header of a TIFF page says. */
export interface TiffInfo {
  width: number;
  height: number;
  /** Samples per pixel. */
  channels: number;
  /** Bits per sample (8, 16, 32, …), from sharp's `depth`. */
  bitsPerSample: number;
  /** libvips' name of the sample format (`ushort` for 16-bit unsigned). */
  depth: string;
}

const BITS: Record<string, number> = { uchar: 8, char: 8, ushort: 16, short: 16, uint: 32, int: 32, float: 32, double: 64 };

/** Reads the header of the first page of a TIFF (no pixel data is decoded). */
export async function readTiffInfo(path: string): Promise<TiffInfo> {
  let meta: Metadata;
  try {
    meta = await sharp(path).metadata();
  } catch (cause) {
    throw new TiffError(path, `cannot be read: ${(cause as Error).message}`, { cause });
  }
  if (meta.format !== 'tiff') throw new TiffError(path, `is ${meta.format ?? 'not an image'}, not a TIFF`);
  const depth = meta.depth ?? 'unknown';
  return { width: meta.width ?? 0, height: meta.height ?? 0, channels: meta.channels ?? 0, bitsPerSample: BITS[depth] ?? 0, depth };
}

/** Throws {@link TiffError} unless the page is 16-bit unsigned with one sample per pixel. */
export function checkGrey16(path: string, info: TiffInfo): void {
  if (info.depth !== 'ushort' || info.channels !== 1) {
    throw new TiffError(path, `is ${info.channels}-channel ${info.depth} (${info.bitsPerSample}-bit), expected 1-channel 16-bit unsigned grey`);
  }
}

/** A rectangle of pixels: first column/row and extent. */
export interface PixelRect {
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * Reads a window of a 16-bit grey TIFF exactly, decoding only the strips/tiles it touches. The window
 * must lie inside the page. A truncated or corrupt file raises {@link TiffError} (libvips' `failOn:
 * 'warning'`), never returns zeros.
 * @returns `[rect.height, rect.width]` row-major
 */
export async function readTiffWindow(path: string, rect: PixelRect): Promise<Uint16Array> {
  const n = rect.width * rect.height;
  if (n === 0) return new Uint16Array(0);
  try {
    const { data, info } = await sharp(path, { failOn: 'warning' })
      .extract(rect)
      .toColourspace('grey16')
      .raw({ depth: 'ushort' })
      .toBuffer({ resolveWithObject: true });
    if (info.width !== rect.width || info.height !== rect.height || info.channels !== 1 || data.byteLength !== 2 * n) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels} (${data.byteLength} bytes), expected ${rect.width}x${rect.height}x1`);
    }
    // Copy: the Buffer may sit at an odd offset of a shared pool, which Uint16Array cannot view.
    return new Uint16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  } catch (cause) {
    throw new TiffError(path, `cannot be decoded (window ${rect.width}x${rect.height} at x=${rect.left}, y=${rect.top}): ${(cause as Error).message}`, { cause });
  }
}

export interface WriteTiffOptions {
  /** Default `deflate`. */
  compression?: TiffCompression;
}

/**
 * Encodes one 16-bit grey page (photometric min-is-black, 1 sample per pixel, striped).
 * @param data `[height, width]` row-major
 */
export async function encodeTiff16(data: Uint16Array, width: number, height: number, options: WriteTiffOptions = {}): Promise<Buffer> {
  const compression = options.compression ?? 'deflate';
  if (!TIFF_COMPRESSIONS.includes(compression)) {
    throw new ScrollIoOptionError('compression', `expected one of ${TIFF_COMPRESSIONS.join(', ')}, received ${String(compression)}`);
  }
  if (!Number.isInteger(width) || width < 1) throw new ScrollIoOptionError('width', `expected an integer >= 1, received ${width}`);
  if (!Number.isInteger(height) || height < 1) throw new ScrollIoOptionError('height', `expected an integer >= 1, received ${height}`);
  if (!(data instanceof Uint16Array)) throw new ScrollIoOptionError('data', 'expected a Uint16Array');
  if (data.length !== width * height) throw new ScrollIoOptionError('data', `has ${data.length} values, ${height}x${width} needs ${width * height}`);
  // A Uint16Array input makes sharp treat the raw pixels as 16-bit; 'grey16' keeps one 16-bit sample
  // (without it libvips writes 8-bit sRGB).
  return sharp(data, { raw: { width, height, channels: 1 } })
    .toColourspace('grey16')
    .tiff({ compression, predictor: compression === 'none' ? 'none' : 'horizontal' })
    .toBuffer();
}

/**
 * Writes one 16-bit grey TIFF atomically (temporary file, then rename).
 * @param data `[height, width]` row-major
 */
export async function writeTiff16(path: string, data: Uint16Array, width: number, height: number, options: WriteTiffOptions = {}): Promise<void> {
  let bytes: Buffer;
  try {
    bytes = await encodeTiff16(data, width, height, options);
  } catch (cause) {
    if (cause instanceof ScrollIoOptionError) throw cause;
    throw new TiffError(path, `cannot be encoded: ${(cause as Error).message}`, { cause });
  }
  await atomicWriteFile(path, bytes);
}

/**
 * Where the pixels of a striped 16-bit grey page lie in its file, for pages stored uncompressed or
 * with deflate: enough to read any window with one positioned read per strip touched (uncompressed:
 * only the window's rows; deflate: the strips, inflated on the libuv thread pool). libvips decodes
 * whole strips and adds a per-call cost, and tifffile/PIL write uncompressed pages as a single strip,
 * so through libvips a 64x64 window of a 2048² layer costs about as much as the layer.
 */
const inflateAsync = promisify(inflate);
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface RawStripLayout {
  width: number;
  height: number;
  rowsPerStrip: number;
  /** Byte offset of each strip. */
  offsets: number[];
  /** Stored bytes of each strip. */
  byteCounts: number[];
  /** TIFF Compression tag: 1 none, 8 (or the older 32946) deflate. */
  compression: 1 | 8;
  /** TIFF Predictor tag: 1 none, 2 horizontal differencing (TIFF 6.0 section 14). */
  predictor: 1 | 2;
  littleEndian: boolean;
  /** File size and modification time when the header was read: a read checks them, so that a file
   * replaced since (whose strips may lie elsewhere) raises instead of returning wrong pixels. */
  fileSize: number;
  mtimeMs: number;
}

/**
 * Parses the first IFD of a classic or Big TIFF and returns its strip layout when the page is 16-bit
 * unsigned grey in strips, uncompressed or deflate (the cases {@link readRawStripWindow} handles),
 * else undefined (such pages go through libvips).
 */
export async function readRawStripLayout(path: string): Promise<RawStripLayout | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (cause) {
    throw new TiffError(path, `cannot be read: ${(cause as Error).message}`, { cause });
  }
  try {
    const { size: fileSize, mtimeMs } = await fh.stat();
    const read = async (pos: number, len: number): Promise<Buffer> => {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      if (bytesRead !== len) throw new TiffError(path, `is truncated: ${len} bytes wanted at offset ${pos}, file has ${fileSize}`);
      return buf;
    };
    const head = await read(0, 16).catch(() => undefined);
    if (!head) return undefined;
    const order = head.toString('latin1', 0, 2);
    if (order !== 'II' && order !== 'MM') return undefined;
    const le = order === 'II';
    const u16 = (b: Buffer, o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
    const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
    const u64 = (b: Buffer, o: number) => Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o));
    const magic = u16(head, 2);
    const big = magic === 43;
    if (magic !== 42 && !big) return undefined;
    const ifd = big ? u64(head, 8) : u32(head, 4);
    const countBytes = big ? 8 : 2;
    const entryBytes = big ? 20 : 12;
    const n = big ? u64(await read(ifd, 8), 0) : u16(await read(ifd, 2), 0);
    const entries = await read(ifd + countBytes, n * entryBytes);
    const TYPE_BYTES: Record<number, number> = { 1: 1, 3: 2, 4: 4, 16: 8 };
    /** Integer values of a tag (BYTE, SHORT, LONG, LONG8), read inline or from their offset. */
    const values = async (e: number): Promise<number[]> => {
      const type = u16(entries, e + 2);
      const size = TYPE_BYTES[type];
      if (size === undefined) throw new TiffError(path, `tag ${u16(entries, e)} has unsupported type ${type}`);
      const count = big ? u64(entries, e + 4) : u32(entries, e + 4);
      const inline = big ? 8 : 4;
      const valueAt = e + (big ? 12 : 8);
      const bytes = count * size;
      const buf = bytes <= inline ? entries.subarray(valueAt, valueAt + bytes) : await read(big ? u64(entries, valueAt) : u32(entries, valueAt), bytes);
      const out = new Array<number>(count);
      for (let i = 0; i < count; i++) {
        const o = i * size;
        out[i] = size === 1 ? buf[o] : size === 2 ? u16(buf, o) : size === 4 ? u32(buf, o) : u64(buf, o);
      }
      return out;
    };
    const tags = new Map<number, number>();
    for (let i = 0; i < n; i++) tags.set(u16(entries, i * entryBytes), i * entryBytes);
    const first = async (tag: number, dflt?: number): Promise<number | undefined> => {
      const e = tags.get(tag);
      return e === undefined ? dflt : (await values(e))[0];
    };
    // 256 ImageWidth, 257 ImageLength, 258 BitsPerSample, 259 Compression, 277 SamplesPerPixel,
    // 284 PlanarConfiguration, 339 SampleFormat, 322 TileWidth, 278 RowsPerStrip, 273 StripOffsets,
    // 279 StripByteCounts (TIFF 6.0 section 8; BigTIFF adds LONG8).
    const width = await first(256);
    const height = await first(257);
    if (width === undefined || height === undefined) return undefined;
    // 317 Predictor.
    const compressionTag = await first(259, 1);
    const compression = compressionTag === 1 ? 1 : compressionTag === 8 || compressionTag === 32946 ? 8 : undefined;
    const predictor = await first(317, 1);
    if ((await first(258, 1)) !== 16 || compression === undefined || (await first(277, 1)) !== 1) return undefined;
    if ((predictor !== 1 && predictor !== 2) || (compression === 1 && predictor !== 1)) return undefined;
    if ((await first(339, 1)) !== 1 || tags.has(322) || !tags.has(273) || !tags.has(279)) return undefined;
    const rowsPerStrip = Math.min(height, (await first(278, height)) ?? height);
    const offsets = await values(tags.get(273)!);
    const counts = await values(tags.get(279)!);
    const strips = Math.ceil(height / rowsPerStrip);
    if (offsets.length !== strips || counts.length !== strips) {
      throw new TiffError(path, `has ${offsets.length} strip offsets and ${counts.length} byte counts, ${height} rows in strips of ${rowsPerStrip} need ${strips}`);
    }
    for (let s = 0; s < strips; s++) {
      const rows = Math.min(rowsPerStrip, height - s * rowsPerStrip);
      if (compression === 1 && counts[s] < rows * width * 2) throw new TiffError(path, `strip ${s} holds ${counts[s]} bytes, ${rows} rows of ${width} 16-bit pixels need ${rows * width * 2}`);
    }
    return { width, height, rowsPerStrip, offsets, byteCounts: counts, compression, predictor, littleEndian: le, fileSize, mtimeMs };
  } finally {
    await fh.close();
  }
}

/**
 * Reads a window of a striped page laid out as `layout` says: one positioned read per strip touched,
 * spanning only the rows of the window when uncompressed, the whole strip (then inflated) when
 * deflate. A file shorter than the layout needs, or a strip that does not inflate to its rows,
 * raises {@link TiffError}.
 * @returns `[rect.height, rect.width]` row-major
 */
export async function readRawStripWindow(path: string, layout: RawStripLayout, rect: PixelRect): Promise<Uint16Array> {
  const { width: W, rowsPerStrip: rps } = layout;
  const out = new Uint16Array(rect.width * rect.height);
  if (out.length === 0) return out;
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (cause) {
    throw new TiffError(path, `cannot be read: ${(cause as Error).message}`, { cause });
  }
  try {
    const st = await fh.stat();
    if (st.size !== layout.fileSize || st.mtimeMs !== layout.mtimeMs) {
      throw new TiffError(path, `changed since its header was read (size ${layout.fileSize} -> ${st.size} bytes); open the fragment again`);
    }
    const y1 = rect.top + rect.height;
    for (let s = Math.floor(rect.top / rps); s * rps < y1; s++) {
      const r0 = Math.max(rect.top, s * rps);
      const r1 = Math.min(y1, (s + 1) * rps);
      if (layout.compression === 8) {
        await copyDeflateStrip(path, fh, layout, s, r0, r1, rect, out);
        continue;
      }
      // From the window's first pixel in row r0 to its last pixel in row r1 - 1.
      const start = layout.offsets[s] + ((r0 - s * rps) * W + rect.left) * 2;
      const len = ((r1 - 1 - r0) * W + rect.width) * 2;
      const buf = Buffer.allocUnsafe(len);
      const { bytesRead } = await fh.read(buf, 0, len, start);
      if (bytesRead !== len) throw new TiffError(path, `is truncated: strip ${s} needs bytes up to ${start + len}, the file ends at ${start + bytesRead}`);
      // File byte order = host byte order (and an even offset): copy rows through a 16-bit view.
      const view = layout.littleEndian === HOST_LE && buf.byteOffset % 2 === 0 ? new Uint16Array(buf.buffer, buf.byteOffset, len / 2) : undefined;
      for (let r = r0; r < r1; r++) {
        const src = (r - r0) * W; // in pixels
        const dst = (r - rect.top) * rect.width;
        if (view) {
          out.set(view.subarray(src, src + rect.width), dst);
          continue;
        }
        for (let x = 0; x < rect.width; x++) {
          const o = 2 * (src + x);
          out[dst + x] = layout.littleEndian ? buf[o] | (buf[o + 1] << 8) : (buf[o] << 8) | buf[o + 1];
        }
      }
    }
    return out;
  } finally {
    await fh.close();
  }
}

/** Inflates strip `s` and copies its rows `[r0, r1)` of the window into `out`. */
async function copyDeflateStrip(
  path: string,
  fh: FileHandle,
  layout: RawStripLayout,
  s: number,
  r0: number,
  r1: number,
  rect: PixelRect,
  out: Uint16Array,
): Promise<void> {
  const { width: W, rowsPerStrip: rps } = layout;
  const stored = Buffer.allocUnsafe(layout.byteCounts[s]);
  const { bytesRead } = await fh.read(stored, 0, stored.length, layout.offsets[s]);
  if (bytesRead !== stored.length) {
    throw new TiffError(path, `is truncated: strip ${s} needs bytes up to ${layout.offsets[s] + stored.length}, the file ends at ${layout.offsets[s] + bytesRead}`);
  }
  let raw: Buffer;
  try {
    raw = await inflateAsync(stored);
  } catch (cause) {
    throw new TiffError(path, `strip ${s} does not inflate: ${(cause as Error).message}`, { cause });
  }
  const rows = Math.min(rps, layout.height - s * rps);
  if (raw.length < rows * W * 2) throw new TiffError(path, `strip ${s} inflates to ${raw.length} bytes, ${rows} rows of ${W} 16-bit pixels need ${rows * W * 2}`);
  const le = layout.littleEndian;
  const view = le === HOST_LE && raw.byteOffset % 2 === 0 ? new Uint16Array(raw.buffer, raw.byteOffset, raw.length >> 1) : undefined;
  const x1 = rect.left + rect.width;
  for (let r = r0; r < r1; r++) {
    const rowPix = (r - s * rps) * W; // first pixel of the row in the strip
    const dst = (r - rect.top) * rect.width - rect.left;
    const sample = view ? (x: number) => view[rowPix + x] : le ? (x: number) => raw[2 * (rowPix + x)] | (raw[2 * (rowPix + x) + 1] << 8) : (x: number) => (raw[2 * (rowPix + x)] << 8) | raw[2 * (rowPix + x) + 1];
    if (layout.predictor === 1) {
      if (view) out.set(view.subarray(rowPix + rect.left, rowPix + x1), dst + rect.left);
      else for (let x = rect.left; x < x1; x++) out[dst + x] = sample(x);
      continue;
    }
    // Horizontal differencing accumulates from the row's first pixel, so the row decodes from x = 0.
    let acc = 0;
    if (view) {
      // The common case, written out: a call per pixel through `sample` costs ~3x here.
      for (let i = rowPix, end = rowPix + rect.left; i < end; i++) acc = (acc + view[i]) & 0xffff;
      for (let i = rowPix + rect.left, o = dst + rect.left, end = rowPix + x1; i < end; i++, o++) out[o] = acc = (acc + view[i]) & 0xffff;
      continue;
    }
    for (let x = 0; x < rect.left; x++) acc = (acc + sample(x)) & 0xffff;
    for (let x = rect.left; x < x1; x++) out[dst + x] = acc = (acc + sample(x)) & 0xffff;
  }
}
