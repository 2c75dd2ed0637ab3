/**
 * Fragments and segments as the Vesuvius Challenge publishes them (DESIGN.md section 7): a folder of
 * one 16-bit grey TIFF per layer along the sheet normal, `surface_volume/00.tif …` (Kaggle ink
 * detection) or `layers/00.tif …` (segments), beside `inklabels.png` / `*_inklabels.png` and
 * `mask.png` / `*_mask.png`. A fragment reads like a {@link Volume} over (layer, y, x).
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ScrollIoOptionError } from './errors.js';
import { type PngImage, readPng, writePng } from './png.js';
import { checkRegion, mapLimit, type Region } from './region.js';
import {
  checkGrey16,
  type RawStripLayout,
  readRawStripLayout,
  readRawStripWindow,
  readTiffInfo,
  readTiffWindow,
  type TiffCompression,
  TIFF_COMPRESSIONS,
  TiffError,
  writeTiff16,
} from './tiff.js';
import type { RegionData, Volume } from './volume.js';

/** Sub-folders that hold the layers, in the order they are looked for. */
export const FRAGMENT_LAYOUTS = ['surface_volume', 'layers'] as const;
export type FragmentLayout = (typeof FRAGMENT_LAYOUTS)[number];

/** Base class of errors about a fragment folder; `path` is the file or folder at fault. */
export class FragmentError extends Error {
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(`${path}: ${message}`, options);
    this.name = new.target.name;
    this.path = path;
  }
}

/** No layer folder, no layer files, or two candidate label/mask images. */
export class FragmentLayoutError extends FragmentError {}

/** A gap in the layer numbering: `path` is the file that should exist. */
export class FragmentLayerMissingError extends FragmentError {
  readonly layer: number;
  constructor(path: string, layer: number) {
    super(path, `layer ${layer} is missing (the layer files are numbered with a gap)`);
    this.layer = layer;
  }
}

/** A layer or a label/mask image whose size differs from the first layer's. */
export class FragmentShapeError extends FragmentError {
  /** `[height, width]` of the first layer. */
  readonly expected: [number, number];
  /** `[height, width]` of this file. */
  readonly received: [number, number];
  constructor(path: string, expected: [number, number], received: [number, number], reference: string) {
    super(path, `is ${received[1]}x${received[0]} (width x height), ${reference} is ${expected[1]}x${expected[0]}`);
    this.expected = expected;
    this.received = received;
  }
}

/** Layers already present where a fragment is written without `overwrite`. */
export class FragmentExistsError extends FragmentError {}

/** A label or mask image reduced to one channel. */
export interface FragmentImage {
  /** `[height, width]` row-major. */
  data: Uint8Array | Uint16Array;
  shape: [number, number];
  /** The PNG it came from. */
  path: string;
}

export interface OpenFragmentOptions {
  /** Which layer folder to read (default: `surface_volume` if present, else `layers`). */
  layout?: FragmentLayout;
  /** Most layer files decoded at once per `read` (default 8). */
  concurrency?: number;
}

const LAYER_FILE = /^(\d+)\.tiff?$/i;

async function isDir(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isDirectory(), () => false);
}

/** `name.png` or exactly one `*_name.png` in `dir`, or undefined. */
function findImage(dir: string, names: string[], suffix: string): string | undefined {
  if (names.includes(`${suffix}.png`)) return join(dir, `${suffix}.png`);
  const hits = names.filter((n) => n.endsWith(`_${suffix}.png`)).sort();
  if (hits.length > 1) throw new FragmentLayoutError(dir, `holds several ${suffix} images (${hits.join(', ')}); keep one`);
  return hits.length === 1 ? join(dir, hits[0]) : undefined;
}

/** Numbered layer files of a folder, sorted by number; throws on no files or a gap. */
async function listLayers(layerDir: string): Promise<{ files: string[]; first: number }> {
  const numbered: { n: number; name: string; digits: number; ext: string }[] = [];
  for (const name of await readdir(layerDir)) {
    const m = LAYER_FILE.exec(name);
    if (m) numbered.push({ n: Number(m[1]), name, digits: m[1].length, ext: name.slice(m[1].length) });
  }
  if (numbered.length === 0) throw new FragmentLayoutError(layerDir, 'holds no layer files (expected 00.tif, 01.tif, …)');
  numbered.sort((a, b) => a.n - b.n);
  for (let i = 1; i < numbered.length; i++) {
    if (numbered[i].n === numbered[i - 1].n) {
      throw new FragmentLayoutError(layerDir, `holds two files for layer ${numbered[i].n} (${numbered[i - 1].name}, ${numbered[i].name})`);
    }
    if (numbered[i].n !== numbered[i - 1].n + 1) {
      const prev = numbered[i - 1];
      const missing = prev.n + 1;
      throw new FragmentLayerMissingError(join(layerDir, `${String(missing).padStart(prev.digits, '0')}${prev.ext}`), missing);
    }
  }
  return { files: numbered.map((f) => join(layerDir, f.name)), first: numbered[0].n };
}

/**
 * A fragment folder read as a uint16 volume of shape `[layers, height, width]`. Reads touch only the
 * parts of the layer files a region needs: uncompressed striped layers by positioned reads of the
 * window's rows, compressed or tiled ones through libvips (only the strips/tiles touched). Nothing is
 * cached, so repeated reads read again.
 */
export class Fragment implements Volume {
  readonly path: string;
  readonly shape: number[];
  /** One layer at a time: each layer is a separate file. */
  readonly chunks: number[];
  readonly dtype = 'uint16' as const;
  readonly fillValue = 0;
  readonly attributes: Record<string, unknown> = {};
  readonly axes = ['layer', 'y', 'x'];
  readonly layout: FragmentLayout;
  /** Layer files in layer order. */
  readonly layerFiles: string[];
  /** Number in the name of the first layer file (usually 0). */
  readonly firstLayer: number;
  readonly inkLabelsPath?: string;
  readonly maskPath?: string;
  readonly #concurrency: number;
  /** Per layer: the strip layout of an uncompressed page (read without a decoder), else undefined (libvips). */
  readonly #raw: (RawStripLayout | undefined)[];

  private constructor(init: {
    path: string;
    layout: FragmentLayout;
    files: string[];
    raw: (RawStripLayout | undefined)[];
    first: number;
    height: number;
    width: number;
    inkLabelsPath?: string;
    maskPath?: string;
    concurrency: number;
  }) {
    this.path = init.path;
    this.layout = init.layout;
    this.layerFiles = init.files;
    this.firstLayer = init.first;
    this.shape = [init.files.length, init.height, init.width];
    this.chunks = [1, init.height, init.width];
    this.inkLabelsPath = init.inkLabelsPath;
    this.maskPath = init.maskPath;
    this.#concurrency = init.concurrency;
    this.#raw = init.raw;
  }

  /** Number of layers read without a decoder (uncompressed, striped), the rest go through libvips. */
  get rawLayers(): number {
    return this.#raw.filter((r) => r !== undefined).length;
  }

  /** See {@link openFragment}. */
  static async open(dir: string, options: OpenFragmentOptions = {}): Promise<Fragment> {
    const concurrency = options.concurrency ?? 8;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new ScrollIoOptionError('concurrency', `expected an integer >= 1, received ${concurrency}`);
    if (options.layout !== undefined && !FRAGMENT_LAYOUTS.includes(options.layout)) {
      throw new ScrollIoOptionError('layout', `expected one of ${FRAGMENT_LAYOUTS.join(', ')}, received ${String(options.layout)}`);
    }
    if (!(await isDir(dir))) throw new FragmentLayoutError(dir, 'is not a folder');
    let layout = options.layout;
    if (layout === undefined) {
      for (const l of FRAGMENT_LAYOUTS) {
        if (await isDir(join(dir, l))) {
          layout = l;
          break;
        }
      }
      if (layout === undefined) throw new FragmentLayoutError(dir, `holds no layer folder (${FRAGMENT_LAYOUTS.join('/ or ')}/)`);
    } else if (!(await isDir(join(dir, layout)))) {
      throw new FragmentLayoutError(join(dir, layout), 'is not a folder');
    }
    const { files, first } = await listLayers(join(dir, layout));
    // Headers only: every layer must be 16-bit grey of the first layer's size.
    const infos = new Array<{ width: number; height: number }>(files.length);
    const raw = new Array<RawStripLayout | undefined>(files.length);
    await mapLimit(files.keys(), 16, async (i) => {
      const info = await readTiffInfo(files[i]);
      checkGrey16(files[i], info);
      infos[i] = info;
      raw[i] = await readRawStripLayout(files[i]);
      if (raw[i] && (raw[i]!.width !== info.width || raw[i]!.height !== info.height)) {
        throw new TiffError(files[i], `header says ${raw[i]!.width}x${raw[i]!.height}, libvips reads ${info.width}x${info.height}`);
      }
    });
    const { width, height } = infos[0];
    for (let i = 1; i < files.length; i++) {
      if (infos[i].width !== width || infos[i].height !== height) {
        throw new FragmentShapeError(files[i], [height, width], [infos[i].height, infos[i].width], files[0]);
      }
    }
    const names = await readdir(dir);
    const inkLabelsPath = findImage(dir, names, 'inklabels');
    const maskPath = findImage(dir, names, 'mask');
    for (const p of [inkLabelsPath, maskPath]) {
      if (p === undefined) continue;
      const png = await pngSize(p);
      if (png.width !== width || png.height !== height) throw new FragmentShapeError(p, [height, width], [png.height, png.width], `the layers (${files[0]})`);
    }
    return new Fragment({ path: dir, layout, files, raw, first, height, width, inkLabelsPath, maskPath, concurrency });
  }

  /**
   * Reads a box of voxels; voxels outside the fragment read as 0.
   * @param region `{ offset: [layer, y, x], shape: [l, h, w] }`
   * @returns uint16 data of `[l, h, w]`, C order
   */
  async read(region: Region): Promise<RegionData> {
    checkRegion(this.path, 3, region);
    const [l0, y0, x0] = region.offset;
    const [nl, nh, nw] = region.shape;
    const out = new Uint16Array(nl * nh * nw);
    // Intersection with the fragment, in fragment coordinates.
    const lo = [Math.max(l0, 0), Math.max(y0, 0), Math.max(x0, 0)];
    const hi = [Math.min(l0 + nl, this.shape[0]), Math.min(y0 + nh, this.shape[1]), Math.min(x0 + nw, this.shape[2])];
    if (hi[0] > lo[0] && hi[1] > lo[1] && hi[2] > lo[2]) {
      const rect = { left: lo[2], top: lo[1], width: hi[2] - lo[2], height: hi[1] - lo[1] };
      const layers = Array.from({ length: hi[0] - lo[0] }, (_, i) => lo[0] + i);
      await mapLimit(layers, this.#concurrency, async (layer) => {
        const raw = this.#raw[layer];
        const file = this.layerFiles[layer];
        // libvips inflates about twice as fast as node:zlib on the thread pool: deflate layers go
        // through our reader only for windows small enough that skipping libvips' per-call cost
        // and untouched strips wins (measured: 16x64x64 of 2048² layers 19 ms vs 93 ms).
        const direct = raw !== undefined && (raw.compression === 1 || 4 * rect.width * rect.height < this.shape[1] * this.shape[2]);
        const win = direct ? await readRawStripWindow(file, raw, rect) : await readTiffWindow(file, rect); // [rect.height, rect.width]
        const base = (layer - l0) * nh * nw + (lo[1] - y0) * nw + (lo[2] - x0);
        if (rect.width === nw) out.set(win, base);
        else for (let r = 0; r < rect.height; r++) out.set(win.subarray(r * rect.width, (r + 1) * rect.width), base + r * nw);
      });
    }
    return { data: out, shape: [nl, nh, nw] };
  }

  /** The ink labels image (`[height, width]`, first channel of colour images), or undefined when absent. */
  inkLabels(): Promise<FragmentImage | undefined> {
    return this.inkLabelsPath === undefined ? Promise.resolve(undefined) : readImage(this.inkLabelsPath);
  }

  /** The mask image (`[height, width]`, first channel of colour images), or undefined when absent. */
  mask(): Promise<FragmentImage | undefined> {
    return this.maskPath === undefined ? Promise.resolve(undefined) : readImage(this.maskPath);
  }
}

async function pngSize(path: string): Promise<{ width: number; height: number }> {
  const png = await readPng(path);
  return { width: png.width, height: png.height };
}

async function readImage(path: string): Promise<FragmentImage> {
  const png: PngImage = await readPng(path);
  const { width, height, channels } = png;
  let data = png.data;
  if (channels !== 1) {
    // Labels published as RGB(A) carry the same value in every colour channel: keep the first.
    const one = data instanceof Uint16Array ? new Uint16Array(width * height) : new Uint8Array(width * height);
    for (let i = 0; i < one.length; i++) one[i] = data[i * channels];
    data = one;
  }
  return { data, shape: [height, width], path };
}

/**
 * Opens a fragment / segment folder: layers from `surface_volume/NN.tif` or `layers/NN.tif` (any
 * count, zero-padded or not, ordered by number), ink labels from `inklabels.png` or `*_inklabels.png`
 * and the mask from `mask.png` or `*_mask.png`. Every layer header is checked at open.
 * @throws FragmentLayoutError no layer folder or files; FragmentLayerMissingError a gap in the
 *   numbering; FragmentShapeError a layer or image of another size; TiffError a layer that is not a
 *   readable 16-bit grey TIFF.
 */
export function openFragment(dir: string, options: OpenFragmentOptions = {}): Promise<Fragment> {
  return Fragment.open(dir, options);
}

export interface WriteTiffStackOptions {
  /** `[layers, height, width]` of `data`. */
  shape: number[];
  /** Layer folder (default `surface_volume`). */
  layout?: FragmentLayout;
  /** Default `deflate`. */
  compression?: TiffCompression;
  /** Replace layers already there (and remove numbered layer files beyond the new count). Default false. */
  overwrite?: boolean;
}

function checkShape(field: string, shape: unknown, rank: number): number[] {
  if (!Array.isArray(shape) || shape.length !== rank || !shape.every((s) => Number.isInteger(s) && s >= 1)) {
    throw new ScrollIoOptionError(field, `expected ${rank} integers >= 1, received ${JSON.stringify(shape)}`);
  }
  return shape as number[];
}

/**
 * Writes a stack of 16-bit grey TIFFs, one file per layer (`dir/<layout>/00.tif …`, names padded to
 * at least two digits), each atomically (temporary file, then rename).
 * @param data `[layers, height, width]` C order
 */
export async function writeTiffStack(dir: string, data: Uint16Array, options: WriteTiffStackOptions): Promise<string[]> {
  const [nl, h, w] = checkShape('shape', options.shape, 3);
  const layout = options.layout ?? 'surface_volume';
  if (!FRAGMENT_LAYOUTS.includes(layout)) throw new ScrollIoOptionError('layout', `expected one of ${FRAGMENT_LAYOUTS.join(', ')}, received ${String(layout)}`);
  const compression = options.compression ?? 'deflate';
  if (!TIFF_COMPRESSIONS.includes(compression)) throw new ScrollIoOptionError('compression', `expected one of ${TIFF_COMPRESSIONS.join(', ')}, received ${String(compression)}`);
  if (!(data instanceof Uint16Array)) throw new ScrollIoOptionError('data', 'expected a Uint16Array');
  if (data.length !== nl * h * w) throw new ScrollIoOptionError('data', `has ${data.length} values, shape [${nl}, ${h}, ${w}] needs ${nl * h * w}`);
  const layerDir = join(dir, layout);
  const existing = (await isDir(layerDir)) ? (await readdir(layerDir)).filter((n) => LAYER_FILE.test(n)) : [];
  if (existing.length > 0 && !options.overwrite) throw new FragmentExistsError(layerDir, `already holds ${existing.length} layer files (pass overwrite: true to replace them)`);
  const digits = Math.max(2, String(nl - 1).length);
  const files = Array.from({ length: nl }, (_, i) => join(layerDir, `${String(i).padStart(digits, '0')}.tif`));
  await mapLimit(files.keys(), 4, async (i) => {
    await writeTiff16(files[i], data.subarray(i * h * w, (i + 1) * h * w), w, h, { compression });
  });
  // Old layer files that are not part of the new stack would make the folder read as another stack.
  const keep = new Set(files.map((f) => f.slice(layerDir.length + 1)));
  for (const name of existing) if (!keep.has(name)) await unlink(join(layerDir, name));
  return files;
}

/** A 2-D image to write beside the layers: `[height, width]` row-major. */
export interface FragmentImageInput {
  data: Uint8Array | Uint16Array;
  shape: number[];
}

export interface WriteFragmentInput {
  /** The layers, `[layers, height, width]`. */
  layers: { data: Uint16Array; shape: number[] };
  /** Written as `inklabels.png` (8-bit grey for Uint8Array, 16-bit for Uint16Array). */
  inkLabels?: FragmentImageInput;
  /** Written as `mask.png`. */
  mask?: FragmentImageInput;
}

export interface WriteFragmentOptions {
  layout?: FragmentLayout;
  compression?: TiffCompression;
  overwrite?: boolean;
}

/**
 * Writes a whole fragment folder in the Kaggle layout: `<layout>/00.tif …`, `inklabels.png`,
 * `mask.png`; every file atomically. Images must be `[height, width]` of the layers.
 */
export async function writeFragment(dir: string, input: WriteFragmentInput, options: WriteFragmentOptions = {}): Promise<void> {
  const [, h, w] = checkShape('layers.shape', input.layers?.shape, 3);
  const images: [string, FragmentImageInput | undefined][] = [
    ['inkLabels', input.inkLabels],
    ['mask', input.mask],
  ];
  for (const [field, img] of images) {
    if (img === undefined) continue;
    const [ih, iw] = checkShape(`${field}.shape`, img.shape, 2);
    if (ih !== h || iw !== w) throw new ScrollIoOptionError(`${field}.shape`, `is [${ih}, ${iw}], the layers are [${h}, ${w}]`);
  }
  await writeTiffStack(dir, input.layers.data, { shape: input.layers.shape, layout: options.layout, compression: options.compression, overwrite: options.overwrite });
  if (input.inkLabels) await writePng(join(dir, 'inklabels.png'), input.inkLabels.data, { width: w, height: h, channels: 1 });
  if (input.mask) await writePng(join(dir, 'mask.png'), input.mask.data, { width: w, height: h, channels: 1 });
}
