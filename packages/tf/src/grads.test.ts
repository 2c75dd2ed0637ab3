/**
 * Every gradient registered by grads.ts against central finite differences, on every backend under
 * test. The loss is L(x) = sum(w * f(x)) with fixed random weights w, accumulated on the host in
 * float64 from the forward outputs; perturbations x +- h v are formed in float64 and rounded to
 * float32 once, and the finite difference uses the perturbation that was actually applied.
 *
 * - Linear and bilinear ops (slicing, gathers, scatters, tile, matmul, einsum, convolutions, …): the
 *   central difference is exact up to float32 rounding, so the check is tight, and on cpu/wasm it is
 *   done element by element (every partial derivative), elsewhere along random directions.
 * - Smooth non-linear ops: along random directions with h = 1e-2 and a tolerance that covers the
 *   O(h^2) truncation and float32 evaluation of the loss.
 * Inputs of non-smooth ops (relu, abs, max, pooling, topK, …) are drawn away from their kinks and ties.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from './backend.js';
import { GRADIENT_KERNELS, registerMissingGradients } from './grads.js';
import { makeRng, type Rng } from './rng.js';
import { backendsUnderTest } from './testing.js';

const BACKENDS = await backendsUnderTest();

type Gen = (n: number, rng: Rng) => number[];
const uniform =
  (lo: number, hi: number): Gen =>
  (n, rng) =>
    Array.from({ length: n }, () => lo + (hi - lo) * rng.next());
/** |x| in [lo, hi] with a random sign: away from a kink at 0. */
const awayFromZero =
  (lo: number, hi: number): Gen =>
  (n, rng) =>
    Array.from({ length: n }, () => (rng.next() < 0.5 ? -1 : 1) * (lo + (hi - lo) * rng.next()));
/** Distinct values at least `gap` apart, shuffled: no ties for max/min/topK/pooling. */
const distinct =
  (gap = 0.1, offset = 0): Gen =>
  (n, rng) => {
    const v = Array.from({ length: n }, (_, i) => offset + (i - n / 2) * gap);
    for (let i = n - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [v[i], v[j]] = [v[j] as number, v[i] as number];
    }
    return v;
  };

interface GradCase {
  /** Kernels whose gradient this case exercises. */
  kernels: string[];
  label?: string;
  shapes: number[][];
  f: (...xs: tf.Tensor[]) => tf.Tensor;
  gen?: Gen | Gen[];
  /** Linear (or bilinear) in every input: exact central differences, tight tolerance. */
  linear?: boolean;
  /** Piecewise linear (max, pooling, topK): exact differences only for steps smaller than the gaps
   * between inputs, so a small step and a tolerance for the float32 loss. */
  piecewise?: boolean;
  /** Gradient is zero everywhere (piecewise-constant op). */
  zero?: boolean;
  /** Backends that lack the forward kernel. */
  skip?: string[];
}

const I = (v: number[], s: number[]) => tf.tensor(v, s, 'int32');

const CASES: GradCase[] = [
  // elementwise, one input
  { kernels: ['Abs'], shapes: [[2, 3]], f: (x) => tf.abs(x), gen: awayFromZero(0.2, 1) },
  { kernels: ['Acos'], shapes: [[2, 3]], f: (x) => tf.acos(x), gen: uniform(-0.8, 0.8) },
  { kernels: ['Acosh'], shapes: [[2, 3]], f: (x) => tf.acosh(x), gen: uniform(1.3, 3) },
  { kernels: ['Asin'], shapes: [[2, 3]], f: (x) => tf.asin(x), gen: uniform(-0.8, 0.8) },
  { kernels: ['Asinh'], shapes: [[2, 3]], f: (x) => tf.asinh(x) },
  { kernels: ['Atan'], shapes: [[2, 3]], f: (x) => tf.atan(x) },
  { kernels: ['Atanh'], shapes: [[2, 3]], f: (x) => tf.atanh(x), gen: uniform(-0.7, 0.7) },
  { kernels: ['Cos'], shapes: [[2, 3]], f: (x) => tf.cos(x) },
  { kernels: ['Cosh'], shapes: [[2, 3]], f: (x) => tf.cosh(x) },
  { kernels: ['Sin'], shapes: [[2, 3]], f: (x) => tf.sin(x) },
  { kernels: ['Sinh'], shapes: [[2, 3]], f: (x) => tf.sinh(x) },
  { kernels: ['Tan'], shapes: [[2, 3]], f: (x) => tf.tan(x), gen: uniform(-1, 1) },
  { kernels: ['Expm1'], shapes: [[2, 3]], f: (x) => tf.expm1(x) },
  { kernels: ['Log'], shapes: [[2, 3]], f: (x) => tf.log(x), gen: uniform(0.4, 2) },
  { kernels: ['Log1p'], shapes: [[2, 3]], f: (x) => tf.log1p(x), gen: uniform(-0.5, 2) },
  { kernels: ['Sqrt'], shapes: [[2, 3]], f: (x) => tf.sqrt(x), gen: uniform(0.4, 2) },
  { kernels: ['Square'], shapes: [[2, 3]], f: (x) => tf.square(x) },
  { kernels: ['Erf'], shapes: [[2, 3]], f: (x) => tf.erf(x) },
  { kernels: ['Softplus'], shapes: [[2, 3]], f: (x) => tf.softplus(x) },
  { kernels: ['Relu'], shapes: [[2, 3]], f: (x) => tf.relu(x), gen: awayFromZero(0.2, 1) },
  // Kinks of relu6 at 0 and 6: values in [-2, -0.5], [0.5, 5.5] and [6.5, 8].
  { kernels: ['Relu6'], shapes: [[2, 4]], f: (x) => tf.relu6(x), gen: (n, rng) => Array.from({ length: n }, (_, i) => [uniform(-2, -0.5), uniform(0.5, 5.5), uniform(6.5, 8)][i % 3]!(1, rng)[0] as number) },
  { kernels: ['Selu'], shapes: [[2, 3]], f: (x) => tf.selu(x), gen: awayFromZero(0.2, 1) },
  { kernels: ['Exp'], shapes: [[2, 3]], f: (x) => tf.exp(x) },
  { kernels: ['Tanh'], shapes: [[2, 3]], f: (x) => tf.tanh(x) },
  { kernels: ['Sigmoid'], shapes: [[2, 3]], f: (x) => tf.sigmoid(x) },
  { kernels: ['Rsqrt'], shapes: [[2, 3]], f: (x) => tf.rsqrt(x), gen: uniform(0.4, 2) },
  { kernels: ['Reciprocal'], shapes: [[2, 3]], f: (x) => tf.reciprocal(x), gen: awayFromZero(0.5, 2) },
  { kernels: ['Elu'], shapes: [[2, 3]], f: (x) => tf.elu(x), gen: awayFromZero(0.2, 1) },
  { kernels: ['Neg'], shapes: [[2, 3]], f: (x) => tf.neg(x), linear: true },
  { kernels: ['Identity'], shapes: [[2, 3]], f: (x) => tf.clone(x), linear: true },
  { kernels: ['LeakyRelu'], shapes: [[2, 3]], f: (x) => tf.leakyRelu(x, 0.3), gen: awayFromZero(0.2, 1) },
  { kernels: ['ClipByValue'], shapes: [[2, 4]], f: (x) => tf.clipByValue(x, -0.5, 0.5), gen: (n, rng) => distinct(0.3, 0.05)(n, rng) },
  { kernels: ['Floor', 'Ceil', 'Round', 'Sign', 'Step'], shapes: [[2, 3]], f: (x) => tf.addN([tf.floor(x), tf.ceil(x), tf.round(x), tf.sign(x), tf.step(x)]), gen: uniform(0.1, 0.4), zero: true },
  // elementwise, two inputs, with broadcasting
  { kernels: ['Add'], shapes: [[2, 3], [3]], f: (a, b) => tf.add(a, b), linear: true },
  { kernels: ['Sub'], shapes: [[2, 1], [1, 3]], f: (a, b) => tf.sub(a, b), linear: true },
  { kernels: ['Multiply'], shapes: [[2, 3], [2, 1]], f: (a, b) => tf.mul(a, b), linear: true },
  { kernels: ['RealDiv'], shapes: [[2, 3], [3]], f: (a, b) => tf.div(a, b), gen: [uniform(-1, 1), awayFromZero(0.5, 1.5)] },
  { kernels: ['FloorDiv'], shapes: [[2, 3], [3]], f: (a, b) => tf.floorDiv(a, b), gen: [uniform(1.1, 1.4), uniform(0.6, 0.7)], zero: true },
  { kernels: ['Mod'], shapes: [[2, 3], [3]], f: (a, b) => tf.mod(a, b), gen: [uniform(2.1, 2.4), uniform(0.9, 1.0)] },
  { kernels: ['Pow'], shapes: [[2, 3], [3]], f: (a, b) => tf.pow(a, b), gen: [uniform(0.5, 2), uniform(-1, 2)] },
  { kernels: ['Maximum'], shapes: [[2, 3], [3]], f: (a, b) => tf.maximum(a, b), gen: [distinct(0.2, 0.05), distinct(0.21, 0)] },
  { kernels: ['Minimum'], shapes: [[2, 3], [3]], f: (a, b) => tf.minimum(a, b), gen: [distinct(0.2, 0.05), distinct(0.21, 0)] },
  { kernels: ['SquaredDifference'], shapes: [[2, 3], [3]], f: (a, b) => tf.squaredDifference(a, b) },
  { kernels: ['Atan2'], shapes: [[2, 3], [3]], f: (a, b) => tf.atan2(a, b), gen: [uniform(-1, 1), uniform(0.5, 1.5)] },
  { kernels: ['Prelu'], shapes: [[2, 3], [3]], f: (x, a) => tf.prelu(x, a), gen: [awayFromZero(0.2, 1), uniform(0.1, 0.5)] },
  { kernels: ['AddN'], shapes: [[2, 3], [2, 3], [2, 3]], f: (a, b, c) => tf.addN([a, b, c]), linear: true },
  { kernels: ['Select'], shapes: [[2, 3], [2, 3]], f: (a, b) => tf.where(tf.tensor2d([[1, 0, 1], [0, 0, 1]], [2, 3], 'bool'), a, b), linear: true },
  // reductions
  { kernels: ['Sum'], label: 'axis 1', shapes: [[2, 3, 2]], f: (x) => tf.sum(x, 1), linear: true },
  { kernels: ['Sum'], label: 'all, keepDims', shapes: [[2, 3]], f: (x) => tf.sum(x, undefined, true), linear: true },
  { kernels: ['Mean'], shapes: [[2, 3, 2]], f: (x) => tf.mean(x, [0, 2]), linear: true },
  { kernels: ['Max'], shapes: [[3, 4]], f: (x) => tf.max(x, 1), gen: distinct() },
  { kernels: ['Min'], shapes: [[3, 4]], f: (x) => tf.min(x, 0, true), gen: distinct() },
  { kernels: ['Prod'], shapes: [[2, 3, 2]], f: (x) => tf.prod(x, [1, 2]), gen: (n, rng) => uniform(0.5, 1.5)(n, rng).map((v, i) => (i === 3 ? 0 : v)) },
  { kernels: ['Cumsum'], label: 'axis 0', shapes: [[3, 2]], f: (x) => tf.cumsum(x, 0), linear: true },
  { kernels: ['Cumsum'], label: 'exclusive, reverse, axis 1', shapes: [[2, 4]], f: (x) => tf.cumsum(x, 1, true, true), linear: true },
  { kernels: ['Softmax'], shapes: [[2, 4]], f: (x) => tf.softmax(x) },
  // shapes and indexing
  { kernels: ['Reshape'], shapes: [[2, 3]], f: (x) => tf.reshape(x, [3, 2]), linear: true },
  { kernels: ['ExpandDims'], shapes: [[2, 3]], f: (x) => tf.expandDims(x, 1), linear: true },
  { kernels: ['Transpose'], shapes: [[2, 3, 4]], f: (x) => tf.transpose(x, [2, 0, 1]), linear: true },
  { kernels: ['Reverse'], shapes: [[2, 3]], f: (x) => tf.reverse(x, 1), linear: true },
  { kernels: ['Slice'], shapes: [[3, 4]], f: (x) => tf.slice(x, [1, 1], [2, -1]), linear: true },
  { kernels: ['Concat'], shapes: [[2, 3], [2, 2]], f: (a, b) => tf.concat([a, b], -1), linear: true },
  { kernels: ['Pack'], shapes: [[2, 3], [2, 3]], f: (a, b) => tf.stack([a, b], 1), linear: true },
  { kernels: ['Unpack'], shapes: [[2, 3]], f: (x) => tf.addN(tf.unstack(x, 1).map((t, i) => tf.mul(t, i + 1))), linear: true },
  { kernels: ['SplitV'], shapes: [[5, 2]], f: (x) => tf.concat(tf.split(x, [2, 3], 0).map((t, i) => tf.mul(t, i + 2)), 0), linear: true },
  { kernels: ['PadV2'], shapes: [[2, 3]], f: (x) => tf.pad(x, [[1, 0], [2, 1]], 0.5), linear: true },
  { kernels: ['MirrorPad'], label: 'reflect', shapes: [[3, 4]], f: (x) => tf.mirrorPad(x, [[2, 1], [1, 2]], 'reflect'), linear: true },
  { kernels: ['MirrorPad'], label: 'symmetric', shapes: [[3, 4]], f: (x) => tf.mirrorPad(x, [[1, 3], [0, 2]], 'symmetric'), linear: true },
  { kernels: ['Tile'], label: 'rank 2', shapes: [[2, 3]], f: (x) => tf.tile(x, [2, 3]), linear: true },
  { kernels: ['Tile'], label: 'rank 5 (tfjs-core throws above rank 4)', shapes: [[1, 2, 1, 2, 1]], f: (x) => tf.tile(x, [2, 1, 3, 2, 2]), linear: true },
  { kernels: ['BatchToSpaceND'], shapes: [[4, 1, 2, 1]], f: (x) => tf.batchToSpaceND(x, [2, 2], [[0, 0], [0, 1]]), linear: true },
  { kernels: ['SpaceToBatchND'], shapes: [[1, 2, 3, 1]], f: (x) => tf.spaceToBatchND(x, [2, 2], [[0, 0], [0, 1]]), linear: true },
  { kernels: ['GatherV2'], label: 'axis 0, repeated rows', shapes: [[4, 3]], f: (x) => tf.gather(x, I([2, 0, 2, 3, 2], [5])), linear: true },
  { kernels: ['GatherV2'], label: 'axis 1, 2-D indices', shapes: [[2, 4, 3]], f: (x) => tf.gather(x, I([3, 1, 1, 0], [2, 2]), 1), linear: true },
  { kernels: ['GatherV2'], label: 'batchDims 1', shapes: [[2, 4, 3]], f: (x) => tf.gather(x, I([3, 1, 0, 0], [2, 2]), 1, 1), linear: true },
  { kernels: ['UnsortedSegmentSum'], shapes: [[5, 2]], f: (x) => tf.unsortedSegmentSum(x, tf.tensor1d([2, 0, -1, 2, 1], 'int32'), 3), linear: true },
  { kernels: ['GatherNd'], shapes: [[3, 4, 2]], f: (x) => tf.gatherND(x, I([0, 1, 2, 3, 0, 1, 1, 0], [4, 2])), linear: true },
  { kernels: ['ScatterNd'], shapes: [[4, 2]], f: (u) => tf.scatterND(I([1, 3, 1, 0], [4, 1]), u, [5, 2]), linear: true },
  { kernels: ['TensorScatterUpdate'], shapes: [[4, 3], [2, 3]], f: (t, u) => tf.tensorScatterUpdate(t, I([2, 0], [2, 1]), u), linear: true },
  { kernels: ['TopK'], label: 'values, k=3 of 5', shapes: [[3, 5]], f: (x) => tf.topk(x, 3).values, gen: distinct(0.1), piecewise: true },
  { kernels: ['StridedSlice'], label: 'strides 2 and 3', shapes: [[5, 7]], f: (x) => tf.stridedSlice(x, [0, 1], [5, 7], [2, 3]), linear: true },
  { kernels: ['StridedSlice'], label: 'negative stride', shapes: [[4, 6]], f: (x) => tf.stridedSlice(x, [3, 5], [0, 0], [-1, -2]), linear: true },
  { kernels: ['StridedSlice'], label: 'begin/end masks, mixed strides', shapes: [[4, 5, 6]], f: (x) => tf.stridedSlice(x, [0, 4, 1], [3, 0, 6], [2, -2, 3], 0b001, 0b010), linear: true },
  // Shrinking with stride 1 only: every backend's forward pass is wrong when a shrunk axis is
  // combined with strides != 1 (x[1, ::2, 1::2] on [3, 4, 5] returns x[1:3, 0, ::2]).
  { kernels: ['StridedSlice'], label: 'shrink axis', shapes: [[3, 4, 5]], f: (x) => tf.stridedSlice(x, [1, 0, 1], [0, 4, 4], [1, 1, 1], 0b010, 0b010, 0, 0, 0b001), linear: true },
  { kernels: ['StridedSlice'], label: 'ellipsis and new axis', shapes: [[2, 3, 4]], f: (x) => tf.stridedSlice(x, [0, 0, 1], [0, 0, 4], [1, 1, 2], 0, 0, 0b001, 0b010), linear: true },
  // products
  { kernels: ['BatchMatMul'], label: '2-D', shapes: [[3, 4], [4, 2]], f: (a, b) => tf.matMul(a, b), linear: true },
  { kernels: ['BatchMatMul'], label: 'batched, transposeA', shapes: [[2, 4, 3], [2, 4, 2]], f: (a, b) => tf.matMul(a, b, true, false), linear: true },
  { kernels: ['BatchMatMul'], label: 'transposeB, broadcast b (tfjs-core fails)', shapes: [[2, 3, 4], [2, 4]], f: (a, b) => tf.matMul(a, b, false, true), linear: true },
  { kernels: ['BatchMatMul'], label: 'both transposed, 4-D, a broadcast', shapes: [[1, 2, 4, 3], [3, 2, 2, 4]], f: (a, b) => tf.matMul(a, b, true, true), linear: true },
  { kernels: ['BatchMatMul'], label: 'rank-3 x rank-2 weight', shapes: [[2, 3, 4], [4, 2]], f: (a, b) => tf.matMul(a, b), linear: true },
  { kernels: ['Einsum'], label: 'bij,bjk->bik', shapes: [[2, 3, 4], [2, 4, 2]], f: (a, b) => tf.einsum('bij,bjk->bik', a, b), linear: true },
  { kernels: ['Einsum'], label: 'ij,ij-> (scalar)', shapes: [[2, 3], [2, 3]], f: (a, b) => tf.einsum('ij,ij->', a, b), linear: true },
  { kernels: ['Einsum'], label: 'ijk,jl->il (k summed alone)', shapes: [[2, 3, 2], [3, 2]], f: (a, b) => tf.einsum('ijk,jl->il', a, b), linear: true },
  { kernels: ['Einsum'], label: 'ij->ji', shapes: [[2, 3]], f: (a) => tf.einsum('ij->ji', a), linear: true },
  { kernels: ['Einsum'], label: 'ijk->k', shapes: [[2, 3, 2]], f: (a) => tf.einsum('ijk->k', a), linear: true },
  // convolutions and pooling
  { kernels: ['Conv2D'], shapes: [[1, 5, 4, 2], [3, 3, 2, 2]], f: (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, 'same'), linear: true },
  { kernels: ['Conv2DBackpropInput'], shapes: [[1, 3, 2, 2], [3, 3, 1, 2]], f: (x, w) => tf.conv2dTranspose(x as tf.Tensor4D, w as tf.Tensor4D, [1, 5, 4, 1], 2, 'same'), linear: true },
  { kernels: ['Conv3D'], shapes: [[1, 4, 3, 4, 1], [2, 2, 3, 1, 2]], f: (x, w) => tf.conv3d(x as tf.Tensor5D, w as tf.Tensor5D, 2, 'same'), linear: true },
  { kernels: ['Conv3DBackpropInputV2'], label: 'conv3dTranspose, stride 2', shapes: [[1, 2, 2, 2, 2], [2, 3, 2, 1, 2]], f: (x, w) => tf.conv3dTranspose(x as tf.Tensor5D, w as tf.Tensor5D, [1, 4, 4, 4, 1], 2, 'same'), linear: true },
  { kernels: ['Conv3DBackpropInputV2'], label: 'conv3dTranspose, stride 1 valid', shapes: [[1, 2, 2, 3, 2], [2, 2, 2, 1, 2]], f: (x, w) => tf.conv3dTranspose(x as tf.Tensor5D, w as tf.Tensor5D, [1, 3, 3, 4, 1], 1, 'valid'), linear: true },
  { kernels: ['DepthwiseConv2dNative'], shapes: [[1, 4, 4, 2], [3, 3, 2, 1]], f: (x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'), linear: true },
  { kernels: ['AvgPool'], label: "'same' padding (tfjs-core's gradient counts padding)", shapes: [[1, 4, 4, 2]], f: (x) => tf.avgPool(x as tf.Tensor4D, 2, 1, 'same'), linear: true },
  { kernels: ['AvgPool'], label: "'valid'", shapes: [[2, 5, 4, 1]], f: (x) => tf.avgPool(x as tf.Tensor4D, [2, 3], [2, 1], 'valid'), linear: true },
  { kernels: ['AvgPool3D'], label: "'valid'", shapes: [[1, 3, 4, 4, 1]], f: (x) => tf.avgPool3d(x as tf.Tensor5D, 2, 2, 'valid'), linear: true },
  { kernels: ['AvgPool3D'], label: "'same' padding", shapes: [[1, 3, 3, 4, 2]], f: (x) => tf.avgPool3d(x as tf.Tensor5D, [2, 3, 2], [1, 2, 1], 'same'), linear: true },
  { kernels: ['MaxPool'], shapes: [[1, 4, 4, 2]], f: (x) => tf.maxPool(x as tf.Tensor4D, 2, 2, 'valid'), gen: distinct(0.1, -2), piecewise: true },
  { kernels: ['MaxPool3D'], label: 'all-negative input', shapes: [[1, 4, 4, 4, 1]], f: (x) => tf.maxPool3d(x as tf.Tensor5D, 2, 2, 'valid'), gen: distinct(0.1, -5), piecewise: true },
  { kernels: ['LRN'], shapes: [[1, 2, 2, 4]], f: (x) => tf.localResponseNormalization(x as tf.Tensor4D, 1, 1, 0.5, 0.75) },
  { kernels: ['Dilation2D'], shapes: [[1, 4, 4, 2], [2, 2, 2]], f: (x, w) => tf.dilation2d(x as tf.Tensor4D, w as tf.Tensor3D, 1, 'same'), gen: [distinct(0.1), distinct(0.013)], piecewise: true },
  { kernels: ['ResizeBilinear'], shapes: [[1, 2, 3, 1]], f: (x) => tf.image.resizeBilinear(x as tf.Tensor4D, [4, 5]), linear: true },
  { kernels: ['ResizeNearestNeighbor'], shapes: [[1, 2, 3, 1]], f: (x) => tf.image.resizeNearestNeighbor(x as tf.Tensor4D, [4, 5]), linear: true },
  {
    kernels: ['FusedBatchNorm'],
    shapes: [[2, 3], [3], [3], [3], [3]],
    f: (x, m, v, o, s) => tf.batchNorm(x, m, v, o, s, 1e-3),
    gen: [uniform(-1, 1), uniform(-0.5, 0.5), uniform(0.5, 1.5), uniform(-1, 1), uniform(0.5, 1.5)],
  },
];

/** Kernels registered by grads.ts that no case above differentiates, and why. */
const NOT_EXERCISED: Record<string, string> = {
  Cast: 'a float-to-float cast runs no kernel; through an integer cast the forward pass is piecewise constant',
  IsFinite: 'boolean output', IsInf: 'boolean output', IsNan: 'boolean output',
  OnesLike: 'constant output', ZerosLike: 'constant output', ArgMax: 'integer output', ArgMin: 'integer output',
  GreaterEqual: 'boolean output', Greater: 'boolean output', Less: 'boolean output',
  LessEqual: 'boolean output', Equal: 'boolean output', NotEqual: 'boolean output',
  OneHot: 'integer input',
  BroadcastTo: 'tf.broadcastTo runs Tile; no backend here registers a BroadcastTo kernel',
  LogSoftmax: 'tf.logSoftmax is a custom-gradient op; no backend here registers a LogSoftmax kernel',
};

function prod(s: number[]): number {
  return s.reduce((a, b) => a * b, 1);
}

async function values(t: tf.Tensor): Promise<Float64Array> {
  return Float64Array.from(await t.data());
}

/** L(xs) = sum(w * f(xs)) in float64 on the host. */
async function loss(c: GradCase, xs: Float32Array[], w: Float64Array): Promise<number> {
  // Copies: the cpu tensorScatterUpdate writes into its input's buffer, which tf.tensor shares.
  const y = tf.tidy(() => c.f(...xs.map((x, i) => tf.tensor(x.slice(), c.shapes[i]))));
  const v = await values(y);
  y.dispose();
  let s = 0;
  for (let i = 0; i < v.length; i++) s += (w[i] as number) * (v[i] as number);
  return s;
}

interface Check {
  analytic: number;
  fd: number;
}

async function checkCase(c: GradCase, backend: string): Promise<Check[]> {
  const rng = makeRng(7 + c.kernels[0]!.length * 31 + c.shapes.length);
  const xs = c.shapes.map((s, i) => {
    const gen = (Array.isArray(c.gen) ? c.gen[i] : c.gen) ?? uniform(-1, 1);
    return Float32Array.from(gen(prod(s), rng));
  });
  const yShape = tf.tidy(() => c.f(...xs.map((x, i) => tf.tensor(x.slice(), c.shapes[i]))).shape);
  const w = Float64Array.from(uniform(-1, 1)(prod(yShape), rng));
  const wT = tf.tensor(Float32Array.from(w), yShape);
  const inputs = xs.map((x, i) => tf.tensor(x.slice(), c.shapes[i]));
  const gs = tf.grads((...ts: tf.Tensor[]) => tf.sum(tf.mul(c.f(...ts), wT)))(inputs);
  const g = await Promise.all(gs.map((t) => values(t)));
  tf.dispose([...gs, ...inputs, wT]);

  const elementwise = (c.linear || c.piecewise) && backend !== 'webgpu' && xs.every((x) => x.length <= 64);
  const h = c.linear ? 0.5 : 1e-2;
  const out: Check[] = [];
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i] as Float32Array;
    const dirs: Float64Array[] = elementwise
      ? Array.from({ length: x.length }, (_, j) => Float64Array.from({ length: x.length }, (_, k) => (k === j ? 1 : 0)))
      : Array.from({ length: 2 }, () => Float64Array.from({ length: x.length }, () => rng.normal()));
    for (const v of dirs) {
      const plus = Float32Array.from(x, (xj, j) => xj + h * (v[j] as number));
      const minus = Float32Array.from(x, (xj, j) => xj - h * (v[j] as number));
      const lp = await loss(c, xs.map((xx, k) => (k === i ? plus : xx)), w);
      const lm = await loss(c, xs.map((xx, k) => (k === i ? minus : xx)), w);
      // Directional derivative along the perturbation actually applied (after float32 rounding).
      let analytic = 0;
      let step = 0;
      for (let j = 0; j < x.length; j++) {
        const d = ((plus[j] as number) - (minus[j] as number)) / 2;
        analytic += (g[i]?.[j] as number) * d;
        step = Math.max(step, Math.abs(d));
      }
      out.push({ analytic: analytic / h, fd: (lp - lm) / (2 * h) });
      if (step === 0) throw new Error(`zero perturbation: input ${i} of ${xs.length}, x ${Array.from(x).slice(0, 4)}, v ${Array.from(v).slice(0, 4)}`);
    }
  }
  return out;
}

describe('registerMissingGradients', () => {
  it('registers every listed gradient and is idempotent', () => {
    const before = GRADIENT_KERNELS.map((k) => tf.getGradient(k)?.gradFunc);
    expect(before.every((f) => typeof f === 'function')).toBe(true);
    registerMissingGradients();
    registerMissingGradients();
    expect(GRADIENT_KERNELS.map((k) => tf.getGradient(k)?.gradFunc)).toEqual(before);
  });

  it('covers the gradients tfjs-core lacks, and every registered gradient is exercised below', () => {
    for (const k of ['Conv3DBackpropInputV2', 'GatherNd', 'ScatterNd', 'TopK', 'StridedSlice', 'Einsum', 'Tile', 'BatchMatMul']) {
      expect(GRADIENT_KERNELS).toContain(k);
    }
    const exercised = new Set(CASES.flatMap((c) => c.kernels));
    const missing = GRADIENT_KERNELS.filter((k) => !exercised.has(k) && !(k in NOT_EXERCISED));
    expect(missing).toEqual([]);
  });
});

for (const backend of BACKENDS) {
  describe(`gradients against finite differences on ${backend}`, () => {
    for (const c of CASES) {
      if (c.skip?.includes(backend)) continue;
      it(`${c.kernels.join(', ')}${c.label ? ` (${c.label})` : ''}`, async () => {
        await useBackend(backend);
        const n0 = tf.memory().numTensors;
        const checks = await checkCase(c, backend);
        expect(tf.memory().numTensors).toBe(n0);
        let scale = 0;
        for (const { analytic, fd } of checks) {
          expect(Number.isFinite(analytic)).toBe(true);
          scale = Math.max(scale, Math.abs(fd));
        }
        if (c.zero) {
          for (const { analytic, fd } of checks) {
            expect(Math.abs(fd)).toBeLessThan(1e-6);
            expect(Math.abs(analytic)).toBeLessThan(1e-6);
          }
          return;
        }
        expect(scale).toBeGreaterThan(1e-3); // the gradient is not trivially zero
        const tol = c.linear ? 2e-4 * Math.max(1, scale) : c.piecewise ? 2e-3 * Math.max(1, scale) : 2e-4 + 3e-3 * scale;
        for (const { analytic, fd } of checks) expect(Math.abs(analytic - fd)).toBeLessThan(tol);
      });
    }
  });
}
