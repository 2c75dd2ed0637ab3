import sharp, { type Metadata } from 'sharp';
import { atomicWriteFile } from './atomic.js';
import { PngError, ScrollIoOptionError } from './errors.js';

export interface PngShape {
  width: number;
  height: number;
  /** 1 grey, 3 RGB, 4 RGBA. */
  channels: 1 | 3 | 4;
}

/** A decoded PNG: row-major pixels, channels interleaved (`[height, width, channels]`). */
export interface PngImage extends PngShape {
  data: Uint8Array | Uint16Array;
  bitDepth: 8 | 16;
}

/**
 * Writes `data` (`[height, width, channels]`, row-major, interleaved) as a PNG, atomically. A
 * Uint8Array gives an 8-bit PNG, a Uint16Array a 16-bit one; 1-channel data gives a greyscale PNG
 * (sharp's default pipeline would otherwise write RGB, and turn 16-bit grey into 8-bit sRGB).
 */
export async function writePng(path: string, data: Uint8Array | Uint16Array, shape: PngShape): Promise<void> {
  const { width, height, channels } = shape;
  if (!Number.isInteger(width) || width < 1) throw new ScrollIoOptionError('width', `expected an integer >= 1, received ${width}`);
  if (!Number.isInteger(height) || height < 1) throw new ScrollIoOptionError('height', `expected an integer >= 1, received ${height}`);
  if (channels !== 1 && channels !== 3 && channels !== 4) throw new ScrollIoOptionError('channels', `expected 1, 3 or 4, received ${channels}`);
  const sixteen = data instanceof Uint16Array;
  if (!sixteen && !(data instanceof Uint8Array)) throw new ScrollIoOptionError('data', 'expected a Uint8Array or Uint16Array');
  if (data.length !== width * height * channels) {
    throw new ScrollIoOptionError('data', `has ${data.length} values, ${width}x${height}x${channels} needs ${width * height * channels}`);
  }
  let bytes: Buffer;
  try {
    let img = sharp(data, { raw: { width, height, channels } });
    if (channels === 1) img = img.toColourspace(sixteen ? 'grey16' : 'b-w');
    else if (sixteen) img = img.toColourspace('rgb16');
    bytes = await img.png({ compressionLevel: 6 }).toBuffer();
  } catch (cause) {
    throw new PngError(path, `cannot be encoded: ${(cause as Error).message}`, { cause });
  }
  await atomicWriteFile(path, bytes);
}

/**
 * Reads a PNG exactly: 8-bit files as Uint8Array, 16-bit as Uint16Array; greyscale (including 1-bit
 * masks, which read as 0/255) as 1 channel, palette/RGB as 3, with alpha as 4. Grey+alpha files are
 * expanded to RGBA.
 */
export async function readPng(path: string): Promise<PngImage> {
  let meta: Metadata;
  try {
    meta = await sharp(path).metadata();
  } catch (cause) {
    throw new PngError(path, `cannot be read: ${(cause as Error).message}`, { cause });
  }
  if (meta.format !== 'png') throw new PngError(path, `is ${meta.format ?? 'not an image'}, not a PNG`);
  const sixteen = meta.depth === 'ushort';
  const grey = (meta.channels === 1 || meta.channels === 2) && !meta.isPalette;
  const channels: 1 | 3 | 4 = grey && !meta.hasAlpha ? 1 : meta.hasAlpha ? 4 : 3;
  try {
    let img = sharp(path);
    if (channels === 1) img = img.toColourspace(sixteen ? 'grey16' : 'b-w');
    else {
      img = img.toColourspace(sixteen ? 'rgb16' : 'srgb');
      if (channels === 4) img = img.ensureAlpha();
    }
    const { data, info } = await img.raw({ depth: sixteen ? 'ushort' : 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== channels || info.width !== meta.width || info.height !== meta.height) {
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${meta.width}x${meta.height}x${channels}`);
    }
    const pixels = sixteen
      ? new Uint16Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength))
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { data: pixels, width: info.width, height: info.height, channels, bitDepth: sixteen ? 16 : 8 };
  } catch (cause) {
    throw new PngError(path, `cannot be decoded: ${(cause as Error).message}`, { cause });
  }
}
