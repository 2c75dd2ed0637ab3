/**
 * Learned fibre directions against the classical estimates, on the same phantom patches.
 *
 *   npx nx run head-fiber:compare [-- --preset hard --steps 600 --batch 4 --seed 1 --output vector|tensor
 *                                    --no-sheet-frame --positions --json FILE]
 *
 * A volume stem -> one encoder block -> the fibre head is trained alone (no GoE layer, no other head)
 * on random 16x32x32 patches of a phantom volume's upper part (z < 3/4 of its depth), with the head's
 * loss (`1 - (v.t)^2` for `--output vector`, `|M - t t^T|^2` for `--output tensor`) on tokens whose
 * cell is mostly papyrus. By default the head also takes each token's sheet-frame features
 * (`sheetFrameFeatures`: outward sheet normal, recto direction, face score; `--no-sheet-frame` leaves
 * them out). The held-out lower quarter gives fixed validation patches, on which the untrained model,
 * the trained one and two classical estimates are scored by the sign-free angular error against the
 * phantom's exact fibre field, split by horizontal (recto) and vertical (verso) fibres: the structure
 * tensor (`structureTensorFibers`: least-change eigenvector of the cell-averaged gradient structure
 * tensor, Bigün & Granlund 1987) and the sheet-frame rule (`sheetFrameFibers`: axis x n on a recto
 * face score, the axis on a verso one). Progress goes to stderr; a markdown table to stdout.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Adam, availableBackends, makeRng, tf, useBackend, type BackendName, type Module, type Rng } from '@goe/tf';
import { phantomRegion, resolvePhantomConfig, type PhantomConfig } from '@goe/phantom';
import { VolumeStem, resolveVolumeStemConfig } from '@goe/volume-stem';
import { Encoder, resolveEncoderConfig } from '@goe/encoder';
import {
  FIBER_OUTPUTS,
  FiberHead,
  SHEET_FEATURE_WIDTH,
  fiberErrorByFace,
  fiberTargetsFromVoxels,
  resolveFiberHeadConfig,
  sheetFrameFeatures,
  sheetFrameFibers,
  structureTensorFibers,
  type FiberErrorByFace,
  type FiberOutput,
} from '../src/index.js';

const PATCH: [number, number, number] = [16, 32, 32];

interface Batch {
  /** `[B, D, H, W, 1]` intensities in [0, 1]. */
  x: Float32Array;
  /** `[B*D*H*W]`, the same as x, for the structure tensor. */
  volume: Float32Array;
  /** `[B*N*3]` token fibre targets and `[B*N]` labelled mask. */
  target: Float32Array;
  mask: Uint8Array;
  /** Each patch's corner in the volume (z, y, x), for the stem's positional encoding. */
  origins: [number, number, number][];
  /** `[B*N*K]` sheet-frame features of the tokens (`sheetFrameFeatures`), when the head takes them. */
  skip: Float32Array | undefined;
  n: number;
}

interface Options {
  output: FiberOutput;
  sheetFrame: boolean;
  positions: boolean;
}

/** `n` patches with at least 10% papyrus, their corners drawn in z ∈ [z0, z1). */
function sample(cfg: PhantomConfig, rng: Rng, n: number, z0: number, z1: number, grid: Parameters<typeof fiberTargetsFromVoxels>[1], withSkip: boolean): Batch {
  const [pd, ph, pw] = PATCH;
  const v = pd * ph * pw;
  const x = new Float32Array(n * v);
  const fib = new Float32Array(n * v * 3);
  const scale = cfg.dtype === 'uint16' ? 65535 : 255;
  const origins: [number, number, number][] = [];
  for (let b = 0; b < n; ) {
    const offset: [number, number, number] = [z0 + rng.int(z1 - z0 - pd + 1), rng.int(cfg.shape[1] - ph + 1), rng.int(cfg.shape[2] - pw + 1)];
    const r = phantomRegion(cfg, { offset, shape: PATCH });
    if (r.papyrus.reduce((s, p) => s + p, 0) < 0.1 * v) continue;
    for (let i = 0; i < v; i++) {
      x[b * v + i] = (r.image[i] as number) / scale;
      // The phantom stores components first ([3, d, h, w]); the targets want them last.
      for (let c = 0; c < 3; c++) fib[(b * v + i) * 3 + c] = r.fibre[c * v + i] as number;
    }
    origins.push(offset);
    b++;
  }
  const t = fiberTargetsFromVoxels(fib, grid, n);
  const skip = withSkip ? sheetFrameFeatures(x, grid, n).features : undefined;
  return { x, volume: x, target: t.target, mask: t.mask, origins, skip, n };
}

class FibreModel {
  readonly stem: VolumeStem;
  readonly encoder: Encoder;
  readonly head: FiberHead;
  constructor(
    rng: Rng,
    readonly opts: Options,
  ) {
    const d = 48;
    this.stem = new VolumeStem(resolveVolumeStemConfig({ d, da: 8, cell: [4, 4, 4], convChannels: 8 }), rng);
    this.encoder = new Encoder(resolveEncoderConfig({ d, da: 8, depth: 1, heads: 4 }), rng);
    this.head = new FiberHead(resolveFiberHeadConfig({ d, hidden: 32, output: opts.output, skip: opts.sheetFrame ? SHEET_FEATURE_WIDTH : 0 }), rng);
  }
  modules(): [string, Module][] {
    return [['stem', this.stem], ['encoder', this.encoder], ['head', this.head]];
  }
  /** @returns the head's output: `[B, N, 3]` unit directions or `[B, N, 6]` orientation tensors */
  apply(b: Batch): tf.Tensor3D {
    return tf.tidy(() => {
      const x = tf.tensor5d(b.x, [b.n, ...PATCH, 1]);
      // With --positions the stem is told where the patch sits in the scroll (a horizontal fibre
      // runs around the scroll axis, so its direction depends on the position); without, the stem's
      // positions are the patch's own and only the texture tells the direction.
      const s = this.stem.apply(x, this.opts.positions ? { origin: b.origins } : {});
      const e = this.encoder.apply({ tokens: s.tokens, aux: s.aux });
      const N = e.tokens.shape[1];
      return this.head.apply(e.tokens, b.skip ? tf.tensor3d(b.skip, [b.n, N, SHEET_FEATURE_WIDTH]) : undefined);
    });
  }
}

async function score(model: FibreModel, batches: Batch[]): Promise<FiberErrorByFace> {
  const preds: Float32Array[] = [];
  for (const b of batches) {
    const p = model.apply(b);
    preds.push(model.head.directions(await p.data()));
    p.dispose();
  }
  return fiberErrorByFace(concat(preds), concat(batches.map((b) => b.target)), concatU8(batches.map((b) => b.mask)));
}

function concat(xs: Float32Array[]): Float32Array {
  const out = new Float32Array(xs.reduce((s, x) => s + x.length, 0));
  let at = 0;
  for (const x of xs) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}

function concatU8(xs: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(xs.reduce((s, x) => s + x.length, 0));
  let at = 0;
  for (const x of xs) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}

const f1 = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '—');

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      preset: { type: 'string', default: 'hard' },
      steps: { type: 'string', default: '400' },
      batch: { type: 'string', default: '4' },
      lr: { type: 'string', default: '0.003' },
      seed: { type: 'string', default: '1' },
      val: { type: 'string', default: '32' },
      backend: { type: 'string' },
      json: { type: 'string' },
      positions: { type: 'boolean', default: false },
      output: { type: 'string', default: 'vector' },
      'no-sheet-frame': { type: 'boolean', default: false },
    },
  });
  const int = (k: 'steps' | 'batch' | 'seed' | 'val'): number => {
    const v = Number(values[k]);
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k}: expected a positive integer, got '${values[k]}'`);
    return v;
  };
  const usePositions = values.positions === true;
  const output = values.output as FiberOutput;
  if (!FIBER_OUTPUTS.includes(output)) throw new Error(`--output: expected one of ${FIBER_OUTPUTS.join(', ')}, got '${values.output}'`);
  const opts: Options = { output, sheetFrame: !values['no-sheet-frame'], positions: usePositions };
  const steps = int('steps');
  const batch = int('batch');
  const seed = int('seed');
  const lr = Number(values.lr);
  if (!(lr > 0)) throw new Error(`--lr: expected a number > 0, got '${values.lr}'`);
  const backend = (values.backend ?? (await availableBackends()).find((b) => b === 'wasm') ?? 'cpu') as BackendName;
  await useBackend(backend);
  const cfg = resolvePhantomConfig({ preset: values.preset as 'hard', shape: [64, 160, 160], seed });
  const split = Math.floor(cfg.shape[0] * 0.75);
  const rng = makeRng(seed);
  const model = new FibreModel(rng, opts);
  const grid = { inputShape: PATCH, cell: [4, 4, 4] as [number, number, number], dims: [PATCH[0] / 4, PATCH[1] / 4, PATCH[2] / 4] as [number, number, number] };
  const valRng = makeRng(seed + 1000);
  const val = Array.from({ length: Math.ceil(int('val') / 8) }, () => sample(cfg, valRng, 8, split, cfg.shape[0], grid, true));

  const tensor = structureTensorFibers(concat(val.map((b) => b.volume)), grid, val.reduce((s, b) => s + b.n, 0));
  const valTarget = concat(val.map((b) => b.target));
  const valMask = concatU8(val.map((b) => b.mask));
  const classical = fiberErrorByFace(tensor.direction, valTarget, valMask);
  const frame = sheetFrameFibers(sheetFrameFeatures(concat(val.map((b) => b.volume)), grid, val.reduce((s, b) => s + b.n, 0)));
  const frameRule = fiberErrorByFace(frame, valTarget, valMask);
  if (!opts.sheetFrame) for (const b of val) b.skip = undefined;
  const untrained = await score(model, val);

  const adam = new Adam();
  const trainRng = makeRng(seed + 2000);
  const t0 = performance.now();
  let last = NaN;
  for (let step = 1; step <= steps; step++) {
    const b = sample(cfg, trainRng, batch, 0, split, grid, opts.sheetFrame);
    const t = tf.tensor3d(b.target, [b.n, b.target.length / 3 / b.n, 3]);
    const m = tf.tensor2d(b.mask, [b.n, b.mask.length / b.n], 'float32');
    // Linear warm-up over the first 5% of the steps.
    const progress = Math.min(1, step / Math.max(1, steps * 0.05));
    const value = adam.minimize(Object.fromEntries(model.modules()), () => model.head.loss(model.apply(b), t, m), lr * progress);
    last = (await value.data())[0] as number;
    tf.dispose([value, t, m]);
    if (!Number.isFinite(last)) throw new Error(`step ${step}: the loss is ${last}`);
    if (step % 25 === 0 || step === steps) {
      const s = (performance.now() - t0) / 1000;
      process.stderr.write(`[fibre] step ${step}/${steps} | loss ${last.toFixed(4)} | ${(s / step).toFixed(2)} s/step | ETA ${((steps - step) * s / step).toFixed(0)} s\n`);
    }
  }
  const trained = await score(model, val);
  const rows: [string, FiberErrorByFace][] = [
    ['structure tensor (classical)', classical],
    ['sheet-frame rule (classical)', frameRule],
    ['learned, untrained', untrained],
    [`learned, ${steps} steps`, trained],
  ];
  console.log(`Fibre direction on the '${values.preset}' phantom (seed ${seed}), ${val.reduce((s, b) => s + b.n, 0)} held-out ${PATCH.join('x')} patches, tokens of 4^3 voxels; sign-free angular error in degrees (mean / median); backend ${backend}; head output ${output}${opts.sheetFrame ? ', sheet-frame features' : ''}${usePositions ? '; positions in the scroll given' : ''}; ${((performance.now() - t0) / 1000).toFixed(0)} s of training, final loss ${last.toFixed(4)}\n`);
  console.log('| method | all | horizontal (recto) | vertical (verso) | tokens (h / v) |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const [name, r] of rows) {
    console.log(`| ${name} | ${f1(r.all.mean)} / ${f1(r.all.median)} | ${f1(r.horizontal.mean)} / ${f1(r.horizontal.median)} | ${f1(r.vertical.mean)} / ${f1(r.vertical.median)} | ${r.horizontal.count} / ${r.vertical.count} |`);
  }
  if (values.json) {
    const tmp = `${values.json}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ preset: values.preset, seed, steps, batch, lr, backend, ...opts, classical, frameRule, untrained, trained }, null, 2));
    renameSync(tmp, values.json);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`head-fiber compare: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
