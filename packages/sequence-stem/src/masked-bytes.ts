/**
 * Masked-byte modelling (the byte-level form of BERT's masked language modelling, Devlin et al., 2019):
 * a window of N bytes is cut from a text, a fixed number of its positions are replaced by a mask byte,
 * and the model predicts the original byte at those positions from the context on both sides.
 *
 * Why masked and not next-byte prediction: the shared encoder attends over the whole window (its
 * only mask hides padding), so a token sees its successor and next-byte prediction through it would
 * read the answer. Hiding the target bytes from the input keeps the task honest through an unchanged,
 * bidirectional encoder.
 *
 * Everything here is host-side (typed arrays, no tensors), seeded, and independent of the text's
 * origin. Legend: B windows, N bytes per window, L bytes in a stream.
 */
import { makeRng, type Rng } from '@goe/tf';
import { SequenceStemInputError } from './config.js';

/** The mask byte: 0xFF never occurs in UTF-8 (RFC 3629), so it cannot be confused with text. */
export const MASK_BYTE = 0xff;

/** A batch of masked windows, row-major `[B, N]`. */
export interface MaskedByteBatch {
  /** `[B·N]` the window with the masked positions set to `MASK_BYTE` (the stem's input). */
  input: Int32Array;
  /** `[B·N]` the original bytes (the head's targets). */
  target: Int32Array;
  /** `[B·N]` 1 at masked positions (where the loss counts), 0 elsewhere. */
  weight: Float32Array;
  /** Stream offset of each window's first byte. */
  starts: number[];
  shape: [number, number];
}

export interface MaskedWindowOptions {
  /** Bytes per window N. */
  length: number;
  /** Fraction of each window's positions that are masked; the count is `max(1, round(f·N))`. */
  maskFraction: number;
}

function checkOptions(stream: Uint8Array, o: MaskedWindowOptions): number {
  if (!Number.isInteger(o.length) || o.length < 1) {
    throw new SequenceStemInputError('length', 'an integer >= 1', String(o.length));
  }
  if (!(o.maskFraction > 0 && o.maskFraction <= 1)) {
    throw new SequenceStemInputError('maskFraction', 'a number in (0, 1]', String(o.maskFraction));
  }
  if (stream.length < o.length) {
    throw new SequenceStemInputError('stream', `at least ${o.length} bytes (one window)`, `${stream.length} bytes`);
  }
  return Math.max(1, Math.round(o.maskFraction * o.length));
}

/**
 * Fills row `row` of `batch` from `stream[start, start + N)`, masking `count` positions drawn without
 * replacement (a partial Fisher–Yates shuffle) from `rng`.
 */
function fillWindow(batch: MaskedByteBatch, row: number, stream: Uint8Array, start: number, count: number, rng: Rng): void {
  const n = batch.shape[1];
  const o = row * n;
  for (let i = 0; i < n; i++) {
    const v = stream[start + i] as number;
    batch.input[o + i] = v;
    batch.target[o + i] = v;
    batch.weight[o + i] = 0;
  }
  const order = Array.from({ length: n }, (_, i) => i);
  for (let j = 0; j < count; j++) {
    const k = j + rng.int(n - j);
    const pos = order[k] as number;
    order[k] = order[j] as number;
    order[j] = pos;
    batch.input[o + pos] = MASK_BYTE;
    batch.weight[o + pos] = 1;
  }
  batch.starts[row] = start;
}

function emptyBatch(b: number, n: number): MaskedByteBatch {
  return {
    input: new Int32Array(b * n),
    target: new Int32Array(b * n),
    weight: new Float32Array(b * n),
    starts: new Array<number>(b).fill(0),
    shape: [b, n],
  };
}

/**
 * Training windows: each batch draws window starts uniformly from `[0, L − N]` and fresh masks, from
 * one seeded generator whose state can be saved and resumed.
 */
export class MaskedByteSampler {
  private readonly rng: Rng;
  private readonly count: number;

  /**
   * @param stream `[L]` the training bytes
   * @param state a saved `state()` to resume from (else the generator starts from `seed`)
   */
  constructor(
    private readonly stream: Uint8Array,
    private readonly options: MaskedWindowOptions & { seed: number; state?: number },
  ) {
    this.count = checkOptions(stream, options);
    this.rng = makeRng(options.seed, options.state);
  }

  /** Masked positions per window. */
  get masked(): number {
    return this.count;
  }

  /** The next `b` windows, `[b, N]`. */
  next(b: number): MaskedByteBatch {
    const n = this.options.length;
    const batch = emptyBatch(b, n);
    const span = this.stream.length - n + 1;
    for (let r = 0; r < b; r++) fillWindow(batch, r, this.stream, this.rng.int(span), this.count, this.rng);
    return batch;
  }

  /** The generator state, to resume the same sequence of windows after a checkpoint. */
  state(): number {
    return this.rng.state();
  }
}

/**
 * A fixed evaluation set: `count` windows spread evenly over the stream (first at 0, last ending at
 * its end), masked from `seed`, so every evaluation sees the same windows and masks.
 * @returns batches of at most `batch` windows each
 */
export function evenMaskedWindows(
  stream: Uint8Array,
  o: MaskedWindowOptions & { count: number; batch: number; seed: number },
): MaskedByteBatch[] {
  const masked = checkOptions(stream, o);
  if (!Number.isInteger(o.count) || o.count < 1) throw new SequenceStemInputError('count', 'an integer >= 1', String(o.count));
  if (!Number.isInteger(o.batch) || o.batch < 1) throw new SequenceStemInputError('batch', 'an integer >= 1', String(o.batch));
  const rng = makeRng(o.seed);
  const last = stream.length - o.length;
  const out: MaskedByteBatch[] = [];
  for (let i = 0; i < o.count; i += o.batch) {
    const b = Math.min(o.batch, o.count - i);
    const batch = emptyBatch(b, o.length);
    for (let r = 0; r < b; r++) {
      const w = i + r;
      const start = o.count === 1 ? 0 : Math.round((w * last) / (o.count - 1));
      fillWindow(batch, r, stream, start, masked, rng);
    }
    out.push(batch);
  }
  return out;
}

/**
 * Splits documents by position: the first `1 − f` of each document's bytes go to training, the last
 * `f` to validation, so the two never share a byte and validation covers every document. Within a
 * split the parts are joined by `separator` (a newline by default).
 */
export function splitByPosition(
  docs: readonly Uint8Array[],
  validationFraction: number,
  separator = 0x0a,
): { train: Uint8Array; validation: Uint8Array } {
  if (!(validationFraction > 0 && validationFraction < 1)) {
    throw new SequenceStemInputError('validationFraction', 'a number in (0, 1)', String(validationFraction));
  }
  const train: Uint8Array[] = [];
  const validation: Uint8Array[] = [];
  for (const d of docs) {
    const cut = d.length - Math.floor(d.length * validationFraction);
    train.push(d.subarray(0, cut));
    validation.push(d.subarray(cut));
  }
  const join = (parts: Uint8Array[]): Uint8Array => {
    const nonEmpty = parts.filter((p) => p.length > 0);
    const out = new Uint8Array(nonEmpty.reduce((a, p) => a + p.length, 0) + Math.max(0, nonEmpty.length - 1));
    let o = 0;
    nonEmpty.forEach((p, i) => {
      if (i > 0) out[o++] = separator;
      out.set(p, o);
      o += p.length;
    });
    return out;
  };
  return { train: join(train), validation: join(validation) };
}

/**
 * Bits per byte of the unigram model fitted to `train` (byte frequencies with add-`smoothing` counts),
 * scored on the weighted target bytes of `batches`: the context-free baseline that a model using its
 * context must beat. Computed in float64.
 */
export function unigramBitsPerByte(train: Uint8Array, batches: readonly MaskedByteBatch[], smoothing = 1): number {
  const counts = new Float64Array(256).fill(smoothing);
  for (const v of train) counts[v] = (counts[v] as number) + 1;
  const total = counts.reduce((a, b) => a + b, 0);
  let bits = 0;
  let weight = 0;
  for (const b of batches) {
    for (let i = 0; i < b.target.length; i++) {
      const w = b.weight[i] as number;
      if (w === 0) continue;
      bits -= w * Math.log2((counts[b.target[i] as number] as number) / total);
      weight += w;
    }
  }
  return bits / weight;
}
