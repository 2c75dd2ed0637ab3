import type { VolumeArray } from './dtype.js';
import { ScrollIoOptionError } from './errors.js';
import { mapLimit, type Region } from './region.js';
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
  /**
   * Sample only patches whose centre voxel (`origin + floor(patchShape / 2)`) is non-zero in this
   * volume (same shape as `volume`), e.g. a fragment's papyrus mask.
   */
  mask?: Volume;
  /**
   * Weight the draw toward labelled voxels: a `fraction` of the patches (in expectation) have their
   * centre voxel non-zero in `labels[label]`, the rest zero (when one kind does not occur, all patches
   * are of the other). Ink is a few per cent of a fragment; uniform draws would rarely show it.
   */
  balance?: { label: string; fraction: number };
  /**
   * Spacing of the candidate origins evaluated when `mask` or `balance` is given (default
   * `max(1, floor(patchShape / 4))` per axis). Origins then lie on this grid, starting at the region's
   * offset; the mask and label are read once at each candidate's centre, so a coarse grid keeps the
   * set-up cheap on large volumes.
   */
  gridStep?: number[];
}

/** Candidate origins on the coarse grid, split by the balance label (linear grid indices, C order). */
interface Candidates {
  positive: Uint32Array;
  negative: Uint32Array;
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
 * resume the exact stream after a checkpoint. With `mask` or `balance`, origins are drawn from a coarse
 * grid of candidates evaluated once (lazily, on the first patch), restricted to the mask and split by
 * label so that a chosen fraction of patches is centred on labelled voxels.
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
  readonly #mask?: Volume;
  readonly #balance?: { label: Volume; fraction: number };
  readonly #grid?: { step: number[]; counts: number[] };
  #candidates?: Promise<Candidates>;

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
    if (options.mask) {
      const mv = options.mask;
      if (mv.shape.length !== n || mv.shape.some((s, i) => s !== volume.shape[i])) {
        throw new ScrollIoOptionError('mask', `shape [${mv.shape.join(', ')}] differs from the volume's [${volume.shape.join(', ')}]`);
      }
      this.#mask = mv;
    }
    if (options.balance !== undefined) {
      const b = options.balance;
      const lv = this.#labels.find(([name]) => name === b?.label)?.[1];
      if (!lv) throw new ScrollIoOptionError('balance.label', `expected one of the labels (${this.#labels.map(([k]) => k).join(', ') || 'none given'}), received ${JSON.stringify(b?.label)}`);
      if (typeof b.fraction !== 'number' || !(b.fraction >= 0 && b.fraction <= 1)) {
        throw new ScrollIoOptionError('balance.fraction', `expected a number in [0, 1], received ${b.fraction}`);
      }
      this.#balance = { label: lv, fraction: b.fraction };
    }
    if (options.gridStep !== undefined && (!Array.isArray(options.gridStep) || options.gridStep.length !== n || !options.gridStep.every((g) => Number.isInteger(g) && g >= 1))) {
      throw new ScrollIoOptionError('gridStep', `expected ${n} integers >= 1, received ${JSON.stringify(options.gridStep)}`);
    }
    if (this.#mask || this.#balance) {
      const step = options.gridStep ?? patchShape.map((p) => Math.max(1, Math.floor(p / 4)));
      this.#grid = { step: step.slice(), counts: region.shape.map((s, i) => Math.floor((s - patchShape[i]) / step[i]) + 1) };
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

  /** The candidate origin chosen by two uniform draws `[u0, u1]` (u0: labelled or not, u1: which). */
  async #candidateOrigin([u0, u1]: [number, number]): Promise<number[]> {
    this.#candidates ??= this.#findCandidates();
    const { positive, negative } = await this.#candidates;
    let set: Uint32Array;
    if (this.#balance && positive.length > 0 && negative.length > 0) set = u0 < this.#balance.fraction ? positive : negative;
    else set = positive.length > 0 ? positive : negative;
    let k = set[Math.floor(u1 * set.length)];
    const { step, counts } = this.#grid!;
    const origin = new Array<number>(counts.length);
    for (let i = counts.length - 1; i >= 0; i--) {
      origin[i] = this.region.offset[i] + (k % counts[i]) * step[i];
      k = Math.floor(k / counts[i]);
    }
    return origin;
  }

  /**
   * Reads the mask and balance label at every candidate's centre voxel, one row of candidates (along
   * the last axis) per read, and keeps those inside the mask, split by label.
   */
  async #findCandidates(): Promise<Candidates> {
    const { step, counts } = this.#grid!;
    const n = counts.length;
    const total = counts.reduce((a, b) => a * b, 1);
    const last = n - 1;
    const rowLen = counts[last];
    const rows = total / rowLen;
    const keep = new Uint8Array(total); // 0 out of mask, 1 unlabelled, 2 labelled
    const centre = (i: number, k: number) => this.region.offset[i] + k * step[i] + Math.floor(this.patchShape[i] / 2);
    await mapLimit(
      (function* () {
        for (let r = 0; r < rows; r++) yield r;
      })(),
      4,
      async (r) => {
        const offset = new Array<number>(n);
        let q = r;
        for (let i = last - 1; i >= 0; i--) {
          offset[i] = centre(i, q % counts[i]);
          q = Math.floor(q / counts[i]);
        }
        offset[last] = centre(last, 0);
        const box: Region = { offset, shape: offset.map((_, i) => (i === last ? (rowLen - 1) * step[last] + 1 : 1)) };
        const [m, l] = await Promise.all([this.#mask?.read(box), this.#balance?.label.read(box)]);
        for (let k = 0; k < rowLen; k++) {
          const j = k * step[last];
          if (m && m.data[j] === 0) continue;
          keep[r * rowLen + k] = l && l.data[j] !== 0 ? 2 : 1;
        }
      },
    );
    let np = 0;
    let nn = 0;
    for (const v of keep) {
      if (v === 2) np++;
      else if (v === 1) nn++;
    }
    if (np + nn === 0) {
      throw new ScrollIoOptionError('mask', `no candidate patch centre (grid step [${step.join(', ')}]) lies inside the mask ${this.#mask?.path} within the region`);
    }
    const positive = new Uint32Array(np);
    const negative = new Uint32Array(nn);
    np = nn = 0;
    keep.forEach((v, k) => {
      if (v === 2) positive[np++] = k;
      else if (v === 1) negative[nn++] = k;
    });
    return { positive, negative };
  }

  #fill(): void {
    while (!this.#closed && this.#queue.length < this.#prefetch) this.#issue();
  }

  #draw(): number {
    const r = splitmix32(this.#rng);
    this.#rng = r.state;
    return r.value;
  }

  #issue(): void {
    const rngBefore = this.#rng;
    const index = this.#issued++;
    let origin: number[] | undefined;
    let pick: [number, number] | undefined;
    if (this.#grid) {
      // Two draws per patch whatever the candidates turn out to be, so the stream position (and
      // state()/restore()) is known synchronously while the candidate grid is still being read.
      pick = [this.#draw(), this.#draw()];
    } else {
      origin = this.region.offset.map((lo, i) => lo + Math.floor(this.#draw() * (this.region.shape[i] - this.patchShape[i] + 1)));
    }
    const promise = (async (): Promise<Patch> => {
      const at = origin ?? (await this.#candidateOrigin(pick!));
      const box: Region = { offset: at, shape: this.patchShape.slice() };
      const [image, ...labels] = await Promise.all([this.#volume.read(box), ...this.#labels.map(([, v]) => v.read(box))]);
      const out: Record<string, VolumeArray> = {};
      this.#labels.forEach(([name], i) => {
        out[name] = labels[i].data;
      });
      return { origin: at, image: image.data, labels: out, index };
    })();
    // A prefetched read that fails is reported when its patch is requested, not as an unhandled rejection.
    promise.catch(() => undefined);
    this.#queue.push({ rngBefore, promise });
  }
}
