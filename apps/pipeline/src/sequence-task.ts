/**
 * The sequence task: masked-byte modelling of text (by default the project's own documentation, read
 * at run time). Each file's first `1 − f` bytes are training text and its last `f` validation text, so
 * the two never share a byte; training windows are drawn at random from the training text with fresh
 * masks, validation scores a fixed set of windows spread over the validation text, in bits per byte
 * at the masked positions, beside the unigram baseline that ignores context.
 */
import { tf } from '@goe/tf';
import { atomicWriteFile } from '@goe/scroll-io';
import {
  MASK_BYTE,
  MaskedByteSampler,
  evenMaskedWindows,
  splitByPosition,
  unigramBitsPerByte,
  byteLogProbs,
  type MaskedByteBatch,
} from '@goe/sequence-stem';
import { createHash } from 'node:crypto';
import { join, relative } from 'node:path';
import type { TrainConfig } from './config.js';
import { projectDocumentation, readTextFiles } from './docs.js';
import { ConfigError } from './errors.js';
import { ROUTER_HEALTH_KEYS, type ByteModel } from './model.js';
import type { TrainTask } from './task.js';

/** A batch of masked windows as tensors, with the host copy. */
export interface WindowBatch {
  /** `[B, N]` int32 bytes with the masked positions set to the mask byte. */
  input: tf.Tensor2D;
  /** `[B, N]` int32 original bytes. */
  target: tf.Tensor2D;
  /** `[B, N]` float32, 1 at masked positions. */
  weight: tf.Tensor2D;
  host: MaskedByteBatch;
}

function windowBatch(h: MaskedByteBatch): WindowBatch {
  return {
    input: tf.tensor2d(h.input, h.shape, 'int32'),
    target: tf.tensor2d(h.target, h.shape, 'int32'),
    weight: tf.tensor2d(h.weight, h.shape, 'float32'),
    host: h,
  };
}

function disposeWindows(b: WindowBatch): void {
  tf.dispose([b.input, b.target, b.weight]);
}

/** One byte as one visible character, so that the three lines of an example stay aligned. */
function glyph(v: number): string {
  if (v === MASK_BYTE) return '_';
  if (v === 0x0a) return '⏎';
  return v >= 0x20 && v < 0x7f ? String.fromCharCode(v) : '·';
}

/** Three aligned lines per window: the input (masks as `_`), the truth, and the model's top guess at the masks. */
function examples(h: MaskedByteBatch, guesses: ArrayLike<number>, rows: number): string {
  const [, n] = h.shape;
  const out: string[] = [];
  for (let r = 0; r < Math.min(rows, h.shape[0]); r++) {
    let input = '';
    let truth = '';
    let model = '';
    let right = 0;
    let masked = 0;
    for (let i = r * n; i < (r + 1) * n; i++) {
      input += glyph(h.input[i] as number);
      truth += glyph(h.target[i] as number);
      const isMasked = h.weight[i] === 1;
      model += glyph(isMasked ? (guesses[i] as number) : (h.target[i] as number));
      if (isMasked) {
        masked++;
        if (guesses[i] === h.target[i]) right++;
      }
    }
    out.push(`window at byte ${h.starts[r]} of the validation text: ${right} of ${masked} masked bytes right`);
    out.push(`input: ${input}`, `truth: ${truth}`, `model: ${model}`, '');
  }
  return out.join('\n');
}

/** The masked-byte task for `model` per `c`; its example predictions go to `runDir/predictions.txt`. */
export async function sequenceTask(c: TrainConfig, runDir: string, model: ByteModel): Promise<TrainTask<WindowBatch>> {
  const paths = c.data.text.files.length > 0 ? c.data.text.files : projectDocumentation();
  const files = await readTextFiles(paths);
  const { train, validation } = splitByPosition(
    files.map((f) => f.bytes),
    c.data.validationFraction,
  );
  const n = c.model.sequenceLength;
  for (const [name, stream] of [['training', train], ['validation', validation]] as const) {
    if (stream.length < n) {
      throw new ConfigError('model.sequenceLength', `${n} bytes is longer than the ${name} text (${stream.length} bytes)`);
    }
  }
  const window = { length: n, maskFraction: c.data.text.maskFraction };
  let sampler = new MaskedByteSampler(train, { ...window, seed: c.seed });
  const valHost = evenMaskedWindows(validation, { ...window, count: c.validationPatches, batch: c.batch, seed: c.seed + 1 });
  const valBatches = valHost.map(windowBatch);
  // The context-free baseline on exactly the validation targets the model is scored on.
  const unigram = unigramBitsPerByte(train, valHost);
  const hash = createHash('sha256');
  for (const f of files) hash.update(f.bytes);
  const text = {
    files: files.map((f) => f.path),
    bytes: files.reduce((a, f) => a + f.bytes.length, 0),
    sha256: hash.digest('hex'),
  };
  const predictions = join(runDir, 'predictions.txt');
  const shown = files.length > 3 ? `${files.length} files` : files.map((f) => relative(process.cwd(), f.path)).join(', ');

  return {
    model,
    unit: 'bytes',
    perStep: c.batch * n,
    shown: ['bpb', 'router', ...ROUTER_HEALTH_KEYS],
    predictions,
    description:
      `text: ${shown}, ${train.length.toLocaleString('en')} training and ${validation.length.toLocaleString('en')} validation bytes; ` +
      `windows of ${n} bytes, ${sampler.masked} masked; unigram baseline ${unigram.toFixed(3)} bits per byte`,
    async nextBatch() {
      return windowBatch(sampler.next(c.batch));
    },
    losses(batch, training) {
      return model.loss(model.forward(batch.input, { training }), batch.target, batch.weight);
    },
    disposeBatch: disposeWindows,
    async validate() {
      // Bits are summed over every masked byte in float64 on the host, so windows of any size weigh by
      // their masked bytes.
      let nats = 0;
      let masked = 0;
      let right = 0;
      let lossSum = 0;
      let firstGuesses: ArrayLike<number> = [];
      for (const [i, b] of valBatches.entries()) {
        const out = tf.tidy(() => {
          const f = model.forward(b.input, { training: false });
          return {
            lp: byteLogProbs(f.logits, b.target),
            guess: tf.argMax(f.logits, -1),
            loss: model.loss(f, b.target, b.weight).total,
          };
        });
        const lp = await out.lp.data();
        const guess = await out.guess.data();
        lossSum += (await out.loss.data())[0] as number;
        tf.dispose([out.lp, out.guess, out.loss]);
        for (let k = 0; k < lp.length; k++) {
          if (b.host.weight[k] !== 1) continue;
          nats -= lp[k] as number;
          masked++;
          if (guess[k] === b.host.target[k]) right++;
        }
        if (i === 0) firstGuesses = guess;
      }
      const first = valBatches[0];
      if (first) await atomicWriteFile(predictions, `${examples(first.host, firstGuesses, 4)}`);
      const bpb = nats / masked / Math.LN2;
      const loss = lossSum / valBatches.length;
      return {
        metrics: { loss, bpb, accuracy: right / masked, unigramBpb: unigram, maskedBytes: masked },
        line: `loss ${loss.toString().slice(0, 6)}, ${bpb.toFixed(3)} bits per byte (unigram ${unigram.toFixed(3)}), ${((100 * right) / masked).toFixed(1)}% of ${masked} masked bytes right`,
      };
    },
    routing() {
      return model.routing((valBatches[0] as WindowBatch).input);
    },
    state() {
      return { windows: sampler.state(), text };
    },
    restore(state) {
      const s = state as { windows?: unknown; text?: unknown };
      // The windows are positions in the text: resuming over other files would draw other bytes.
      if (JSON.stringify(s.text) !== JSON.stringify(text)) {
        throw new ConfigError('data.text.files', 'differ from the checkpoint\'s (files or their contents changed since); cannot resume');
      }
      if (typeof s.windows !== 'number') throw new ConfigError('state.windows', `expected a generator state, got ${JSON.stringify(s.windows)}`);
      sampler = new MaskedByteSampler(train, { ...window, seed: c.seed, state: s.windows });
    },
    close() {
      valBatches.forEach(disposeWindows);
    },
  };
}
