/**
 * The wasm kernel fixes, each shown twice: the kernel tfjs-backend-wasm 4.22 ships is wrong (or
 * missing) on the case, and the re-registered one matches a float64 reference written here (and the
 * cpu backend).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { probeBackend, useBackend } from './backend.js';
import { makeRng } from './rng.js';
import { maxAbsDiff } from './testing.js';
import { WASM_KERNEL_FIXES, patchWasmKernels } from './wasm-kernels.js';
import './grads.js';

type Arr = Float64Array;

/** The kernels as tfjs-backend-wasm registered them, captured before the patch. */
const originals = new Map<string, tf.KernelConfig>();
let listenersAdded = { uncaught: -1, unhandled: -1 };

beforeAll(async () => {
  const u0 = process.listeners('uncaughtException').length;
  const r0 = process.listeners('unhandledRejection').length;
  await import('@tensorflow/tfjs-backend-wasm');
  for (const { name } of WASM_KERNEL_FIXES) {
    const k = tf.getKernel(name, 'wasm');
    if (k) originals.set(name, { ...k });
  }
  const probe = await probeBackend('wasm');
  if (!probe.ok) throw new Error(`wasm backend unavailable: ${probe.reason}`);
  listenersAdded = {
    uncaught: process.listeners('uncaughtException').length - u0,
    unhandled: process.listeners('unhandledRejection').length - r0,
  };
  await useBackend('wasm');
});

function rand(shape: number[], seed: number, scale = 1): Arr {
  const rng = makeRng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return Float64Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
}

function t(values: Arr, shape: number[]): tf.Tensor {
  return tf.tensor(Float32Array.from(values), shape);
}

/** Runs a kernel on the active backend through the engine and returns its first output's values. */
function run(name: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap): Float32Array {
  return tf.tidy(() => (tf.engine().runKernel(name, inputs, attrs) as tf.Tensor).dataSync() as Float32Array);
}

/** Runs the kernel that tfjs-backend-wasm shipped (not the patched one) on wasm tensors. */
function runOriginal(name: string, inputs: tf.NamedTensorMap, attrs: tf.NamedAttrMap): Float32Array {
  const k = originals.get(name);
  if (!k) throw new Error(`no original ${name}`);
  const backend = tf.engine().backend;
  const out = k.kernelFunc({ inputs, attrs, backend }) as tf.TensorInfo;
  const values = backend.readSync(out.dataId) as Float32Array;
  backend.disposeData(out.dataId);
  return values;
}

async function onCpu<T>(f: () => T): Promise<T> {
  await useBackend('cpu');
  try {
    return f();
  } finally {
    await useBackend('wasm');
  }
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 1e-6;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i] as number));
  return maxAbsDiff(got, want) / scale;
}

// --------------------------------------------------------------------------------------------------
// float64 references

interface Conv3dGeom {
  x: number[]; // [B, D, H, W, Ci]
  f: number[]; // [fd, fh, fw, Ci, Co]
  stride: number;
  pad: 'same' | 'valid';
}

/** Calls `visit(xIndex, fIndexBase, yIndexBase)` for every (output voxel, tap) pair that reads an
 * in-range input voxel: the one loop nest that conv3d, its input gradient and its filter gradient share. */
function conv3dVisit(g: Conv3dGeom, visit: (xi: number, fi: number, yi: number) => void): number[] {
  const [B, D, H, W, Ci] = g.x as [number, number, number, number, number];
  const [fd, fh, fw, , Co] = g.f as [number, number, number, number, number];
  const info = tf.backend_util.computeConv3DInfo(g.x as [number, number, number, number, number], g.f as [number, number, number, number, number], g.stride, 1, g.pad);
  const { outDepth: OD, outHeight: OH, outWidth: OW } = info;
  const { front, top, left } = info.padInfo;
  for (let b = 0; b < B; b++)
    for (let od = 0; od < OD; od++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++)
          for (let kd = 0; kd < fd; kd++)
            for (let kh = 0; kh < fh; kh++)
              for (let kw = 0; kw < fw; kw++) {
                const id = od * g.stride - front + kd;
                const ih = oh * g.stride - top + kh;
                const iw = ow * g.stride - left + kw;
                if (id < 0 || id >= D || ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const xi = ((((b * D + id) * H + ih) * W + iw) * Ci) as number;
                const fi = (((kd * fh + kh) * fw + kw) * Ci * Co) as number;
                const yi = ((((b * OD + od) * OH + oh) * OW + ow) * Co) as number;
                visit(xi, fi, yi);
              }
  return [B, OD, OH, OW, Co];
}

function conv3dOutShape(g: Conv3dGeom): number[] {
  return conv3dVisit(g, () => undefined);
}

function conv3dBackpropInputRef(g: Conv3dGeom, dy: Arr, f: Arr): Arr {
  const Ci = g.x[4] as number;
  const Co = g.f[4] as number;
  const dx = new Float64Array(g.x.reduce((a, b) => a * b, 1));
  conv3dVisit(g, (xi, fi, yi) => {
    for (let ci = 0; ci < Ci; ci++) {
      let s = 0;
      for (let co = 0; co < Co; co++) s += (dy[yi + co] as number) * (f[fi + ci * Co + co] as number);
      dx[xi + ci] = (dx[xi + ci] as number) + s;
    }
  });
  return dx;
}

function conv3dBackpropFilterRef(g: Conv3dGeom, x: Arr, dy: Arr): Arr {
  const Ci = g.x[4] as number;
  const Co = g.f[4] as number;
  const df = new Float64Array(g.f.reduce((a, b) => a * b, 1));
  conv3dVisit(g, (xi, fi, yi) => {
    for (let ci = 0; ci < Ci; ci++)
      for (let co = 0; co < Co; co++) df[fi + ci * Co + co] = (df[fi + ci * Co + co] as number) + (x[xi + ci] as number) * (dy[yi + co] as number);
  });
  return df;
}

/** maxPool3d (window k, stride s, 'valid'; per axis or the same on all three) and the index of each
 * window's maximum. */
function maxPool3dRef(x: Arr, shape: number[], k: number | number[], s: number | number[]): { y: Arr; arg: number[] } {
  const [B, D, H, W, C] = shape as [number, number, number, number, number];
  const [kd, kh, kw] = (Array.isArray(k) ? k : [k, k, k]) as [number, number, number];
  const [sd, sh, sw] = (Array.isArray(s) ? s : [s, s, s]) as [number, number, number];
  const OD = Math.floor((D - kd) / sd) + 1;
  const OH = Math.floor((H - kh) / sh) + 1;
  const OW = Math.floor((W - kw) / sw) + 1;
  const y = new Float64Array(B * OD * OH * OW * C);
  const arg: number[] = [];
  let o = 0;
  for (let b = 0; b < B; b++)
    for (let od = 0; od < OD; od++)
      for (let oh = 0; oh < OH; oh++)
        for (let ow = 0; ow < OW; ow++)
          for (let c = 0; c < C; c++) {
            let best = -Infinity;
            let at = -1;
            for (let i = 0; i < kd; i++)
              for (let j = 0; j < kh; j++)
                for (let l = 0; l < kw; l++) {
                  const idx = (((b * D + od * sd + i) * H + oh * sh + j) * W + ow * sw + l) * C + c;
                  if ((x[idx] as number) > best) {
                    best = x[idx] as number;
                    at = idx;
                  }
                }
            y[o] = best;
            arg[o++] = at;
          }
  return { y, arg };
}

/** dilation2d ('valid', stride s, no dilation): y = max over the window of x + w, and the argmax
 * (input index, filter index) of each output. */
function dilation2dRef(x: Arr, xs: number[], w: Arr, ws: number[], s: number): { y: Arr; yShape: number[]; argX: number[]; argW: number[] } {
  const [B, H, W, C] = xs as [number, number, number, number];
  const [fh, fw] = ws as [number, number, number];
  const OH = Math.floor((H - fh) / s) + 1;
  const OW = Math.floor((W - fw) / s) + 1;
  const y = new Float64Array(B * OH * OW * C);
  const argX: number[] = [];
  const argW: number[] = [];
  let o = 0;
  for (let b = 0; b < B; b++)
    for (let i = 0; i < OH; i++)
      for (let j = 0; j < OW; j++)
        for (let c = 0; c < C; c++) {
          let best = -Infinity;
          let ax = -1;
          let aw = -1;
          for (let u = 0; u < fh; u++)
            for (let v = 0; v < fw; v++) {
              const xi = ((b * H + i * s + u) * W + j * s + v) * C + c;
              const wi = (u * fw + v) * C + c;
              const val = (x[xi] as number) + (w[wi] as number);
              if (val > best) {
                best = val;
                ax = xi;
                aw = wi;
              }
            }
          y[o] = best;
          argX[o] = ax;
          argW[o++] = aw;
        }
  return { y, yShape: [B, OH, OW, C], argX, argW };
}

function matMulRef(a: Arr, aShape: number[], b: Arr, bShape: number[], tA: boolean, tB: boolean): { y: Arr; shape: number[] } {
  const ar = aShape.length;
  const br = bShape.length;
  const M = (tA ? aShape[ar - 1] : aShape[ar - 2]) as number;
  const K = (tA ? aShape[ar - 2] : aShape[ar - 1]) as number;
  const N = (tB ? bShape[br - 2] : bShape[br - 1]) as number;
  const aB = aShape.slice(0, -2);
  const bB = bShape.slice(0, -2);
  const rank = Math.max(aB.length, bB.length);
  const pa = [...new Array<number>(rank - aB.length).fill(1), ...aB];
  const pb = [...new Array<number>(rank - bB.length).fill(1), ...bB];
  const oB = pa.map((d, i) => Math.max(d, pb[i] as number));
  const nOut = oB.reduce((p, c) => p * c, 1);
  const y = new Float64Array(nOut * M * N);
  for (let o = 0; o < nOut; o++) {
    let rem = o;
    let ia = 0;
    let ib = 0;
    let sa = 1;
    let sb = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const c = rem % (oB[d] as number);
      rem = Math.floor(rem / (oB[d] as number));
      if (pa[d] !== 1) ia += c * sa;
      if (pb[d] !== 1) ib += c * sb;
      sa *= pa[d] as number;
      sb *= pb[d] as number;
    }
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) {
          const av = a[ia * M * K + (tA ? k * M + i : i * K + k)] as number;
          const bv = b[ib * K * N + (tB ? j * K + k : k * N + j)] as number;
          s += av * bv;
        }
        y[(o * M + i) * N + j] = s;
      }
  }
  return { y, shape: [...oB, M, N] };
}

/** Einsum by brute force over every index assignment. */
function einsumRef(eq: string, operands: { v: Arr; shape: number[] }[]): Arr {
  const [lhs, out] = eq.split('->') as [string, string];
  const terms = lhs.split(',');
  const dims = new Map<string, number>();
  terms.forEach((term, i) => [...term].forEach((c, j) => dims.set(c, operands[i]?.shape[j] as number)));
  const letters = [...dims.keys()];
  const outSize = [...out].reduce((p, c) => p * (dims.get(c) as number), 1);
  const y = new Float64Array(outSize);
  const idx = new Map<string, number>(letters.map((c) => [c, 0]));
  const flat = (term: string) => [...term].reduce((p, c) => p * (dims.get(c) as number) + (idx.get(c) as number), 0);
  const total = letters.reduce((p, c) => p * (dims.get(c) as number), 1);
  for (let n = 0; n < total; n++) {
    let rem = n;
    for (let i = letters.length - 1; i >= 0; i--) {
      const c = letters[i] as string;
      idx.set(c, rem % (dims.get(c) as number));
      rem = Math.floor(rem / (dims.get(c) as number));
    }
    let p = 1;
    terms.forEach((term, i) => (p *= operands[i]?.v[flat(term)] as number));
    const o = flat(out);
    y[o] = (y[o] as number) + p;
  }
  return y;
}

// --------------------------------------------------------------------------------------------------

describe('patchWasmKernels', () => {
  it('replaces every listed kernel and is idempotent', () => {
    const before = WASM_KERNEL_FIXES.map(({ name }) => tf.getKernel(name, 'wasm')?.kernelFunc);
    expect(before.every((f) => typeof f === 'function')).toBe(true);
    patchWasmKernels();
    patchWasmKernels();
    const after = WASM_KERNEL_FIXES.map(({ name }) => tf.getKernel(name, 'wasm')?.kernelFunc);
    expect(after).toEqual(before);
    for (const { name } of WASM_KERNEL_FIXES) {
      const orig = originals.get(name);
      if (orig) expect(tf.getKernel(name, 'wasm')?.kernelFunc).not.toBe(orig.kernelFunc);
    }
  });

  it('leaves no process-level error listeners from the wasm module behind', () => {
    expect(listenersAdded).toEqual({ uncaught: 0, unhandled: 0 });
  });
});

describe('OneHot on wasm', () => {
  it('matches the cpu backend for float32 and int32, with indices out of range and custom values', async () => {
    const idx = [0, 3, -1, 5, 4, 2, 2, 7];
    for (const dtype of ['float32', 'int32'] as const) {
      for (const [on, off] of [
        [1, 0],
        [2.5, -1],
      ] as const) {
        if (dtype === 'int32' && on !== Math.round(on)) continue;
        const got = tf.tidy(() => tf.oneHot(tf.tensor2d(idx, [4, 2], 'int32'), 6, on, off, dtype));
        const want = await onCpu(() => tf.tidy(() => tf.oneHot(tf.tensor2d(idx, [4, 2], 'int32'), 6, on, off, dtype)).dataSync());
        expect(got.shape).toEqual([4, 2, 6]);
        expect(got.dtype).toBe(dtype);
        expect(Array.from(await got.data())).toEqual(Array.from(want));
        // Independently: row i holds `on` at idx[i] when 0 <= idx[i] < 6, `off` elsewhere.
        const v = await got.data();
        for (let i = 0; i < idx.length; i++) for (let j = 0; j < 6; j++) expect(v[i * 6 + j]).toBe(j === idx[i] ? on : off);
        got.dispose();
      }
    }
  });
});

describe('Identity on wasm', () => {
  it('shares the data under a reference count: no copy, values kept until the last holder goes', async () => {
    const backend = tf.engine().backend as unknown as { dataIdMap: { has(id: tf.DataId): boolean }; refCount(id: tf.DataId): number };
    const x = tf.tensor2d([1, -2, 3.5, 4], [2, 2]);
    const buffers0 = (tf.memory() as { numDataBuffers: number }).numDataBuffers;
    const y = tf.clone(x);
    expect(y.dataId).toBe(x.dataId); // what the engine saves for a gradient is the same buffer
    expect(backend.refCount(x.dataId)).toBe(2);
    expect((tf.memory() as { numDataBuffers: number }).numDataBuffers).toBe(buffers0);
    x.dispose();
    expect(Array.from(await y.data())).toEqual([1, -2, 3.5, 4]);
    const id = y.dataId;
    y.dispose();
    expect(backend.dataIdMap.has(id)).toBe(false);
    // A product's weight gradient still reads the saved (shared) inputs correctly.
    const a = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]);
    const w = tf.tensor2d([0.5, -1, 2, 0.25], [2, 2]);
    const g = tf.grad((ww: tf.Tensor) => tf.sum(tf.matMul(a, ww)))(w);
    expect(Array.from(await g.data())).toEqual([9, 9, 12, 12]); // column sums of a, per output column
    tf.dispose([a, w, g]);
  });
});

describe('conv3d backward kernels on wasm', () => {
  const cases: Conv3dGeom[] = [
    { x: [2, 5, 6, 7, 2], f: [3, 3, 3, 2, 3], stride: 1, pad: 'same' },
    { x: [1, 5, 6, 7, 2], f: [3, 2, 3, 2, 3], stride: 1, pad: 'valid' },
    { x: [2, 6, 5, 7, 3], f: [3, 3, 3, 3, 2], stride: 2, pad: 'same' },
    { x: [1, 7, 6, 5, 2], f: [2, 3, 2, 2, 4], stride: 2, pad: 'valid' },
  ];
  for (const g of cases) {
    const label = `x ${g.x} f ${g.f} stride ${g.stride} ${g.pad}`;
    const yShape = conv3dOutShape(g);
    const dy = rand(yShape, 11);
    const f = rand(g.f, 12);
    const x = rand(g.x, 13);
    const attrsIn = { strides: [g.stride, g.stride, g.stride], pad: g.pad, inputShape: g.x };
    const attrsF = { strides: [g.stride, g.stride, g.stride], pad: g.pad, filterShape: g.f };

    it(`Conv3DBackpropInputV2 (conv3d input gradient): ${label}`, async () => {
      const want = conv3dBackpropInputRef(g, dy, f);
      const original = tf.tidy(() => runOriginal('Conv3DBackpropInputV2', { dy: t(dy, yShape), filter: t(f, g.f) }, attrsIn));
      expect(relErr(original, want)).toBeGreaterThan(0.05); // the shipped kernel is wrong here
      const got = run('Conv3DBackpropInputV2', { dy: t(dy, yShape), filter: t(f, g.f) }, attrsIn);
      expect(relErr(got, want)).toBeLessThan(1e-5);
      const cpu = await onCpu(() => run('Conv3DBackpropInputV2', { dy: t(dy, yShape), filter: t(f, g.f) }, attrsIn));
      expect(maxAbsDiff(got, cpu)).toBe(0);
    });

    it(`Conv3DBackpropFilterV2 (conv3d filter gradient): ${label}`, () => {
      const want = conv3dBackpropFilterRef(g, x, dy);
      const original = tf.tidy(() => runOriginal('Conv3DBackpropFilterV2', { x: t(x, g.x), dy: t(dy, yShape) }, attrsF));
      // Stride 1 was right already; stride 2 was not.
      if (g.stride > 1) expect(relErr(original, want)).toBeGreaterThan(0.05);
      else expect(relErr(original, want)).toBeLessThan(1e-5);
      const got = run('Conv3DBackpropFilterV2', { x: t(x, g.x), dy: t(dy, yShape) }, attrsF);
      expect(relErr(got, want)).toBeLessThan(1e-5);
    });
  }

  it('conv3dTranspose forward (the same kernel) matches the adjoint of conv3d', () => {
    const g: Conv3dGeom = { x: [1, 6, 6, 8, 2], f: [3, 3, 3, 2, 4], stride: 2, pad: 'same' };
    const yShape = conv3dOutShape(g); // [1, 3, 3, 4, 4]
    const dy = rand(yShape, 21);
    const f = rand(g.f, 22);
    const want = conv3dBackpropInputRef(g, dy, f);
    const got = tf.tidy(() => tf.conv3dTranspose(t(dy, yShape) as tf.Tensor5D, t(f, g.f) as tf.Tensor5D, g.x as [number, number, number, number, number], 2, 'same').dataSync());
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });
});

describe('maxPool3d on wasm', () => {
  const shape = [2, 4, 4, 6, 3];
  // All-negative input, no ties.
  const x = rand(shape, 31).map((v, i) => -1 - Math.abs(v) - i * 1e-4);

  it('MaxPool3D is right on all-negative windows', () => {
    const { y } = maxPool3dRef(x, shape, 2, 2);
    const attrs = { filterSize: [2, 2, 2], strides: [2, 2, 2], pad: 'valid', dataFormat: 'NDHWC' };
    const original = tf.tidy(() => runOriginal('MaxPool3D', { x: t(x, shape) }, attrs));
    expect(maxAbsDiff(original, y)).toBeGreaterThan(0.5);
    const got = tf.tidy(() => tf.maxPool3d(t(x, shape) as tf.Tensor5D, 2, 2, 'valid').dataSync());
    expect(maxAbsDiff(got, y)).toBeLessThan(1e-6);
  });

  it('MaxPool3DGrad with a window of unequal height and width (1 x 3 x 2, stride 1 x 1 x 2)', () => {
    const shp = [1, 3, 6, 6, 2];
    const xm = rand(shp, 42).map((v, i) => v + i * 1e-5);
    const { y, arg } = maxPool3dRef(xm, shp, [1, 3, 2], [1, 1, 2]);
    const yShape = [1, 3, 4, 3, 2];
    const dy = rand(yShape, 43);
    const want = new Float64Array(xm.length);
    arg.forEach((i, o) => (want[i] = (want[i] as number) + (dy[o] as number)));
    const got = tf.tidy(() =>
      run('MaxPool3DGrad', { dy: t(dy, yShape), input: t(xm, shp), output: t(y, yShape) }, { filterSize: [1, 3, 2], strides: [1, 1, 2], pad: 'valid' }),
    );
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-6);
  });

  for (const stride of [2, 1]) {
    it(`MaxPool3DGrad routes each window's gradient to its maximum (all-negative input, stride ${stride})`, () => {
      const { y, arg } = maxPool3dRef(x, shape, 2, stride);
      const yShape = [2, ...[4, 4, 6].map((d) => Math.floor((d - 2) / stride) + 1), 3];
      const dy = rand(yShape, 33);
      const want = new Float64Array(x.length);
      arg.forEach((i, o) => (want[i] = (want[i] as number) + (dy[o] as number)));
      const inputs = () => ({ dy: t(dy, yShape), input: t(x, shape), output: t(y, yShape) });
      const attrs = { filterSize: [2, 2, 2], strides: [stride, stride, stride], pad: 'valid' };
      const original = tf.tidy(() => runOriginal('MaxPool3DGrad', inputs(), attrs));
      expect(maxAbsDiff(original, want)).toBeGreaterThan(0.1);
      const got = tf.tidy(() => run('MaxPool3DGrad', inputs(), attrs));
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-6);
    });
  }
});

describe('maxPool (2-D) gradient and dilation2d on wasm', () => {
  it('MaxPoolGrad routes each window gradient to its maximum', () => {
    const shape = [2, 6, 5, 3];
    const x = rand(shape, 34).map((v, i) => v + i * 1e-5);
    const { y, arg } = maxPool3dRef(x, [2, 1, 6, 5, 3], [1, 2, 2], [1, 2, 1]);
    const yShape = [2, 3, 4, 3];
    const dy = rand(yShape, 35);
    const want = new Float64Array(x.length);
    arg.forEach((i, o) => (want[i] = (want[i] as number) + (dy[o] as number)));
    const inputs = () => ({ dy: t(dy, yShape), input: t(x, shape), output: t(y, yShape) });
    const attrs = { filterSize: [2, 2], strides: [2, 1], pad: 'valid' };
    const original = tf.tidy(() => runOriginal('MaxPoolGrad', inputs(), attrs));
    expect(maxAbsDiff(original, want)).toBeGreaterThan(0.1);
    const got = tf.tidy(() => run('MaxPoolGrad', inputs(), attrs));
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-6);
  });

  it('Dilation2D and its two backprops match the max-plus definition', () => {
    const xs = [2, 6, 5, 2];
    const ws = [2, 3, 2];
    const x = rand(xs, 36).map((v, i) => v + i * 1e-4);
    const w = rand(ws, 37).map((v, i) => v + i * 1e-3);
    const { y, yShape, argX, argW } = dilation2dRef(x, xs, w, ws, 1);
    const dy = rand(yShape, 38);
    const dx = new Float64Array(x.length);
    const dw = new Float64Array(w.length);
    argX.forEach((i, o) => (dx[i] = (dx[i] as number) + (dy[o] as number)));
    argW.forEach((i, o) => (dw[i] = (dw[i] as number) + (dy[o] as number)));
    const attrs = { strides: [1, 1], pad: 'valid', dilations: [1, 1] };
    const fwd = () => ({ x: t(x, xs), filter: t(w, ws) });
    const back = () => ({ x: t(x, xs), filter: t(w, ws), dy: t(dy, yShape) });
    const cases: [string, () => tf.NamedTensorMap, Arr][] = [
      ['Dilation2D', fwd, y],
      ['Dilation2DBackpropInput', back, dx],
      ['Dilation2DBackpropFilter', back, dw],
    ];
    for (const [name, inputs, want] of cases) {
      const original = tf.tidy(() => runOriginal(name, inputs(), attrs));
      expect(maxAbsDiff(original, want), `${name} as shipped`).toBeGreaterThan(0.05);
      const got = tf.tidy(() => run(name, inputs(), attrs));
      expect(maxAbsDiff(got, want), name).toBeLessThan(1e-5);
    }
  });
});

describe('max-pooling gradients on wasm agree with the cpu backend (padding, overlap, ties)', () => {
  // Windows with height == width: the cpu MaxPool3DGrad is itself wrong otherwise (it flattens the
  // window position with the height as the row stride); non-square windows are checked against the
  // float64 reference below.
  const configs: { x: number[]; k: number[]; s: number[]; pad: 'same' | 'valid' }[] = [
    { x: [2, 5, 6, 7, 3], k: [3, 3, 3], s: [1, 1, 1], pad: 'same' },
    { x: [1, 6, 5, 4, 2], k: [3, 2, 2], s: [2, 1, 2], pad: 'same' },
    { x: [1, 5, 5, 5, 1], k: [2, 3, 3], s: [2, 2, 1], pad: 'valid' },
  ];
  for (const c of configs) {
    it(`MaxPool3DGrad x ${c.x} k ${c.k} s ${c.s} ${c.pad}, and MaxPoolGrad on a 2-D slice`, async () => {
      // Values rounded to 0.25 so that windows have ties.
      const x = rand(c.x, 39).map((v) => Math.round(v * 4) / 4);
      const run3 = () =>
        tf.tidy(() => {
          const xt = t(x, c.x) as tf.Tensor5D;
          const y = tf.maxPool3d(xt, c.k as [number, number, number], c.s as [number, number, number], c.pad);
          const dy = t(rand(y.shape, 40), y.shape);
          return tf.engine().runKernel('MaxPool3DGrad', { dy, input: xt, output: y }, { filterSize: c.k, strides: c.s, pad: c.pad }) as tf.Tensor;
        });
      const x2 = [c.x[0] as number, c.x[2] as number, c.x[3] as number, c.x[4] as number];
      const run2 = () =>
        tf.tidy(() => {
          const xt = t(x.slice(0, x2.reduce((a, b) => a * b, 1)), x2) as tf.Tensor4D;
          const k2 = c.k.slice(1) as [number, number];
          const s2 = c.s.slice(1) as [number, number];
          const y = tf.maxPool(xt, k2, s2, c.pad);
          const dy = t(rand(y.shape, 41), y.shape);
          return tf.engine().runKernel('MaxPoolGrad', { dy, input: xt, output: y }, { filterSize: k2, strides: s2, pad: c.pad }) as tf.Tensor;
        });
      const got3 = run3();
      const got2 = run2();
      const cpu = await onCpu(() => [run3(), run2()]);
      expect(maxAbsDiff(got3.dataSync(), (cpu[0] as tf.Tensor).dataSync())).toBeLessThan(1e-6);
      expect(maxAbsDiff(got2.dataSync(), (cpu[1] as tf.Tensor).dataSync())).toBeLessThan(1e-6);
      tf.dispose([got3, got2, ...cpu]);
    });
  }
});

describe('kernels missing from wasm', () => {
  it('UnsortedSegmentSum sums rows by id and drops ids outside [0, numSegments)', () => {
    expect(originals.has('UnsortedSegmentSum')).toBe(false);
    const x = rand([7, 3, 2], 41);
    const ids = [2, 0, 2, -1, 1, 5, 0];
    const want = new Float64Array(4 * 6);
    ids.forEach((s, i) => {
      if (s < 0 || s >= 4) return;
      for (let j = 0; j < 6; j++) want[s * 6 + j] = (want[s * 6 + j] as number) + (x[i * 6 + j] as number);
    });
    const got = tf.tidy(() => tf.unsortedSegmentSum(t(x, [7, 3, 2]), tf.tensor1d(ids, 'int32'), 4));
    expect(got.shape).toEqual([4, 3, 2]);
    expect(maxAbsDiff(got.dataSync(), want)).toBeLessThan(1e-6);
    got.dispose();
    const xi = tf.tidy(() => tf.unsortedSegmentSum(tf.tensor2d([[1, 2], [3, 4], [5, 6]], [3, 2], 'int32'), tf.tensor1d([1, 1, 0], 'int32'), 2));
    expect(xi.dtype).toBe('int32');
    expect(Array.from(xi.dataSync())).toEqual([5, 6, 4, 6]);
    xi.dispose();
  });

  const einsums: { eq: string; shapes: number[][] }[] = [
    { eq: 'ij,jk->ik', shapes: [[3, 4], [4, 5]] },
    { eq: 'bij,bjk->bik', shapes: [[2, 3, 4], [2, 4, 5]] },
    { eq: 'ij,kj->ik', shapes: [[3, 4], [5, 4]] },
    { eq: 'abc,cd->adb', shapes: [[2, 3, 4], [4, 5]] },
    { eq: 'ijk,jl->il', shapes: [[3, 4, 2], [4, 5]] },
    { eq: 'bhqd,bhkd->bhqk', shapes: [[2, 2, 3, 4], [2, 2, 5, 4]] },
    { eq: 'i,j->ij', shapes: [[3], [4]] },
    { eq: 'ij,ij->', shapes: [[3, 4], [3, 4]] },
    { eq: 'ij->ji', shapes: [[3, 4]] },
    { eq: 'ijk->ki', shapes: [[3, 4, 2]] },
  ];
  for (const { eq, shapes } of einsums) {
    it(`Einsum ${eq}`, () => {
      const ops = shapes.map((s, i) => ({ v: rand(s, 50 + i), shape: s }));
      const want = einsumRef(eq, ops);
      const got = tf.tidy(() => tf.einsum(eq, ...ops.map((o) => t(o.v, o.shape))).dataSync());
      expect(relErr(got, want)).toBeLessThan(1e-5);
    });
  }

  it('Conv2DBackpropFilter (conv2d filter gradient), stride 2, same padding', () => {
    // conv2d NHWC is conv3d over a depth of 1 (a depth-1 filter never moves in depth, whatever
    // the stride).
    const g: Conv3dGeom = { x: [2, 1, 7, 6, 3], f: [1, 3, 3, 3, 4], stride: 2, pad: 'same' };
    const yShape = conv3dOutShape(g).filter((_, i) => i !== 1); // [2, 4, 3, 4]
    const x = rand([2, 7, 6, 3], 61);
    const dy = rand(yShape, 62);
    const want = conv3dBackpropFilterRef(g, x, dy);
    const got = run('Conv2DBackpropFilter', { x: t(x, [2, 7, 6, 3]), dy: t(dy, yShape) }, { strides: [2, 2], pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 3, 4] });
    expect(relErr(got, want)).toBeLessThan(1e-5);
  });

  it('DepthwiseConv2dNative backprop kernels match the cpu backend', async () => {
    const x = rand([1, 6, 6, 2], 71);
    const f = rand([3, 3, 2, 2], 72);
    const dy = rand([1, 3, 3, 4], 73);
    const attrs = { strides: [2, 2], pad: 'same', dilations: [1, 1] };
    const compute = () => [
      run('DepthwiseConv2dNativeBackpropFilter', { x: t(x, [1, 6, 6, 2]), dy: t(dy, [1, 3, 3, 4]) }, { ...attrs, filterShape: [3, 3, 2, 2] }),
      run('DepthwiseConv2dNativeBackpropInput', { dy: t(dy, [1, 3, 3, 4]), filter: t(f, [3, 3, 2, 2]) }, { ...attrs, inputShape: [1, 6, 6, 2] }),
    ];
    const got = compute();
    const cpu = await onCpu(compute);
    expect(maxAbsDiff(got[0] as Float32Array, cpu[0] as Float32Array)).toBe(0);
    expect(maxAbsDiff(got[1] as Float32Array, cpu[1] as Float32Array)).toBe(0);
    expect(Math.max(...Array.from(got[1] as Float32Array, Math.abs))).toBeGreaterThan(0.1);
  });
});

describe('Tile on wasm (block copies)', () => {
  const cases: { shape: number[]; reps: number[]; dtype: 'float32' | 'int32' | 'bool' }[] = [
    { shape: [], reps: [], dtype: 'float32' },
    { shape: [3], reps: [4], dtype: 'float32' },
    { shape: [1, 1, 1], reps: [4, 5, 6], dtype: 'float32' },
    { shape: [1, 1, 7], reps: [3, 5, 1], dtype: 'int32' },
    { shape: [4, 6, 1], reps: [1, 1, 5], dtype: 'float32' },
    { shape: [2, 3, 4], reps: [2, 1, 3], dtype: 'float32' },
    { shape: [2, 1, 3, 1, 2], reps: [1, 4, 2, 3, 2], dtype: 'bool' },
    { shape: [3, 2], reps: [1, 1], dtype: 'int32' },
    { shape: [2, 0, 3], reps: [2, 2, 2], dtype: 'float32' },
  ];
  for (const c of cases) {
    it(`tile ${c.dtype} [${c.shape}] by [${c.reps}]`, () => {
      const n = c.shape.reduce((a, b) => a * b, 1);
      const v = Array.from({ length: n }, (_, i) => (c.dtype === 'bool' ? i % 3 === 0 ? 1 : 0 : i + 1));
      const outShape = c.shape.map((d, i) => d * (c.reps[i] as number));
      // out[o] = x[o_i mod d_i] per axis
      const want = Array.from({ length: outShape.reduce((a, b) => a * b, 1) }, (_, o) => {
        let rem = o;
        let idx = 0;
        let stride = 1;
        for (let i = outShape.length - 1; i >= 0; i--) {
          const oi = rem % (outShape[i] as number);
          rem = Math.floor(rem / (outShape[i] as number));
          idx += (oi % (c.shape[i] as number)) * stride;
          stride *= c.shape[i] as number;
        }
        return v[idx] as number;
      });
      const got = tf.tidy(() => tf.tile(tf.tensor(v, c.shape, c.dtype), c.reps));
      expect(got.shape).toEqual(outShape);
      expect(got.dtype).toBe(c.dtype);
      expect(Array.from(got.dataSync())).toEqual(want);
      got.dispose();
    });
  }
});

describe('Sum on wasm', () => {
  const cases: { shape: number[]; axis: number | number[]; keepDims: boolean; dtype?: 'int32' }[] = [
    { shape: [2048, 128], axis: 0, keepDims: false }, // bias gradients: the fast path
    { shape: [5, 7, 3], axis: [1, 0], keepDims: true }, // two leading axes, given out of order
    { shape: [4, 6], axis: -2, keepDims: false },
    { shape: [6, 4, 5], axis: [0, 2], keepDims: false }, // not a leading prefix: the shipped kernel
    { shape: [6, 4], axis: 1, keepDims: true }, // inner axis: the shipped kernel
    { shape: [3, 4], axis: [0, 1], keepDims: false }, // every axis
    { shape: [1, 5], axis: 0, keepDims: false }, // one row
    { shape: [9, 4], axis: 0, keepDims: false, dtype: 'int32' },
  ];
  for (const c of cases) {
    it(`sum ${c.dtype ?? 'float32'} [${c.shape}] over ${JSON.stringify(c.axis)}${c.keepDims ? ', keepDims' : ''} equals float64 sums`, () => {
      const n = c.shape.reduce((a, b) => a * b, 1);
      const rng = makeRng(n);
      const v = Array.from({ length: n }, () => (c.dtype ? Math.floor(rng.next() * 20) - 10 : rng.normal()));
      const axes = tf.util.parseAxisParam(c.axis, c.shape);
      const outShape = c.shape.map((d, i) => (axes.includes(i) ? 1 : d));
      const want = new Float64Array(outShape.reduce((a, b) => a * b, 1));
      const strides = c.shape.map((_, i) => c.shape.slice(i + 1).reduce((a, b) => a * b, 1));
      const oStrides = outShape.map((_, i) => outShape.slice(i + 1).reduce((a, b) => a * b, 1));
      v.forEach((val, idx) => {
        let o = 0;
        c.shape.forEach((_, i) => {
          const coord = Math.floor(idx / (strides[i] as number)) % (c.shape[i] as number);
          if (!axes.includes(i)) o += coord * (oStrides[i] as number);
        });
        want[o] = (want[o] as number) + val;
      });
      const got = tf.tidy(() => tf.sum(tf.tensor(v, c.shape, c.dtype ?? 'float32'), c.axis, c.keepDims));
      expect(got.shape).toEqual(c.keepDims ? outShape : c.shape.filter((_, i) => !axes.includes(i)));
      expect(got.dtype).toBe(c.dtype ?? 'float32');
      const g = got.dataSync();
      want.forEach((w, i) => expect(Math.abs((g[i] as number) - w)).toBeLessThanOrEqual(c.dtype ? 0 : 1e-4 * Math.max(1, Math.abs(w))));
      got.dispose();
    });
  }
});

describe('BatchMatMul and _FusedMatMul on wasm', () => {
  const cases: { a: number[]; b: number[]; tA: boolean; tB: boolean }[] = [];
  for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
    const ash = (batch: number[], m: number, k: number) => [...batch, ...(tA ? [k, m] : [m, k])];
    const bsh = (batch: number[], k: number, n: number) => [...batch, ...(tB ? [n, k] : [k, n])];
    cases.push({ a: ash([], 33, 40), b: bsh([], 40, 35), tA, tB }); // one 2-D product
    cases.push({ a: ash([3], 33, 40), b: bsh([3], 40, 35), tA, tB }); // batched
    cases.push({ a: ash([3], 33, 40), b: bsh([], 40, 35), tA, tB }); // shared right operand (rank 2)
    cases.push({ a: ash([1], 33, 40), b: bsh([3], 40, 35), tA, tB }); // broadcast left
    cases.push({ a: ash([2, 1], 33, 40), b: bsh([1, 3], 40, 35), tA, tB }); // 4-D broadcast both ways
    cases.push({ a: ash([6], 5, 4), b: bsh([6], 4, 3), tA, tB }); // small products (original loop)
  }
  for (const c of cases) {
    it(`matMul a ${c.a} b ${c.b} transposeA=${c.tA} transposeB=${c.tB}`, () => {
      const a = rand(c.a, 81);
      const b = rand(c.b, 82);
      const want = matMulRef(a, c.a, b, c.b, c.tA, c.tB);
      const got = tf.tidy(() => tf.matMul(t(a, c.a), t(b, c.b), c.tA, c.tB));
      expect(got.shape).toEqual(want.shape);
      expect(relErr(got.dataSync(), want.y)).toBeLessThan(1e-5);
      got.dispose();
    });
  }

  it('gradients of fast-path products equal the cpu backend (every transpose, batched and shared weight)', async () => {
    const shapes: [number[], number[]][] = [
      [[3, 33, 40], [3, 40, 35]],
      [[3, 33, 40], [40, 35]],
    ];
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      for (const [as, bs] of shapes) {
        const a = tA ? [...as.slice(0, -2), as[as.length - 1] as number, as[as.length - 2] as number] : as;
        const b = tB ? [...bs.slice(0, -2), bs[bs.length - 1] as number, bs[bs.length - 2] as number] : bs;
        const av = rand(a, 111);
        const bv = rand(b, 112);
        const outShape = matMulRef(av, a, bv, b, tA, tB).shape;
        const w = rand(outShape, 113);
        const grads = () =>
          tf.tidy(() => tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, tA, tB), t(w, outShape))))([t(av, a), t(bv, b)]).map((g) => g.dataSync()));
        const got = grads();
        const want = await onCpu(grads);
        expect(relErr(got[0] as Float32Array, want[0] as Float32Array), `dA ${a} ${b} ${tA} ${tB}`).toBeLessThan(1e-5);
        expect(relErr(got[1] as Float32Array, want[1] as Float32Array), `dB ${a} ${b} ${tA} ${tB}`).toBeLessThan(1e-5);
      }
    }
  });

  it('a reshaped right operand is not multiplied with weights packed for its old shape', () => {
    // XNNPACK caches packed weights on the tensor id, which a reshape keeps: the shipped kernel
    // reuses the [64, 64] packing for the [32, 128] view.
    const a1 = rand([8, 64], 91);
    const a2 = rand([8, 32], 92);
    const w = rand([64, 64], 93);
    const want2 = matMulRef(a2, [8, 32], w, [32, 128], false, false).y;
    const W = t(w, [64, 64]);
    const got2 = tf.tidy(() => {
      tf.matMul(t(a1, [8, 64]), W).dataSync();
      return tf.matMul(t(a2, [8, 32]), tf.reshape(W, [32, 128])).dataSync();
    });
    W.dispose();
    expect(relErr(got2, want2)).toBeLessThan(1e-5);
  });

  it('rejects incompatible batch dims and inner dims with a clear error', () => {
    expect(() => tf.tidy(() => tf.matMul(tf.zeros([2, 3, 4]), tf.zeros([3, 4, 5])))).toThrow(/broadcast|shapes/i);
    expect(() => tf.tidy(() => tf.matMul(tf.zeros([3, 4]), tf.zeros([5, 6])))).toThrow(/inner shapes/);
  });

  it('multiplies int32 exactly (via the cpu kernel; the shipped one refuses)', () => {
    const got = tf.tidy(() => tf.matMul(tf.tensor3d([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2], 'int32'), tf.tensor3d([1, 0, 0, 1, 2, 1, 1, 2], [2, 2, 2], 'int32')).dataSync());
    expect(Array.from(got)).toEqual([1, 2, 3, 4, 16, 17, 22, 23]);
  });

  const fusedCases: { name: string; a: number[]; b: number[]; tA?: boolean; tB?: boolean; bias?: number[]; act?: tf.fused.Activation; prelu?: number[] }[] = [
    { name: 'batched + bias', a: [3, 20, 30], b: [3, 30, 25], bias: [25] },
    { name: 'transposed + bias + relu', a: [20, 30], b: [25, 30], tB: true, bias: [25], act: 'relu' },
    { name: 'transposeA + bias + relu6', a: [3, 30, 20], b: [3, 30, 25], tA: true, bias: [25], act: 'relu6' },
    { name: 'batched + leakyrelu', a: [3, 20, 30], b: [3, 30, 25], bias: [25], act: 'leakyrelu' },
    { name: 'batched + sigmoid', a: [3, 20, 30], b: [3, 30, 25], act: 'sigmoid' },
    { name: 'batched + elu', a: [3, 20, 30], b: [3, 30, 25], bias: [25], act: 'elu' },
    { name: 'rank-2 bias', a: [20, 30], b: [30, 25], bias: [20, 25] },
    { name: 'prelu', a: [3, 20, 30], b: [3, 30, 25], bias: [25], act: 'prelu', prelu: [25] },
    { name: 'small batched + bias', a: [4, 5, 6], b: [4, 6, 3], bias: [3], act: 'relu' },
  ];
  for (const c of fusedCases) {
    it(`fused.matMul ${c.name}`, () => {
      const a = rand(c.a, 101);
      const b = rand(c.b, 102);
      const bias = c.bias ? rand(c.bias, 103) : undefined;
      const alpha = c.prelu ? rand(c.prelu, 104) : undefined;
      const p = matMulRef(a, c.a, b, c.b, !!c.tA, !!c.tB);
      const [M, N] = p.shape.slice(-2) as [number, number];
      const want = p.y.map((v, i) => {
        const col = i % N;
        const row = Math.floor(i / N) % M;
        let z = v + (bias ? (c.bias?.length === 2 ? (bias[row * N + col] as number) : (bias[col] as number)) : 0);
        switch (c.act) {
          case 'relu':
            z = Math.max(0, z);
            break;
          case 'relu6':
            z = Math.min(6, Math.max(0, z));
            break;
          case 'leakyrelu':
            z = z < 0 ? 0.2 * z : z;
            break;
          case 'sigmoid':
            z = 1 / (1 + Math.exp(-z));
            break;
          case 'elu':
            z = z < 0 ? Math.exp(z) - 1 : z;
            break;
          case 'prelu':
            z = z < 0 ? (alpha?.[col] as number) * z : z;
            break;
        }
        return z;
      });
      const got = tf.tidy(() =>
        tf.fused
          .matMul({
            a: t(a, c.a),
            b: t(b, c.b),
            transposeA: !!c.tA,
            transposeB: !!c.tB,
            ...(bias && c.bias ? { bias: t(bias, c.bias) } : {}),
            ...(c.act ? { activation: c.act } : {}),
            ...(c.act === 'leakyrelu' ? { leakyreluAlpha: 0.2 } : {}),
            ...(alpha && c.prelu ? { preluActivationWeights: t(alpha, c.prelu) } : {}),
          })
          .dataSync(),
      );
      expect(relErr(got, want)).toBeLessThan(1e-5);
    });
  }

  it('leaves no tensors or wasm buffers behind', () => {
    const backend = tf.engine().backend;
    const a = tf.randomNormal([3, 40, 33]);
    const b = tf.randomNormal([3, 35, 40]);
    const bias = tf.randomNormal([35]);
    const step = () => {
      tf.tidy(() => {
        tf.matMul(a, b, true, true).dataSync();
        tf.matMul(b, a, false, false).dataSync();
        tf.fused.matMul({ a, b, transposeA: true, transposeB: true, bias, activation: 'relu' }).dataSync();
        tf.einsum('bki,bjk->bij', a, b).dataSync();
        tf.unsortedSegmentSum(a, tf.tensor1d([0, 1, 1], 'int32'), 2).dataSync();
      });
    };
    step();
    const n0 = tf.memory().numTensors;
    const d0 = backend.numDataIds();
    step();
    expect(tf.memory().numTensors).toBe(n0);
    expect(backend.numDataIds()).toBe(d0);
    tf.dispose([a, b, bias]);
  });
});
