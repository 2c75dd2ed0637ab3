/**
 * Segment (grouped) matrix products: the rows of one tensor split into consecutive segments, segment g
 * multiplied by its own matrix W_g. This is how a mixture of experts runs G experts of one kind and
 * size on the rows routed to them (Megablocks' grouped GEMM, Gale et al. 2023, without its padding):
 * one op for all G experts instead of G sets of ops.
 *
 * Why an op of its own: on the CPU backends (cpu, wasm) each tfjs op has a fixed cost (engine, tape,
 * and on wasm XNNPACK's weight packing for every product whose right operand is new), and an expert
 * that runs three products forward and six backward pays it per expert, so a layer of 32 small experts
 * cost ~1.6x a layer of 4 with the same rows (core's bench). Here the number of tfjs ops per layer does
 * not depend on G: forward one op, backward one op for the input gradient and one per weight gradient
 * (each of those a single product on the wasm fast path). On wasm the transposed weights for the input
 * gradient are kept (and their packed XNNPACK operators with them) until the weight's data is freed, so
 * a weight used in several cycles of a step is transposed and packed once.
 *
 * Kernels: wasm (views of the heap, XNNPACK per segment; wasm-kernels.ts) and cpu (host loops, here);
 * on any other backend the op is the same product composed of slices, matMuls and a concat, which
 * tfjs differentiates itself.
 *
 * Legend: R rows (all segments one after the other), G segments, n_g rows of segment g (Σ n_g = R),
 * o_g = n_0 + … + n_{g−1} its first row, K input width, N output width.
 */
import * as tf from '@tensorflow/tfjs-core';
import { OpArgumentError } from './ops.js';

/** Kernel names (one registration per backend). */
export const SEGMENT_MATMUL = 'GoeSegmentMatMul';
export const SEGMENT_WEIGHT_GRAD = 'GoeSegmentWeightGrad';

/** Attributes of `GoeSegmentMatMul`; its inputs are the array `[x, W_0, …, W_{G−1}]`. */
export interface SegmentMatMulAttrs {
  /** Rows per segment, G entries summing to R. */
  counts: number[];
  /** Multiply by W_gᵀ (W_g `[N, K]`) instead of W_g (`[K, N]`). */
  transposeB: boolean;
}

/** Attributes of `GoeSegmentWeightGrad`; its inputs are `x [R, K]` and `dy [R, N]`. */
export interface SegmentWeightGradAttrs {
  /** First row o_g and row count n_g of the segment. */
  offset: number;
  count: number;
  /** The gradient of a `transposeB` product: `dyᵀ x` `[N, K]` instead of `xᵀ dy` `[K, N]`. */
  transposeB: boolean;
}

/** Options of `segmentMatMul`. */
export interface SegmentMatMulOptions {
  /** Multiply segment g by W_gᵀ, W_g given as `[N, K]`. Default false. */
  transposeB?: boolean;
}

function checkArgs(x: tf.Tensor, ws: readonly tf.Tensor[], counts: readonly number[], transposeB: boolean): { K: number; N: number } {
  const op = 'segmentMatMul';
  if (x.rank !== 2) throw new OpArgumentError(op, `x must be [R, K], got [${x.shape.join(', ')}]`);
  if (ws.length === 0) throw new OpArgumentError(op, 'needs at least one weight matrix');
  if (counts.length !== ws.length) throw new OpArgumentError(op, `${ws.length} weight matrices but ${counts.length} row counts`);
  const [R, K] = x.shape as [number, number];
  let total = 0;
  for (const c of counts) {
    if (!Number.isInteger(c) || c < 0) throw new OpArgumentError(op, `row counts must be integers >= 0, got ${c}`);
    total += c;
  }
  if (total !== R) throw new OpArgumentError(op, `row counts sum to ${total}, but x has ${R} rows`);
  const w0 = ws[0] as tf.Tensor;
  if (w0.rank !== 2) throw new OpArgumentError(op, `weights must be rank 2, got [${w0.shape.join(', ')}]`);
  const inner = (transposeB ? w0.shape[1] : w0.shape[0]) as number;
  const N = (transposeB ? w0.shape[0] : w0.shape[1]) as number;
  if (inner !== K) throw new OpArgumentError(op, `x is [${R}, ${K}] but the weights are [${w0.shape.join(', ')}]${transposeB ? ' (transposed)' : ''}`);
  for (const [g, w] of ws.entries()) {
    if (w.rank !== 2 || w.shape[0] !== w0.shape[0] || w.shape[1] !== w0.shape[1]) {
      throw new OpArgumentError(op, `weight ${g} is [${w.shape.join(', ')}], the first is [${w0.shape.join(', ')}]`);
    }
    if (w.dtype !== 'float32') throw new OpArgumentError(op, `weight ${g} is ${w.dtype}, must be float32`);
  }
  if (x.dtype !== 'float32') throw new OpArgumentError(op, `x is ${x.dtype}, must be float32`);
  return { K, N };
}

/**
 * `y[o_g : o_g + n_g] = x[o_g : o_g + n_g] · W_g` for every segment g (or `· W_gᵀ` with `transposeB`),
 * with its gradient. Segments may be empty (a weight then gets a zero gradient).
 * @param x `[R, K]` the rows of all segments, one segment after the other
 * @param ws G matrices `[K, N]` (`[N, K]` with transposeB), all of one shape
 * @param counts `[G]` rows per segment, summing to R
 * @returns `[R, N]`
 */
export function segmentMatMul(x: tf.Tensor2D, ws: readonly tf.Tensor2D[], counts: readonly number[], options: SegmentMatMulOptions = {}): tf.Tensor2D {
  const transposeB = options.transposeB ?? false;
  checkArgs(x, ws, counts, transposeB);
  ensureSegmentKernels();
  if (!tf.getKernel(SEGMENT_MATMUL, tf.getBackend())) return composedSegmentMatMul(x, ws, counts, transposeB);
  // An array of inputs (keys '0', '1', …), as AddN has, so that the gradient can save all of them.
  const inputs = [x, ...ws] as unknown as tf.NamedTensorMap;
  const attrs: SegmentMatMulAttrs = { counts: [...counts], transposeB };
  return tf.engine().runKernel(SEGMENT_MATMUL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}

/** The same product from slices, matMuls and a concat, differentiated by tfjs (backends without the kernel). */
function composedSegmentMatMul(x: tf.Tensor2D, ws: readonly tf.Tensor2D[], counts: readonly number[], transposeB: boolean): tf.Tensor2D {
  return tf.tidy(() => {
    const parts: tf.Tensor2D[] = [];
    let offset = 0;
    const unused: tf.Tensor[] = [];
    for (const [g, n] of counts.entries()) {
      const w = ws[g] as tf.Tensor2D;
      if (n > 0) parts.push(tf.matMul(tf.slice(x, [offset, 0], [n, x.shape[1]]), w, false, transposeB));
      else unused.push(tf.sum(w));
      offset += n;
    }
    const N = (transposeB ? ws[0]?.shape[0] : ws[0]?.shape[1]) as number;
    let y = (parts.length === 0 ? tf.zeros([0, N]) : parts.length === 1 ? parts[0] : tf.concat(parts, 0)) as tf.Tensor2D;
    // An empty segment's weight stays in the graph with a zero gradient, as with the kernels (a [0, N]
    // product would do it, but WebGPU refuses zero-size bindings): y + 0 · Σ W_g.
    if (unused.length > 0 && y.size > 0) y = tf.add(y, tf.mul(unused.reduce((a, b) => tf.add(a, b)), 0));
    return y;
  });
}

// ---------------------------------------------------------------------------------------------------
// cpu kernels: host loops in float32, products accumulated in the order k = 0 … K−1 like tfjs' own

interface HostBackend {
  readSync(dataId: tf.DataId): ArrayLike<number>;
  makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): tf.TensorInfo;
}

/** `out[i, :] += a[i, :] · B` over rows i of a, B `[K, N]` row-major (or `[N, K]`, used transposed). */
function hostProduct(a: Float32Array, aOff: number, rows: number, K: number, b: Float32Array, N: number, transposeB: boolean, out: Float32Array, outOff: number): void {
  for (let i = 0; i < rows; i++) {
    const ai = aOff + i * K;
    const oi = outOff + i * N;
    for (let j = 0; j < N; j++) {
      let s = 0;
      if (transposeB) for (let k = 0; k < K; k++) s = Math.fround(s + Math.fround((a[ai + k] as number) * (b[j * K + k] as number)));
      else for (let k = 0; k < K; k++) s = Math.fround(s + Math.fround((a[ai + k] as number) * (b[k * N + j] as number)));
      out[oi + j] = s;
    }
  }
}

const cpuSegmentMatMul: tf.KernelFunc = ({ inputs, attrs, backend }) => {
  const b = backend as unknown as HostBackend;
  const { counts, transposeB } = attrs as unknown as SegmentMatMulAttrs;
  const [x, ...ws] = inputs as unknown as tf.TensorInfo[];
  const [R, K] = (x as tf.TensorInfo).shape as [number, number];
  const w0 = ws[0] as tf.TensorInfo;
  const N = (transposeB ? w0.shape[0] : w0.shape[1]) as number;
  const xv = b.readSync((x as tf.TensorInfo).dataId) as Float32Array;
  const out = new Float32Array(R * N);
  let offset = 0;
  for (const [g, n] of counts.entries()) {
    if (n > 0) hostProduct(xv, offset * K, n, K, b.readSync((ws[g] as tf.TensorInfo).dataId) as Float32Array, N, transposeB, out, offset * N);
    offset += n;
  }
  return b.makeTensorInfo([R, N], 'float32', out);
};

const cpuSegmentWeightGrad: tf.KernelFunc = ({ inputs, attrs, backend }) => {
  const b = backend as unknown as HostBackend;
  const { offset, count, transposeB } = attrs as unknown as SegmentWeightGradAttrs;
  // out = Aᵀ B over the segment's rows: A = x, B = dy (out [K, N]), or A = dy, B = x (out [N, K]).
  const [a, bb] = transposeB ? [inputs['dy'], inputs['x']] : [inputs['x'], inputs['dy']];
  const P = (a as tf.TensorInfo).shape[1] as number;
  const Q = (bb as tf.TensorInfo).shape[1] as number;
  const av = b.readSync((a as tf.TensorInfo).dataId) as Float32Array;
  const bv = b.readSync((bb as tf.TensorInfo).dataId) as Float32Array;
  const out = new Float32Array(P * Q);
  for (let p = 0; p < P; p++) {
    for (let q = 0; q < Q; q++) {
      let s = 0;
      for (let r = offset; r < offset + count; r++) s = Math.fround(s + Math.fround((av[r * P + p] as number) * (bv[r * Q + q] as number)));
      out[p * Q + q] = s;
    }
  }
  return b.makeTensorInfo([P, Q], 'float32', out);
};

/** Registers the cpu kernels (once) and the gradient (once); the wasm kernels come with `patchWasmKernels`. */
export function ensureSegmentKernels(): void {
  if (tf.findBackendFactory('cpu') && !tf.getKernel(SEGMENT_MATMUL, 'cpu')) {
    tf.registerKernel({ kernelName: SEGMENT_MATMUL, backendName: 'cpu', kernelFunc: cpuSegmentMatMul });
    tf.registerKernel({ kernelName: SEGMENT_WEIGHT_GRAD, backendName: 'cpu', kernelFunc: cpuSegmentWeightGrad });
  }
  if (!tf.getGradient(SEGMENT_MATMUL)) {
    tf.registerGradient({
      kernelName: SEGMENT_MATMUL,
      saveAllInputs: true, // saved = [x, w0, …, w{G−1}], in the inputs' order
      gradFunc: (dy, saved, attrs) => {
        const { counts, transposeB } = attrs as unknown as SegmentMatMulAttrs;
        const [x, ...ws] = saved as [tf.Tensor2D, ...tf.Tensor2D[]];
        const d = dy as tf.Tensor2D;
        const grads: Record<string, () => tf.Tensor> = {
          // dx = dy · W_gᵀ per segment (dy · W_g for a transposed product).
          0: () => segmentMatMul(d, ws, counts, { transposeB: !transposeB }),
        };
        let offset = 0;
        for (const [g, n] of counts.entries()) {
          const attrsG: SegmentWeightGradAttrs = { offset, count: n, transposeB };
          grads[g + 1] = () => tf.engine().runKernel(SEGMENT_WEIGHT_GRAD, { x, dy: d }, attrsG as unknown as tf.NamedAttrMap) as tf.Tensor;
          offset += n;
        }
        return grads;
      },
    });
  }
}
