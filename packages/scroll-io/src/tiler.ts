import type { VolumeArray } from './dtype.js';
import { ScrollIoOptionError } from './errors.js';
import { product, type Region } from './region.js';
import type { Volume } from './volume.js';

/**
 * Origins of the tiles that cover a box for sliding-window inference, in C order (last axis
 * fastest). Along each axis the stride is `tile - overlap`; the last tile is placed flush with the
 * box's far edge (so it may overlap its neighbour by more than `overlap`, never less), and an axis
 * shorter than the tile gets one tile at the box's start (the part beyond the box reads as fill).
 * @param box the box to cover: a shape `[n]` (offset 0) or a {@link Region}
 * @param tile tile extent `[n]`, each >= 1
 * @param overlap voxels shared by neighbouring tiles, one number or one per axis, `0 <= overlap < tile`
 * @returns tile origins `[count][n]`
 */
export function tileRegion(box: number[] | Region, tile: number[], overlap: number | number[] = 0): number[][] {
  const region: Region = Array.isArray(box) ? { offset: box.map(() => 0), shape: box } : box;
  const n = region.shape.length;
  if (!Array.isArray(region.offset) || region.offset.length !== n || !region.shape.every((s) => Number.isSafeInteger(s) && s >= 0) || !region.offset.every(Number.isSafeInteger)) {
    throw new ScrollIoOptionError('region', `expected integer offset and shape (>= 0) of equal rank, received ${JSON.stringify(region)}`);
  }
  if (!Array.isArray(tile) || tile.length !== n || !tile.every((t) => Number.isSafeInteger(t) && t >= 1)) {
    throw new ScrollIoOptionError('tile', `expected ${n} integers >= 1, received ${JSON.stringify(tile)}`);
  }
  const ov = typeof overlap === 'number' ? tile.map(() => overlap) : overlap;
  if (!Array.isArray(ov) || ov.length !== n || !ov.every((o, i) => Number.isSafeInteger(o) && o >= 0 && o < tile[i])) {
    throw new ScrollIoOptionError('overlap', `expected integers in [0, tile) per axis (tile ${JSON.stringify(tile)}), received ${JSON.stringify(overlap)}`);
  }
  if (region.shape.some((s) => s === 0)) return [];
  const perAxis = region.shape.map((s, i) => {
    const lo = region.offset[i];
    if (s <= tile[i]) return [lo];
    const stride = tile[i] - ov[i];
    const out: number[] = [];
    for (let o = 0; o + tile[i] < s; o += stride) out.push(lo + o);
    out.push(lo + s - tile[i]); // flush with the far edge
    return out;
  });
  const origins: number[][] = [];
  const idx = new Array<number>(n).fill(0);
  for (;;) {
    origins.push(idx.map((k, i) => perAxis[i][k]));
    let d = n - 1;
    for (; d >= 0; d--) {
      if (++idx[d] < perAxis[d].length) break;
      idx[d] = 0;
    }
    if (d < 0) return origins;
  }
}

/**
 * Blending weights for stitching overlapped tiles: a separable Gaussian centred on the tile,
 * `w(i) = prod_d exp(-(i_d - c_d)^2 / (2 sigma_d^2))` with `c_d = (tile_d - 1) / 2` and
 * `sigma_d = sigmaFraction * tile_d` (nnU-Net uses 1/8: Isensee et al. 2021, sec. "Inference"), so
 * predictions near a tile's border, which saw less context, count less. Values are clamped below at
 * the smallest positive weight so no voxel of a tile gets weight 0 (a voxel covered by one tile's
 * border alone still gets a defined value after normalisation).
 * @param tile tile extent `[n]`
 * @param sigmaFraction Gaussian sigma as a fraction of the tile extent (> 0, default 1/8)
 * @returns weights of shape `tile`, C order, maximum 1 at the centre
 */
export function gaussianWeights(tile: number[], sigmaFraction = 0.125): Float32Array {
  if (!Array.isArray(tile) || tile.length === 0 || !tile.every((t) => Number.isSafeInteger(t) && t >= 1)) {
    throw new ScrollIoOptionError('tile', `expected integers >= 1, received ${JSON.stringify(tile)}`);
  }
  if (!(typeof sigmaFraction === 'number' && sigmaFraction > 0 && Number.isFinite(sigmaFraction))) {
    throw new ScrollIoOptionError('sigmaFraction', `expected a finite number > 0, received ${sigmaFraction}`);
  }
  const axes = tile.map((t) => {
    const c = (t - 1) / 2;
    const s = sigmaFraction * t;
    return Float64Array.from({ length: t }, (_, i) => Math.exp(-((i - c) ** 2) / (2 * s * s)));
  });
  const out = new Float32Array(product(tile));
  const n = tile.length;
  const idx = new Array<number>(n).fill(0);
  let minPos = Infinity;
  for (let o = 0; o < out.length; o++) {
    let w = 1;
    for (let d = 0; d < n; d++) w *= axes[d][idx[d]];
    out[o] = w;
    if (out[o] > 0 && out[o] < minPos) minPos = out[o];
    for (let d = n - 1; d >= 0; d--) {
      if (++idx[d] < tile[d]) break;
      idx[d] = 0;
    }
  }
  for (let o = 0; o < out.length; o++) if (out[o] === 0) out[o] = minPos;
  return out;
}

/** One inference tile: the image (and label) voxels of the box at `origin`. */
export interface Tile {
  /** First voxel of the tile `[n]`. */
  origin: number[];
  /** Image voxels, `tile` shape in C order (voxels outside the volume take its fill value). */
  image: VolumeArray;
  labels: Record<string, VolumeArray>;
  /** 0-based position in the tile order. */
  index: number;
}

export interface TilerOptions {
  volume: Volume;
  /** Volumes of the same shape read at the same boxes (e.g. a mask or ground truth for evaluation). */
  labels?: Record<string, Volume>;
  /** Tile extent per dimension. */
  tile: number[];
  /** Voxels shared by neighbouring tiles (one number or per axis; default 0). */
  overlap?: number | number[];
  /** The box to cover (default the whole volume). */
  region?: Region;
  /** Tile reads kept in flight ahead of the consumer (default 2; 0 reads on demand). */
  prefetch?: number;
}

/**
 * Reads the tiles of {@link tileRegion} in order, keeping at most `prefetch` reads in flight so that
 * reading overlaps inference while memory stays bounded by the queue (plus the chunk cache).
 */
export class Tiler implements AsyncIterable<Tile> {
  readonly tile: number[];
  readonly region: Region;
  /** Every tile origin, in the order tiles are returned. */
  readonly origins: number[][];
  readonly #volume: Volume;
  readonly #labels: [string, Volume][];
  readonly #prefetch: number;
  #issued = 0;
  #queue: Promise<Tile>[] = [];
  #closed = false;

  constructor(options: TilerOptions) {
    const { volume } = options;
    const n = volume.shape.length;
    const region = options.region ?? { offset: volume.shape.map(() => 0), shape: volume.shape.slice() };
    if (!Array.isArray(region.offset) || region.offset.length !== n || !Array.isArray(region.shape) || region.shape.length !== n) {
      throw new ScrollIoOptionError('region', `expected offset and shape of ${n} entries, received ${JSON.stringify(region)}`);
    }
    this.origins = tileRegion(region, options.tile, options.overlap ?? 0);
    const prefetch = options.prefetch ?? 2;
    if (!Number.isInteger(prefetch) || prefetch < 0) throw new ScrollIoOptionError('prefetch', `expected an integer >= 0, received ${prefetch}`);
    this.#labels = Object.entries(options.labels ?? {});
    for (const [name, lv] of this.#labels) {
      if (lv.shape.length !== n || lv.shape.some((s, i) => s !== volume.shape[i])) {
        throw new ScrollIoOptionError(`labels.${name}`, `shape [${lv.shape.join(', ')}] differs from the volume's [${volume.shape.join(', ')}]`);
      }
    }
    this.#volume = volume;
    this.tile = options.tile.slice();
    this.region = { offset: region.offset.slice(), shape: region.shape.slice() };
    this.#prefetch = prefetch;
    this.#fill();
  }

  /** Number of tiles. */
  get count(): number {
    return this.origins.length;
  }

  /** The next tile, or null after the last one. */
  async next(): Promise<Tile | null> {
    if (this.#closed) throw new ScrollIoOptionError('tiler', 'next() called after close()');
    if (this.#queue.length === 0 && !this.#issue()) return null;
    const head = this.#queue.shift()!;
    this.#fill();
    return head;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Tile> {
    try {
      for (;;) {
        const t = await this.next();
        if (!t) return;
        yield t;
      }
    } finally {
      await this.close();
    }
  }

  /** Stops prefetching and waits for reads in flight to settle. */
  async close(): Promise<void> {
    this.#closed = true;
    const pending = this.#queue;
    this.#queue = [];
    await Promise.allSettled(pending);
  }

  #fill(): void {
    while (!this.#closed && this.#queue.length < this.#prefetch && this.#issue());
  }

  #issue(): boolean {
    if (this.#issued >= this.origins.length) return false;
    const index = this.#issued++;
    const origin = this.origins[index];
    const box: Region = { offset: origin.slice(), shape: this.tile.slice() };
    const promise = (async (): Promise<Tile> => {
      const [image, ...labels] = await Promise.all([this.#volume.read(box), ...this.#labels.map(([, v]) => v.read(box))]);
      const out: Record<string, VolumeArray> = {};
      this.#labels.forEach(([name], i) => {
        out[name] = labels[i].data;
      });
      return { origin: origin.slice(), image: image.data, labels: out, index };
    })();
    // A prefetched read that fails is reported when its tile is requested, not as an unhandled rejection.
    promise.catch(() => undefined);
    this.#queue.push(promise);
    return true;
  }
}
