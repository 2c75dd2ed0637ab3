/**
 * The ops the models are built from, as a table of small named cases that every backend must compute
 * like the cpu backend: forward values and gradients. It covers what a transformer encoder, a sparse
 * mixture-of-experts router, a 3D convolutional stem and a volume decoder use, one op per case plus a
 * few compositions in the shape the models use them.
 *
 * Inputs are drawn on the host from a generator seeded by the case name (`makeCaseInputs`), so every
 * backend sees identical numbers. A case's gradient is that of the scalar `L = Σ_k Σ out_k · w_k` over
 * its float outputs, with fixed host-drawn weights `w_k` (a random cotangent: a plain sum would hide
 * errors, e.g. softmax's gradient of a sum is zero), taken with `tf.grads` with respect to its float
 * inputs and its module's variables.
 *
 * Shapes are kept small: WebGPU on a CPU Vulkan driver (lavapipe) compiles a shader per op and shape.
 */
import * as tf from '@tensorflow/tfjs-core';
import { LayerNorm, Linear, Module, gelu } from './module.js';
import { makeRng, type Rng } from './rng.js';

/** How one input is drawn on the host. */
export type InputKind =
  /** N(0, 1). */
  | 'normal'
  /** Uniform in [0.5, 2): for log, sqrt, rsqrt, divisors. */
  | 'positive'
  /** ±[0.2, 2): no value near a kink at 0 (relu, abs), so finite differences stay on one side. */
  | 'awayFromZero'
  /** -1 - |N(0, 1)|: all-negative pooling windows (a max must not come out as 0). */
  | 'negative'
  /** int32, uniform in [0, int). */
  | { int: number }
  /** bool, true with probability 1/2. */
  | 'bool';

export interface ConformanceInput {
  shape: number[];
  /** Defaults to `'normal'`. */
  kind?: InputKind;
}

/** One op (or composition) to check on every backend. */
export interface ConformanceCase {
  /** Unique; also seeds the case's inputs. */
  name: string;
  inputs: ConformanceInput[];
  /** The layer a module case exercises, built from a seeded generator (same weights everywhere). */
  module?: (rng: Rng) => Module;
  /** The computation; it may return several outputs (e.g. topk's values and indices). */
  fn: (inputs: tf.Tensor[], module?: Module) => tf.Tensor | tf.Tensor[];
  /**
   * Forward tolerance: max |backend - cpu| <= tol · max(1, max |cpu|), per output. Integer and bool
   * outputs must match exactly.
   */
  tol: number;
  /** Present when the case is differentiable: the gradient tolerance, as `tol`. */
  grad?: {
    tol: number;
    /** Inputs to differentiate (indices); default: every float input. */
    wrt?: number[];
    /**
     * Step for the cpu finite-difference check (default 1e-2); smaller for ops with kinks (max, topk),
     * 0 to skip the check.
     */
    fdStep?: number;
  };
}

/** Values read back from a tensor on the host. */
export interface HostValue {
  shape: number[];
  dtype: tf.DataType;
  data: Float32Array | Int32Array | Uint8Array;
}

/** What one backend computed for one case. */
export interface CaseResult {
  outputs: HostValue[];
  /** Gradients of the case's scalar L, for the `wrt` inputs then the module's variables, in order. */
  grads?: HostValue[];
  /** Names of the gradients (`x0`, `x2`, `w`, `gain`, …), in the order of `grads`. */
  gradNames?: string[];
}

/** An input array as generated on the host. */
export type HostInput = Float32Array | Int32Array | Uint8Array;

function hashName(name: string): number {
  // FNV-1a: a stable seed per case, so adding a case leaves every other case's data unchanged.
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function dtypeOf(kind: InputKind | undefined): 'float32' | 'int32' | 'bool' {
  if (kind === 'bool') return 'bool';
  if (typeof kind === 'object') return 'int32';
  return 'float32';
}

function drawInput(spec: ConformanceInput, rng: Rng): HostInput {
  const n = size(spec.shape);
  const kind = spec.kind ?? 'normal';
  if (kind === 'bool') return Uint8Array.from({ length: n }, () => (rng.next() < 0.5 ? 1 : 0));
  if (typeof kind === 'object') return Int32Array.from({ length: n }, () => rng.int(kind.int));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    switch (kind) {
      case 'normal':
        out[i] = rng.normal();
        break;
      case 'positive':
        out[i] = 0.5 + 1.5 * rng.next();
        break;
      case 'awayFromZero':
        out[i] = (rng.next() < 0.5 ? -1 : 1) * (0.2 + 1.8 * rng.next());
        break;
      case 'negative':
        out[i] = -1 - Math.abs(rng.normal());
        break;
    }
  }
  return out;
}

/** The case's inputs, drawn on the host from a generator seeded by its name. */
export function makeCaseInputs(c: ConformanceCase): HostInput[] {
  const rng = makeRng(hashName(c.name));
  return c.inputs.map((spec) => drawInput(spec, rng));
}

/** Indices of the inputs the case is differentiated with respect to. */
export function gradInputs(c: ConformanceCase): number[] {
  if (!c.grad) return [];
  return c.grad.wrt ?? c.inputs.flatMap((s, i) => (dtypeOf(s.kind) === 'float32' ? [i] : []));
}

/**
 * The fixed cotangent weights `w_k` of the case's scalar L, one array per output (empty for integer
 * and bool outputs), drawn from the case's name so every backend uses the same ones.
 */
export function lossWeights(c: ConformanceCase, outputs: readonly { shape: number[]; dtype: tf.DataType }[]): Float32Array[] {
  const rng = makeRng(hashName(`${c.name}/cotangent`));
  return outputs.map((o) => {
    if (o.dtype !== 'float32') return new Float32Array(0);
    const w = new Float32Array(size(o.shape));
    for (let i = 0; i < w.length; i++) w[i] = rng.normal();
    return w;
  });
}

/** `L = Σ_k Σ out_k · w_k` in float64 on the host. */
export function hostLoss(outputs: readonly HostValue[], weights: readonly Float32Array[]): number {
  let s = 0;
  outputs.forEach((o, k) => {
    const w = weights[k] as Float32Array;
    for (let i = 0; i < w.length; i++) s += (o.data[i] as number) * (w[i] as number);
  });
  return s;
}

function toList(out: tf.Tensor | tf.Tensor[]): tf.Tensor[] {
  return Array.isArray(out) ? out : [out];
}

async function read(t: tf.Tensor): Promise<HostValue> {
  const data = (await t.data()) as Float32Array | Int32Array | Uint8Array;
  return { shape: [...t.shape], dtype: t.dtype, data };
}

/**
 * Runs one case on the active backend and reads every result back with `await t.data()` (the only
 * read that works on WebGPU in Node). Leaves no tensors behind.
 *
 * @param inputs from `makeCaseInputs(c)`
 * @param options.gradients also compute the gradients (cases with `grad` only)
 */
export async function runConformanceCase(
  c: ConformanceCase,
  inputs: readonly HostInput[],
  options: { gradients: boolean },
): Promise<CaseResult> {
  const tensors = inputs.map((v, i) => tf.tensor(v, (c.inputs[i] as ConformanceInput).shape, dtypeOf(c.inputs[i]?.kind)));
  let module: Module | undefined;
  // Inside tidy: a module's initial-value tensors are intermediates (variables survive tidy).
  tf.tidy(() => {
    module = c.module?.(makeRng(hashName(`${c.name}/module`)));
  });
  const live: tf.Tensor[] = [];
  try {
    const outs = tf.tidy(() => toList(c.fn(tensors, module)));
    live.push(...outs);
    const outputs: HostValue[] = [];
    for (const o of outs) outputs.push(await read(o));
    if (!options.gradients || !c.grad) return { outputs };

    const wrt = gradInputs(c);
    const vars = module ? [...module.variables()].filter(([, v]) => v.trainable) : [];
    const xs: tf.Tensor[] = [...wrt.map((i) => tensors[i] as tf.Tensor), ...vars.map(([, v]) => v)];
    const weights = lossWeights(c, outputs).map((w, k) => (w.length > 0 ? tf.tensor(w, (outputs[k] as HostValue).shape) : null));
    live.push(...weights.filter((w): w is tf.Tensor => w !== null));
    const gs = tf.tidy(() =>
      tf.grads((...args: tf.Tensor[]) => {
        // The arguments are the very tensors in `xs`; put them back in their input slots.
        const ins = tensors.slice();
        wrt.forEach((i, j) => (ins[i] = args[j] as tf.Tensor));
        const terms = toList(c.fn(ins, module)).flatMap((o, k) => {
          const w = weights[k];
          return w ? [tf.sum(tf.mul(o, w))] : [];
        });
        return terms.length === 1 ? (terms[0] as tf.Tensor) : tf.addN(terms);
      })(xs),
    );
    live.push(...gs);
    const grads: HostValue[] = [];
    for (const g of gs) grads.push(await read(g));
    return { outputs, grads, gradNames: [...wrt.map((i) => `x${i}`), ...vars.map(([name]) => name)] };
  } finally {
    tf.dispose(live);
    tf.dispose(tensors);
    module?.dispose();
  }
}

/** Host float32 values drawn from N(0, 1), for module weights. */
function normalArray(rng: Rng, n: number, std = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * std);
}

const conv5 = (t: tf.Tensor): tf.Tensor5D => t as tf.Tensor5D;

/** Every case, grouped by the part of the model that uses it. */
export const CONFORMANCE_OPS: readonly ConformanceCase[] = [
  // --- matrix products (attention, Linear, experts) ---
  { name: 'matMul', inputs: [{ shape: [6, 8] }, { shape: [8, 5] }], fn: ([a, b]) => tf.matMul(a!, b!), tol: 1e-5, grad: { tol: 1e-5 } },
  {
    name: 'matMul batched',
    inputs: [{ shape: [3, 6, 8] }, { shape: [3, 8, 5] }],
    fn: ([a, b]) => tf.matMul(a!, b!),
    tol: 1e-5,
    grad: { tol: 1e-5 },
  },
  {
    name: 'matMul transposeA',
    inputs: [{ shape: [8, 6] }, { shape: [8, 5] }],
    fn: ([a, b]) => tf.matMul(a!, b!, true, false),
    tol: 1e-5,
    grad: { tol: 1e-5 },
  },
  {
    name: 'matMul transposeB',
    inputs: [{ shape: [6, 8] }, { shape: [5, 8] }],
    fn: ([a, b]) => tf.matMul(a!, b!, false, true),
    tol: 1e-5,
    grad: { tol: 1e-5 },
  },
  {
    name: 'matMul batched transposeA transposeB',
    inputs: [{ shape: [2, 8, 6] }, { shape: [2, 5, 8] }],
    fn: ([a, b]) => tf.matMul(a!, b!, true, true),
    tol: 1e-5,
    grad: { tol: 1e-5 },
  },
  {
    name: 'matMul rank-4 heads',
    inputs: [{ shape: [2, 3, 6, 8] }, { shape: [2, 3, 8, 5] }],
    fn: ([a, b]) => tf.matMul(a!, b!),
    tol: 1e-5,
    grad: { tol: 1e-5 },
  },

  // --- element-wise arithmetic with broadcasting ---
  { name: 'add broadcast', inputs: [{ shape: [4, 1, 6] }, { shape: [5, 6] }], fn: ([a, b]) => tf.add(a!, b!), tol: 1e-6, grad: { tol: 1e-5 } },
  {
    name: 'add rank-5 channel bias',
    inputs: [{ shape: [2, 3, 4, 4, 8] }, { shape: [8] }],
    fn: ([a, b]) => tf.add(a!, b!),
    tol: 1e-6,
    grad: { tol: 1e-5 },
  },
  { name: 'sub broadcast', inputs: [{ shape: [4, 5, 6] }, { shape: [6] }], fn: ([a, b]) => tf.sub(a!, b!), tol: 1e-6, grad: { tol: 1e-5 } },
  {
    name: 'mul broadcast',
    inputs: [{ shape: [4, 5, 1] }, { shape: [1, 5, 6] }],
    fn: ([a, b]) => tf.mul(a!, b!),
    tol: 1e-6,
    grad: { tol: 1e-5 },
  },
  {
    name: 'div broadcast',
    inputs: [{ shape: [4, 6] }, { shape: [4, 1], kind: 'positive' }],
    fn: ([a, b]) => tf.div(a!, b!),
    tol: 1e-6,
    grad: { tol: 1e-5 },
  },
  {
    name: 'maximum',
    inputs: [{ shape: [4, 6] }, { shape: [4, 6] }],
    fn: ([a, b]) => tf.maximum(a!, b!),
    tol: 1e-6,
    grad: { tol: 1e-5, fdStep: 1e-3 },
  },
  {
    name: 'maximum broadcast',
    inputs: [{ shape: [4, 6] }, { shape: [6] }],
    fn: ([a, b]) => tf.maximum(a!, b!),
    tol: 1e-6,
    grad: { tol: 1e-5, fdStep: 1e-3 },
  },
  {
    name: 'minimum',
    inputs: [{ shape: [3, 4, 6] }, { shape: [3, 4, 6] }],
    fn: ([a, b]) => tf.minimum(a!, b!),
    tol: 1e-6,
    grad: { tol: 1e-5, fdStep: 1e-3 },
  },
  {
    name: 'minimum broadcast',
    inputs: [{ shape: [4, 1, 6] }, { shape: [3, 6] }],
    fn: ([a, b]) => tf.minimum(a!, b!),
    tol: 1e-6,
    grad: { tol: 1e-5, fdStep: 1e-3 },
  },

  // --- element-wise functions ---
  { name: 'exp', inputs: [{ shape: [3, 4, 5] }], fn: ([x]) => tf.exp(x!), tol: 1e-5, grad: { tol: 1e-5 } },
  { name: 'log', inputs: [{ shape: [3, 4, 5], kind: 'positive' }], fn: ([x]) => tf.log(x!), tol: 1e-5, grad: { tol: 1e-5 } },
  { name: 'sqrt', inputs: [{ shape: [3, 4, 5], kind: 'positive' }], fn: ([x]) => tf.sqrt(x!), tol: 1e-5, grad: { tol: 1e-5 } },
  { name: 'rsqrt', inputs: [{ shape: [3, 4, 5], kind: 'positive' }], fn: ([x]) => tf.rsqrt(x!), tol: 1e-5, grad: { tol: 1e-5 } },
  { name: 'tanh', inputs: [{ shape: [3, 4, 5] }], fn: ([x]) => tf.tanh(x!), tol: 1e-5, grad: { tol: 1e-5 } },
  { name: 'sigmoid', inputs: [{ shape: [3, 4, 5] }], fn: ([x]) => tf.sigmoid(x!), tol: 1e-5, grad: { tol: 1e-5 } },
  {
    name: 'relu',
    inputs: [{ shape: [3, 4, 5], kind: 'awayFromZero' }],
    fn: ([x]) => tf.relu(x!),
    tol: 1e-6,
    grad: { tol: 1e-6 },
  },
  { name: 'gelu (@goe/tf)', inputs: [{ shape: [3, 4, 5] }], fn: ([x]) => gelu(x!), tol: 1e-5, grad: { tol: 1e-5 } },
  { name: 'square', inputs: [{ shape: [3, 4, 5] }], fn: ([x]) => tf.square(x!), tol: 1e-6, grad: { tol: 1e-5 } },
  {
    name: 'abs',
    inputs: [{ shape: [3, 4, 5], kind: 'awayFromZero' }],
    fn: ([x]) => tf.abs(x!),
    tol: 1e-6,
    grad: { tol: 1e-6 },
  },
  { name: 'neg', inputs: [{ shape: [3, 4, 5] }], fn: ([x]) => tf.neg(x!), tol: 1e-6, grad: { tol: 1e-6 } },
  {
    name: 'clipByValue',
    inputs: [{ shape: [3, 4, 5] }],
    fn: ([x]) => tf.clipByValue(x!, -0.5, 0.7),
    tol: 1e-6,
    grad: { tol: 1e-6, fdStep: 1e-3 },
  },

  // --- normalisations over the last axis ---
  { name: 'softmax', inputs: [{ shape: [2, 4, 7] }], fn: ([x]) => tf.softmax(tf.mul(x!, 3)), tol: 1e-5, grad: { tol: 1e-5 } },
  { name: 'logSoftmax', inputs: [{ shape: [2, 4, 7] }], fn: ([x]) => tf.logSoftmax(tf.mul(x!, 3)), tol: 1e-5, grad: { tol: 1e-5 } },
  {
    name: 'LayerNorm (@goe/tf)',
    inputs: [{ shape: [2, 5, 16] }],
    module: (rng) => {
      const ln = new LayerNorm(16, rng);
      tf.tidy(() => {
        ln.gain.assign(tf.tensor(normalArray(rng, 16)));
        ln.bias.assign(tf.tensor(normalArray(rng, 16)));
      });
      return ln;
    },
    fn: ([x], m) => (m as LayerNorm).apply(tf.add(tf.mul(x!, 2), 0.5)),
    tol: 1e-5,
    grad: { tol: 1e-4 },
  },
  {
    name: 'Linear (@goe/tf)',
    inputs: [{ shape: [2, 5, 16] }],
    module: (rng) => {
      const lin = new Linear(16, 8, rng);
      tf.tidy(() => lin.b?.assign(tf.tensor(normalArray(rng, 8))));
      return lin;
    },
    fn: ([x], m) => (m as Linear).apply(x!),
    tol: 1e-5,
    grad: { tol: 1e-5 },
  },

  // --- reductions ---
  { name: 'sum axis 1', inputs: [{ shape: [3, 4, 5] }], fn: ([x]) => tf.sum(x!, 1), tol: 1e-5, grad: { tol: 1e-6 } },
  { name: 'sum axes [0, 2]', inputs: [{ shape: [3, 4, 5] }], fn: ([x]) => tf.sum(x!, [0, 2]), tol: 1e-5, grad: { tol: 1e-6 } },
  { name: 'mean axis -1 keepDims', inputs: [{ shape: [3, 4, 5] }], fn: ([x]) => tf.mean(x!, -1, true), tol: 1e-6, grad: { tol: 1e-6 } },
  { name: 'max axis 1', inputs: [{ shape: [3, 4, 5] }], fn: ([x]) => tf.max(x!, 1), tol: 1e-6, grad: { tol: 1e-6, fdStep: 1e-3 } },
  { name: 'argMax axis -1', inputs: [{ shape: [3, 4, 9] }], fn: ([x]) => tf.argMax(x!, -1), tol: 0 },

  // --- data movement ---
  {
    name: 'reshape rank 3 to 4',
    inputs: [{ shape: [3, 4, 10] }],
    fn: ([x]) => tf.reshape(x!, [2, 6, 5, 2]), // [2, 6, 5, 2]
    tol: 0,
    grad: { tol: 1e-6 },
  },
  { name: 'transpose rank 2', inputs: [{ shape: [5, 7] }], fn: ([x]) => tf.transpose(x!), tol: 0, grad: { tol: 1e-6 } },
  {
    name: 'transpose rank 3 [0, 2, 1]',
    inputs: [{ shape: [2, 5, 7] }],
    fn: ([x]) => tf.transpose(x!, [0, 2, 1]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'transpose rank 4 [0, 2, 1, 3]',
    inputs: [{ shape: [2, 3, 4, 5] }],
    fn: ([x]) => tf.transpose(x!, [0, 2, 1, 3]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'transpose rank 4 [0, 3, 1, 2]',
    inputs: [{ shape: [2, 3, 4, 5] }],
    fn: ([x]) => tf.transpose(x!, [0, 3, 1, 2]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'concat axis 1',
    inputs: [{ shape: [3, 2, 4] }, { shape: [3, 5, 4] }, { shape: [3, 1, 4] }],
    fn: (xs) => tf.concat(xs, 1),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'concat axis -1',
    inputs: [{ shape: [6, 3] }, { shape: [6, 5] }],
    fn: (xs) => tf.concat(xs, -1),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'slice rank 3',
    inputs: [{ shape: [4, 6, 5] }],
    fn: ([x]) => tf.slice(x!, [1, 2, 0], [2, 3, -1]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'stack axis 1',
    inputs: [{ shape: [4, 5] }, { shape: [4, 5] }, { shape: [4, 5] }],
    fn: (xs) => tf.stack(xs, 1),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'gather axis 0',
    inputs: [{ shape: [7, 5] }, { shape: [9], kind: { int: 7 } }],
    fn: ([x, i]) => tf.gather(x!, i!, 0),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'gather axis 1',
    inputs: [{ shape: [4, 7, 3] }, { shape: [5], kind: { int: 7 } }],
    fn: ([x, i]) => tf.gather(x!, i!, 1),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'pad rank 2',
    inputs: [{ shape: [4, 5] }],
    fn: ([x]) => tf.pad(x!, [
      [1, 2],
      [0, 3],
    ]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'pad rank 5 spatial',
    inputs: [{ shape: [2, 3, 4, 4, 3] }],
    fn: ([x]) => tf.pad(x!, [
      [0, 0],
      [1, 1],
      [1, 2],
      [2, 1],
      [0, 0],
    ]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  { name: 'tile rank 2', inputs: [{ shape: [3, 4] }], fn: ([x]) => tf.tile(x!, [2, 3]), tol: 0, grad: { tol: 1e-6 } },
  { name: 'tile rank 3', inputs: [{ shape: [2, 3, 4] }], fn: ([x]) => tf.tile(x!, [1, 2, 2]), tol: 0, grad: { tol: 1e-6 } },
  { name: 'cumsum axis 1', inputs: [{ shape: [4, 7] }], fn: ([x]) => tf.cumsum(x!, 1), tol: 1e-6, grad: { tol: 1e-5 } },
  {
    name: 'cumsum exclusive reverse',
    inputs: [{ shape: [3, 2, 6] }],
    fn: ([x]) => tf.cumsum(x!, 2, true, true),
    tol: 1e-6,
    grad: { tol: 1e-5 },
  },
  {
    name: 'cumsum middle axis',
    inputs: [{ shape: [3, 5, 2] }],
    fn: ([x]) => tf.cumsum(x!, 1),
    tol: 1e-6,
    grad: { tol: 1e-5 },
  },

  // --- rank 5 (volumes [B, D, H, W, C]): where tfjs-backend-webgpu needed fixes (webgpu-kernels.ts) ---
  {
    name: 'add rank-5 channel bias, C = 3',
    inputs: [{ shape: [2, 3, 4, 4, 3] }, { shape: [3] }],
    fn: ([a, b]) => tf.add(a!, b!),
    tol: 1e-6,
    grad: { tol: 1e-5 },
  },
  {
    name: 'mul rank-5 broadcast on alternating axes',
    inputs: [{ shape: [2, 3, 4, 3, 5] }, { shape: [1, 3, 1, 3, 1] }],
    fn: ([a, b]) => tf.mul(a!, b!),
    tol: 1e-6,
    grad: { tol: 1e-5 },
  },
  {
    name: 'squaredDifference rank-6 broadcast',
    inputs: [{ shape: [2, 3, 2, 4, 2, 3] }, { shape: [3, 1, 4, 1, 3] }],
    fn: ([a, b]) => tf.squaredDifference(a!, b!),
    tol: 1e-6,
    grad: { tol: 1e-5 },
  },
  {
    name: 'greaterEqual rank 5 vs per-channel threshold',
    inputs: [{ shape: [2, 3, 4, 4, 5] }, { shape: [5] }],
    fn: ([a, b]) => tf.greaterEqual(a!, b!),
    tol: 0,
  },
  {
    // The broadcast of b goes through a rank-5 tile (and its gradient).
    name: 'where rank 5',
    inputs: [{ shape: [2, 3, 4, 4, 5] }, { shape: [5] }],
    fn: ([a, b]) => tf.where(tf.greaterEqual(a!, b!), a!, tf.mul(b!, 2)),
    tol: 1e-6,
    grad: { tol: 1e-6, fdStep: 1e-3 },
  },
  {
    name: 'slice rank 5 (its gradient is a rank-5 pad)',
    inputs: [{ shape: [2, 3, 4, 4, 3] }],
    fn: ([x]) => tf.slice(x!, [0, 1, 1, 0, 1], [2, 2, 2, 3, 2]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'mirrorPad rank 5 reflect',
    inputs: [{ shape: [2, 3, 4, 4, 3] }],
    fn: ([x]) => tf.mirrorPad(x!, [
      [0, 0],
      [1, 1],
      [1, 2],
      [2, 1],
      [0, 0],
    ], 'reflect'),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'transpose rank 5',
    inputs: [{ shape: [2, 3, 4, 5, 2] }],
    fn: ([x]) => tf.transpose(x!, [0, 2, 4, 1, 3]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    // The input is computed first so that its data lives on the device (WebGPU's rank-5 tile read it
    // back synchronously, which Node cannot).
    name: 'tile rank 5 of a computed tensor',
    inputs: [{ shape: [2, 3, 2, 2, 3] }],
    fn: ([x]) => tf.tile(tf.mul(x!, 2), [1, 2, 1, 2, 1]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'broadcastTo rank 5 of a computed tensor',
    inputs: [{ shape: [3, 1, 3, 4] }],
    fn: ([x]) => tf.broadcastTo(tf.add(x!, 1), [2, 3, 2, 3, 4]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'reverse rank 5',
    inputs: [{ shape: [2, 3, 4, 4, 3] }],
    fn: ([x]) => tf.reverse(x!, [1, 3]),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'cumsum rank 5, middle axis, exclusive reverse',
    inputs: [{ shape: [2, 3, 4, 4, 3] }],
    fn: ([x]) => tf.cumsum(x!, 2, true, true),
    tol: 1e-6,
    grad: { tol: 1e-5 },
  },
  {
    name: 'stridedSlice rank 5, negative strides',
    inputs: [{ shape: [2, 6, 8, 8, 5] }],
    fn: ([x]) => tf.stridedSlice(x!, [1, 5, -1, 0, 4], [0, 0, 0, 8, 0], [-1, -2, -3, 2, -1], 0, 0b00100),
    tol: 0,
  },

  // --- routing: one-hot, top-k, masks, segment sums, scatters ---
  {
    name: 'oneHot',
    inputs: [{ shape: [9], kind: { int: 5 } }],
    fn: ([i]) => tf.oneHot(i as tf.Tensor1D, 5),
    tol: 0,
  },
  {
    name: 'topk values and indices',
    inputs: [{ shape: [5, 9] }],
    fn: ([x]) => {
      const { values, indices } = tf.topk(x!, 3);
      return [values, indices];
    },
    tol: 0,
    grad: { tol: 1e-6, fdStep: 1e-3 },
  },
  {
    name: 'greaterEqual',
    inputs: [{ shape: [4, 6] }, { shape: [6] }],
    fn: ([a, b]) => tf.greaterEqual(a!, b!),
    tol: 0,
  },
  {
    name: 'where (select)',
    inputs: [{ shape: [4, 6] }, { shape: [4, 6] }],
    fn: ([a, b]) => tf.where(tf.greaterEqual(a!, b!), a!, tf.mul(b!, 2)),
    tol: 1e-6,
    grad: { tol: 1e-6, fdStep: 1e-3 },
  },
  {
    name: 'where with a bool input',
    inputs: [{ shape: [4, 6], kind: 'bool' }, { shape: [4, 6] }, { shape: [4, 6] }],
    fn: ([c, a, b]) => tf.where(c!, a!, b!),
    tol: 0,
    grad: { tol: 1e-6 },
  },
  {
    name: 'cast float to int32',
    inputs: [{ shape: [4, 6] }],
    fn: ([x]) => tf.cast(tf.mul(x!, 3), 'int32'),
    tol: 0,
  },
  {
    name: 'cast int32 and bool to float32',
    inputs: [{ shape: [4, 6], kind: { int: 9 } }, { shape: [4, 6], kind: 'bool' }],
    fn: ([i, b]) => tf.add(tf.cast(i!, 'float32'), tf.mul(tf.cast(b!, 'float32'), 0.5)),
    tol: 0,
  },
  {
    // More inputs than a WebGPU shader may bind by default (8 storage buffers, one for the output).
    name: 'addN of 12 tensors',
    inputs: Array.from({ length: 12 }, () => ({ shape: [3, 5] })),
    fn: (xs) => tf.addN(xs),
    tol: 1e-6,
    grad: { tol: 1e-6 },
  },
  {
    // A tensor used in ten places: tfjs sums its ten gradient contributions with one AddN.
    name: 'gradient of a tensor used ten times',
    inputs: [{ shape: [4, 6] }],
    fn: ([x]) => tf.addN(Array.from({ length: 10 }, (_, i) => tf.mul(x!, i + 1))),
    tol: 1e-5,
    grad: { tol: 1e-5 },
  },
  {
    name: 'unsortedSegmentSum',
    inputs: [{ shape: [10, 6] }, { shape: [10], kind: { int: 4 } }],
    fn: ([x, ids]) => tf.unsortedSegmentSum(x!, ids as tf.Tensor1D, 4),
    tol: 1e-6,
    grad: { tol: 1e-6 },
  },
  {
    // Per-expert token counts: int32 data straight from the host (WebGPU's integer path was wrong).
    // Compared as float32: the cpu kernel labels its int32 result float32 (wasm and WebGPU: int32).
    name: 'unsortedSegmentSum int32 counts',
    inputs: [{ shape: [10, 3], kind: { int: 5 } }, { shape: [10], kind: { int: 4 } }],
    fn: ([x, ids]) => tf.cast(tf.unsortedSegmentSum(x!, ids as tf.Tensor1D, 4), 'float32'),
    tol: 0,
  },
  {
    name: 'oneHot float32',
    inputs: [{ shape: [9], kind: { int: 5 } }],
    fn: ([i]) => tf.oneHot(i as tf.Tensor1D, 5, 1, 0, 'float32'),
    tol: 0,
  },
  {
    // int32 -> float32 relabels the buffer on WebGPU (no conversion); consumers that read it by
    // layout (transpose, a reduction over a leading axis) must still see the numbers.
    name: 'cast int32 to float32, then transpose and sum over axis 0',
    inputs: [{ shape: [6, 9], kind: { int: 7 } }],
    fn: ([i]) => {
      const f = tf.cast(i!, 'float32');
      return [tf.transpose(f), tf.sum(f, 0)];
    },
    tol: 0,
  },
  {
    name: 'scatterND',
    inputs: [{ shape: [5, 1], kind: { int: 8 } }, { shape: [5, 6] }],
    fn: ([i, u]) => tf.scatterND(i!, u!, [8, 6]),
    tol: 1e-6,
    grad: { tol: 1e-6 },
  },

  // --- 3D convolution stem and decoder ---
  {
    name: 'conv3d stride 1 same',
    inputs: [{ shape: [2, 6, 8, 8, 3] }, { shape: [3, 3, 3, 3, 4] }],
    fn: ([x, f]) => tf.conv3d(conv5(x!), conv5(f!), 1, 'same'),
    tol: 1e-5,
    grad: { tol: 1e-4 },
  },
  {
    name: 'conv3d stride 2 same',
    inputs: [{ shape: [2, 6, 8, 8, 3] }, { shape: [3, 3, 3, 3, 4] }],
    fn: ([x, f]) => tf.conv3d(conv5(x!), conv5(f!), 2, 'same'),
    tol: 1e-5,
    grad: { tol: 1e-4 },
  },
  {
    name: 'conv3d stride 2 valid',
    inputs: [{ shape: [2, 6, 8, 8, 3] }, { shape: [3, 3, 3, 3, 4] }],
    fn: ([x, f]) => tf.conv3d(conv5(x!), conv5(f!), 2, 'valid'),
    tol: 1e-5,
    grad: { tol: 1e-4 },
  },
  {
    name: 'conv3d patchify k2 stride 2 valid',
    inputs: [{ shape: [2, 6, 8, 8, 1] }, { shape: [2, 2, 2, 1, 8] }],
    fn: ([x, f]) => tf.conv3d(conv5(x!), conv5(f!), 2, 'valid'),
    tol: 1e-5,
    grad: { tol: 1e-4 },
  },
  {
    name: 'conv3dTranspose stride 2 same',
    inputs: [{ shape: [2, 3, 4, 4, 4] }, { shape: [3, 3, 3, 3, 4] }],
    fn: ([x, f]) => tf.conv3dTranspose(conv5(x!), conv5(f!), [2, 6, 8, 8, 3], 2, 'same'),
    tol: 1e-5,
    grad: { tol: 1e-4 },
  },
  {
    name: 'conv3dTranspose k2 stride 2 valid',
    inputs: [{ shape: [2, 3, 4, 4, 8] }, { shape: [2, 2, 2, 2, 8] }],
    fn: ([x, f]) => tf.conv3dTranspose(conv5(x!), conv5(f!), [2, 6, 8, 8, 2], 2, 'valid'),
    tol: 1e-5,
    grad: { tol: 1e-4 },
  },
  {
    name: 'maxPool3d k2 stride 2 valid',
    inputs: [{ shape: [2, 6, 8, 8, 3] }],
    fn: ([x]) => tf.maxPool3d(conv5(x!), 2, 2, 'valid'),
    tol: 0,
    grad: { tol: 1e-6, fdStep: 1e-3 },
  },
  {
    name: 'maxPool3d k3 stride 2 same, all-negative windows',
    inputs: [{ shape: [2, 5, 7, 7, 3], kind: 'negative' }],
    fn: ([x]) => tf.maxPool3d(conv5(x!), 3, 2, 'same'),
    tol: 0,
    grad: { tol: 1e-6, fdStep: 1e-3 },
  },
  {
    name: 'avgPool3d k2 stride 2 valid',
    inputs: [{ shape: [2, 6, 8, 8, 3] }],
    fn: ([x]) => tf.avgPool3d(conv5(x!), 2, 2, 'valid'),
    tol: 1e-6,
    grad: { tol: 1e-6 },
  },
  {
    name: 'avgPool3d k3 stride 2 same',
    inputs: [{ shape: [2, 5, 7, 7, 3] }],
    fn: ([x]) => tf.avgPool3d(conv5(x!), 3, 2, 'same'),
    tol: 1e-6,
    grad: { tol: 1e-6 },
  },

  // --- compositions, in the shapes the models use them ---
  {
    name: 'attention block (q k^T / sqrt(d), softmax, v)',
    inputs: [{ shape: [2, 6, 8] }, { shape: [2, 6, 8] }, { shape: [2, 6, 8] }],
    fn: ([q, k, v]) => tf.matMul(tf.softmax(tf.div(tf.matMul(q!, k!, false, true), Math.sqrt(8))), v!),
    tol: 1e-5,
    grad: { tol: 1e-5 },
  },
  {
    name: 'sparse MoE router (softmax, top-2, renormalise, one-hot combine, segment-sum load, gather)',
    inputs: [{ shape: [12, 8] }, { shape: [8, 4] }],
    fn: ([x, wr]) => {
      const probs = tf.softmax(tf.matMul(x!, wr!)); // [12, 4]
      const { values, indices } = tf.topk(probs, 2); // [12, 2]
      const gates = tf.div(values, tf.sum(values, -1, true)); // [12, 2]
      const dense = tf.sum(tf.mul(tf.oneHot(indices as tf.Tensor1D, 4), tf.expandDims(gates, -1)), 1); // [12, 4]
      // Per-expert load: each token's gated input summed into its first-choice expert.
      const first = tf.reshape(tf.slice(indices, [0, 0], [-1, 1]), [-1]); // [12]
      const load = tf.unsortedSegmentSum(tf.mul(x!, tf.slice(gates, [0, 0], [-1, 1])), first as tf.Tensor1D, 4); // [4, 8]
      // Each token's first-choice expert embedding (a column of the router), looked up by index.
      const picked = tf.gather(tf.transpose(wr!), first); // [12, 8]
      return [dense, load, tf.mul(picked, x!)];
    },
    tol: 1e-5,
    grad: { tol: 1e-5, fdStep: 1e-3 },
  },
  {
    name: 'conv stem (conv3d, channel bias on a [-1, C] view, gelu, avgPool3d)',
    inputs: [{ shape: [2, 6, 8, 8, 1] }, { shape: [3, 3, 3, 1, 8] }, { shape: [8] }],
    fn: ([x, f, b]) => {
      const y = tf.conv3d(conv5(x!), conv5(f!), 2, 'same'); // [2, 3, 4, 4, 8]
      const z = gelu(tf.add(tf.reshape(y, [-1, 8]), b!)); // [96, 8]
      return tf.avgPool3d(conv5(tf.reshape(z, y.shape)), [1, 2, 2], [1, 2, 2], 'valid'); // [2, 3, 2, 2, 8]
    },
    tol: 1e-5,
    grad: { tol: 1e-4 },
  },
];

/** A directional derivative of a case's L, analytic (from its gradient) against central differences. */
export interface FiniteDifferenceCheck {
  /** Σ_i <∂L/∂x_i, x_i⁺ - x_i⁻>, from the backend's gradient. */
  analytic: number;
  /** L(x⁺) - L(x⁻), with L summed in float64 on the host. */
  numeric: number;
  /** Σ_i |∂L/∂x_i| · |x_i⁺ - x_i⁻|: the size the difference is judged against. */
  scale: number;
}

/**
 * Checks a case's gradient on the active backend against central differences along one random
 * direction per input: x± = x ± step·v, rounded to float32, so the analytic side uses the exact
 * perturbation the forward pass saw.
 *
 * @param inputs from `makeCaseInputs(c)`
 */
export async function finiteDifferenceCheck(
  c: ConformanceCase,
  inputs: readonly HostInput[],
  step: number,
): Promise<FiniteDifferenceCheck> {
  const base = await runConformanceCase(c, inputs, { gradients: true });
  if (!base.grads) throw new Error(`case '${c.name}' has no gradient`);
  const rng = makeRng(hashName(`${c.name}/direction`));
  const plus = inputs.slice();
  const minus = inputs.slice();
  let analytic = 0;
  let scale = 0;
  gradInputs(c).forEach((i, j) => {
    const x = inputs[i] as Float32Array;
    const g = (base.grads as HostValue[])[j]?.data as Float32Array;
    const p = new Float32Array(x.length);
    const m = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) {
      const v = rng.normal();
      p[k] = (x[k] as number) + step * v;
      m[k] = (x[k] as number) - step * v;
      const d = (p[k] as number) - (m[k] as number);
      analytic += (g[k] as number) * d;
      scale += Math.abs((g[k] as number) * d);
    }
    plus[i] = p;
    minus[i] = m;
  });
  const weights = lossWeights(c, base.outputs);
  const lp = hostLoss((await runConformanceCase(c, plus, { gradients: false })).outputs, weights);
  const lm = hostLoss((await runConformanceCase(c, minus, { gradients: false })).outputs, weights);
  return { analytic, numeric: lp - lm, scale };
}
