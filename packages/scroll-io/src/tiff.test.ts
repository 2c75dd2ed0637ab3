/**
 * 16-bit TIFF writing and window reads, checked against independent readers: tifffile and PIL (Debian
 * python3-tifffile, python3-pil) must read what writeTiff16/writeFragment write, exactly, as 16-bit grey
 * with one sample per pixel.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScrollIoOptionError } from './errors.js';
import { writeFragment } from './fragment.js';
import { readTiffInfo, readTiffWindow, TiffError, writeTiff16 } from './tiff.js';

const PYTHON = '/usr/bin/python3';
const hasPython = spawnSync(PYTHON, ['-c', 'import tifffile, numpy; from PIL import Image'], { stdio: 'ignore' }).status === 0;
if (!hasPython) {
  console.warn(`SKIPPED: TIFF interop tests need ${PYTHON} with tifffile, numpy and PIL (Debian: apt-get install python3-tifffile python3-pil)`);
}
// tifffile decodes LZW only through imagecodecs (not a dependency of Debian's python3-tifffile).
const tifffileLzw = hasPython && spawnSync(PYTHON, ['-c', 'import imagecodecs'], { stdio: 'ignore' }).status === 0;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-tiff-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** TIFF tags of the first IFD read from the file bytes (little-endian TIFF), independent of any decoder. */
async function tags(path: string): Promise<Map<number, number>> {
  const b = await readFile(path);
  expect(b.subarray(0, 4).toString('latin1')).toBe('II*\u0000');
  const ifd = b.readUInt32LE(4);
  const n = b.readUInt16LE(ifd);
  const out = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const e = ifd + 2 + 12 * i;
    const type = b.readUInt16LE(e + 2);
    // SHORT values sit in the first two bytes of the value field, LONG in all four.
    out.set(b.readUInt16LE(e), type === 3 ? b.readUInt16LE(e + 8) : b.readUInt32LE(e + 8));
  }
  return out;
}

/** Pixels of `[h, w]` covering the whole 16-bit range, high and low bytes both varying. */
const pixels = (h: number, w: number, seed: number) => Uint16Array.from({ length: h * w }, (_, i) => (i * 40503 + seed * 977 + 11) % 65536);

describe('writeTiff16', () => {
  // TIFF tags: 258 BitsPerSample, 259 Compression (1 none, 5 LZW, 8 deflate), 262 Photometric (1 min-is-black), 277 SamplesPerPixel.
  for (const [compression, code] of [['none', 1], ['deflate', 8], ['lzw', 5]] as const) {
    it(`writes 16-bit grey, 1 sample per pixel (${compression}) and reads it back exactly`, async () => {
      const [h, w] = [23, 41];
      const data = pixels(h, w, code);
      const path = join(dir, `one-${compression}.tif`);
      await writeTiff16(path, data, w, h, { compression });
      const t = await tags(path);
      expect([t.get(258), t.get(259), t.get(262), t.get(277)]).toEqual([16, code, 1, 1]);
      expect(await readTiffInfo(path)).toEqual({ width: w, height: h, channels: 1, bitsPerSample: 16, depth: 'ushort' });
      expect(Array.from(await readTiffWindow(path, { left: 0, top: 0, width: w, height: h }))).toEqual(Array.from(data));
      const win = await readTiffWindow(path, { left: 5, top: 7, width: 13, height: 9 });
      const want = Array.from({ length: 9 * 13 }, (_, i) => data[(7 + Math.floor(i / 13)) * w + 5 + (i % 13)]);
      expect(Array.from(win)).toEqual(want);
    });
  }

  it('rejects bad data and options by field, leaves no temporary file, names unreadable files', async () => {
    await expect(writeTiff16(join(dir, 'bad.tif'), new Uint16Array(5), 2, 3)).rejects.toThrow(ScrollIoOptionError);
    await expect(writeTiff16(join(dir, 'bad.tif'), new Uint16Array(6), 0, 3)).rejects.toThrow(/width/);
    await expect(writeTiff16(join(dir, 'bad.tif'), new Uint16Array(6), 2, 3, { compression: 'zip' as 'none' })).rejects.toThrow(/compression/);
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp') || f === 'bad.tif')).toEqual([]);
    const err = await readTiffInfo(join(dir, 'missing.tif')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TiffError);
    expect((err as TiffError).path).toBe(join(dir, 'missing.tif'));
  });
});

describe.skipIf(!hasPython)('tifffile and PIL read what writeFragment writes, exactly', () => {
  for (const compression of ['none', 'deflate', 'lzw'] as const) {
    it(`${compression}: every layer, dtype, samples per pixel and the PNG labels`, async () => {
      const [L, H, W] = [3, 17, 29];
      const data = new Uint16Array(L * H * W);
      for (let l = 0; l < L; l++) data.set(pixels(H, W, l), l * H * W);
      const ink = Uint8Array.from({ length: H * W }, (_, i) => (i % 3 === 0 ? 255 : 0));
      const mask = Uint8Array.from({ length: H * W }, (_, i) => (i % 7 === 0 ? 0 : 255));
      const frag = join(dir, `py-${compression}`);
      await writeFragment(frag, { layers: { data, shape: [L, H, W] }, inkLabels: { data: ink, shape: [H, W] }, mask: { data: mask, shape: [H, W] } }, { compression });
      const useTifffile = compression !== 'lzw' || tifffileLzw;
      if (!useTifffile) console.warn('tifffile without imagecodecs cannot decode LZW: LZW layers are checked with PIL only');
      // Python prints, per layer, tifffile's and PIL's view as JSON; values are compared here.
      const script = `
import json, sys, numpy as np, tifffile
from PIL import Image
d, L, use_tf = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1'
out = {'layers': []}
for l in range(L):
    p = f'{d}/surface_volume/{l:02d}.tif'
    im = Image.open(p)
    rec = {'pil_mode': im.mode, 'pil': np.asarray(im).astype(np.int64).ravel().tolist()}
    if use_tf:
        with tifffile.TiffFile(p) as t:
            page = t.pages[0]
            a = page.asarray()
            rec.update(tf_dtype=str(a.dtype), tf_spp=int(page.samplesperpixel), tf_shape=list(a.shape), tf=a.astype(np.int64).ravel().tolist())
    out['layers'].append(rec)
for name in ['inklabels', 'mask']:
    im = Image.open(f'{d}/{name}.png')
    out[name] = {'mode': im.mode, 'data': np.asarray(im).astype(np.int64).ravel().tolist()}
print(json.dumps(out))
`;
      const r = spawnSync(PYTHON, ['-c', script, frag, String(L), useTifffile ? '1' : '0'], { encoding: 'utf8', maxBuffer: 1 << 26 });
      expect(r.stderr).toBe('');
      const got = JSON.parse(r.stdout) as {
        layers: { pil_mode: string; pil: number[]; tf_dtype?: string; tf_spp?: number; tf_shape?: number[]; tf?: number[] }[];
        inklabels: { mode: string; data: number[] };
        mask: { mode: string; data: number[] };
      };
      for (let l = 0; l < L; l++) {
        const want = Array.from(data.subarray(l * H * W, (l + 1) * H * W));
        const rec = got.layers[l];
        expect(rec.pil_mode).toBe('I;16');
        expect(rec.pil).toEqual(want);
        if (useTifffile) {
          expect([rec.tf_dtype, rec.tf_spp, rec.tf_shape]).toEqual(['uint16', 1, [H, W]]);
          expect(rec.tf).toEqual(want);
        }
      }
      expect(got.inklabels).toEqual({ mode: 'L', data: Array.from(ink) });
      expect(got.mask).toEqual({ mode: 'L', data: Array.from(mask) });
    });
  }
});
