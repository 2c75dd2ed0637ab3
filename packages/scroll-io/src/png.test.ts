import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PngError, ScrollIoOptionError } from './errors.js';
import { readPng, writePng } from './png.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-png-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** PNG IHDR fields read from the file bytes (independent of the decoder): bit depth and colour type. */
async function ihdr(path: string) {
  const b = await readFile(path);
  expect(b.subarray(12, 16).toString('latin1')).toBe('IHDR');
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20), bitDepth: b[24], colourType: b[25] };
}

describe('writePng / readPng', () => {
  // PNG colour types: 0 grey, 2 RGB, 6 RGBA.
  for (const [channels, colourType] of [[1, 0], [3, 2], [4, 6]] as const) {
    for (const bits of [8, 16] as const) {
      it(`round-trips ${bits}-bit ${channels}-channel pixels exactly`, async () => {
        const width = 7;
        const height = 5;
        const n = width * height * channels;
        const data = bits === 8 ? Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) % 256) : Uint16Array.from({ length: n }, (_, i) => (i * 7919 + 13) % 65536);
        const path = join(dir, `img-${channels}-${bits}.png`);
        await writePng(path, data, { width, height, channels });
        expect(await ihdr(path)).toEqual({ width, height, bitDepth: bits, colourType });
        const back = await readPng(path);
        expect(back).toMatchObject({ width, height, channels, bitDepth: bits });
        expect(back.data.constructor).toBe(data.constructor);
        expect(Array.from(back.data)).toEqual(Array.from(data));
      });
    }
  }

  it('leaves no temporary file and rejects bad shapes and files by name', async () => {
    await expect(writePng(join(dir, 'bad.png'), new Uint8Array(5), { width: 2, height: 2, channels: 1 })).rejects.toThrow(ScrollIoOptionError);
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const err = await readPng(join(dir, 'missing.png')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PngError);
    expect((err as PngError).path).toBe(join(dir, 'missing.png'));
  });
});
