/**
 * 16-bit greyscale TIFF pages through sharp (libvips + libtiff): header reads, exact window reads and
 * atomic writes. libvips reads a window by decoding only the strips or tiles it touches, so a small
 * window of a large layer costs a fraction of the whole layer.
 *
 * sharp's default pipeline converts 16-bit grey to 8-bit sRGB; every read here goes through
 * `.toColourspace('grey16').raw({ depth: 'ushort' })`, which the tests check is exact against files
 * written by tifffile and PIL.
 */
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
