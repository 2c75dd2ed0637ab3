/**
 * Gradients for tfjs-core, registered on every backend by `registerMissingGradients()` (run when
 * this module is first imported, which `@goe/tf`'s index does).
 *
 * Why this exists:
 * - `@tensorflow/tfjs-core`'s Node entry point (`dist/tf-core.node.js`, what `import` resolves to)
 *   registers no gradient at all: only the `@tensorflow/tfjs` umbrella package pulls in
 *   `register_all_gradients`, and that file is an ES module with extensionless imports that Node
 *   cannot load (ERR_UNSUPPORTED_DIR_IMPORT). Without this module `tf.grads` fails on the first op
 *   ("gradient function not found for Sum"). Every kernel gradient that tfjs-core defines is therefore
 *   written here, from the derivative of the op (each checked against finite differences in
 *   grads.test.ts).
 * - tfjs-core has no gradient for `Conv3DBackpropInputV2` (so `conv3dTranspose` cannot be trained),
 *   `GatherNd`, `ScatterNd`, `TensorScatterUpdate`, `TopK`, `StridedSlice` or `Einsum`: added.
 * - Where tfjs-core's gradient is wrong or partial it is replaced: `BatchMatMul` with a broadcast
 *   batch dim (the gradient kept the broadcast shape and failed), `Tile` above rank 4 (threw),
 *   `AvgPool`/`AvgPool3D` with 'same' padding (the forward pass averages over the valid elements of
 *   each window, the AvgPool(3D)Grad kernels of every backend divide by the full window size),
 *   `Maximum`/`Minimum` with broadcasting (not reduced), `MirrorPad` (dropped the reflected part),
 *   `FloorDiv` (used the derivative of real division; the true one is 0), `ResizeBilinear` (the cpu
 *   grad kernel labels its result [B, W, H, C]).
 * - `gather`'s gradient scatters with scatterND, O(rows) on every backend, where tfjs-core's
 *   unsortedSegmentSum is O(rows x segments) on cpu.
 *
 * The backward kernels these gradients call (Conv3DBackpropInputV2, MaxPool3DGrad, …) are fixed on
 * wasm by wasm-kernels.ts.
 */
import * as tf from '@tensorflow/tfjs-core';

type Dy = tf.Tensor | tf.Tensor[];
type Attrs = tf.NamedAttrMap;

/** A gradient cannot be formed for these arguments (a limit of the op, named in the message). */
export class GradientError extends Error {
  override readonly name = 'GradientError';
  constructor(
    readonly kernel: string,
    message: string,
  ) {
    super(`gradient of ${kernel}: ${message}`);
  }
}

function one(dy: Dy): tf.Tensor {
  return Array.isArray(dy) ? (dy[0] as tf.Tensor) : dy;
}

function f32(x: tf.Tensor): tf.Tensor {
  return x.dtype === 'float32' ? x : tf.cast(x, 'float32');
}

/** Sums a broadcast gradient back to `shape` (numpy broadcasting rules). */
function reduceTo(g: tf.Tensor, shape: number[]): tf.Tensor {
  if (tf.util.arraysEqual(g.shape, shape)) return g;
  const axes = tf.broadcast_util.getReductionAxes(shape, g.shape);
  // Leading axes that `shape` does not have at all are summed too.
  const lead = g.rank - shape.length;
  const all = [...new Set([...Array.from({ length: lead }, (_, i) => i), ...axes])];
  const s = all.length > 0 ? tf.sum(g, all) : g;
  return tf.reshape(s, shape);
}

function zerosOf(x: tf.Tensor): tf.Tensor {
  return tf.zeros(x.shape, 'float32');
}

function attr<T>(attrs: Attrs, name: string): T {
  return attrs[name] as unknown as T;
}

const grads: tf.GradConfig[] = [];

/** Registers the gradient of a kernel with saved inputs `x` only (the common unary case). */
function unary(kernelName: string, fn: (dy: tf.Tensor, x: tf.Tensor) => tf.Tensor): void {
  grads.push({
    kernelName,
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => ({ x: () => fn(f32(one(dy)), f32(saved[0] as tf.Tensor)) }),
  });
}

/** Unary op whose derivative is written in terms of its output `y`. */
function unaryOut(kernelName: string, fn: (dy: tf.Tensor, y: tf.Tensor) => tf.Tensor): void {
  grads.push({
    kernelName,
    outputsToSave: [true],
    gradFunc: (dy, saved) => ({ x: () => fn(f32(one(dy)), saved[0] as tf.Tensor) }),
  });
}

/** Piecewise-constant ops: zero gradient (defined, so that tapes through them do not fail). */
function zeroGrad(kernelName: string, inputs: string[] = ['x']): void {
  grads.push({
    kernelName,
    inputsToSave: inputs,
    gradFunc: (_dy, saved) => Object.fromEntries(inputs.map((name, i) => [name, () => zerosOf(saved[i] as tf.Tensor)])),
  });
}

/** Binary broadcasting op: `da`/`db` get the full broadcast gradient, reduced to each input's shape. */
function binary(
  kernelName: string,
  da: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor, y: tf.Tensor) => tf.Tensor,
  db: (dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor, y: tf.Tensor) => tf.Tensor,
  saveOutput = false,
): void {
  grads.push({
    kernelName,
    inputsToSave: ['a', 'b'],
    ...(saveOutput ? { outputsToSave: [true] } : {}),
    gradFunc: (dy, saved) => {
      const [a, b, y] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
      const g = f32(one(dy));
      return {
        a: () => reduceTo(da(g, f32(a), f32(b), y), a.shape),
        b: () => reduceTo(db(g, f32(a), f32(b), y), b.shape),
      };
    },
  });
}

// --- elementwise, one input -------------------------------------------------------------------------

unary('Abs', (dy, x) => tf.mul(dy, tf.sign(x)));
unary('Acos', (dy, x) => tf.neg(tf.div(dy, tf.sqrt(tf.sub(1, tf.square(x))))));
unary('Acosh', (dy, x) => tf.div(dy, tf.sqrt(tf.sub(tf.square(x), 1))));
unary('Asin', (dy, x) => tf.div(dy, tf.sqrt(tf.sub(1, tf.square(x)))));
unary('Asinh', (dy, x) => tf.div(dy, tf.sqrt(tf.add(1, tf.square(x)))));
unary('Atan', (dy, x) => tf.div(dy, tf.add(1, tf.square(x))));
unary('Atanh', (dy, x) => tf.div(dy, tf.sub(1, tf.square(x))));
unary('Cos', (dy, x) => tf.mul(dy, tf.neg(tf.sin(x))));
unary('Cosh', (dy, x) => tf.mul(dy, tf.sinh(x)));
unary('Sin', (dy, x) => tf.mul(dy, tf.cos(x)));
unary('Sinh', (dy, x) => tf.mul(dy, tf.cosh(x)));
unary('Tan', (dy, x) => tf.div(dy, tf.square(tf.cos(x))));
unary('Expm1', (dy, x) => tf.mul(dy, tf.exp(x)));
unary('Log', (dy, x) => tf.div(dy, x));
unary('Log1p', (dy, x) => tf.div(dy, tf.add(x, 1)));
unary('Sqrt', (dy, x) => tf.div(dy, tf.mul(tf.sqrt(x), 2)));
unary('Square', (dy, x) => tf.mul(dy, tf.mul(x, 2)));
// d erf(x)/dx = 2/sqrt(pi) exp(-x^2)
unary('Erf', (dy, x) => tf.mul(dy, tf.mul(tf.exp(tf.neg(tf.square(x))), 2 / Math.sqrt(Math.PI))));
unary('Softplus', (dy, x) => tf.mul(dy, tf.sigmoid(x)));
unary('Relu', (dy, x) => tf.mul(dy, tf.cast(tf.greater(x, 0), 'float32')));
unary('Relu6', (dy, x) => tf.mul(dy, tf.cast(tf.logicalAnd(tf.greater(x, 0), tf.lessEqual(x, 6)), 'float32')));
// SELU constants (Klambauer et al. 2017), as in tfjs-core's selu kernel.
const SELU_SCALE = 1.0507009873554804934193349852946;
const SELU_SCALE_ALPHA = 1.7580993408473768599402175208123;
unary('Selu', (dy, x) => tf.where(tf.greater(x, 0), tf.mul(dy, SELU_SCALE), tf.mul(tf.mul(dy, SELU_SCALE_ALPHA), tf.exp(x))));
unaryOut('Exp', (dy, y) => tf.mul(dy, y));
unaryOut('Tanh', (dy, y) => tf.mul(dy, tf.sub(1, tf.square(y))));
unaryOut('Sigmoid', (dy, y) => tf.mul(dy, tf.mul(y, tf.sub(1, y))));
// d x^{-1/2} = -1/2 x^{-3/2} = -1/2 y^3
unaryOut('Rsqrt', (dy, y) => tf.mul(dy, tf.mul(tf.pow(y, 3), -0.5)));
// d 1/x = -1/x^2 = -y^2
unaryOut('Reciprocal', (dy, y) => tf.neg(tf.mul(dy, tf.square(y))));
// elu: x > 0 -> 1, else exp(x) = y + 1
unaryOut('Elu', (dy, y) => tf.where(tf.greater(y, 0), dy, tf.mul(dy, tf.add(y, 1))));

grads.push({ kernelName: 'Neg', gradFunc: (dy) => ({ x: () => tf.neg(one(dy)) }) });
grads.push({ kernelName: 'Cast', gradFunc: (dy) => ({ x: () => f32(one(dy)).clone() }) });
grads.push({ kernelName: 'Identity', gradFunc: (dy) => ({ x: () => f32(one(dy)).clone() }) });
grads.push({
  kernelName: 'LeakyRelu',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const x = saved[0] as tf.Tensor;
    const g = one(dy);
    return { x: () => tf.where(tf.greater(x, 0), g, tf.mul(g, attr<number>(attrs, 'alpha'))) };
  },
});
grads.push({
  kernelName: 'ClipByValue',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const x = saved[0] as tf.Tensor;
    const g = one(dy);
    const inside = tf.logicalAnd(tf.greaterEqual(x, attr<number>(attrs, 'clipValueMin')), tf.lessEqual(x, attr<number>(attrs, 'clipValueMax')));
    return { x: () => tf.where(inside, g, tf.zerosLike(g)) };
  },
});
for (const k of ['Ceil', 'Floor', 'Round', 'Sign', 'Step', 'IsFinite', 'IsInf', 'IsNan', 'OnesLike', 'ZerosLike', 'ArgMax', 'ArgMin']) {
  zeroGrad(k);
}
for (const k of ['GreaterEqual', 'Greater', 'Less', 'LessEqual', 'Equal', 'NotEqual']) zeroGrad(k, ['a', 'b']);

// --- elementwise, two inputs (broadcasting) ---------------------------------------------------------

binary('Add', (dy) => dy, (dy) => dy);
binary('Sub', (dy) => dy, (dy) => tf.neg(dy));
binary('Multiply', (dy, _a, b) => tf.mul(dy, b), (dy, a) => tf.mul(dy, a));
binary('RealDiv', (dy, _a, b) => tf.div(dy, b), (dy, a, b) => tf.neg(tf.div(tf.mul(dy, a), tf.square(b))));
// floor(a / b) is piecewise constant.
binary('FloorDiv', (dy) => tf.zerosLike(dy), (dy) => tf.zerosLike(dy));
// mod(a, b) = a - b floor(a / b)
binary('Mod', (dy) => dy, (dy, a, b) => tf.mul(dy, tf.neg(tf.floor(tf.div(a, b)))));
binary(
  'Pow',
  (dy, a, b) => tf.mul(dy, tf.mul(b, tf.pow(a, tf.sub(b, 1)))),
  // d a^b / db = a^b log a, taken as 0 where a <= 0 (log undefined there), as TensorFlow does.
  (dy, a, _b, y) => tf.mul(dy, tf.mul(y, tf.where(tf.greater(a, 0), tf.log(tf.where(tf.greater(a, 0), a, tf.onesLike(a))), tf.zerosLike(a)))),
  true,
);
binary('Maximum', (dy, a, b) => tf.mul(dy, tf.cast(tf.greaterEqual(a, b), 'float32')), (dy, a, b) => tf.mul(dy, tf.cast(tf.less(a, b), 'float32')));
binary('Minimum', (dy, a, b) => tf.mul(dy, tf.cast(tf.lessEqual(a, b), 'float32')), (dy, a, b) => tf.mul(dy, tf.cast(tf.greater(a, b), 'float32')));
binary('SquaredDifference', (dy, a, b) => tf.mul(dy, tf.mul(tf.sub(a, b), 2)), (dy, a, b) => tf.mul(dy, tf.mul(tf.sub(b, a), 2)));
binary(
  'Atan2',
  (dy, a, b) => tf.mul(dy, tf.div(b, tf.add(tf.square(a), tf.square(b)))),
  (dy, a, b) => tf.neg(tf.mul(dy, tf.div(a, tf.add(tf.square(a), tf.square(b))))),
);
grads.push({
  kernelName: 'Prelu',
  inputsToSave: ['x', 'alpha'],
  gradFunc: (dy, saved) => {
    const [x, alpha] = saved as [tf.Tensor, tf.Tensor];
    const g = one(dy);
    const pos = tf.greater(x, 0);
    return {
      x: () => tf.where(pos, g, tf.mul(g, alpha)),
      alpha: () => reduceTo(tf.where(pos, tf.zerosLike(g), tf.mul(g, x)), alpha.shape),
    };
  },
});
grads.push({
  kernelName: 'AddN',
  saveAllInputs: true,
  gradFunc: (dy, saved) => Object.fromEntries(saved.map((_, i) => [String(i), () => one(dy).clone()])),
});
grads.push({
  kernelName: 'Select',
  inputsToSave: ['condition'],
  gradFunc: (dy, saved) => {
    const c = saved[0] as tf.Tensor;
    const g = one(dy);
    return {
      t: () => tf.mul(g, tf.cast(c, 'float32')),
      e: () => tf.mul(g, tf.cast(tf.logicalNot(tf.cast(c, 'bool')), 'float32')),
      // The condition is boolean: no gradient, but tfjs needs an entry when it was computed from a
      // differentiated tensor (e.g. `a >= b`).
      condition: () => zerosOf(c),
    };
  },
});

// --- reductions -------------------------------------------------------------------------------------

/** dy of a reduction over `axes`, broadcast back to x's shape. */
function unreduce(dy: tf.Tensor, xShape: number[], axes: number[]): tf.Tensor {
  const kept = xShape.map((d, i) => (axes.includes(i) ? 1 : d));
  return tf.broadcastTo(tf.reshape(dy, kept), xShape);
}

grads.push({
  kernelName: 'Sum',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const x = saved[0] as tf.Tensor;
    const axes = tf.util.parseAxisParam(attr<number | number[]>(attrs, 'axis'), x.shape);
    return { x: () => unreduce(f32(one(dy)), x.shape, axes) };
  },
});
grads.push({
  kernelName: 'Mean',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const x = saved[0] as tf.Tensor;
    const axes = tf.util.parseAxisParam(attr<number | number[]>(attrs, 'axis'), x.shape);
    const n = axes.reduce((p, a) => p * (x.shape[a] as number), 1);
    return { x: () => tf.div(unreduce(f32(one(dy)), x.shape, axes), n) };
  },
});
for (const [kernelName, axisAttr] of [
  ['Max', 'reductionIndices'],
  ['Min', 'axis'],
] as const) {
  grads.push({
    kernelName,
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [x, y] = saved as [tf.Tensor, tf.Tensor];
      const axes = tf.util.parseAxisParam(attr<number | number[]>(attrs, axisAttr), x.shape);
      // Every element equal to the extremum receives the gradient (as tfjs-core and TensorFlow 1).
      return { x: () => tf.mul(unreduce(f32(one(dy)), x.shape, axes), tf.cast(tf.equal(x, unreduce(y, x.shape, axes)), 'float32')) };
    },
  });
}
grads.push({
  kernelName: 'Prod',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const x = f32(saved[0] as tf.Tensor);
    const axisAttr = attr<number | number[] | null | undefined>(attrs, 'axis');
    const axes = axisAttr == null ? x.shape.map((_, i) => i) : tf.util.parseAxisParam(axisAttr, x.shape);
    return {
      x: () => {
        // d prod / d x_i = (product of the elements before i) x (product after i): exclusive
        // cumulative products from both ends, exact even with zeros in x.
        const perm = tf.backend_util.getAxesPermutation(axes, x.rank) ?? x.shape.map((_, i) => i);
        const xt = tf.transpose(x, perm);
        const keep = xt.shape.slice(0, x.rank - axes.length);
        const n = axes.reduce((p, a) => p * (x.shape[a] as number), 1);
        const flat = tf.reshape(xt, [...keep, n]); // [...kept, n]
        const last = keep.length;
        const d = tf.mul(tf.cumprod(flat, last, true, false), tf.cumprod(flat, last, true, true));
        const g = tf.mul(d, tf.reshape(f32(one(dy)), [...keep, 1]));
        return tf.transpose(tf.reshape(g, xt.shape), tf.backend_util.getUndoAxesPermutation(perm));
      },
    };
  },
});
grads.push({
  kernelName: 'Cumsum',
  inputsToSave: ['x'],
  gradFunc: (dy, _saved, attrs) => ({
    // y_i = sum_{j <= i} x_j  =>  dx_j = sum_{i >= j} dy_i: the same scan run the other way.
    x: () => tf.cumsum(f32(one(dy)), attr<number>(attrs, 'axis'), attr<boolean>(attrs, 'exclusive'), !attr<boolean>(attrs, 'reverse')),
  }),
});
grads.push({
  kernelName: 'Softmax',
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const y = saved[0] as tf.Tensor;
    const dim = attr<number>(attrs, 'dim');
    const gy = tf.mul(one(dy), y);
    return { logits: () => tf.sub(gy, tf.mul(tf.sum(gy, [dim], true), y)) };
  },
});
grads.push({
  kernelName: 'LogSoftmax',
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const y = saved[0] as tf.Tensor;
    const axis = attr<number>(attrs, 'axis');
    const g = one(dy);
    return { logits: () => tf.sub(g, tf.mul(tf.sum(g, axis, true), tf.exp(y))) };
  },
});

// --- shape and indexing -----------------------------------------------------------------------------

grads.push({ kernelName: 'Reshape', inputsToSave: ['x'], gradFunc: (dy, saved) => ({ x: () => tf.reshape(one(dy), (saved[0] as tf.Tensor).shape) }) });
grads.push({
  kernelName: 'ExpandDims',
  inputsToSave: ['input'],
  gradFunc: (dy, saved) => ({ input: () => tf.reshape(one(dy), (saved[0] as tf.Tensor).shape) }),
});
grads.push({
  kernelName: 'Transpose',
  gradFunc: (dy, _saved, attrs) => ({ x: () => tf.transpose(one(dy), tf.backend_util.getUndoAxesPermutation(attr<number[]>(attrs, 'perm'))) }),
});
grads.push({
  kernelName: 'Reverse',
  gradFunc: (dy, _saved, attrs) => {
    const g = one(dy);
    return { x: () => tf.reverse(g, tf.util.parseAxisParam(attr<number | number[]>(attrs, 'dims'), g.shape)) };
  },
});
grads.push({
  kernelName: 'Slice',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const x = saved[0] as tf.Tensor;
    const [begin, size] = tf.slice_util.parseSliceParams(x, attr<number[]>(attrs, 'begin'), attr<number[]>(attrs, 'size'));
    return {
      x: () => tf.pad(one(dy), x.shape.map((d, i) => [begin[i] as number, d - (begin[i] as number) - (size[i] as number)] as [number, number])),
    };
  },
});
grads.push({
  kernelName: 'Concat',
  saveAllInputs: true,
  gradFunc: (dy, saved, attrs) => {
    const first = saved[0] as tf.Tensor;
    const axis = tf.util.parseAxisParam(attr<number>(attrs, 'axis'), first.shape)[0] as number;
    const parts = tf.split(one(dy), saved.map((t) => t.shape[axis] as number), axis);
    return Object.fromEntries(parts.map((p, i) => [String(i), () => p]));
  },
});
grads.push({
  kernelName: 'Pack',
  saveAllInputs: true,
  gradFunc: (dy, _saved, attrs) => {
    const parts = tf.unstack(one(dy), attr<number>(attrs, 'axis'));
    return Object.fromEntries(parts.map((p, i) => [String(i), () => p]));
  },
});
grads.push({
  kernelName: 'Unpack',
  gradFunc: (dy, _saved, attrs) => ({ value: () => tf.stack(Array.isArray(dy) ? dy : [dy], attr<number>(attrs, 'axis')) }),
});
grads.push({
  kernelName: 'SplitV',
  gradFunc: (dy, _saved, attrs) => ({ x: () => tf.concat(Array.isArray(dy) ? dy : [dy], attr<number>(attrs, 'axis')) }),
});
grads.push({
  kernelName: 'PadV2',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const x = saved[0] as tf.Tensor;
    const paddings = attr<[number, number][]>(attrs, 'paddings');
    return { x: () => tf.slice(one(dy), paddings.map((p) => p[0]), x.shape) };
  },
});
grads.push({
  kernelName: 'MirrorPad',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const x = saved[0] as tf.Tensor;
    const paddings = attr<[number, number][]>(attrs, 'paddings');
    const mode = attr<'reflect' | 'symmetric'>(attrs, 'mode');
    return {
      x: () => {
        // Fold each padded band back onto the elements it copies, one axis at a time.
        // reflect:   before[i] = x[p0 - i],     after[i] = x[n - 2 - i]
        // symmetric: before[i] = x[p0 - 1 - i], after[i] = x[n - 1 - i]
        let g = one(dy);
        const off = mode === 'reflect' ? 1 : 0;
        x.shape.forEach((n, axis) => {
          const [p0, p1] = paddings[axis] as [number, number];
          if (p0 === 0 && p1 === 0) return;
          const at = (start: number, len: number) => {
            const begin = g.shape.map((_, i) => (i === axis ? start : 0));
            const size = g.shape.map((d, i) => (i === axis ? len : d));
            return tf.slice(g, begin, size);
          };
          const padAxis = (t: tf.Tensor, before: number, after: number) =>
            tf.pad(t, t.shape.map((_, i) => (i === axis ? [before, after] : [0, 0]) as [number, number]));
          let core = at(p0, n);
          if (p0 > 0) core = tf.add(core, padAxis(tf.reverse(at(0, p0), axis), off, n - off - p0));
          if (p1 > 0) core = tf.add(core, padAxis(tf.reverse(at(p0 + n, p1), axis), n - off - p1, off));
          g = core;
        });
        return g;
      },
    };
  },
});
grads.push({
  kernelName: 'Tile',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const x = saved[0] as tf.Tensor;
    const reps = attr<number[]>(attrs, 'reps');
    return {
      x: () => {
        // dy viewed as [reps_0, x_0, reps_1, x_1, ...] and summed over the reps axes: any rank, one
        // reshape and one reduction. Untiled axes and size-1 axes are merged into their neighbours
        // to keep the rank low (the WebGPU reductions stop at rank 6).
        const segs: { reps: boolean; n: number }[] = [];
        const push = (isReps: boolean, n: number) => {
          if (n === 1) return;
          const last = segs[segs.length - 1];
          if (last && last.reps === isReps) last.n *= n;
          else segs.push({ reps: isReps, n });
        };
        x.shape.forEach((d, i) => {
          push(true, reps[i] as number);
          push(false, d);
        });
        const g = f32(one(dy));
        const axes = segs.flatMap((sg, i) => (sg.reps ? [i] : []));
        if (axes.length === 0) return tf.reshape(g, x.shape);
        return tf.reshape(tf.sum(tf.reshape(g, segs.map((sg) => sg.n)), axes), x.shape);
      },
    };
  },
});
grads.push({
  kernelName: 'BroadcastTo',
  gradFunc: (dy, _saved, attrs) => ({ x: () => reduceTo(f32(one(dy)), attr<number[]>(attrs, 'inputShape')) }),
});
grads.push({
  kernelName: 'BatchToSpaceND',
  gradFunc: (dy, _saved, attrs) => ({ x: () => tf.spaceToBatchND(one(dy), attr<number[]>(attrs, 'blockShape'), attr<number[][]>(attrs, 'crops')) }),
});
grads.push({
  kernelName: 'SpaceToBatchND',
  gradFunc: (dy, _saved, attrs) => ({ x: () => tf.batchToSpaceND(one(dy), attr<number[]>(attrs, 'blockShape'), attr<number[][]>(attrs, 'paddings')) }),
});
grads.push({
  kernelName: 'OneHot',
  inputsToSave: ['indices'],
  gradFunc: (_dy, saved) => ({ indices: () => zerosOf(saved[0] as tf.Tensor) }),
});

/**
 * Gradient of `gather(x, indices, axis)` (batchDims 0) with respect to x: dy's rows scattered back
 * (and summed) to the rows they were gathered from.
 * @param dy [...x[:axis], ...indices.shape, ...x[axis+1:]]
 */
function gatherGrad(x: tf.Tensor, indices: tf.Tensor, dy: tf.Tensor, axis: number): tf.Tensor {
  const outer = x.shape.slice(0, axis);
  const inner = x.shape.slice(axis + 1);
  const m = indices.size;
  const values = tf.reshape(dy, [...outer, m, ...inner]); // [...outer, m, ...inner]
  const perm = [outer.length, ...outer.map((_, i) => i), ...inner.map((_, i) => outer.length + 1 + i)];
  const vt = axis === 0 ? values : tf.transpose(values, perm); // [m, ...outer, ...inner]
  // scatterND adds duplicate indices; O(m x row) on every backend (the cpu unsortedSegmentSum is
  // O(m x rows x n)).
  const flatIdx = tf.reshape(tf.cast(indices, 'int32'), [m, 1]);
  const g = tf.scatterND(flatIdx, f32(vt), [x.shape[axis] as number, ...outer, ...inner]); // [n, ...outer, ...inner]
  return axis === 0 ? g : tf.transpose(g, tf.backend_util.getUndoAxesPermutation(perm));
}

grads.push({
  kernelName: 'GatherV2',
  inputsToSave: ['x', 'indices'],
  gradFunc: (dy, saved, attrs) => {
    const [x, indices] = saved as [tf.Tensor, tf.Tensor];
    const axis = tf.util.parseAxisParam(attr<number>(attrs, 'axis'), x.shape)[0] as number;
    const batchDims = attr<number>(attrs, 'batchDims') ?? 0;
    const g = one(dy);
    // Integer indices get a zero entry: tfjs requires one when they derive from a differentiated tensor.
    if (batchDims === 0) return { x: () => gatherGrad(x, indices, g, axis), indices: () => zerosOf(indices) };
    return {
      indices: () => zerosOf(indices),
      x: () => {
        // Batched gather: one plain gather per element of the flattened batch dims.
        const bShape = x.shape.slice(0, batchDims);
        const B = bShape.reduce((p, c) => p * c, 1);
        const xs = tf.reshape(x, [B, ...x.shape.slice(batchDims)]);
        const is = tf.reshape(indices, [B, ...indices.shape.slice(batchDims)]);
        const gs = tf.reshape(g, [B, ...g.shape.slice(batchDims)]);
        const parts = Array.from({ length: B }, (_, b) => {
          const xb = tf.squeeze(tf.slice(xs, b, 1), [0]);
          const ib = tf.squeeze(tf.slice(is, b, 1), [0]);
          const gb = tf.squeeze(tf.slice(gs, b, 1), [0]);
          return gatherGrad(xb, ib, gb, axis - batchDims);
        });
        return tf.reshape(tf.stack(parts), x.shape);
      },
    };
  },
});
grads.push({
  kernelName: 'UnsortedSegmentSum',
  inputsToSave: ['segmentIds'],
  gradFunc: (dy, saved) => {
    const ids = saved[0] as tf.Tensor;
    const g = one(dy);
    return {
      segmentIds: () => zerosOf(ids),
      x: () => {
        // Rows whose id is outside [0, numSegments) were dropped: their gradient is 0.
        const n = g.shape[0] as number;
        const valid = tf.logicalAnd(tf.greaterEqual(ids, 0), tf.less(ids, n));
        const clipped = tf.maximum(tf.minimum(ids, tf.scalar(Math.max(n - 1, 0), 'int32')), tf.scalar(0, 'int32'));
        const gathered = tf.gather(g, clipped);
        const mask = tf.reshape(tf.cast(valid, 'float32'), [...ids.shape, ...new Array<number>(gathered.rank - ids.rank).fill(1)]);
        return tf.mul(gathered, mask);
      },
    };
  },
});
grads.push({
  kernelName: 'GatherNd',
  inputsToSave: ['params', 'indices'],
  gradFunc: (dy, saved) => {
    const [params, indices] = saved as [tf.Tensor, tf.Tensor];
    // params[idx] was copied to dy: add dy back at idx (scatterND sums repeated indices).
    return { params: () => tf.scatterND(indices, f32(one(dy)), params.shape), indices: () => zerosOf(indices) };
  },
});
grads.push({
  kernelName: 'ScatterNd',
  inputsToSave: ['indices'],
  gradFunc: (dy, saved) => ({
    updates: () => tf.gatherND(f32(one(dy)), saved[0] as tf.Tensor),
    indices: () => zerosOf(saved[0] as tf.Tensor),
  }),
});
grads.push({
  kernelName: 'TensorScatterUpdate',
  inputsToSave: ['tensor', 'indices', 'updates'],
  gradFunc: (dy, saved) => {
    const [tensor, indices, updates] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
    const g = f32(one(dy));
    return {
      // Overwritten positions no longer depend on `tensor`.
      tensor: () => tf.mul(g, tf.sub(1, tf.minimum(tf.scatterND(indices, tf.ones(updates.shape), tensor.shape), 1))),
      updates: () => tf.gatherND(g, indices),
      indices: () => zerosOf(indices),
    };
  },
});
grads.push({
  kernelName: 'TopK',
  inputsToSave: ['x'],
  outputsToSave: [false, true],
  gradFunc: (dy, saved) => {
    const [x, indices] = saved as [tf.Tensor, tf.Tensor];
    const dValues = f32(Array.isArray(dy) ? (dy[0] as tf.Tensor) : dy);
    return {
      x: () => {
        // Each selected value's gradient goes back to the position it was taken from; the indices
        // output is integer-valued and gets none.
        const n = x.shape[x.rank - 1] as number;
        const k = indices.shape[indices.rank - 1] as number;
        const rows = x.size / Math.max(n, 1);
        const rowBase = tf.range(0, rows * n, n, 'int32'); // [rows]: offset of each row
        const flat = tf.add(tf.reshape(indices, [rows, k]), tf.reshape(rowBase, [rows, 1])); // [rows, k]
        const g = tf.scatterND(tf.reshape(flat, [rows * k, 1]), tf.reshape(dValues, [rows * k]), [rows * n]);
        return tf.reshape(g, x.shape);
      },
    };
  },
});
grads.push({
  kernelName: 'StridedSlice',
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const x = saved[0] as tf.Tensor;
    const info = tf.slice_util.sliceInfo(
      x.shape,
      attr<number[]>(attrs, 'begin'),
      attr<number[]>(attrs, 'end'),
      attr<number[]>(attrs, 'strides'),
      attr<number>(attrs, 'beginMask'),
      attr<number>(attrs, 'endMask'),
      attr<number>(attrs, 'ellipsisMask'),
      attr<number>(attrs, 'newAxisMask'),
      attr<number>(attrs, 'shrinkAxisMask'),
    );
    return {
      x: () => {
        // dy in x's dims (shrunk axes back as 1, new axes dropped): `sizes`. Along each axis the
        // slice took elements first, first + step, ...; undo that by reversing negative strides,
        // spreading the elements `step` apart (zeros between) and padding to x's extent.
        const sizes = x.shape.map((_, d) => {
          const span = (info.end[d] as number) - (info.begin[d] as number);
          const st = info.strides[d] as number;
          return span / st <= 0 ? 0 : Math.ceil(span / st);
        });
        if (sizes.some((s) => s === 0)) return tf.zeros(x.shape);
        let g = tf.reshape(f32(one(dy)), sizes);
        const pads: [number, number][] = [];
        x.shape.forEach((dim, d) => {
          const n = sizes[d] as number;
          const s = info.strides[d] as number;
          const b = info.begin[d] as number;
          let first = b;
          const step = Math.abs(s);
          if (s < 0) {
            g = tf.reverse(g, d);
            first = b + (n - 1) * s;
          }
          if (step > 1 && n > 1) {
            const shp = g.shape;
            const spread = tf.pad(tf.expandDims(g, d + 1), shp.map((_, i) => [0, 0] as [number, number]).concat([[0, 0]]).map((p, i) => (i === d + 1 ? [0, step - 1] : p) as [number, number]));
            const merged = tf.reshape(spread, [...shp.slice(0, d), (shp[d] as number) * step, ...shp.slice(d + 1)]);
            g = tf.slice(merged, shp.map(() => 0), shp.map((v, i) => (i === d ? (n - 1) * step + 1 : v)));
          }
          const extent = (n - 1) * step + 1;
          pads.push([first, dim - first - extent]);
        });
        return tf.pad(g, pads);
      },
    };
  },
});

// --- products ---------------------------------------------------------------------------------------

/** `x` [...batch, r, c] with its batch dims broadcast to `batch` (materialised). */
function broadcastBatch(x: tf.Tensor, batch: number[]): tf.Tensor {
  const own = x.shape.slice(0, -2);
  if (tf.util.arraysEqual(own, batch) || tf.util.sizeFromShape(own) === 1) return x;
  return tf.broadcastTo(x, [...batch, ...x.shape.slice(-2)]);
}

grads.push({
  kernelName: 'BatchMatMul',
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved as [tf.Tensor, tf.Tensor];
    const tA = attr<boolean>(attrs, 'transposeA');
    const tB = attr<boolean>(attrs, 'transposeB');
    const g = one(dy);
    const batch = g.shape.slice(0, -2);
    // C = op(A) op(B): dA = dC op(B)^T (transposed back when A was), dB likewise. A batch dim that
    // was broadcast is summed back to the operand's shape. The other operand is broadcast explicitly
    // first: the cpu kernel maps batches by index modulo the batch size, which is wrong for a batch
    // broadcast along a leading dim (e.g. [3, 1] against [3, 2]).
    const da = () => {
      const bb = broadcastBatch(b, batch);
      return reduceTo(!tA ? tf.matMul(g, bb, false, !tB) : tf.matMul(bb, g, tB, true), a.shape);
    };
    const db = () => {
      const K = a.shape[a.rank - (tA ? 2 : 1)] as number;
      const N = g.shape[g.rank - 1] as number;
      if (b.rank === 2 && a.rank > 2 && !tA) {
        // A weight shared by a batch (x [..., M, K] @ W [K, N]): one 2-D product over all rows.
        const a2 = tf.reshape(a, [-1, K]); // [rows, K]
        const g2 = tf.reshape(g, [-1, N]); // [rows, N]
        return !tB ? tf.matMul(a2, g2, true, false) : tf.matMul(g2, a2, true, false);
      }
      const ab = broadcastBatch(a, batch);
      return reduceTo(!tB ? tf.matMul(ab, g, !tA, false) : tf.matMul(g, ab, true, tA), b.shape);
    };
    return { a: da, b: db };
  },
});

/** Letters of an einsum term. */
function letters(term: string): string[] {
  return [...term];
}

grads.push({
  kernelName: 'Einsum',
  saveAllInputs: true,
  gradFunc: (dy, saved, attrs) => {
    const equation = attr<string>(attrs, 'equation').replace(/\s/g, '');
    const [lhs, out] = equation.split('->') as [string, string];
    const terms = lhs.split(',');
    const g = f32(one(dy));
    const dims = new Map<string, number>();
    terms.forEach((t, i) => letters(t).forEach((c, j) => dims.set(c, (saved[i] as tf.Tensor).shape[j] as number)));
    return Object.fromEntries(
      terms.map((term, i) => [
        String(i),
        () => {
          // d/dX_i of einsum(T_0, ..., T_n -> O) is einsum(O, T_others -> T_i): contract dy with the
          // other operands. A letter of T_i found nowhere else was summed over in the forward pass,
          // so its gradient is dy broadcast along it.
          const others = terms.filter((_, j) => j !== i);
          const othersT = saved.filter((_, j) => j !== i);
          const seen = new Set([...out, ...others.join('')]);
          const keep = letters(term).filter((c) => seen.has(c)).join('');
          const inTerms = [...(out.length > 0 ? [out] : []), ...others];
          const inTensors = [...(out.length > 0 ? [g] : []), ...othersT];
          let r: tf.Tensor;
          if (inTerms.length === 0) r = g;
          else if (inTerms.join(',') === keep && inTensors.length === 1) r = inTensors[0] as tf.Tensor;
          else r = tf.einsum(`${inTerms.join(',')}->${keep}`, ...inTensors);
          if (out.length === 0 && others.length > 0) r = tf.mul(r, g); // scalar dy
          if (keep.length === term.length) return r;
          const expanded = tf.reshape(r, letters(term).map((c) => (seen.has(c) ? (dims.get(c) as number) : 1)));
          return tf.broadcastTo(expanded, letters(term).map((c) => dims.get(c) as number));
        },
      ]),
    );
  },
});

// --- convolutions and pooling -----------------------------------------------------------------------

function assertNoDilation(kernel: string, dilations: number | number[] | undefined): void {
  const d = dilations == null ? [1] : Array.isArray(dilations) ? dilations : [dilations];
  if (d.some((v) => v !== 1)) throw new GradientError(kernel, `dilations ${d} > 1 are not supported (as in tfjs-core)`);
}

grads.push({
  kernelName: 'Conv2D',
  inputsToSave: ['x', 'filter'],
  gradFunc: (dy, saved, attrs) => {
    const [x, filter] = saved as [tf.Tensor, tf.Tensor];
    assertNoDilation('Conv2D', attr<number[]>(attrs, 'dilations'));
    const common = { strides: attrs['strides'], pad: attrs['pad'], dataFormat: attrs['dataFormat'], dimRoundingMode: attrs['dimRoundingMode'] } as Attrs;
    const g = one(dy);
    return {
      x: () => tf.engine().runKernel('Conv2DBackpropInput', { dy: g, filter }, { ...common, inputShape: x.shape }) as tf.Tensor,
      filter: () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: g }, { ...common, filterShape: filter.shape }) as tf.Tensor,
    };
  },
});
grads.push({
  kernelName: 'Conv2DBackpropInput',
  inputsToSave: ['dy', 'filter'],
  gradFunc: (ddx, saved, attrs) => {
    const [dy, filter] = saved as [tf.Tensor, tf.Tensor];
    const g = one(ddx) as tf.Tensor4D;
    const strides = attr<[number, number]>(attrs, 'strides');
    const pad = attr<'same' | 'valid' | number>(attrs, 'pad');
    const dataFormat = attr<'NHWC' | 'NCHW'>(attrs, 'dataFormat');
    const dimRoundingMode = attr<'floor' | 'round' | 'ceil' | undefined>(attrs, 'dimRoundingMode');
    return {
      // The op is the adjoint of conv2d in its input: its own derivatives are conv2d and the filter
      // gradient with the roles of x and dy swapped.
      dy: () => tf.conv2d(g, filter as tf.Tensor4D, strides, pad, dataFormat, 1, dimRoundingMode),
      filter: () =>
        tf.engine().runKernel('Conv2DBackpropFilter', { x: g, dy }, { strides, pad, dataFormat, dimRoundingMode, filterShape: filter.shape } as unknown as Attrs) as tf.Tensor,
    };
  },
});
grads.push({
  kernelName: 'Conv3D',
  inputsToSave: ['x', 'filter'],
  gradFunc: (dy, saved, attrs) => {
    const [x, filter] = saved as [tf.Tensor, tf.Tensor];
    assertNoDilation('Conv3D', attr<number[]>(attrs, 'dilations'));
    const g = one(dy);
    const common = { strides: attrs['strides'], pad: attrs['pad'] } as Attrs;
    return {
      x: () => tf.engine().runKernel('Conv3DBackpropInputV2', { dy: g, filter }, { ...common, inputShape: x.shape }) as tf.Tensor,
      filter: () => tf.engine().runKernel('Conv3DBackpropFilterV2', { x, dy: g }, { ...common, filterShape: filter.shape }) as tf.Tensor,
    };
  },
});
grads.push({
  kernelName: 'Conv3DBackpropInputV2',
  inputsToSave: ['dy', 'filter'],
  gradFunc: (ddx, saved, attrs) => {
    const [dy, filter] = saved as [tf.Tensor, tf.Tensor];
    const g = one(ddx) as tf.Tensor5D;
    const strides = attr<[number, number, number]>(attrs, 'strides');
    const pad = attr<'same' | 'valid'>(attrs, 'pad');
    return {
      // conv3dTranspose(dy, W) is the adjoint of conv3d(., W): its derivative in dy is conv3d(g, W),
      // in W the conv3d filter gradient with input g and output gradient dy.
      dy: () => tf.conv3d(g, filter as tf.Tensor5D, strides, pad),
      filter: () => tf.engine().runKernel('Conv3DBackpropFilterV2', { x: g, dy }, { strides, pad, filterShape: filter.shape } as unknown as Attrs) as tf.Tensor,
    };
  },
});
grads.push({
  kernelName: 'DepthwiseConv2dNative',
  inputsToSave: ['x', 'filter'],
  gradFunc: (dy, saved, attrs) => {
    const [x, filter] = saved as [tf.Tensor, tf.Tensor];
    const dilations = attr<number[] | undefined>(attrs, 'dilations') ?? [1, 1];
    assertNoDilation('DepthwiseConv2dNative', dilations);
    const g = one(dy);
    const common = { strides: attrs['strides'], pad: attrs['pad'], dimRoundingMode: attrs['dimRoundingMode'], dilations } as Attrs;
    return {
      x: () => tf.engine().runKernel('DepthwiseConv2dNativeBackpropInput', { dy: g, filter }, { ...common, inputShape: x.shape }) as tf.Tensor,
      filter: () => tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy: g }, { ...common, filterShape: filter.shape }) as tf.Tensor,
    };
  },
});
grads.push({
  kernelName: 'Dilation2D',
  inputsToSave: ['x', 'filter'],
  gradFunc: (dy, saved, attrs) => {
    const [x, filter] = saved as [tf.Tensor, tf.Tensor];
    const g = one(dy);
    return {
      x: () => tf.engine().runKernel('Dilation2DBackpropInput', { x, filter, dy: g }, attrs) as tf.Tensor,
      filter: () => tf.engine().runKernel('Dilation2DBackpropFilter', { x, filter, dy: g }, attrs) as tf.Tensor,
    };
  },
});
/**
 * Valid (non-padding) elements in each pooling window, per output position, as a tensor that
 * broadcasts against dy ([1, OH, OW, 1] or [1, OD, OH, OW, 1]); null when every window is full.
 * The windows are boxes, so the count is a product of per-axis counts.
 */
function windowCounts(inSize: number[], filter: number[], strides: number[], outSize: number[], padBefore: number[]): tf.Tensor | null {
  const perAxis = inSize.map((n, ax) =>
    Array.from({ length: outSize[ax] as number }, (_, o) => {
      const start = o * (strides[ax] as number) - (padBefore[ax] as number);
      return Math.min(start + (filter[ax] as number), n) - Math.max(start, 0);
    }),
  );
  const full = filter.reduce((p, c) => p * c, 1);
  const counts: number[] = [];
  const rec = (ax: number, acc: number) => {
    if (ax === perAxis.length) {
      counts.push(acc);
      return;
    }
    for (const c of perAxis[ax] as number[]) rec(ax + 1, acc * c);
  };
  rec(0, 1);
  if (counts.every((c) => c === full)) return null;
  return tf.tensor(counts, [1, ...outSize, 1]);
}

for (const [kernelName, gradKernel, saveOut] of [
  ['AvgPool', 'AvgPoolGrad', false],
  ['AvgPool3D', 'AvgPool3DGrad', false],
  ['MaxPool', 'MaxPoolGrad', true],
  ['MaxPool3D', 'MaxPool3DGrad', true],
] as const) {
  grads.push({
    kernelName,
    inputsToSave: ['x'],
    ...(saveOut ? { outputsToSave: [true] } : {}),
    gradFunc: (dy, saved, attrs) => {
      const [x, y] = saved as [tf.Tensor, tf.Tensor | undefined];
      const a = { filterSize: attrs['filterSize'], strides: attrs['strides'], pad: attrs['pad'], dimRoundingMode: attrs['dimRoundingMode'] } as Attrs;
      return {
        x: () => {
          let g = one(dy);
          if (!saveOut) {
            // The average divides by the number of valid elements in each window (padding is not
            // counted, on every backend), but the AvgPool(3D)Grad kernels divide by the full window
            // size: rescale dy by full / valid first so that windows cut by padding come out right.
            const is3d = kernelName === 'AvgPool3D';
            const fs = attr<number | number[]>(attrs, 'filterSize');
            const st = attr<number | number[]>(attrs, 'strides');
            const pad = attr<'same' | 'valid' | number>(attrs, 'pad');
            const rounding = attr<'floor' | 'round' | 'ceil' | undefined>(attrs, 'dimRoundingMode');
            let counts: tf.Tensor | null;
            let full: number;
            if (is3d) {
              const info = tf.backend_util.computePool3DInfo(x.shape as [number, number, number, number, number], fs as number, st as number, 1, pad as 'same', rounding);
              full = info.filterDepth * info.filterHeight * info.filterWidth;
              counts = windowCounts(
                x.shape.slice(1, 4),
                [info.filterDepth, info.filterHeight, info.filterWidth],
                [info.strideDepth, info.strideHeight, info.strideWidth],
                [info.outDepth, info.outHeight, info.outWidth],
                [info.padInfo.front, info.padInfo.top, info.padInfo.left],
              );
            } else {
              const info = tf.backend_util.computePool2DInfo(x.shape as [number, number, number, number], fs as number, st as number, 1, pad, rounding);
              full = info.filterHeight * info.filterWidth;
              counts = windowCounts(
                x.shape.slice(1, 3),
                [info.filterHeight, info.filterWidth],
                [info.strideHeight, info.strideWidth],
                [info.outHeight, info.outWidth],
                [info.padInfo.top, info.padInfo.left],
              );
            }
            if (counts) g = tf.mul(g, tf.div(full, counts));
          }
          const inputs: tf.NamedTensorMap = { dy: g, input: x, ...(y ? { output: y } : {}) };
          return tf.engine().runKernel(gradKernel, inputs, a) as tf.Tensor;
        },
      };
    },
  });
}
grads.push({
  kernelName: 'LRN',
  inputsToSave: ['x'],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [x, y] = saved as [tf.Tensor, tf.Tensor];
    return { x: () => tf.engine().runKernel('LRNGrad', { x, y, dy: one(dy) }, attrs) as tf.Tensor };
  },
});
for (const [kernelName, gradKernel] of [
  ['ResizeBilinear', 'ResizeBilinearGrad'],
  ['ResizeNearestNeighbor', 'ResizeNearestNeighborGrad'],
] as const) {
  grads.push({
    kernelName,
    inputsToSave: ['images'],
    gradFunc: (dy, saved, attrs) => {
      const images = saved[0] as tf.Tensor;
      // The cpu ResizeBilinearGrad labels its (correctly laid out) result [B, W, H, C].
      return { images: () => tf.reshape(tf.engine().runKernel(gradKernel, { dy: one(dy), images }, attrs) as tf.Tensor, images.shape) };
    },
  });
}
grads.push({
  kernelName: 'FusedBatchNorm',
  inputsToSave: ['x', 'mean', 'variance', 'scale'],
  gradFunc: (dy, saved, attrs) => {
    const [x, mean, variance, scale] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor | undefined];
    const eps = attr<number>(attrs, 'varianceEpsilon');
    const g = one(dy);
    // y = (x - mean) r scale + offset, r = (variance + eps)^{-1/2}
    const r = tf.rsqrt(tf.add(variance, eps));
    const s = scale ?? tf.scalar(1);
    const gs = tf.mul(g, s);
    const xc = tf.sub(x, mean);
    return {
      x: () => reduceTo(tf.mul(gs, r), x.shape),
      mean: () => reduceTo(tf.neg(tf.mul(gs, r)), mean.shape),
      variance: () => reduceTo(tf.mul(tf.mul(gs, xc), tf.mul(tf.pow(r, 3), -0.5)), variance.shape),
      scale: () => reduceTo(tf.mul(g, tf.mul(xc, r)), (scale ?? mean).shape),
      offset: () => reduceTo(g, mean.shape),
    };
  },
});

/** The kernels whose gradient this module registers. */
export const GRADIENT_KERNELS: readonly string[] = grads.map((g) => g.kernelName);

/**
 * Registers (or re-registers) every gradient above on tfjs-core's global registry. Idempotent: a
 * kernel already carrying this module's gradient is skipped. Runs once when this module is imported.
 */
export function registerMissingGradients(): void {
  for (const config of grads) {
    if (tf.getGradient(config.kernelName)?.gradFunc === config.gradFunc) continue;
    tf.registerGradient(config);
  }
}

registerMissingGradients();
