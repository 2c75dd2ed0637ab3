import type { VolumeArray } from './dtype.js';
import { ScrollIoOptionError } from './errors.js';
import type { Region } from './region.js';
import type { Volume } from './volume.js';

/** One training patch: voxels of the image and of each label volume at the same box. */
export interface Patch {
  /** First voxel of the patch in volume coordinates `[n]`. */
  origin: number[];
  /** Image voxels, `patchShape` in C order. */
  image: VolumeArray;
  /** Label voxels per label name, `patchShape` in C order. */
  labels: Record<string, VolumeArray>;
  /** 0-based number of this patch in the sampler's stream. */
  index: number;
}

/** A sampler's position, to store in a checkpoint; restoring it replays the same subsequent patches. */
export interface PatchSamplerState {
  seed: number;
  /** SplitMix32 state before the next patch's origin is drawn. */
  rng: number;
  /** Patches handed out so far. */
  drawn: number;
}

export interface PatchSamplerOptions {
  volume: Volume;
  /** Label volumes of the same shape as `volume`, read at the same boxes. */
  labels?: Record<string, Volume>;
  /** Patch extent per dimension, e.g. `[d, h, w]`. */
  patchShape: number[];
  /** Sample only patches wholly inside this box (default: the whole volume). */
  region?: Region;
  seed: number;
  /** Reads kept in flight ahead of the consumer (default 2; 0 reads on demand). */
  prefetch?: number;
}

/**
 * A seeded stream of the host-side uniform generator SplitMix32 (the same mixing as @goe/tf's
 * `makeRng`), kept here so that reading data never depends on a tensor library.
 */
function splitmix32(state: number): { value: number; state: number } {
  const s = (state + 0x9e3779b9) >>> 0;
  let z = s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return { value: (z >>> 0) / 4294967296, state: s };
}

function seedState(seed: number): number {
  return (Math.imul(seed | 0, 0x9e3779b9) ^ 0x85ebca6b) >>> 0;
}

interface Pending {
  rngBefore: number;
  promise: Promise<Patch>;
}

/**
 * Draws random patches (uniform origins such that the patch lies inside `region`) from a volume and
 * its label volumes, keeping `prefetch` reads in flight so reading overlaps the consumer's compute.
 * The origins depend only on the seed and the number of patches drawn, so `state()` / `restore()`
 * resume the exact stream after a checkpoint.
 */
export class PatchSampler {
  readonly patchShape: number[];
  readonly region: Region;
  readonly seed: number;
  readonly #volume: Volume;
  readonly #labels: [string, Volume][];
  readonly #prefetch: number;
  #rng: number;
  #issued: number;
  #queue: Pending[] = [];
  #closed = false;

  constructor(options: PatchSamplerOptions) {
    const { volume, patchShape } = options;
    const n = volume.shape.length;
    if (!Array.isArray(patchShape) || patchShape.length !== n || !patchShape.every((p) => Number.isInteger(p) && p >= 1)) {
      throw new ScrollIoOptionError('patchShape', `expected ${n} integers >= 1 (the volume is ${n}-D), received ${JSON.stringify(patchShape)}`);
    }
    const region = options.region ?? { offset: volume.shape.map(() => 0), shape: volume.shape.slice() };
    if (!Array.isArray(region.offset) || region.offset.length !== n || !Array.isArray(region.shape) || region.shape.length !== n) {
      throw new ScrollIoOptionError('region', `expected offset and shape of ${n} entries, received ${JSON.stringify(region)}`);
    }
    for (let i = 0; i < n; i++) {
      const lo = region.offset[i];
      const hi = lo + region.shape[i];
      if (!Number.isInteger(lo) || !Number.isInteger(region.shape[i]) || lo < 0 || hi > volume.shape[i]) {
        throw new ScrollIoOptionError('region', `dimension ${i} spans [${lo}, ${hi}), outside the volume's [0, ${volume.shape[i]})`);
      }
      if (region.shape[i] < patchShape[i]) {
        throw new ScrollIoOptionError('region', `dimension ${i} is ${region.shape[i]} voxels, smaller than the patch (${patchShape[i]})`);
      }
    }
    if (!Number.isInteger(options.seed)) throw new ScrollIoOptionError('seed', `expected an integer, received ${options.seed}`);
    const prefetch = options.prefetch ?? 2;
    if (!Number.isInteger(prefetch) || prefetch < 0) throw new ScrollIoOptionError('prefetch', `expected an integer >= 0, received ${prefetch}`);
    this.#labels = Object.entries(options.labels ?? {});
    for (const [name, lv] of this.#labels) {
      if (lv.shape.length !== n || lv.shape.some((s, i) => s !== volume.shape[i])) {
        throw new ScrollIoOptionError(`labels.${name}`, `shape [${lv.shape.join(', ')}] differs from the volume's [${volume.shape.join(', ')}]`);
      }
    }
    this.#volume = volume;
    this.patchShape = patchShape.slice();
    this.region = { offset: region.offset.slice(), shape: region.shape.slice() };
    this.seed = options.seed;
    this.#prefetch = prefetch;
    this.#rng = seedState(options.seed);
    this.#issued = 0;
    this.#fill();
  }

  /** The next patch of the stream. */
  async next(): Promise<Patch> {
    if (this.#closed) throw new ScrollIoOptionError('sampler', 'next() called after close()');
    if (this.#queue.length === 0) this.#issue();
    const head = this.#queue.shift()!;
    this.#fill();
    return head.promise;
  }

  /** The position after the last patch returned by `next()` (prefetched patches are not counted). */
  state(): PatchSamplerState {
    const head = this.#queue[0];
    return {
      seed: this.seed,
      rng: head ? head.rngBefore : this.#rng,
      drawn: this.#issued - this.#queue.length,
    };
  }

  /** Resumes from a {@link state}: the following patches equal those that followed it originally. */
  restore(state: PatchSamplerState): void {
    if (state.seed !== this.seed) throw new ScrollIoOptionError('state.seed', `sampler has seed ${this.seed}, state has ${state.seed}`);
    if (!Number.isInteger(state.rng) || state.rng < 0 || state.rng > 0xffffffff) throw new ScrollIoOptionError('state.rng', `expected a uint32, received ${state.rng}`);
    if (!Number.isInteger(state.drawn) || state.drawn < 0) throw new ScrollIoOptionError('state.drawn', `expected an integer >= 0, received ${state.drawn}`);
    // Reads already in flight finish unobserved (their rejections are already handled).
    this.#queue = [];
    this.#rng = state.rng;
    this.#issued = state.drawn;
    this.#fill();
  }

  /** Stops prefetching and waits for reads in flight to settle. */
  async close(): Promise<void> {
    this.#closed = true;
    const pending = this.#queue.map((p) => p.promise);
    this.#queue = [];
    await Promise.allSettled(pending);
  }

  #fill(): void {
    while (!this.#closed && this.#queue.length < this.#prefetch) this.#issue();
  }

  #issue(): void {
    const rngBefore = this.#rng;
    const origin = this.region.offset.map((lo, i) => {
      const r = splitmix32(this.#rng);
      this.#rng = r.state;
      return lo + Math.floor(r.value * (this.region.shape[i] - this.patchShape[i] + 1));
    });
    const index = this.#issued++;
    const box: Region = { offset: origin, shape: this.patchShape.slice() };
    const promise = (async (): Promise<Patch> => {
      const [image, ...labels] = await Promise.all([this.#volume.read(box), ...this.#labels.map(([, v]) => v.read(box))]);
      const out: Record<string, VolumeArray> = {};
      this.#labels.forEach(([name], i) => {
        out[name] = labels[i].data;
      });
      return { origin, image: image.data, labels: out, index };
    })();
    // A prefetched read that fails is reported when its patch is requested, not as an unhandled rejection.
    promise.catch(() => undefined);
    this.#queue.push({ rngBefore, promise });
  }
}
