/**
 * A flattened fragment of the synthetic scroll (DESIGN.md sections 6 and 7): one wrap of the spiral
 * unrolled into the Kaggle ink-detection layout, with its layers sampled along the sheet normal, so
 * that the fragment-side models train and are checked on data whose every pixel has a known origin.
 *
 * Fragment pixel (row, col) is the unrolled-sheet point z = row, s = sStart + col (one voxel of arc
 * length per column, s measured along the undisturbed spiral as in phantom.ts). Layer l samples the
 * CT image at
 *   voxel = point + (l − (layers − 1) / 2) · step · normal
 * with point and normal the wrap's centre surface and unit outward normal there ({@link sheetAt}):
 * the middle layer is the centre surface, higher layers lie outward, towards the recto and its ink.
 */
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWriteFile, createVolume, FragmentExistsError, product, replaceDirectory, writeFragment } from '@goe/scroll-io';
import { type PhantomConfig, PhantomConfigError } from './config.js';
import { arcOfTheta, phantomRegion, sheetAt } from './phantom.js';

export interface PhantomFragmentOptions {
  /** Which turn of the spiral to flatten, 0 innermost (default the middle one, `Math.floor(wraps / 2)`). */
  wrap?: number;
  /** Number of layers along the normal (default 65, as in the Kaggle fragments). */
  layers?: number;
  /** Distance between consecutive layers along the normal, in voxels (default 1). */
  step?: number;
  /** Replace an existing `outDir/fragment`. Default false. */
  overwrite?: boolean;
  /**
   * Most voxels of one phantom computation (default 2^21: phantomRegion holds about 50 bytes a voxel
   * in float64 work arrays and the fibre and normal fields, so about 100 MB). A strip of rows whose
   * sample points need a larger box is split into shorter arcs of columns. The output does not depend on it.
   */
  maxBoxVoxels?: number;
}

/** What {@link writePhantomFragment} wrote and the geometry of the fragment. */
export interface PhantomFragment {
  /** The fragment folder, `outDir/fragment`. */
  dir: string;
  /** Layer files `surface_volume/00.tif …`, in layer order. */
  layerFiles: string[];
  inkLabels: string;
  mask: string;
  /** Zarr v2 float32 array `[6, height, width]`: z, y, x of the centre-surface point, then nz, ny, nx of the normal. */
  mapping: string;
  /** `fragment.json`: the geometry below and the phantom configuration. */
  metadata: string;
  wrap: number;
  layers: number;
  step: number;
  /** Arc length of column 0 (θ = thetaStart). */
  sStart: number;
  /** θ range of the wrap covered by the columns, `[thetaStart, thetaEnd)`. */
  thetaStart: number;
  thetaEnd: number;
  /** Rows (= config.shape[0]). */
  height: number;
  /** Columns: one per voxel of arc length of the wrap. */
  width: number;
}

const OPTION_KEYS = ['wrap', 'layers', 'step', 'overwrite', 'maxBoxVoxels'] as const;
const TWO_PI = 2 * Math.PI;
/** Fragment rows sampled per phantom computation. */
const STRIP_ROWS = 16;
const MAPPING_CHANNELS = ['z', 'y', 'x', 'nz', 'ny', 'nx'] as const;


function resolveOptions(config: PhantomConfig, options: PhantomFragmentOptions) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new PhantomConfigError('options', `expected an object, received ${JSON.stringify(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!(OPTION_KEYS as readonly string[]).includes(key)) throw new PhantomConfigError(key, `unknown option (known: ${OPTION_KEYS.join(', ')})`);
  }
  // A fractional `wraps` ends inside its last turn, which still counts as a wrap.
  const lastWrap = Math.ceil(config.wraps) - 1;
  const wrap = options.wrap ?? Math.floor(config.wraps / 2);
  if (!Number.isSafeInteger(wrap) || wrap < 0 || wrap > lastWrap) throw new PhantomConfigError('wrap', `expected an integer in [0, ${lastWrap}], received ${JSON.stringify(wrap)}`);
  const layers = options.layers ?? 65;
  if (!Number.isSafeInteger(layers) || layers < 1) throw new PhantomConfigError('layers', `expected an integer >= 1, received ${JSON.stringify(layers)}`);
  const step = options.step ?? 1;
  if (typeof step !== 'number' || !Number.isFinite(step) || step <= 0) throw new PhantomConfigError('step', `expected a finite number > 0, received ${JSON.stringify(step)}`);
  const overwrite = options.overwrite ?? false;
  if (typeof overwrite !== 'boolean') throw new PhantomConfigError('overwrite', `expected a boolean, received ${JSON.stringify(overwrite)}`);
  const maxBoxVoxels = options.maxBoxVoxels ?? 1 << 21;
  if (!Number.isSafeInteger(maxBoxVoxels) || maxBoxVoxels < 1) throw new PhantomConfigError('maxBoxVoxels', `expected an integer >= 1, received ${JSON.stringify(maxBoxVoxels)}`);
  return { wrap, layers, step, overwrite, maxBoxVoxels };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Flattens one wrap of the phantom into `outDir/fragment/`, the Kaggle ink-detection layout that
 * `openFragment` of @goe/scroll-io reads:
 * - `surface_volume/00.tif …` one 16-bit grey TIFF per layer, `[height, width]` each; uint8 phantoms
 *   are scaled by 257 (255 → 65535), uint16 ones kept;
 * - `inklabels.png` (8-bit, 255 where the recto of this wrap carries ink, else 0) and `mask.png`
 *   (8-bit, 255 where the sheet exists: not torn and its centre point inside the volume);
 * - `mapping.zarr`, float32 `[6, height, width]`: z, y, x of each pixel's centre-surface point and
 *   nz, ny, nx of its unit outward normal, so that layer l of pixel (row, col) is the voxel
 *   point + (l − (layers − 1) / 2) · step · normal;
 * - `fragment.json`: wrap, layers, step, sStart, width, height, that formula and the phantom config.
 *
 * Samples are trilinear interpolations of the phantom image; samples outside the volume read 0. The
 * phantom is never computed for the whole scroll: only over the bounding box of the sample points of
 * a strip of 16 rows (it is a pure function of voxel coordinates, so strips are independent), and a
 * strip whose box exceeds `maxBoxVoxels` is split into shorter arcs of columns, so that one phantom
 * computation holds about 100 MB at most by default. The output layers are held in memory until written:
 * layers × height × width × 2 bytes, plus 25 bytes a pixel for mapping, ink and mask (e.g. 65 layers
 * of 64 × 400 pixels: 3.3 MB + 0.6 MB).
 *
 * Output is atomic: everything is written into a hidden temporary sibling folder that is renamed to
 * `fragment` at the end and removed on any failure, so a failed call leaves no `fragment` behind.
 * @param outDir parent folder (created if missing)
 * @param config a resolved configuration (`resolvePhantomConfig`)
 * @throws PhantomConfigError an unknown option, a wrap out of range, layers < 1, step <= 0 or
 *   maxBoxVoxels < 1 (field names the option); FragmentExistsError `outDir/fragment` exists and `overwrite` is not true
 */
export async function writePhantomFragment(outDir: string, config: PhantomConfig, options: PhantomFragmentOptions = {}): Promise<PhantomFragment> {
  const { wrap, layers, step, overwrite, maxBoxVoxels } = resolveOptions(config, options);
  const target = join(outDir, 'fragment');
  // Fail before any work or any file: the check is repeated just before the final rename.
  if (!overwrite && (await exists(target))) throw new FragmentExistsError(target, 'already exists (pass overwrite: true to replace it)');

  // Columns cover the wrap's θ range [2πk, 2π(k + 1)) clipped to the spiral's end, half-open so that
  // consecutive wraps' fragments tile the sheet without a shared column.
  const thetaStart = TWO_PI * wrap;
  const thetaEnd = Math.min(TWO_PI * (wrap + 1), TWO_PI * config.wraps);
  const sStart = arcOfTheta(config, thetaStart);
  const width = Math.max(1, Math.ceil(arcOfTheta(config, thetaEnd) - sStart));
  const [D, H, W] = config.shape;
  const height = D;
  const plane = height * width;

  const out = new Uint16Array(layers * plane);
  const ink = new Uint8Array(plane);
  const mask = new Uint8Array(plane);
  const mapping = new Float32Array(6 * plane);
  const scale = config.dtype === 'uint8' ? 257 : 1;
  const half = (layers - 1) / 2;
  const inside = (z: number, y: number, x: number) => z >= 0 && z <= D - 1 && y >= 0 && y <= H - 1 && x >= 0 && x <= W - 1;

  const shape = [D, H, W];
  // Samples of one strip of rows: float64 centre points and normals `[nr, width, 6]`.
  let geo = new Float64Array(0);
  let r0 = 0;
  let nr = 0;

  /** Interpolates the layers of columns [c0, c1) of the current strip, splitting the columns while the phantom box is too large. */
  const sampleColumns = (c0: number, c1: number): void => {
    const lo = [Infinity, Infinity, Infinity];
    const hi = [-Infinity, -Infinity, -Infinity];
    for (let i = 0; i < nr; i++)
      for (let col = c0; col < c1; col++) {
        const g = 6 * (i * width + col);
        for (let a = 0; a < 3; a++) {
          // The samples of a pixel lie on a segment: its two ends bound them all.
          const e = half * step * geo[g + 3 + a];
          lo[a] = Math.min(lo[a], geo[g + a] - e, geo[g + a] + e);
          hi[a] = Math.max(hi[a], geo[g + a] - e, geo[g + a] + e);
        }
      }
    // Voxels the interpolation may touch, clipped to the volume (outside reads 0 anyway). One voxel
    // of slack each side absorbs rounding of the intermediate sample positions.
    const bLo = lo.map((v) => Math.max(0, Math.floor(v) - 1));
    const bHi = hi.map((v, a) => Math.min(shape[a] - 1, Math.floor(v) + 2));
    if (bLo.some((v, a) => v > bHi[a])) return; // every sample is outside the volume
    const bs = bLo.map((v, a) => bHi[a] - v + 1);
    if (product(bs) > maxBoxVoxels && c1 - c0 > 1) {
      // Shorter arcs of the wrap have smaller boxes.
      const mid = (c0 + c1) >> 1;
      sampleColumns(c0, mid);
      sampleColumns(mid, c1);
      return;
    }
    const image = phantomRegion(config, { offset: bLo, shape: bs }).image;
    const sy = bs[2];
    const sz = bs[1] * bs[2];
    for (let i = 0; i < nr; i++)
      for (let col = c0; col < c1; col++) {
        const g = 6 * (i * width + col);
        const o = (r0 + i) * width + col;
        for (let l = 0; l < layers; l++) {
          const t = (l - half) * step;
          const z = geo[g] + t * geo[g + 3];
          const y = geo[g + 1] + t * geo[g + 4];
          const x = geo[g + 2] + t * geo[g + 5];
          if (!inside(z, y, x)) continue;
          const z0 = Math.floor(z);
          const y0 = Math.floor(y);
          const x0 = Math.floor(x);
          const fz = z - z0;
          const fy = y - y0;
          const fx = x - x0;
          // At the last voxel of an axis the weight of the next one is 0: stay inside the box.
          const dz = z0 < D - 1 ? sz : 0;
          const dy = y0 < H - 1 ? sy : 0;
          const dx = x0 < W - 1 ? 1 : 0;
          const p = (z0 - bLo[0]) * sz + (y0 - bLo[1]) * sy + (x0 - bLo[2]);
          const c00 = image[p] * (1 - fx) + image[p + dx] * fx;
          const c01 = image[p + dy] * (1 - fx) + image[p + dy + dx] * fx;
          const c10 = image[p + dz] * (1 - fx) + image[p + dz + dx] * fx;
          const c11 = image[p + dz + dy] * (1 - fx) + image[p + dz + dy + dx] * fx;
          const v = ((c00 * (1 - fy) + c01 * fy) * (1 - fz) + (c10 * (1 - fy) + c11 * fy) * fz) * scale;
          out[l * plane + o] = Math.min(65535, Math.round(v));
        }
      }
  };

  for (r0 = 0; r0 < height; r0 += STRIP_ROWS) {
    nr = Math.min(STRIP_ROWS, height - r0);
    geo = new Float64Array(6 * nr * width);
    for (let i = 0; i < nr; i++)
      for (let col = 0; col < width; col++) {
        const row = r0 + i;
        const sp = sheetAt(config, sStart + col, row);
        const g = 6 * (i * width + col);
        const o = row * width + col;
        for (let a = 0; a < 3; a++) {
          geo[g + a] = sp.point[a];
          geo[g + 3 + a] = sp.normal[a];
          mapping[a * plane + o] = sp.point[a];
          mapping[(3 + a) * plane + o] = sp.normal[a];
        }
        if (sp.present && inside(sp.point[0], sp.point[1], sp.point[2])) {
          mask[o] = 255;
          if (sp.ink) ink[o] = 255;
        }
      }
    sampleColumns(0, width);
  }

  await mkdir(outDir, { recursive: true });
  // Hidden sibling on the same filesystem, so the final rename is atomic.
  const tmp = await mkdtemp(join(outDir, '.fragment-'));
  try {
    await writeFragment(tmp, { layers: { data: out, shape: [layers, height, width] }, inkLabels: { data: ink, shape: [height, width] }, mask: { data: mask, shape: [height, width] } });
    const map = await createVolume(join(tmp, 'mapping.zarr'), {
      shape: [6, height, width],
      chunks: [6, Math.min(height, 256), Math.min(width, 256)],
      dtype: 'float32',
      compressor: 'zstd',
      dimensionNames: ['channel', 'row', 'col'],
      attributes: { channels: [...MAPPING_CHANNELS] },
    });
    await map.write({ offset: [0, 0, 0], shape: [6, height, width] }, mapping);
    const meta = {
      wrap,
      layers,
      step,
      sStart,
      width,
      height,
      thetaStart,
      thetaEnd,
      mapping: { path: 'mapping.zarr', channels: [...MAPPING_CHANNELS] },
      formula:
        'Pixel (row, col) is the unrolled-sheet point z = row, s = sStart + col; layer l samples the phantom image by trilinear interpolation at voxel = point + (layer - (layers-1)/2) * step * normal, with point (z, y, x) and the unit outward normal (nz, ny, nx) read from mapping.zarr at (row, col); samples outside the volume read 0.',
      phantom: config,
    };
    await atomicWriteFile(join(tmp, 'fragment.json'), `${JSON.stringify(meta, null, 2)}\n`);
    await publish(tmp, target, overwrite);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  const digits = Math.max(2, String(layers - 1).length);
  return {
    dir: target,
    layerFiles: Array.from({ length: layers }, (_, l) => join(target, 'surface_volume', `${String(l).padStart(digits, '0')}.tif`)),
    inkLabels: join(target, 'inklabels.png'),
    mask: join(target, 'mask.png'),
    mapping: join(target, 'mapping.zarr'),
    metadata: join(target, 'fragment.json'),
    wrap,
    layers,
    step,
    sStart,
    thetaStart,
    thetaEnd,
    height,
    width,
  };
}

/** Renames the finished folder `tmp` to `target`, replacing an existing one only with `overwrite`. */
async function publish(tmp: string, target: string, overwrite: boolean): Promise<void> {
  if (!overwrite && (await exists(target))) throw new FragmentExistsError(target, 'already exists (pass overwrite: true to replace it)');
  await replaceDirectory(tmp, target);
}
