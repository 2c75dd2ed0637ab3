/**
 * Float64 host references for the tensor ops whose backend kernels have been found wrong (FACTS.md:
 * wasm conv3d backward, conv3dTranspose, maxPool3d on all-negative windows) or that every model package
 * leans on. They are plain loops in double precision, written from the definitions in TensorFlow's
 * documentation (NDHWC layout, `'same'`/`'valid'` padding), so a test can check any backend against
 * them without trusting another tfjs kernel.
 *
 * Padding follows TensorFlow: `'valid'` uses no padding, out = ceil((in - k + 1) / s); `'same'` gives
 * out = ceil(in / s) and pads max(0, (out - 1) s + k - in) in total, the smaller half in front.
 * tfjs 4.22 omits the max(0, ·): with `'same'` and a kernel smaller than the stride where
 * (out - 1) s + k < in (e.g. k = 1, s = 2 on an even size) its windows start one element late on every
 * backend. Avoid that combination (use `'valid'`, which gives the same output size there).
 */

/** A dense row-major array with its shape; data is float64 so references do not round. */
export interface HostTensor {
  data: Float64Array;
  shape: number[];
}

/** Anything with values in row-major order and a shape: a `HostTensor`, or `{ data: await t.data(), shape: t.shape }`. */
export interface HostTensorLike {
  data: ArrayLike<number>;
  shape: readonly number[];
}

/** Padding modes of TensorFlow's convolution and pooling ops. */
export type RefPadding = 'same' | 'valid';

/** Three spatial values (depth, height, width) or one for all three. */
export type RefTriple = number | readonly [number, number, number];

/** A reference was called with shapes or arguments that do not fit together. */
export class ReferenceShapeError extends Error {
  override readonly name = 'ReferenceShapeError';
  constructor(
    readonly op: string,
    message: string,
  ) {
    super(`${op}: ${message}`);
  }
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function triple(v: RefTriple, op: string, what: string): [number, number, number] {
  const t: [number, number, number] = typeof v === 'number' ? [v, v, v] : [v[0], v[1], v[2]];
  for (const x of t) {
    if (!Number.isInteger(x) || x < 1) throw new ReferenceShapeError(op, `${what} must be positive integers, got ${String(v)}`);
  }
  return t;
}

function checkTensor(x: HostTensorLike, rank: number, op: string, what: string): void {
  if (x.shape.length !== rank) {
    throw new ReferenceShapeError(op, `${what} must have rank ${rank}, got shape [${x.shape.join(', ')}]`);
  }
  if (x.data.length !== size(x.shape)) {
    throw new ReferenceShapeError(op, `${what} has ${x.data.length} values for shape [${x.shape.join(', ')}]`);
  }
}

/** Output size and padding in front along one spatial axis (TensorFlow's rule, see the file header). */
export function refWindowAxis(
  inSize: number,
  k: number,
  stride: number,
  pad: RefPadding,
): { out: number; padBefore: number; padAfter: number } {
  if (pad === 'valid') {
    return { out: Math.max(0, Math.ceil((inSize - k + 1) / stride)), padBefore: 0, padAfter: 0 };
  }
  const out = Math.ceil(inSize / stride);
  const total = Math.max(0, (out - 1) * stride + k - inSize);
  const padBefore = Math.floor(total / 2);
  return { out, padBefore, padAfter: total - padBefore };
}

interface Geometry3d {
  n: number;
  inD: number;
  inH: number;
  inW: number;
  outD: number;
  outH: number;
  outW: number;
  kd: number;
  kh: number;
  kw: number;
  sd: number;
  sh: number;
  sw: number;
  pd: number;
  ph: number;
  pw: number;
}

function geometry3d(
  inShape: readonly number[],
  k: [number, number, number],
  s: [number, number, number],
  pad: RefPadding,
): Geometry3d {
  const [n, inD, inH, inW] = inShape as [number, number, number, number];
  const d = refWindowAxis(inD, k[0], s[0], pad);
  const h = refWindowAxis(inH, k[1], s[1], pad);
  const w = refWindowAxis(inW, k[2], s[2], pad);
  return {
    n,
    inD,
    inH,
    inW,
    outD: d.out,
    outH: h.out,
    outW: w.out,
    kd: k[0],
    kh: k[1],
    kw: k[2],
    sd: s[0],
    sh: s[1],
    sw: s[2],
    pd: d.padBefore,
    ph: h.padBefore,
    pw: w.padBefore,
  };
}

/**
 * Visits every (output position, filter tap) pair of a conv3d whose tap lands inside the input, in
 * output order: `visit(xBase, fBase, oBase)` gets the offsets of the input voxel's channel 0, of the
 * filter row `[a, c, e, 0, 0]` and of the output position's channel 0. The three conv references
 * differ only in what they do with the channels there.
 */
function forEachConvTap(
  g: ReturnType<typeof geometry3d>,
  k: [number, number, number],
  cin: number,
  cout: number,
  visit: (xBase: number, fBase: number, oBase: number) => void,
): void {
  const [kd, kh, kw] = k;
  let o = 0;
  for (let b = 0; b < g.n; b++) {
    for (let od = 0; od < g.outD; od++) {
      for (let oh = 0; oh < g.outH; oh++) {
        for (let ow = 0; ow < g.outW; ow++) {
          for (let a = 0; a < kd; a++) {
            const id = od * g.sd - g.pd + a;
            if (id < 0 || id >= g.inD) continue;
            for (let c = 0; c < kh; c++) {
              const ih = oh * g.sh - g.ph + c;
              if (ih < 0 || ih >= g.inH) continue;
              for (let e = 0; e < kw; e++) {
                const iw = ow * g.sw - g.pw + e;
                if (iw < 0 || iw >= g.inW) continue;
                visit((((b * g.inD + id) * g.inH + ih) * g.inW + iw) * cin, ((a * kh + c) * kw + e) * cin * cout, o);
              }
            }
          }
          o += cout;
        }
      }
    }
  }
}

/**
 * 3D convolution (cross-correlation, as in TensorFlow), dilation 1.
 *
 * @param x `[N, D, H, W, Cin]`
 * @param filter `[kd, kh, kw, Cin, Cout]`
 * @returns `[N, outD, outH, outW, Cout]`
 */
export function refConv3d(x: HostTensorLike, filter: HostTensorLike, strides: RefTriple, pad: RefPadding): HostTensor {
  const op = 'refConv3d';
  checkTensor(x, 5, op, 'x');
  checkTensor(filter, 5, op, 'filter');
  const [kd, kh, kw, fcin, cout] = filter.shape as [number, number, number, number, number];
  const cin = x.shape[4] as number;
  if (fcin !== cin) throw new ReferenceShapeError(op, `filter in-channels ${fcin} != x channels ${cin}`);
  const g = geometry3d(x.shape, [kd, kh, kw], triple(strides, op, 'strides'), pad);
  const outShape = [g.n, g.outD, g.outH, g.outW, cout];
  const out = new Float64Array(size(outShape));
  const xd = x.data;
  const fd = filter.data;
  forEachConvTap(g, [kd, kh, kw], cin, cout, (xBase, fBase, o) => {
    for (let ci = 0; ci < cin; ci++) {
      const xv = xd[xBase + ci] as number;
      const fRow = fBase + ci * cout;
      for (let co = 0; co < cout; co++) out[o + co] = (out[o + co] as number) + xv * (fd[fRow + co] as number);
    }
  });
  return { data: out, shape: outShape };
}

/**
 * The adjoint of `refConv3d` in its input: scatters every input position through the filter. This is
 * both conv3d's input gradient and TensorFlow's `conv3dTranspose`.
 *
 * @param dy `[N, outD, outH, outW, Cout]` (the values being transposed; `x` of tfjs' conv3dTranspose)
 * @param filter `[kd, kh, kw, Cin, Cout]` (the same filter layout as conv3d; tfjs' conv3dTranspose names
 *   the last two `[outDepth, inDepth]`, i.e. `[Cin, Cout]` here)
 * @param inputShape `[N, D, H, W, Cin]`: the shape of conv3d's input, i.e. the transpose's output
 * @returns `[N, D, H, W, Cin]`
 */
export function refConv3dTranspose(
  dy: HostTensorLike,
  filter: HostTensorLike,
  inputShape: readonly number[],
  strides: RefTriple,
  pad: RefPadding,
): HostTensor {
  const op = 'refConv3dTranspose';
  checkTensor(dy, 5, op, 'dy');
  checkTensor(filter, 5, op, 'filter');
  if (inputShape.length !== 5) throw new ReferenceShapeError(op, `inputShape must have rank 5`);
  const [kd, kh, kw, cin, cout] = filter.shape as [number, number, number, number, number];
  if (inputShape[4] !== cin) throw new ReferenceShapeError(op, `inputShape channels ${inputShape[4]} != filter in-channels ${cin}`);
  const g = geometry3d(inputShape, [kd, kh, kw], triple(strides, op, 'strides'), pad);
  const expect = [g.n, g.outD, g.outH, g.outW, cout];
  if (dy.shape.some((v, i) => v !== expect[i])) {
    throw new ReferenceShapeError(op, `dy shape [${dy.shape.join(', ')}] != conv3d output shape [${expect.join(', ')}]`);
  }
  const out = new Float64Array(size(inputShape));
  const dd = dy.data;
  const fd = filter.data;
  forEachConvTap(g, [kd, kh, kw], cin, cout, (xBase, fBase, o) => {
    for (let ci = 0; ci < cin; ci++) {
      const fRow = fBase + ci * cout;
      let acc = 0;
      for (let co = 0; co < cout; co++) acc += (dd[o + co] as number) * (fd[fRow + co] as number);
      out[xBase + ci] = (out[xBase + ci] as number) + acc;
    }
  });
  return { data: out, shape: [...inputShape] };
}

/**
 * conv3d's gradient in its filter: `dW[a,c,e,ci,co] = Σ x[b, od·s - p + a, …, ci] · dy[b, od, …, co]`.
 *
 * @param x `[N, D, H, W, Cin]`
 * @param dy `[N, outD, outH, outW, Cout]`
 * @param filterShape `[kd, kh, kw, Cin, Cout]`
 * @returns `[kd, kh, kw, Cin, Cout]`
 */
export function refConv3dFilterGrad(
  x: HostTensorLike,
  dy: HostTensorLike,
  filterShape: readonly number[],
  strides: RefTriple,
  pad: RefPadding,
): HostTensor {
  const op = 'refConv3dFilterGrad';
  checkTensor(x, 5, op, 'x');
  checkTensor(dy, 5, op, 'dy');
  if (filterShape.length !== 5) throw new ReferenceShapeError(op, 'filterShape must have rank 5');
  const [kd, kh, kw, cin, cout] = filterShape as [number, number, number, number, number];
  const g = geometry3d(x.shape, [kd, kh, kw], triple(strides, op, 'strides'), pad);
  const expect = [g.n, g.outD, g.outH, g.outW, cout];
  if (dy.shape.some((v, i) => v !== expect[i])) {
    throw new ReferenceShapeError(op, `dy shape [${dy.shape.join(', ')}] != conv3d output shape [${expect.join(', ')}]`);
  }
  const out = new Float64Array(size(filterShape));
  const xd = x.data;
  const dd = dy.data;
  forEachConvTap(g, [kd, kh, kw], cin, cout, (xBase, fBase, o) => {
    for (let ci = 0; ci < cin; ci++) {
      const xv = xd[xBase + ci] as number;
      const fRow = fBase + ci * cout;
      for (let co = 0; co < cout; co++) out[fRow + co] = (out[fRow + co] as number) + xv * (dd[o + co] as number);
    }
  });
  return { data: out, shape: [...filterShape] };
}

/**
 * Visits every pooling window: `visit(outIndex, inIndices)` with the flat indices (into x) of the
 * window's in-bounds elements, per batch and channel. Padding never enters a window (TensorFlow).
 */
function forEachPoolWindow(
  xShape: readonly number[],
  filterSize: RefTriple,
  strides: RefTriple,
  pad: RefPadding,
  op: string,
  visit: (outIndex: number, inIndices: number[]) => void,
): number[] {
  const k = triple(filterSize, op, 'filterSize');
  const g = geometry3d(xShape, k, triple(strides, op, 'strides'), pad);
  const ch = xShape[4] as number;
  const idx: number[] = [];
  let o = 0;
  for (let b = 0; b < g.n; b++) {
    for (let od = 0; od < g.outD; od++) {
      for (let oh = 0; oh < g.outH; oh++) {
        for (let ow = 0; ow < g.outW; ow++) {
          for (let c = 0; c < ch; c++) {
            idx.length = 0;
            for (let a = 0; a < g.kd; a++) {
              const id = od * g.sd - g.pd + a;
              if (id < 0 || id >= g.inD) continue;
              for (let h = 0; h < g.kh; h++) {
                const ih = oh * g.sh - g.ph + h;
                if (ih < 0 || ih >= g.inH) continue;
                for (let e = 0; e < g.kw; e++) {
                  const iw = ow * g.sw - g.pw + e;
                  if (iw < 0 || iw >= g.inW) continue;
                  idx.push((((b * g.inD + id) * g.inH + ih) * g.inW + iw) * ch + c);
                }
              }
            }
            visit(o++, idx);
          }
        }
      }
    }
  }
  return [g.n, g.outD, g.outH, g.outW, ch];
}

function poolOutShape(xShape: readonly number[], filterSize: RefTriple, strides: RefTriple, pad: RefPadding, op: string): number[] {
  const g = geometry3d(xShape, triple(filterSize, op, 'filterSize'), triple(strides, op, 'strides'), pad);
  return [g.n, g.outD, g.outH, g.outW, xShape[4] as number];
}

/**
 * 3D max pooling; padded positions are never candidates, so a window of negative values yields its
 * (negative) maximum, not 0.
 *
 * @param x `[N, D, H, W, C]`
 * @returns `[N, outD, outH, outW, C]`
 */
export function refMaxPool3d(x: HostTensorLike, filterSize: RefTriple, strides: RefTriple, pad: RefPadding): HostTensor {
  const op = 'refMaxPool3d';
  checkTensor(x, 5, op, 'x');
  const out = new Float64Array(size(poolOutShape(x.shape, filterSize, strides, pad, op)));
  const shape = forEachPoolWindow(x.shape, filterSize, strides, pad, op, (o, idx) => {
    let m = -Infinity;
    for (const i of idx) m = Math.max(m, x.data[i] as number);
    out[o] = m;
  });
  return { data: out, shape };
}

/**
 * Gradient of `refMaxPool3d`: each output's gradient goes to the (first) maximum of its window.
 *
 * @param x `[N, D, H, W, C]` @param dy `[N, outD, outH, outW, C]` @returns `[N, D, H, W, C]`
 */
export function refMaxPool3dGrad(
  x: HostTensorLike,
  dy: HostTensorLike,
  filterSize: RefTriple,
  strides: RefTriple,
  pad: RefPadding,
): HostTensor {
  const op = 'refMaxPool3dGrad';
  checkTensor(x, 5, op, 'x');
  checkTensor(dy, 5, op, 'dy');
  const outShape = poolOutShape(x.shape, filterSize, strides, pad, op);
  if (dy.shape.some((v, i) => v !== outShape[i])) throw new ReferenceShapeError(op, `dy shape [${dy.shape.join(', ')}] != [${outShape.join(', ')}]`);
  const dx = new Float64Array(x.data.length);
  forEachPoolWindow(x.shape, filterSize, strides, pad, op, (o, idx) => {
    let best = -1;
    let m = -Infinity;
    for (const i of idx) {
      if ((x.data[i] as number) > m) {
        m = x.data[i] as number;
        best = i;
      }
    }
    if (best >= 0) dx[best] = (dx[best] as number) + (dy.data[o] as number);
  });
  return { data: dx, shape: [...x.shape] };
}

/**
 * 3D average pooling; the mean is over the window's in-bounds elements only (TensorFlow's `'same'`
 * rule: padding is not counted).
 *
 * @param x `[N, D, H, W, C]`
 * @returns `[N, outD, outH, outW, C]`
 */
export function refAvgPool3d(x: HostTensorLike, filterSize: RefTriple, strides: RefTriple, pad: RefPadding): HostTensor {
  const op = 'refAvgPool3d';
  checkTensor(x, 5, op, 'x');
  const out = new Float64Array(size(poolOutShape(x.shape, filterSize, strides, pad, op)));
  const shape = forEachPoolWindow(x.shape, filterSize, strides, pad, op, (o, idx) => {
    let s = 0;
    for (const i of idx) s += x.data[i] as number;
    out[o] = idx.length > 0 ? s / idx.length : 0;
  });
  return { data: out, shape };
}

/**
 * Gradient of `refAvgPool3d` (its adjoint): each output's gradient is shared equally by the in-bounds
 * elements of its window.
 *
 * @param dy `[N, outD, outH, outW, C]` @param xShape `[N, D, H, W, C]` @returns `[N, D, H, W, C]`
 */
export function refAvgPool3dGrad(
  dy: HostTensorLike,
  xShape: readonly number[],
  filterSize: RefTriple,
  strides: RefTriple,
  pad: RefPadding,
): HostTensor {
  const op = 'refAvgPool3dGrad';
  checkTensor(dy, 5, op, 'dy');
  if (xShape.length !== 5) throw new ReferenceShapeError(op, 'xShape must have rank 5');
  const outShape = poolOutShape(xShape, filterSize, strides, pad, op);
  if (dy.shape.some((v, i) => v !== outShape[i])) throw new ReferenceShapeError(op, `dy shape [${dy.shape.join(', ')}] != [${outShape.join(', ')}]`);
  const dx = new Float64Array(size(xShape));
  forEachPoolWindow(xShape, filterSize, strides, pad, op, (o, idx) => {
    const share = (dy.data[o] as number) / Math.max(1, idx.length);
    for (const i of idx) dx[i] = (dx[i] as number) + share;
  });
  return { data: dx, shape: [...xShape] };
}

/**
 * Batched matrix product `a · b` (optionally transposing the last two axes of either); the batch
 * dimensions must match exactly.
 *
 * @param a `[...batch, M, K]` (`[...batch, K, M]` with transposeA)
 * @param b `[...batch, K, N]` (`[...batch, N, K]` with transposeB)
 * @returns `[...batch, M, N]`
 */
export function refMatMul(a: HostTensorLike, b: HostTensorLike, transposeA = false, transposeB = false): HostTensor {
  const op = 'refMatMul';
  if (a.shape.length < 2 || a.shape.length !== b.shape.length) {
    throw new ReferenceShapeError(op, `a [${a.shape.join(', ')}] and b [${b.shape.join(', ')}] must have equal rank >= 2`);
  }
  checkTensor(a, a.shape.length, op, 'a');
  checkTensor(b, b.shape.length, op, 'b');
  const r = a.shape.length;
  const batch = a.shape.slice(0, r - 2);
  if (b.shape.slice(0, r - 2).some((v, i) => v !== batch[i])) throw new ReferenceShapeError(op, 'batch dimensions differ');
  const [a0, a1] = [a.shape[r - 2] as number, a.shape[r - 1] as number];
  const [b0, b1] = [b.shape[r - 2] as number, b.shape[r - 1] as number];
  const m = transposeA ? a1 : a0;
  const k = transposeA ? a0 : a1;
  const kb = transposeB ? b1 : b0;
  const n = transposeB ? b0 : b1;
  if (k !== kb) throw new ReferenceShapeError(op, `inner dimensions differ: ${k} vs ${kb}`);
  const nb = size(batch);
  const out = new Float64Array(nb * m * n);
  for (let q = 0; q < nb; q++) {
    const ao = q * a0 * a1;
    const bo = q * b0 * b1;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          const av = a.data[ao + (transposeA ? p * a1 + i : i * a1 + p)] as number;
          const bv = b.data[bo + (transposeB ? j * b1 + p : p * b1 + j)] as number;
          s += av * bv;
        }
        out[(q * m + i) * n + j] = s;
      }
    }
  }
  return { data: out, shape: [...batch, m, n] };
}

/**
 * Softmax over the last axis, computed stably (the row maximum is subtracted first).
 *
 * @param x `[..., C]` @returns `[..., C]`
 */
export function refSoftmax(x: HostTensorLike): HostTensor {
  const op = 'refSoftmax';
  if (x.shape.length < 1) throw new ReferenceShapeError(op, 'x must have rank >= 1');
  checkTensor(x, x.shape.length, op, 'x');
  const c = x.shape[x.shape.length - 1] as number;
  const out = new Float64Array(x.data.length);
  for (let r = 0; r < x.data.length; r += c) {
    let m = -Infinity;
    for (let j = 0; j < c; j++) m = Math.max(m, x.data[r + j] as number);
    let s = 0;
    for (let j = 0; j < c; j++) {
      const e = Math.exp((x.data[r + j] as number) - m);
      out[r + j] = e;
      s += e;
    }
    for (let j = 0; j < c; j++) out[r + j] = (out[r + j] as number) / s;
  }
  return { data: out, shape: [...x.shape] };
}

/**
 * Layer normalisation over the last axis (Ba et al., 2016): `(x - mean) / sqrt(var + eps) · gain + bias`,
 * with the biased variance.
 *
 * @param x `[..., C]` @param gain `[C]` @param bias `[C]` @returns `[..., C]`
 */
export function refLayerNorm(x: HostTensorLike, gain: ArrayLike<number>, bias: ArrayLike<number>, eps = 1e-5): HostTensor {
  const op = 'refLayerNorm';
  if (x.shape.length < 1) throw new ReferenceShapeError(op, 'x must have rank >= 1');
  checkTensor(x, x.shape.length, op, 'x');
  const c = x.shape[x.shape.length - 1] as number;
  if (gain.length !== c || bias.length !== c) throw new ReferenceShapeError(op, `gain/bias must have length ${c}`);
  const out = new Float64Array(x.data.length);
  for (let r = 0; r < x.data.length; r += c) {
    let mean = 0;
    for (let j = 0; j < c; j++) mean += x.data[r + j] as number;
    mean /= c;
    let v = 0;
    for (let j = 0; j < c; j++) v += ((x.data[r + j] as number) - mean) ** 2;
    v /= c;
    const inv = 1 / Math.sqrt(v + eps);
    for (let j = 0; j < c; j++) out[r + j] = ((x.data[r + j] as number) - mean) * inv * (gain[j] as number) + (bias[j] as number);
  }
  return { data: out, shape: [...x.shape] };
}
