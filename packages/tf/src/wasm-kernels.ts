/**
 * Kernel fixes for the tfjs wasm backend (@tensorflow/tfjs-backend-wasm 4.22), applied by
 * `patchWasmKernels()` right after the backend is activated (see `registerWasm` in backend.ts).
 *
 * What is wrong in 4.22 and how each is fixed here (every case is shown against the cpu backend or a
 * float64 reference in wasm-kernels.test.ts):
 *
 * - `BatchMatMul` takes XNNPACK's fully-connected fast path only for one 2-D product without
 *   transposes; a batch or a transpose falls to a naive triple loop (0.3-2 GFLOP/s against ~13-44).
 *   Re-registered: transposes are materialised with the wasm Transpose kernel and every product runs
 *   on the fast path, over zero-copy views of the batch slices (a batch with a shared right operand
 *   is one product with the batch folded into the rows).
 * - `_FusedMatMul` has the same slow path, and there its bias is indexed by the flat output position
 *   (`min(i * N + j, N - 1)`), so a batched or transposed fused product with a bias is silently wrong;
 *   a bias of rank > 1 is refused. Re-registered on the same fast path, with bias and activation fused
 *   into XNNPACK where it can and applied by the wasm kernels otherwise.
 * - `Conv3DBackpropInputV2` (conv3d's input gradient and conv3dTranspose's forward) and
 *   `Conv3DBackpropFilterV2` with stride > 1 give wrong numbers; `MaxPool3D` gives wrong maxima on
 *   windows that are all negative; `Dilation2D` and both its backprops give wrong values. These run
 *   the cpu backend's kernel on data copied across (the copy is O(size), the kernel is O(size x
 *   window)). `MaxPool3DGrad` and `MaxPoolGrad` route the gradient to the wrong element: rewritten
 *   here on the heap (the cpu kernel is ~10x slower).
 * - `Tile` (which `broadcastTo` runs) computes an index per element; replaced by block copies.
 * - `Sum` over leading axes transposes the data first; it runs as a ones-vector product instead.
 * - `Identity` (`tf.clone`, and so every tensor the engine saves for a gradient) copies the data:
 *   shared under a reference count instead, as the cpu and WebGL backends do.
 * - The segment products of segment.ts (grouped experts) run here on XNNPACK, one product per segment
 *   over views of the heap, keeping the transposed weights their input gradient multiplies by.
 * - Missing kernels: `UnsortedSegmentSum` (so `gather` has no gradient) is written here directly on
 *   the wasm heap (O(size), where the cpu kernel is O(size x segments)); `Einsum` is a transpose +
 *   batched matmul on the fast path; `Conv2DBackpropFilter` and the two depthwise-conv2d backprop
 *   kernels run the cpu kernel.
 *
 * Everything is idempotent: a kernel already carrying our implementation is left alone.
 */
import * as tf from '@tensorflow/tfjs-core';
import { SEGMENT_MATMUL, SEGMENT_WEIGHT_GRAD, type SegmentMatMulAttrs, type SegmentWeightGradAttrs } from './segment.js';

type HeapArray = Float32Array | Int32Array | Uint8Array;

/** The parts of the emscripten module and `BackendWasm` that the kernels below use. */
interface WasmModule {
  HEAPU8: Uint8Array;
  cwrap(name: string, returnType: null, argTypes: string[]): (...args: unknown[]) => void;
  tfjs: {
    registerTensor(id: number, size: number, memoryOffset: number): void;
    disposeData(id: number): void;
  };
}

interface WasmTensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: tf.DataType;
}

interface WasmBackend extends tf.KernelBackend {
  wasm: WasmModule;
  dataIdMap: { get(dataId: tf.DataId): WasmTensorData | undefined };
  dataIdNextNumber: number;
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: tf.backend_util.TypedArray): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): HeapArray;
}

type Inputs = tf.NamedTensorInfoMap | tf.TensorInfo[];
interface KernelArgs {
  inputs: Inputs;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}
type KernelOut = tf.TensorInfo | tf.TensorInfo[];

/** A wasm kernel fix could not run (a precondition of the fix, not a user error). */
export class WasmKernelError extends Error {
  override readonly name = 'WasmKernelError';
  constructor(
    readonly kernel: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${kernel} (wasm): ${message}`, options);
  }
}

// Must match `FusableActivation` in tfjs-backend-wasm's cc/fusable_activations.h.
const FUSABLE_ACTIVATION: Record<string, number> = {
  linear: 0,
  relu: 1,
  relu6: 2,
  prelu: 3,
  leakyrelu: 4,
  sigmoid: 5,
  elu: 6,
};

/** Below this many multiply-adds per 2-D product, one call of the original (looping) kernel for the
 * whole batch beats one fast-path call per product (XNNPACK packs the weights on every call).
 * Measured on one core: [4096, 8, 8]^2 takes 4 ms in the loop and 10 ms on the fast path; from
 * [512, 16, 16]^2 up the fast path wins (2.0 against 3.0 ms; 0.4 against 2.3 ms at [8, 64, 64]^2). */
const FAST_PATH_MIN_MACS = 12 * 12 * 12;

function asWasm(backend: tf.KernelBackend): WasmBackend {
  const b = backend as Partial<WasmBackend>;
  if (!b.wasm || !b.dataIdMap || typeof b.makeOutput !== 'function') {
    throw new WasmKernelError('patch', 'the active backend is not tfjs-backend-wasm');
  }
  return backend as WasmBackend;
}

function kernelFunc(name: string, backendName = 'wasm'): tf.KernelFunc {
  const k = tf.getKernel(name, backendName);
  if (!k) throw new WasmKernelError(name, `kernel '${name}' is not registered for '${backendName}'`);
  return k.kernelFunc;
}

/** Runs a kernel of the wasm backend itself (one we did not replace) on TensorInfos. */
function runWasm(name: string, backend: WasmBackend, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): tf.TensorInfo {
  return kernelFunc(name)({ inputs, backend, attrs }) as tf.TensorInfo;
}

function dispose(backend: WasmBackend, ...infos: (tf.TensorInfo | undefined)[]): void {
  for (const t of infos) if (t) backend.disposeData(t.dataId);
}

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function shapeBytes(shape: readonly number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}

/**
 * Three int32s as bytes in one of two reused buffers (`slot` 0 or 1): a C call copies its 'array'
 * arguments onto the stack before it runs, so a buffer is free again once the call returns, and the
 * products of a grouped layer (hundreds per step) allocate nothing for their shapes.
 */
const tripleBuffers = [new Int32Array(3), new Int32Array(3)] as const;
const tripleBytes = tripleBuffers.map((b) => new Uint8Array(b.buffer));
function tripleShape(slot: 0 | 1, a: number, b: number, c: number): Uint8Array {
  const buf = tripleBuffers[slot];
  buf[0] = a;
  buf[1] = b;
  buf[2] = c;
  return tripleBytes[slot] as Uint8Array;
}

// ---------------------------------------------------------------------------------------------------
// Running the cpu backend's kernel on wasm data

/**
 * Wraps the cpu backend's implementation of `name` as a wasm kernel: inputs are copied to the cpu
 * backend, the cpu kernel runs, and its outputs are copied back onto the wasm heap.
 */
function viaCpu(name: string): tf.KernelFunc {
  return (args) => {
    const { inputs, attrs } = args as unknown as KernelArgs;
    const backend = asWasm(args.backend as tf.KernelBackend);
    const cpuKernel = tf.getKernel(name, 'cpu');
    const cpu = tf.findBackend('cpu');
    if (!cpuKernel || !cpu) throw new WasmKernelError(name, 'needs the cpu backend (import @tensorflow/tfjs-backend-cpu)');
    const moved: tf.TensorInfo[] = [];
    const move = (t: tf.TensorInfo | null | undefined): tf.TensorInfo | null | undefined => {
      if (t == null) return t;
      if (t.dtype !== 'float32' && t.dtype !== 'int32' && t.dtype !== 'bool') {
        throw new WasmKernelError(name, `cannot move a ${t.dtype} tensor to the cpu backend`);
      }
      const dataId = cpu.write(backend.readSync(t.dataId) as tf.backend_util.TypedArray, t.shape, t.dtype);
      // Some cpu kernels read `rank`/`size` as if handed Tensors.
      const info = { dataId, shape: t.shape, dtype: t.dtype, rank: t.shape.length, size: size(t.shape) };
      moved.push(info);
      return info;
    };
    try {
      const cpuInputs = Array.isArray(inputs)
        ? inputs.map((t) => move(t))
        : Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, move(t)]));
      const res = cpuKernel.kernelFunc({ inputs: cpuInputs as tf.NamedTensorInfoMap, attrs: attrs ?? {}, backend: cpu }) as KernelOut;
      const outs = Array.isArray(res) ? res : [res];
      const back = outs.map((o) => {
        const values = cpu.readSync(o.dataId) as tf.backend_util.TypedArray;
        cpu.disposeData(o.dataId);
        return backend.makeOutput(o.shape.slice(), o.dtype, undefined, values);
      });
      return (Array.isArray(res) ? back : back[0]) as tf.TensorInfo;
    } finally {
      for (const t of moved) cpu.disposeData(t.dataId);
    }
  };
}

// ---------------------------------------------------------------------------------------------------
// Matrix products on XNNPACK's fast path

let cFusedMatMul: ((...args: unknown[]) => void) | undefined;
let cFusedMatMulModule: WasmModule | undefined;

/** The C `_FusedMatMul` entry point (same C function as BatchMatMul, plus bias and activation). */
function fusedMatMulC(backend: WasmBackend): (...args: unknown[]) => void {
  if (!cFusedMatMul || cFusedMatMulModule !== backend.wasm) {
    cFusedMatMul = backend.wasm.cwrap('_FusedMatMul', null, [
      'number', // a_id
      'array', // a_shape
      'number', // a_shape.length
      'number', // b_id
      'array', // b_shape
      'number', // b_shape.length
      'number', // transpose_a
      'number', // transpose_b
      'number', // activation
      'number', // bias_id
      'number', // prelu_weights_id
      'number', // leakyrelu_alpha
      'number', // out_id
    ]);
    cFusedMatMulModule = backend.wasm;
  }
  return cFusedMatMul;
}

/** The [K, N] each right operand was first multiplied as (see the weight-cache note below). */
const weightShapes = new WeakMap<tf.DataId, string>();

/**
 * The C id to multiply by a right operand `b` seen as `[K, N]`: its own id (XNNPACK then caches the
 * packed weights on it), unless b's data was first multiplied as another shape (a reshape shares the
 * data id), in which case a fresh alias, packed once: the caller disposes an id that is not bData.id.
 */
function weightId(backend: WasmBackend, dataId: tf.DataId, bData: WasmTensorData, K: number, N: number): number {
  const key = `${K}x${N}`;
  const seen = weightShapes.get(dataId);
  if (seen === undefined) weightShapes.set(dataId, key);
  return seen === undefined || seen === key ? bData.id : view(backend, bData, 0, K * N);
}

/** A tensor id on the C side that aliases part of another tensor's memory (no copy). */
function view(backend: WasmBackend, base: WasmTensorData, elementOffset: number, n: number): number {
  const id = backend.dataIdNextNumber++;
  backend.wasm.tfjs.registerTensor(id, n, base.memoryOffset + elementOffset * 4);
  return id;
}

interface Epilogue {
  /** Id of a rank-1 bias of length N, or 0. */
  biasId: number;
  /** FUSABLE_ACTIVATION code applied by XNNPACK / the C kernel (never prelu here). */
  activation: number;
  leakyreluAlpha: number;
}

const NO_EPILOGUE: Epilogue = { biasId: 0, activation: 0, leakyreluAlpha: 0 };

/**
 * One `[rows, K] x [K, N]` product on the fast path. `aId`/`bId`/`outId` are C tensor ids (real or
 * views). When `bId` is a real tensor id, XNNPACK's packed weights are cached on it across calls.
 */
function product2d(backend: WasmBackend, aId: number, rows: number, k: number, bId: number, n: number, outId: number, ep: Epilogue): void {
  fusedMatMulC(backend)(
    aId,
    tripleShape(0, 1, rows, k),
    3,
    bId,
    tripleShape(1, 1, k, n),
    3,
    0,
    0,
    ep.activation,
    ep.biasId,
    0,
    ep.leakyreluAlpha,
    outId,
  );
}

/**
 * `product2d`, then frees the `temporary` C ids (views made for this product; freeing a view also
 * deletes the XNNPACK operator cached on it).
 */
function productThenFree(backend: WasmBackend, aId: number, rows: number, k: number, bId: number, n: number, outId: number, ep: Epilogue, temporary: number[]): void {
  try {
    product2d(backend, aId, rows, k, bId, n, outId, ep);
  } finally {
    for (const id of temporary) backend.wasm.tfjs.disposeData(id);
  }
}

/** Row-major strides of `shape`, with 0 where a dim of size 1 is broadcast against `outShape`. */
function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const strides = new Array<number>(outShape.length).fill(0);
  let s = 1;
  for (let i = shape.length - 1, j = outShape.length - 1; i >= 0; i--, j--) {
    strides[j] = shape[i] === 1 && outShape[j] !== 1 ? 0 : s;
    s *= shape[i] as number;
  }
  return strides;
}

function transposeLast2(backend: WasmBackend, x: tf.TensorInfo, batch: number): tf.TensorInfo {
  const r = x.shape[x.shape.length - 2] as number;
  const c = x.shape[x.shape.length - 1] as number;
  const x3 = { dataId: x.dataId, shape: [batch, r, c], dtype: x.dtype }; // [B, r, c] view of the same data
  return runWasm('Transpose', backend, { x: x3 }, { perm: [0, 2, 1] }); // [B, c, r]
}

/**
 * `a x b` with tfjs BatchMatMul semantics (batch dims broadcast, optional transposes) where every
 * 2-D product takes the fast path. Returns a new `[...batch, M, N]` float32 tensor.
 * @param a [...batchA, M, K] (or [..., K, M] with transposeA)
 * @param b [...batchB, K, N] (or [..., N, K] with transposeB)
 */
function fastBatchMatMul(
  backend: WasmBackend,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  ep: Epilogue = NO_EPILOGUE,
): tf.TensorInfo {
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  const M = (transposeA ? a.shape[aRank - 1] : a.shape[aRank - 2]) as number;
  const Ka = (transposeA ? a.shape[aRank - 2] : a.shape[aRank - 1]) as number;
  const Kb = (transposeB ? b.shape[bRank - 1] : b.shape[bRank - 2]) as number;
  const N = (transposeB ? b.shape[bRank - 2] : b.shape[bRank - 1]) as number;
  if (Ka !== Kb) {
    throw new WasmKernelError(
      'BatchMatMul',
      `inner shapes (${Ka}) and (${Kb}) of tensors with shapes ${a.shape} and ${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match`,
    );
  }
  const K = Ka;
  const aBatch = a.shape.slice(0, -2);
  const bBatch = b.shape.slice(0, -2);
  const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(aBatch, bBatch);
  const outShape = [...outBatch, M, N];
  const nA = size(aBatch);
  const nB = size(bBatch);
  const nOut = size(outBatch);
  if (nOut * M * N === 0) return backend.makeOutput(outShape, 'float32');
  if (K === 0) {
    // An empty contraction is zero (plus the epilogue, which the caller applies on this path).
    return backend.makeOutput(outShape, 'float32', undefined, new Float32Array(nOut * M * N));
  }

  // Both transposed: (A^T B^T) = (B A)^T. One transpose of the M x N result is cheaper than two of
  // the operands when M N < K (M + N); only without an epilogue (the bias is per column of A^T B^T).
  if (transposeA && transposeB && M * N < K * (M + N) && ep === NO_EPILOGUE) {
    const bt = fastBatchMatMul(backend, b, a, false, false); // [...batch, N, M]
    const nBatch = size(bt.shape.slice(0, -2));
    const out = transposeLast2(backend, bt, nBatch); // [nBatch, M, N]
    dispose(backend, bt);
    return { dataId: out.dataId, shape: outShape, dtype: 'float32' };
  }

  const aT = transposeA ? transposeLast2(backend, a, nA) : undefined; // [nA, M, K]
  const bT = transposeB ? transposeLast2(backend, b, nB) : undefined; // [nB, K, N]
  try {
    const aData = backend.dataIdMap.get((aT ?? a).dataId) as WasmTensorData;
    const bData = backend.dataIdMap.get((bT ?? b).dataId) as WasmTensorData;
    const out = backend.makeOutput(outShape, 'float32');
    const outData = backend.dataIdMap.get(out.dataId) as WasmTensorData;

    if (nB === 1) {
      // One weight matrix for the whole batch: fold the batch into the rows, one product.
      // (The broadcast batch shape then has the same element order as a's.)
      // XNNPACK caches the packed weights on b's id, and a reshape shares that id: only reuse the id
      // when b is seen with the same [K, N] as before, else pass a fresh alias (packed once, dropped).
      const bId = bT ? bData.id : weightId(backend, b.dataId, bData, K, N);
      productThenFree(backend, aData.id, nOut * M, K, bId, N, outData.id, ep, bId !== bData.id ? [bId] : []);
      return out;
    }
    const aStrides = broadcastStrides(aBatch, outBatch);
    const bStrides = broadcastStrides(bBatch, outBatch);
    const rank = outBatch.length;
    const coord = new Array<number>(rank).fill(0);
    for (let o = 0; o < nOut; o++) {
      let ia = 0;
      let ib = 0;
      for (let d = 0; d < rank; d++) {
        ia += (coord[d] as number) * (aStrides[d] as number);
        ib += (coord[d] as number) * (bStrides[d] as number);
      }
      const aId = nA === 1 ? aData.id : view(backend, aData, ia * M * K, M * K);
      const bId = view(backend, bData, ib * K * N, K * N);
      const outId = view(backend, outData, o * M * N, M * N);
      productThenFree(backend, aId, M, K, bId, N, outId, ep, aId !== aData.id ? [aId, bId, outId] : [bId, outId]);
      for (let d = rank - 1; d >= 0; d--) {
        coord[d] = (coord[d] as number) + 1;
        if ((coord[d] as number) < (outBatch[d] as number)) break;
        coord[d] = 0;
      }
    }
    return out;
  } finally {
    dispose(backend, aT, bT);
  }
}

/**
 * True when the original kernel's loop beats the fast path: several products (or transposes to
 * materialise) each too small to pay for a fast-path call. A single product without transposes
 * always takes the fast path (which is also what the original does there).
 */
function smallProducts(a: tf.TensorInfo, b: tf.TensorInfo, transposeA: boolean, transposeB: boolean): boolean {
  const ar = a.shape.length;
  const br = b.shape.length;
  const M = (transposeA ? a.shape[ar - 1] : a.shape[ar - 2]) as number;
  const K = (transposeA ? a.shape[ar - 2] : a.shape[ar - 1]) as number;
  const N = (transposeB ? b.shape[br - 2] : b.shape[br - 1]) as number;
  const nB = size(b.shape.slice(0, -2));
  if (!transposeA && !transposeB && nB === 1) return false;
  // With a shared b there is a single product, so the batch counts towards its size.
  const rows = nB === 1 ? M * size(tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2))) : M;
  return rows * K * N < FAST_PATH_MIN_MACS;
}

let originalBatchMatMul: tf.KernelFunc | undefined;

const batchMatMulKernel: tf.KernelFunc = (args) => {
  const { inputs, attrs } = args as unknown as { inputs: { a: tf.TensorInfo; b: tf.TensorInfo }; attrs: { transposeA: boolean; transposeB: boolean } };
  const backend = asWasm(args.backend as tf.KernelBackend);
  const { a, b } = inputs;
  const transposeA = !!attrs.transposeA;
  const transposeB = !!attrs.transposeB;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    // The wasm backend has no integer matmul at all; the cpu one is exact.
    return viaCpu('BatchMatMul')(args);
  }
  if (originalBatchMatMul && smallProducts(a, b, transposeA, transposeB)) return originalBatchMatMul(args);
  return fastBatchMatMul(backend, a, b, transposeA, transposeB);
};

const fusedMatMulKernel: tf.KernelFunc = (args) => {
  const { inputs, attrs } = args as unknown as {
    inputs: { a: tf.TensorInfo; b: tf.TensorInfo; bias?: tf.TensorInfo; preluActivationWeights?: tf.TensorInfo };
    attrs: { transposeA: boolean; transposeB: boolean; activation: string; leakyreluAlpha?: number };
  };
  const backend = asWasm(args.backend as tf.KernelBackend);
  const { a, b, bias, preluActivationWeights } = inputs;
  const transposeA = !!attrs.transposeA;
  const transposeB = !!attrs.transposeB;
  const activation = attrs.activation ?? 'linear';
  const code = FUSABLE_ACTIVATION[activation];
  if (code === undefined) throw new WasmKernelError('_FusedMatMul', `unknown activation '${activation}'`);
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new WasmKernelError('_FusedMatMul', `only float32 is supported, got ${a.dtype} and ${b.dtype}`);
  }
  const K = (transposeA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1]) as number;
  const N = (transposeB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1]) as number;
  const small = smallProducts(a, b, transposeA, transposeB);
  // Inside XNNPACK / the C kernel: a rank-1 per-column bias and every activation but prelu (whose
  // weights may broadcast over rows too).
  const fusable =
    activation !== 'prelu' && (bias == null || (bias.shape.length === 1 && bias.shape[0] === N && bias.dtype === 'float32'));
  const leakyreluAlpha = attrs.leakyreluAlpha ?? 0.2; // tfjs-core's default
  if (fusable && K > 0 && !small) {
    const ep: Epilogue = {
      biasId: bias ? (backend.dataIdMap.get(bias.dataId) as WasmTensorData).id : 0,
      activation: code,
      leakyreluAlpha,
    };
    return fastBatchMatMul(backend, a, b, transposeA, transposeB, ep);
  }
  // General case: product, then bias and activation with the wasm kernels (which broadcast).
  let out =
    small && originalBatchMatMul
      ? (originalBatchMatMul({ inputs: { a, b }, backend, attrs: { transposeA, transposeB } }) as tf.TensorInfo)
      : fastBatchMatMul(backend, a, b, transposeA, transposeB);
  if (bias) {
    const next = runWasm('Add', backend, { a: out, b: bias });
    dispose(backend, out);
    out = next;
  }
  let act: tf.TensorInfo | undefined;
  switch (activation) {
    case 'linear':
      break;
    case 'relu':
      act = runWasm('Relu', backend, { x: out });
      break;
    case 'relu6':
      act = runWasm('Relu6', backend, { x: out });
      break;
    case 'sigmoid':
      act = runWasm('Sigmoid', backend, { x: out });
      break;
    case 'elu':
      act = runWasm('Elu', backend, { x: out });
      break;
    case 'leakyrelu':
      act = runWasm('LeakyRelu', backend, { x: out }, { alpha: leakyreluAlpha });
      break;
    case 'prelu':
      if (!preluActivationWeights) throw new WasmKernelError('_FusedMatMul', 'prelu needs preluActivationWeights');
      act = runWasm('Prelu', backend, { x: out, alpha: preluActivationWeights });
      break;
  }
  if (act) {
    dispose(backend, out);
    out = act;
  }
  return out;
};

// ---------------------------------------------------------------------------------------------------
// Segment products (segment.ts): one XNNPACK product per segment, over views of the heap

let cTranspose: ((...args: unknown[]) => void) | undefined;
let cTransposeModule: WasmModule | undefined;

/** `out = aᵀ` for a `[rows, cols]` float32 matrix, both C ids (views allowed). */
function transpose2dC(backend: WasmBackend, aId: number, rows: number, cols: number, outId: number): void {
  if (!cTranspose || cTransposeModule !== backend.wasm) {
    // Same entry point as tfjs' Transpose kernel: (x_id, x_shape, rank, dtype, out_id, perm, rank).
    cTranspose = backend.wasm.cwrap('Transpose', null, ['number', 'array', 'number', 'number', 'number', 'array', 'number']);
    cTransposeModule = backend.wasm;
  }
  cTranspose(aId, shapeBytes([rows, cols]), 2, 0 /* float32 */, outId, shapeBytes([1, 0]), 2);
}

/**
 * `Wᵀ` of a weight used by `transposeB` segment products, kept until W's data is freed: a weight is
 * multiplied transposed once per cycle and layer in a step (the input gradient), and keeping the
 * transpose keeps its packed XNNPACK operator too (one transpose and one packing per weight per step
 * instead of one per use). Keyed by W's data id; the disposal hook below drops the entry with W.
 */
const transposedWeights = new Map<tf.DataId, tf.TensorInfo>();
const disposalHooked = new WeakSet<WasmBackend>();

function hookDisposal(backend: WasmBackend): void {
  if (disposalHooked.has(backend)) return;
  disposalHooked.add(backend);
  const original = backend.disposeData.bind(backend);
  backend.disposeData = (dataId: tf.DataId, force?: boolean): boolean => {
    const freed = original(dataId, force);
    const t = freed ? transposedWeights.get(dataId) : undefined;
    if (t) {
      transposedWeights.delete(dataId);
      original(t.dataId, true);
    }
    return freed;
  };
}

/** The cached `[cols, rows]` transpose of the weight w `[rows, cols]` (made on first use). */
function cachedTranspose(backend: WasmBackend, w: tf.TensorInfo): tf.TensorInfo {
  const hit = transposedWeights.get(w.dataId);
  if (hit && hit.shape[0] === w.shape[1] && hit.shape[1] === w.shape[0]) return hit;
  if (hit) {
    transposedWeights.delete(w.dataId);
    backend.disposeData(hit.dataId, true);
  }
  hookDisposal(backend);
  const t = runWasm('Transpose', backend, { x: w }, { perm: [1, 0] });
  transposedWeights.set(w.dataId, t);
  return t;
}

/** Number of transposed weights held for segment products (for tests: they go with their weights). */
export function heldTransposedWeights(): number {
  return transposedWeights.size;
}

const segmentMatMulKernel: tf.KernelFunc = (args) => {
  const backend = asWasm(args.backend as tf.KernelBackend);
  const [x, ...ws] = args.inputs as unknown as tf.TensorInfo[];
  const { counts, transposeB } = args.attrs as unknown as SegmentMatMulAttrs;
  const [R, K] = (x as tf.TensorInfo).shape as [number, number];
  const w0 = ws[0] as tf.TensorInfo;
  const N = (transposeB ? w0.shape[0] : w0.shape[1]) as number;
  const out = backend.makeOutput([R, N], 'float32');
  if (R * N === 0) return out;
  if (K === 0) {
    backend.typedArrayFromHeap(out).fill(0);
    return out;
  }
  const xData = backend.dataIdMap.get((x as tf.TensorInfo).dataId) as WasmTensorData;
  const outData = backend.dataIdMap.get(out.dataId) as WasmTensorData;
  let offset = 0;
  for (const [g, n] of counts.entries()) {
    if (n > 0) {
      const w = transposeB ? cachedTranspose(backend, ws[g] as tf.TensorInfo) : (ws[g] as tf.TensorInfo); // [K, N]
      const wData = backend.dataIdMap.get(w.dataId) as WasmTensorData;
      const bId = weightId(backend, w.dataId, wData, K, N);
      const aId = view(backend, xData, offset * K, n * K);
      const oId = view(backend, outData, offset * N, n * N);
      productThenFree(backend, aId, n, K, bId, N, oId, NO_EPILOGUE, bId !== wData.id ? [aId, oId, bId] : [aId, oId]);
    }
    offset += n;
  }
  return out;
};

const segmentWeightGradKernel: tf.KernelFunc = (args) => {
  const backend = asWasm(args.backend as tf.KernelBackend);
  const { x, dy } = args.inputs as unknown as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const { offset, count, transposeB } = args.attrs as unknown as SegmentWeightGradAttrs;
  // out = Aᵀ B over the segment's rows, A [n, P], B [n, Q]: A = x, B = dy (dW [K, N]), or A = dy, B = x.
  const [a, b] = transposeB ? [dy, x] : [x, dy];
  const P = a.shape[1] as number;
  const Q = b.shape[1] as number;
  const out = backend.makeOutput([P, Q], 'float32');
  if (P * Q === 0) return out;
  if (count === 0) {
    backend.typedArrayFromHeap(out).fill(0);
    return out;
  }
  // Aᵀ on the heap (a row or a column is its own transpose), then one product with B's rows as the
  // weights: [P, n] · [n, Q], B packed fresh through a view that takes its operator with it.
  const aT = P > 1 && count > 1 ? backend.makeOutput([P, count], 'float32') : undefined;
  const aData = backend.dataIdMap.get(a.dataId) as WasmTensorData;
  const bData = backend.dataIdMap.get(b.dataId) as WasmTensorData;
  const outData = backend.dataIdMap.get(out.dataId) as WasmTensorData;
  const aView = view(backend, aData, offset * P, count * P);
  const bView = view(backend, bData, offset * Q, count * Q);
  const oId = outData.id;
  try {
    let left = aView;
    if (aT) {
      left = (backend.dataIdMap.get(aT.dataId) as WasmTensorData).id;
      transpose2dC(backend, aView, count, P, left);
    }
    product2d(backend, left, P, count, bView, Q, oId, NO_EPILOGUE);
  } finally {
    backend.wasm.tfjs.disposeData(aView);
    backend.wasm.tfjs.disposeData(bView);
    dispose(backend, aT);
  }
  return out;
};

// ---------------------------------------------------------------------------------------------------
// UnsortedSegmentSum, on the heap

const unsortedSegmentSumKernel: tf.KernelFunc = (args) => {
  const { inputs, attrs } = args as unknown as { inputs: { x: tf.TensorInfo; segmentIds: tf.TensorInfo }; attrs: { numSegments: number } };
  const backend = asWasm(args.backend as tf.KernelBackend);
  const { x, segmentIds } = inputs;
  const numSegments = attrs.numSegments;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new WasmKernelError('UnsortedSegmentSum', `x must be float32 or int32, got ${x.dtype}`);
  }
  const idRank = segmentIds.shape.length;
  for (let i = 0; i < idRank; i++) {
    if (segmentIds.shape[i] !== x.shape[i]) {
      throw new WasmKernelError('UnsortedSegmentSum', `segmentIds shape ${segmentIds.shape} must be a prefix of x shape ${x.shape}`);
    }
  }
  const inner = x.shape.slice(idRank);
  const d = size(inner);
  const n = size(segmentIds.shape);
  // Allocate first: growing the heap detaches typed-array views taken before it.
  const out = backend.makeOutput([numSegments, ...inner], x.dtype);
  const o = backend.typedArrayFromHeap(out);
  const xs = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  o.fill(0);
  for (let i = 0; i < n; i++) {
    // Ids outside [0, numSegments) are dropped, as in TensorFlow and the tfjs cpu kernel.
    const s = ids[i] as number;
    if (s < 0 || s >= numSegments) continue;
    const src = i * d;
    const dst = s * d;
    for (let j = 0; j < d; j++) o[dst + j] = (o[dst + j] as number) + (xs[src + j] as number);
  }
  return out;
};

// ---------------------------------------------------------------------------------------------------
// MaxPool(3D)Grad, on the heap

interface PoolGeom {
  B: number;
  C: number;
  inn: [number, number, number]; // D, H, W
  out: [number, number, number];
  stride: [number, number, number];
  dil: [number, number, number];
  filt: [number, number, number]; // effective (dilated) extent
  pad: [number, number, number]; // front, top, left
}

/**
 * dx of max pooling: each window's gradient goes to its maximum, found by scanning x in (d, h, w)
 * order. Of equal maxima the cpu backend takes the first in 2-D and the last in 3-D; `lastOfTies`
 * follows it so that the two backends agree on ties. O(output x window), directly on the heap (the
 * cpu kernel is ~10x slower through its buffers).
 */
function maxPoolGradHeap(backend: WasmBackend, dy: tf.TensorInfo, input: tf.TensorInfo, g: PoolGeom, lastOfTies: boolean): tf.TensorInfo {
  const dx = backend.makeOutput(input.shape.slice(), 'float32');
  const o = backend.typedArrayFromHeap(dx);
  const x = backend.typedArrayFromHeap(input);
  const gy = backend.typedArrayFromHeap(dy);
  o.fill(0);
  const [D, H, W] = g.inn;
  const [OD, OH, OW] = g.out;
  const [sd, sh, sw] = g.stride;
  const [dd, dh, dw] = g.dil;
  const [fd, fh, fw] = g.filt;
  const [pf, pt, pl] = g.pad;
  const C = g.C;
  let oi = 0;
  for (let b = 0; b < g.B; b++)
    for (let od = 0; od < OD; od++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++) {
          const d0 = od * sd - pf;
          const h0 = oh * sh - pt;
          const w0 = ow * sw - pl;
          for (let c = 0; c < C; c++, oi++) {
            let best = -Infinity;
            let at = -1;
            for (let kd = 0; kd < fd; kd += dd) {
              const id = d0 + kd;
              if (id < 0 || id >= D) continue;
              for (let kh = 0; kh < fh; kh += dh) {
                const ih = h0 + kh;
                if (ih < 0 || ih >= H) continue;
                const rowBase = ((b * D + id) * H + ih) * W;
                for (let kw = 0; kw < fw; kw += dw) {
                  const iw = w0 + kw;
                  if (iw < 0 || iw >= W) continue;
                  const idx = (rowBase + iw) * C + c;
                  const v = x[idx] as number;
                  if (v > best || (lastOfTies && v === best)) {
                    best = v;
                    at = idx;
                  }
                }
              }
            }
            if (at >= 0) o[at] = (o[at] as number) + (gy[oi] as number);
          }
        }
  return dx;
}

const maxPool3DGradKernel: tf.KernelFunc = (args) => {
  const { inputs, attrs } = args as unknown as { inputs: { dy: tf.TensorInfo; input: tf.TensorInfo }; attrs: Record<string, unknown> };
  const backend = asWasm(args.backend as tf.KernelBackend);
  const { dy, input } = inputs;
  if (input.dtype !== 'float32' || dy.dtype !== 'float32') return viaCpu('MaxPool3DGrad')(args);
  const i = tf.backend_util.computePool3DInfo(
    input.shape as [number, number, number, number, number],
    attrs['filterSize'] as [number, number, number],
    attrs['strides'] as [number, number, number],
    1,
    attrs['pad'] as 'same' | 'valid',
    attrs['dimRoundingMode'] as 'floor' | undefined,
  );
  return maxPoolGradHeap(backend, dy, input, {
    B: i.batchSize,
    C: i.inChannels,
    inn: [i.inDepth, i.inHeight, i.inWidth],
    out: [i.outDepth, i.outHeight, i.outWidth],
    stride: [i.strideDepth, i.strideHeight, i.strideWidth],
    dil: [i.dilationDepth, i.dilationHeight, i.dilationWidth],
    filt: [i.effectiveFilterDepth, i.effectiveFilterHeight, i.effectiveFilterWidth],
    pad: [i.padInfo.front, i.padInfo.top, i.padInfo.left],
  }, true);
};

const maxPoolGradKernel: tf.KernelFunc = (args) => {
  const { inputs, attrs } = args as unknown as { inputs: { dy: tf.TensorInfo; input: tf.TensorInfo }; attrs: Record<string, unknown> };
  const backend = asWasm(args.backend as tf.KernelBackend);
  const { dy, input } = inputs;
  if (input.dtype !== 'float32' || dy.dtype !== 'float32') return viaCpu('MaxPoolGrad')(args);
  const i = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs['filterSize'] as [number, number],
    attrs['strides'] as [number, number],
    1,
    attrs['pad'] as 'same' | 'valid',
    attrs['dimRoundingMode'] as 'floor' | undefined,
  );
  return maxPoolGradHeap(backend, dy, input, {
    B: i.batchSize,
    C: i.inChannels,
    inn: [1, i.inHeight, i.inWidth],
    out: [1, i.outHeight, i.outWidth],
    stride: [1, i.strideHeight, i.strideWidth],
    dil: [1, i.dilationHeight, i.dilationWidth],
    filt: [1, i.effectiveFilterHeight, i.effectiveFilterWidth],
    pad: [0, i.padInfo.top, i.padInfo.left],
  }, false);
};

// ---------------------------------------------------------------------------------------------------
// Tile (and so broadcastTo), as block copies on the heap

let originalTile: tf.KernelFunc | undefined;

/**
 * Tile by copying contiguous blocks: the innermost run of x is written once and every level's first
 * block is then duplicated with doubling copyWithin calls (memory-bound; the shipped kernel computes
 * an index per element and is ~14x slower on a [16, 256, 256] broadcast).
 */
const tileKernel: tf.KernelFunc = (args) => {
  const { inputs, attrs } = args as unknown as { inputs: { x: tf.TensorInfo }; attrs: { reps: number[] } };
  const backend = asWasm(args.backend as tf.KernelBackend);
  const { x } = inputs;
  if ((x.dtype !== 'float32' && x.dtype !== 'int32' && x.dtype !== 'bool') || !Array.isArray(attrs.reps)) {
    if (!originalTile) throw new WasmKernelError('Tile', `unsupported dtype ${x.dtype}`);
    return originalTile(args);
  }
  const reps = attrs.reps;
  if (reps.length !== x.shape.length) throw new WasmKernelError('Tile', `reps ${reps} must have the rank of x (${x.shape})`);
  const outShape = x.shape.map((d, i) => d * (reps[i] as number));
  const out = backend.makeOutput(outShape, x.dtype);
  if (size(outShape) === 0) return out;
  const o = backend.typedArrayFromHeap(out);
  const xs = backend.typedArrayFromHeap(x);
  // Merge dims: an untiled dim joins the dim before it; two size-1 dims tile as one; drop 1x1.
  const ds: number[] = [];
  const rs: number[] = [];
  x.shape.forEach((d, i) => {
    const r = reps[i] as number;
    const k = ds.length - 1;
    if (d === 1 && r === 1) return;
    if (k >= 0 && r === 1) ds[k] = (ds[k] as number) * d;
    else if (k >= 0 && d === 1 && ds[k] === 1) rs[k] = (rs[k] as number) * r;
    else {
      ds.push(d);
      rs.push(r);
    }
  });
  const n = ds.length;
  if (n === 0) {
    o[0] = xs[0] as number;
    return out;
  }
  const outBlock = new Array<number>(n + 1).fill(1);
  const xBlock = new Array<number>(n + 1).fill(1);
  for (let i = n - 1; i >= 0; i--) {
    outBlock[i] = (outBlock[i + 1] as number) * (ds[i] as number) * (rs[i] as number);
    xBlock[i] = (xBlock[i + 1] as number) * (ds[i] as number);
  }
  const fill = (level: number, xOff: number, oOff: number): void => {
    const d = ds[level] as number;
    const r = rs[level] as number;
    const inner = outBlock[level + 1] as number;
    const total = d * inner * r;
    if (level === n - 1) {
      if (d === 1) {
        o.fill(xs[xOff] as number, oOff, oOff + r);
        return;
      }
      o.set(xs.subarray(xOff, xOff + d), oOff);
    } else {
      for (let j = 0; j < d; j++) fill(level + 1, xOff + j * (xBlock[level + 1] as number), oOff + j * inner);
    }
    for (let done = d * inner; done < total; ) {
      const c = Math.min(done, total - done);
      o.copyWithin(oOff + done, oOff, oOff + c);
      done += c;
    }
  };
  fill(0, 0, 0);
  return out;
};

// ---------------------------------------------------------------------------------------------------
// Einsum as transposes + one batched matmul

const einsumKernel: tf.KernelFunc = (args) => {
  const { inputs, attrs } = args as unknown as { inputs: tf.TensorInfo[]; attrs: { equation: string } };
  const backend = asWasm(args.backend as tf.KernelBackend);
  const tensors = Array.isArray(inputs) ? inputs : (Object.values(inputs) as tf.TensorInfo[]);
  // Same validation (and error messages) as every other backend.
  const { allDims, idDims } = tf.backend_util.decodeEinsumEquation(attrs.equation, tensors.length);
  tf.backend_util.checkEinsumDimSizes(allDims.length, idDims, tensors as tf.Tensor[]);
  if (tensors.some((t) => t.dtype !== 'float32')) return viaCpu('Einsum')(args);
  const [lhs, outTerm] = attrs.equation.replace(/\s/g, '').split('->') as [string, string];
  if (new Set(outTerm).size !== outTerm.length) {
    throw new WasmKernelError('Einsum', `repeated output subscripts in '${attrs.equation}' are not supported`);
  }
  const terms = lhs.split(',');
  const dimSize = new Map<string, number>();
  terms.forEach((term, i) => [...term].forEach((c, j) => dimSize.set(c, (tensors[i] as tf.TensorInfo).shape[j] as number)));
  const sz = (letters: string[]) => letters.reduce((p, c) => p * (dimSize.get(c) as number), 1);
  const temps: tf.TensorInfo[] = [];
  const keep = (t: tf.TensorInfo) => {
    temps.push(t);
    return t;
  };

  /** Sums the letters of `term` not in `needed` away; returns the reduced tensor and its letters. */
  const reduceTo = (t: tf.TensorInfo, term: string, needed: Set<string>): { t: tf.TensorInfo; letters: string[] } => {
    const axes = [...term].flatMap((c, i) => (needed.has(c) ? [] : [i]));
    if (axes.length === 0) return { t, letters: [...term] };
    const r = keep(runWasm('Sum', backend, { x: t }, { axis: axes, keepDims: false }));
    return { t: r, letters: [...term].filter((c) => needed.has(c)) };
  };
  const permuted = (t: tf.TensorInfo, letters: string[], order: string[]): tf.TensorInfo => {
    const perm = order.map((c) => letters.indexOf(c));
    if (perm.every((p, i) => p === i)) return t;
    return keep(runWasm('Transpose', backend, { x: t }, { perm }));
  };

  try {
    let result: tf.TensorInfo;
    let resultLetters: string[];
    if (terms.length === 1) {
      const r = reduceTo(tensors[0] as tf.TensorInfo, terms[0] as string, new Set(outTerm));
      result = r.t;
      resultLetters = r.letters;
    } else {
      const [t0, t1] = terms as [string, string];
      const out = new Set(outTerm);
      const r0 = reduceTo(tensors[0] as tf.TensorInfo, t0, new Set([...out, ...t1]));
      const r1 = reduceTo(tensors[1] as tf.TensorInfo, t1, new Set([...out, ...t0]));
      const in1 = new Set(r1.letters);
      const in0 = new Set(r0.letters);
      const batch = r0.letters.filter((c) => in1.has(c) && out.has(c));
      const left = r0.letters.filter((c) => !in1.has(c));
      const contracted = r0.letters.filter((c) => in1.has(c) && !out.has(c));
      const right = r1.letters.filter((c) => !in0.has(c));
      const A = permuted(r0.t, r0.letters, [...batch, ...left, ...contracted]);
      const B = permuted(r1.t, r1.letters, [...batch, ...contracted, ...right]);
      const a3 = { dataId: A.dataId, shape: [sz(batch), sz(left), sz(contracted)], dtype: A.dtype }; // [batch, left, contracted]
      const b3 = { dataId: B.dataId, shape: [sz(batch), sz(contracted), sz(right)], dtype: B.dtype }; // [batch, contracted, right]
      const p = keep(fastBatchMatMul(backend, a3, b3, false, false)); // [batch, left, right]
      resultLetters = [...batch, ...left, ...right];
      result = { dataId: p.dataId, shape: resultLetters.map((c) => dimSize.get(c) as number), dtype: 'float32' };
    }
    const final = permuted(result, resultLetters, [...outTerm]);
    if (temps.includes(final)) {
      temps.splice(temps.indexOf(final), 1);
      return final;
    }
    // `final` aliases an input or a temporary with a reshaped view: hand out a counted reference.
    backend.incRef(final.dataId);
    return { dataId: final.dataId, shape: [...outTerm].map((c) => dimSize.get(c) as number), dtype: final.dtype };
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
};

// ---------------------------------------------------------------------------------------------------
// OneHot, on the heap

/**
 * `OneHot` written on the heap: the shipped kernel writes int32 bit patterns into a float32 output
 * (1 reads as 1.4e-45), and running the cpu kernel instead copied both ways (~0.2 ms for [2048, 32],
 * 20 calls per GoE training step). Indices outside [0, depth) give a row of `offValue`, as tfjs does.
 */
const oneHotKernel: tf.KernelFunc = (args) => {
  const backend = asWasm(args.backend as tf.KernelBackend);
  const { indices } = args.inputs as { indices: tf.TensorInfo };
  const { depth, onValue, offValue, dtype } = args.attrs as unknown as { depth: number; onValue: number; offValue: number; dtype: tf.DataType };
  if (indices.dtype !== 'int32') throw new WasmKernelError('OneHot', `indices must be int32, got ${indices.dtype}`);
  if (dtype !== 'float32' && dtype !== 'int32') return viaCpu('OneHot')(args);
  const out = backend.makeOutput([...indices.shape, depth], dtype);
  const n = size(indices.shape);
  if (n * depth === 0) return out;
  const values = backend.typedArrayFromHeap(out) as Float32Array | Int32Array;
  values.fill(offValue);
  const idx = backend.typedArrayFromHeap(indices) as Int32Array; // taken after the last allocation
  for (let i = 0; i < n; i++) {
    const j = idx[i] as number;
    if (j >= 0 && j < depth) values[i * depth + j] = onValue;
  }
  return out;
};

// ---------------------------------------------------------------------------------------------------
// Identity by reference

let originalIdentity: tf.KernelFunc | undefined;

/**
 * `Identity` (what `tf.clone` runs) shares the data under a reference count, as the cpu and WebGL
 * backends do; tfjs' wasm kernel copies it. The copy is paid for every tensor an op saves for its
 * gradient (the engine saves clones), ~790 copies per training step of a GoE layer, and each copy
 * also has a new data id, so the weight a product saved lost its cached XNNPACK operator in the
 * backward pass. Data of a tensor never changes, so sharing it is safe.
 */
const identityKernel: tf.KernelFunc = (args) => {
  const { x } = args.inputs as { x: tf.TensorInfo };
  if (x.dtype === 'string') {
    if (!originalIdentity) throw new WasmKernelError('Identity', 'string tensors need the original kernel');
    return originalIdentity(args);
  }
  const backend = asWasm(args.backend as tf.KernelBackend);
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape.slice(), dtype: x.dtype };
};

let originalSum: tf.KernelFunc | undefined;

/**
 * Sum over leading axes (`[R, …]` → `[…]`: every bias and LayerNorm gradient sums over the rows) as
 * the product `ones[1, R] · x[R, C]` on the fast path. The shipped kernel moves the reduced axes
 * innermost with a transpose first: 2.2 ms against 0.17 ms for [2048, 128], 9.9 against 0.23 for
 * [2048, 512]. Other reductions (inner or mixed axes, int32) keep the shipped kernel.
 */
const sumKernel: tf.KernelFunc = (args) => {
  const { inputs, attrs } = args as unknown as { inputs: { x: tf.TensorInfo }; attrs: { axis: number | number[]; keepDims: boolean } };
  const backend = asWasm(args.backend as tf.KernelBackend);
  const { x } = inputs;
  const rank = x.shape.length;
  const axes = tf.util.parseAxisParam(attrs.axis, x.shape).sort((a, b) => a - b);
  const k = axes.length;
  const leading = axes.every((a, i) => a === i);
  const R = size(x.shape.slice(0, k));
  const C = size(x.shape.slice(k));
  if (x.dtype !== 'float32' || !leading || k === 0 || k === rank || R < 2 || C === 0) {
    if (!originalSum) throw new WasmKernelError('Sum', 'the shipped kernel is not registered');
    return originalSum(args);
  }
  const ones = backend.makeOutput([1, R], 'float32', undefined, new Float32Array(R).fill(1));
  try {
    const out = fastBatchMatMul(backend, ones, { dataId: x.dataId, shape: [R, C], dtype: 'float32' }, false, false); // [1, C]
    const rest = x.shape.slice(k);
    return { dataId: out.dataId, shape: attrs.keepDims ? [...new Array<number>(k).fill(1), ...rest] : rest, dtype: 'float32' };
  } finally {
    dispose(backend, ones);
  }
};

// ---------------------------------------------------------------------------------------------------
// Registration

const REPLACEMENTS: ReadonlyArray<{ name: string; kernel: tf.KernelFunc; why: string }> = [
  { name: 'BatchMatMul', kernel: batchMatMulKernel, why: 'batched/transposed products off the XNNPACK fast path (0.3-2 GFLOP/s)' },
  { name: '_FusedMatMul', kernel: fusedMatMulKernel, why: 'slow path, and a wrong bias index on it when batched or transposed' },
  { name: 'Conv3DBackpropInputV2', kernel: viaCpu('Conv3DBackpropInputV2'), why: 'wrong values (conv3d input gradient, conv3dTranspose)' },
  { name: 'Conv3DBackpropFilterV2', kernel: viaCpu('Conv3DBackpropFilterV2'), why: 'wrong values with stride > 1' },
  { name: 'MaxPool3D', kernel: viaCpu('MaxPool3D'), why: 'wrong maxima on all-negative windows' },
  { name: 'MaxPool3DGrad', kernel: maxPool3DGradKernel, why: 'gradient routed to the wrong element' },
  { name: 'MaxPoolGrad', kernel: maxPoolGradKernel, why: 'gradient routed to the wrong element' },
  { name: 'Dilation2D', kernel: viaCpu('Dilation2D'), why: 'wrong values' },
  { name: 'Dilation2DBackpropInput', kernel: viaCpu('Dilation2DBackpropInput'), why: 'wrong values' },
  { name: 'Dilation2DBackpropFilter', kernel: viaCpu('Dilation2DBackpropFilter'), why: 'wrong values' },
  { name: 'Sum', kernel: sumKernel, why: 'leading-axis sums (bias and LayerNorm gradients) transpose first: 13-43x slower than a ones-vector product' },
  { name: 'Tile', kernel: tileKernel, why: 'an index computation per element: ~14x slower than a block copy (broadcastTo, and the Sum/Mean gradients, run it)' },
  { name: 'Identity', kernel: identityKernel, why: 'copies the data of every tensor saved for a gradient: shared by reference count instead' },
  { name: 'UnsortedSegmentSum', kernel: unsortedSegmentSumKernel, why: 'missing (gather has no gradient)' },
  { name: SEGMENT_MATMUL, kernel: segmentMatMulKernel, why: 'segment products (segment.ts): one XNNPACK product per segment over heap views, transposed weights kept' },
  { name: SEGMENT_WEIGHT_GRAD, kernel: segmentWeightGradKernel, why: "a segment product's weight gradient as one product over heap views" },
  { name: 'Einsum', kernel: einsumKernel, why: 'missing' },
  { name: 'Conv2DBackpropFilter', kernel: viaCpu('Conv2DBackpropFilter'), why: 'missing (conv2d filter gradient)' },
  { name: 'OneHot', kernel: oneHotKernel, why: 'dtype float32 writes int32 bit patterns (1 reads as 1.4e-45)' },
  { name: 'DepthwiseConv2dNativeBackpropFilter', kernel: viaCpu('DepthwiseConv2dNativeBackpropFilter'), why: 'missing' },
  { name: 'DepthwiseConv2dNativeBackpropInput', kernel: viaCpu('DepthwiseConv2dNativeBackpropInput'), why: 'missing' },
];

/** Kernel names that `patchWasmKernels()` replaces or adds on the wasm backend, with the reason. */
export const WASM_KERNEL_FIXES: ReadonlyArray<{ name: string; why: string }> = REPLACEMENTS.map(({ name, why }) => ({ name, why }));

/**
 * Re-registers the wasm kernels that are wrong, missing or slow in tfjs-backend-wasm 4.22 (see the
 * file comment). Call after the wasm backend is registered; idempotent (a kernel that already
 * carries the fixed implementation is left alone). A no-op when no wasm backend is registered.
 */
export function patchWasmKernels(): void {
  if (!tf.findBackendFactory('wasm') && !tf.getKernel('BatchMatMul', 'wasm')) return;
  for (const { name, kernel } of REPLACEMENTS) {
    const existing = tf.getKernel(name, 'wasm');
    if (existing?.kernelFunc === kernel) continue;
    if (existing) {
      if (name === 'BatchMatMul') originalBatchMatMul = existing.kernelFunc;
      if (name === 'Tile') originalTile = existing.kernelFunc;
      if (name === 'Sum') originalSum = existing.kernelFunc;
      if (name === 'Identity') originalIdentity = existing.kernelFunc;
      tf.unregisterKernel(name, 'wasm');
    }
    tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: kernel });
  }
}
