/**
 * Fragment folders: the committed fixtures written by tifffile and PIL (fixtures/make_tiff_fixtures.py)
 * read back exactly against their closed form; writeFragment round trips; every malformed folder
 * fails with a typed error naming the file.
 */
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScrollIoOptionError, ZarrRegionError } from './errors.js';
import {
  FragmentExistsError,
  FragmentLayerMissingError,
  FragmentLayoutError,
  FragmentShapeError,
  openFragment,
  writeFragment,
  writeTiffStack,
} from './fragment.js';
import { writePng } from './png.js';
import { TiffError, writeTiff16 } from './tiff.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');

/** Mirrors `layer_value`, `ink` and `mask` of fixtures/make_tiff_fixtures.py. */
const layerValue = (l: number, y: number, x: number) => (l * 7919 + y * 257 + x * 31) % 65536;
const inkValue = (y: number, x: number) => ((y * 3 + x * 5) % 7 === 0 ? 255 : 0);
const maskValue = (y: number, x: number) => ((x + y) % 3 !== 0 ? 255 : 0);

/** Expected read of a region of a fragment of `shape` filled by `f` (0 outside). */
function expected(shape: number[], offset: number[], region: number[], f: (l: number, y: number, x: number) => number): number[] {
  const out: number[] = [];
  for (let l = 0; l < region[0]; l++)
    for (let y = 0; y < region[1]; y++)
      for (let x = 0; x < region[2]; x++) {
        const [L, Y, X] = [offset[0] + l, offset[1] + y, offset[2] + x];
        const inside = L >= 0 && Y >= 0 && X >= 0 && L < shape[0] && Y < shape[1] && X < shape[2];
        out.push(inside ? f(L, Y, X) : 0);
      }
  return out;
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'scroll-io-fragment-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('openFragment reads fixtures written by tifffile and PIL', () => {
  const cases = [
    { name: 'fragment-kaggle', layout: 'surface_volume', shape: [8, 37, 53], raw: 5, ink: 'inklabels.png', mask: 'mask.png' },
    { name: 'fragment-segment', layout: 'layers', shape: [12, 20, 35], raw: 7, ink: '20230101_inklabels.png', mask: '20230101_mask.png' },
  ];
  for (const c of cases) {
    it(`${c.name}: every layer (striped, tiled, uncompressed, deflate, LZW, big-endian, BigTIFF) whole and by windows`, async () => {
      const frag = await openFragment(join(FIXTURES, c.name));
      expect(frag.layout).toBe(c.layout);
      expect(frag.shape).toEqual(c.shape);
      expect(frag.dtype).toBe('uint16');
      // Striped uncompressed and deflate layers (little- and big-endian, classic and BigTIFF) are read without libvips.
      expect(frag.rawLayers).toBe(c.raw);
      expect(frag.layerFiles.map((f) => f.slice(f.lastIndexOf('/') + 1))).toEqual(
        Array.from({ length: c.shape[0] }, (_, i) => `${String(i).padStart(2, '0')}.tif`),
      );
      const [L, H, W] = c.shape;
      for (const [offset, region] of [
        [[0, 0, 0], c.shape],
        [[1, 5, 17], [L - 2, 9, 13]], // inside, crossing strip and tile edges
        [[-1, H - 4, W - 6], [3, 7, 9]], // partly outside: zeros there
        [[L, 0, 0], [2, 3, 3]], // wholly outside
        [[0, 3, 4], [L, 1, 1]], // one pixel through every layer
      ]) {
        const got = await frag.read({ offset, shape: region });
        expect(got.shape).toEqual(region);
        expect(got.data).toBeInstanceOf(Uint16Array);
        expect(Array.from(got.data)).toEqual(expected(c.shape, offset, region, layerValue));
      }
      const ink = await frag.inkLabels();
      const mask = await frag.mask();
      expect(ink?.path).toBe(join(FIXTURES, c.name, c.ink));
      expect(mask?.path).toBe(join(FIXTURES, c.name, c.mask));
      expect(ink?.shape).toEqual([H, W]);
      expect(mask?.shape).toEqual([H, W]);
      const want = (f: (y: number, x: number) => number) => Array.from({ length: H * W }, (_, i) => f(Math.floor(i / W), i % W));
      expect(Array.from(ink!.data)).toEqual(want(inkValue));
      // The Kaggle mask is a 1-bit PNG: set pixels read as 255.
      expect(Array.from(mask!.data)).toEqual(want(maskValue));
    });
  }

  it('rejects regions of the wrong rank with ZarrRegionError', async () => {
    const frag = await openFragment(join(FIXTURES, 'fragment-kaggle'));
    await expect(frag.read({ offset: [0, 0], shape: [1, 1] })).rejects.toThrow(ZarrRegionError);
  });
});

describe('writeFragment / writeTiffStack', () => {
  for (const compression of ['none', 'deflate', 'lzw'] as const) {
    it(`round-trips a fragment exactly (${compression})`, async () => {
      const shape = [3, 19, 26];
      const data = Uint16Array.from({ length: 3 * 19 * 26 }, (_, i) => (i * 40503 + 7) % 65536);
      const ink = Uint8Array.from({ length: 19 * 26 }, (_, i) => (i % 5 === 0 ? 255 : 0));
      const mask = Uint16Array.from({ length: 19 * 26 }, (_, i) => i * 101);
      const dir = join(tmp, `rt-${compression}`);
      await writeFragment(dir, { layers: { data, shape }, inkLabels: { data: ink, shape: [19, 26] }, mask: { data: mask, shape: [19, 26] } }, { compression, layout: 'layers' });
      expect((await readdir(join(dir, 'layers'))).sort()).toEqual(['00.tif', '01.tif', '02.tif']);
      const frag = await openFragment(dir);
      expect(frag.layout).toBe('layers');
      expect(frag.shape).toEqual(shape);
      expect(Array.from((await frag.read({ offset: [0, 0, 0], shape })).data)).toEqual(Array.from(data));
      const win = await frag.read({ offset: [1, 4, 5], shape: [2, 6, 7] });
      expect(Array.from(win.data)).toEqual(expected(shape, [1, 4, 5], [2, 6, 7], (l, y, x) => data[(l * 19 + y) * 26 + x]));
      expect(Array.from((await frag.inkLabels())!.data)).toEqual(Array.from(ink));
      const m = (await frag.mask())!;
      expect(m.data).toBeInstanceOf(Uint16Array);
      expect(Array.from(m.data)).toEqual(Array.from(mask));
    });
  }

  it('names layers with as many digits as the count needs, refuses to overwrite, and prunes stale layers', async () => {
    const dir = join(tmp, 'many');
    const shape = [101, 2, 3];
    const data = Uint16Array.from({ length: 101 * 6 }, (_, i) => i);
    const files = await writeTiffStack(dir, data, { shape, compression: 'none' });
    expect(files[0]).toBe(join(dir, 'surface_volume', '000.tif'));
    expect(files[100]).toBe(join(dir, 'surface_volume', '100.tif'));
    const frag = await openFragment(dir);
    expect(frag.shape).toEqual(shape);
    expect(Array.from((await frag.read({ offset: [0, 0, 0], shape })).data)).toEqual(Array.from(data));
    await expect(writeTiffStack(dir, data, { shape })).rejects.toThrow(FragmentExistsError);
    await writeTiffStack(dir, data.subarray(0, 12), { shape: [2, 2, 3], overwrite: true });
    expect((await readdir(join(dir, 'surface_volume'))).sort()).toEqual(['00.tif', '01.tif']);
    expect((await openFragment(dir)).shape).toEqual([2, 2, 3]);
  });

  it('rejects bad shapes, data and options by field', async () => {
    const d = new Uint16Array(12);
    const dir = join(tmp, 'bad-opts');
    await expect(writeTiffStack(dir, d, { shape: [2, 2] })).rejects.toThrow(ScrollIoOptionError);
    await expect(writeTiffStack(dir, d, { shape: [2, 2, 4] })).rejects.toThrow(/has 12 values/);
    await expect(writeTiffStack(dir, new Uint8Array(12) as unknown as Uint16Array, { shape: [2, 2, 3] })).rejects.toThrow(/Uint16Array/);
    await expect(writeTiffStack(dir, d, { shape: [2, 2, 3], compression: 'jpeg' as 'none' })).rejects.toThrow(/compression/);
    await expect(writeFragment(dir, { layers: { data: d, shape: [2, 2, 3] }, mask: { data: new Uint8Array(6), shape: [3, 2] } })).rejects.toThrow(/mask.shape/);
  });
});

describe('openFragment errors name the file at fault', () => {
  /** A fresh copy of the Kaggle fixture to damage. */
  async function copyKaggle(name: string): Promise<string> {
    const src = join(FIXTURES, 'fragment-kaggle');
    const dir = join(tmp, name);
    await mkdir(join(dir, 'surface_volume'), { recursive: true });
    for (const f of await readdir(join(src, 'surface_volume'))) await copyFile(join(src, 'surface_volume', f), join(dir, 'surface_volume', f));
    for (const f of ['inklabels.png', 'mask.png']) await copyFile(join(src, f), join(dir, f));
    return dir;
  }
  async function failure(dir: string): Promise<Error & { path: string }> {
    const err = await openFragment(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    return err as Error & { path: string };
  }

  it('a missing layer (gap in the numbering)', async () => {
    const dir = await copyKaggle('gap');
    await unlink(join(dir, 'surface_volume', '02.tif'));
    const err = await failure(dir);
    expect(err).toBeInstanceOf(FragmentLayerMissingError);
    expect(err.path).toBe(join(dir, 'surface_volume', '02.tif'));
    expect((err as FragmentLayerMissingError).layer).toBe(2);
  });

  it('a layer of a different size', async () => {
    const dir = await copyKaggle('size');
    await writeTiff16(join(dir, 'surface_volume', '03.tif'), new Uint16Array(37 * 52), 52, 37);
    const err = await failure(dir);
    expect(err).toBeInstanceOf(FragmentShapeError);
    expect(err.path).toBe(join(dir, 'surface_volume', '03.tif'));
    expect(err.message).toMatch(/52x37.*53x37/);
  });

  it('label and mask images of the wrong size', async () => {
    for (const name of ['inklabels.png', 'mask.png']) {
      const dir = await copyKaggle(`label-${name}`);
      await writePng(join(dir, name), new Uint8Array(36 * 53), { width: 53, height: 36, channels: 1 });
      const err = await failure(dir);
      expect(err).toBeInstanceOf(FragmentShapeError);
      expect(err.path).toBe(join(dir, name));
    }
  });

  it('no layer files, no layer folder, two candidate masks', async () => {
    const empty = join(tmp, 'empty');
    await mkdir(join(empty, 'layers'), { recursive: true });
    await writeFile(join(empty, 'layers', 'notes.txt'), 'x');
    let err = await failure(empty);
    expect(err).toBeInstanceOf(FragmentLayoutError);
    expect(err.path).toBe(join(empty, 'layers'));
    err = await failure(join(tmp, 'empty', 'layers'));
    expect(err).toBeInstanceOf(FragmentLayoutError);
    const two = await copyKaggle('two-masks');
    await rm(join(two, 'mask.png'));
    for (const id of ['a', 'b']) await writePng(join(two, `${id}_mask.png`), new Uint8Array(37 * 53), { width: 53, height: 37, channels: 1 });
    err = await failure(two);
    expect(err).toBeInstanceOf(FragmentLayoutError);
    expect(err.message).toMatch(/a_mask.png, b_mask.png/);
  });

  it('no labels: inkLabels() and mask() are undefined', async () => {
    const dir = await copyKaggle('nolabels');
    await rm(join(dir, 'inklabels.png'));
    await rm(join(dir, 'mask.png'));
    const frag = await openFragment(dir);
    expect(await frag.inkLabels()).toBeUndefined();
    expect(await frag.mask()).toBeUndefined();
  });

  it('a corrupt or not-16-bit layer at open, a truncated one at read', async () => {
    const garbage = await copyKaggle('garbage');
    await writeFile(join(garbage, 'surface_volume', '01.tif'), Buffer.from('II*\u0000 this is not a tiff'));
    let err = await failure(garbage);
    expect(err).toBeInstanceOf(TiffError);
    expect(err.path).toBe(join(garbage, 'surface_volume', '01.tif'));

    const eight = await copyKaggle('eight-bit');
    await writePng(join(eight, 'x.png'), new Uint8Array(4), { width: 2, height: 2, channels: 1 });
    const sharp = (await import('sharp')).default;
    await writeFile(join(eight, 'surface_volume', '04.tif'), await sharp(new Uint8Array(37 * 53), { raw: { width: 53, height: 37, channels: 1 } }).toColourspace('b-w').tiff().toBuffer());
    err = await failure(eight);
    expect(err).toBeInstanceOf(TiffError);
    expect(err.message).toMatch(/04\.tif.*expected 1-channel 16-bit/);

    // The deflate-striped layer with its last strips cut off: the header still parses, the rows
    // past the cut cannot be decoded and must raise, not read as zeros.
    const cut = await copyKaggle('truncated');
    const file = join(cut, 'surface_volume', '02.tif');
    const size = (await readFile(file)).length;
    // tifffile writes the IFD first and strips after it, so a cut keeps the header intact.
    await truncate(file, Math.floor(size * 0.6));
    const frag = await openFragment(cut);
    err = (await frag.read({ offset: [2, 0, 0], shape: [1, 37, 53] }).catch((e: unknown) => e)) as Error & { path: string };
    expect(err).toBeInstanceOf(TiffError);
    expect(err.path).toBe(file);
    // Layers before it are untouched.
    const ok = await frag.read({ offset: [0, 30, 0], shape: [2, 7, 53] });
    expect(Array.from(ok.data)).toEqual(expected([8, 37, 53], [0, 30, 0], [2, 7, 53], layerValue));

    // An uncompressed layer (read by positioned reads, not libvips) cut short before opening: the
    // rows past the cut raise, the rows before it read.
    const rawFile = join(cut, 'surface_volume', '00.tif');
    await truncate(rawFile, (await readFile(rawFile)).length - 100);
    const reopened = await openFragment(cut);
    const rawErr = (await reopened.read({ offset: [0, 30, 0], shape: [1, 7, 53] }).catch((e: unknown) => e)) as Error & { path: string };
    expect(rawErr).toBeInstanceOf(TiffError);
    expect(rawErr.path).toBe(rawFile);
    expect(rawErr.message).toMatch(/truncated/);
    expect(Array.from((await reopened.read({ offset: [0, 0, 0], shape: [1, 2, 53] })).data)).toEqual(expected([8, 37, 53], [0, 0, 0], [1, 2, 53], layerValue));

    // A layer replaced after opening (its strips may now lie elsewhere) raises instead of reading stale offsets.
    await writeTiff16(rawFile, new Uint16Array(37 * 53), 53, 37, { compression: 'none' });
    const staleErr = (await reopened.read({ offset: [0, 0, 0], shape: [1, 2, 53] }).catch((e: unknown) => e)) as Error & { path: string };
    expect(staleErr).toBeInstanceOf(TiffError);
    expect(staleErr.path).toBe(rawFile);
    expect(staleErr.message).toMatch(/changed since/);
  });
});
