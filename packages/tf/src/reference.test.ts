import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend } from './backend.js';
// Registers every gradient (tfjs-core's Node build ships none), as importing @goe/tf does.
import './grads.js';
import { LayerNorm } from './module.js';
import {
  ReferenceShapeError,
  refAvgPool3d,
  refAvgPool3dGrad,
  refConv3d,
  refConv3dFilterGrad,
  refConv3dTranspose,
  refLayerNorm,
  refMatMul,
  refMaxPool3d,
  refMaxPool3dGrad,
  refSoftmax,
  type HostTensor,
  type HostTensorLike,
  type RefPadding,
} from './reference.js';
import { makeRng, type Rng } from './rng.js';
import { expectNoLeak } from './testing.js';

type T3 = [number, number, number];

function randn(rng: Rng, shape: number[], kind: 'normal' | 'negative' = 'normal'): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float64Array(n);
  // float32-representable values, so tfjs and the reference see the same numbers.
  for (let i = 0; i < n; i++) data[i] = Math.fround(kind === 'negative' ? -1 - Math.abs(rng.normal()) : rng.normal());
  return { data, shape };
}

function toTensor(h: HostTensorLike): tf.Tensor {
  return tf.tensor(Float32Array.from(h.data), [...h.shape], 'float32');
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (b[i] as number);
  return s;
}

/**
 * Asserts `actual` matches the float64 reference within `tol` relative to the reference's largest
 * magnitude (at least 1); returns the max abs error.
 */
function expectClose(actual: ArrayLike<number>, shape: readonly number[], ref: HostTensor, tol: number): number {
  expect([...shape]).toEqual(ref.shape);
  expect(actual.length).toBe(ref.data.length);
  let err = 0;
  let scale = 1;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs((actual[i] as number) - (ref.data[i] as number));
    if (!(d <= err)) err = d; // NaN-sticky
    scale = Math.max(scale, Math.abs(ref.data[i] as number));
  }
  expect(err).toBeLessThanOrEqual(tol * scale);
  return err;
}

/** The value of `t` on the host, and `t` disposed. */
async function take(t: tf.Tensor): Promise<{ data: Float32Array; shape: number[] }> {
  const data = (await t.data()) as Float32Array;
  const shape = [...t.shape];
  t.dispose();
  return { data, shape };
}

describe('float64 references: definitions', () => {
  it('conv3d on a hand-worked 1-D example, same and valid', () => {
    const x = { data: [1, 2, 3], shape: [1, 1, 1, 3, 1] };
    const f = { data: [1, 10, 100], shape: [1, 1, 3, 1, 1] };
    // 'same', k = 3: one zero each side. [0,1,2]·f = 210, [1,2,3]·f = 321, [2,3,0]·f = 32.
    expect([...refConv3d(x, f, 1, 'same').data]).toEqual([210, 321, 32]);
    expect([...refConv3d(x, f, 1, 'valid').data]).toEqual([321]);
    // stride 2, 'same': out = 2, total pad = 1*2 + 3 - 3 = 2 -> one each side: 210, 32.
    expect([...refConv3d(x, f, 2, 'same').data]).toEqual([210, 32]);
  });

  it('a 1x1x1 conv3d is a matmul over channels', () => {
    const rng = makeRng(11);
    const x = randn(rng, [2, 3, 4, 5, 6]);
    const f = randn(rng, [1, 1, 1, 6, 7]);
    const conv = refConv3d(x, f, 1, 'valid');
    const mm = refMatMul({ data: x.data, shape: [120, 6] }, { data: f.data, shape: [6, 7] });
    expect(conv.shape).toEqual([2, 3, 4, 5, 7]);
    for (let i = 0; i < mm.data.length; i++) expect(conv.data[i]).toBeCloseTo(mm.data[i] as number, 12);
  });

  it.each([
    { s: [1, 1, 1] as T3, pad: 'same' as RefPadding },
    { s: [2, 2, 2] as T3, pad: 'same' as RefPadding },
    { s: [2, 1, 3] as T3, pad: 'valid' as RefPadding },
    { s: [1, 2, 1] as T3, pad: 'valid' as RefPadding },
  ])('conv3dTranspose and filter grad are the adjoints of conv3d (strides $s, $pad)', ({ s, pad }) => {
    // <conv(x, f), y> = <x, convT(y, f)> = <f, dW(x, y)> for any x, f, y: the defining identity.
    const rng = makeRng(12);
    const x = randn(rng, [2, 5, 6, 7, 3]);
    const f = randn(rng, [3, 2, 3, 3, 4]);
    const yShape = refConv3d(x, f, s, pad).shape;
    const y = randn(rng, yShape);
    const lhs = dot(refConv3d(x, f, s, pad).data, y.data);
    const viaT = dot(x.data, refConv3dTranspose(y, f, x.shape, s, pad).data);
    const viaW = dot(f.data, refConv3dFilterGrad(x, y, f.shape, s, pad).data);
    expect(Math.abs(lhs - viaT)).toBeLessThan(1e-9 * Math.max(1, Math.abs(lhs)));
    expect(Math.abs(lhs - viaW)).toBeLessThan(1e-9 * Math.max(1, Math.abs(lhs)));
  });

  it('pools a hand-worked example; padding never enters a window', () => {
    // One row of 3 negative values, window 2, stride 2, 'same': out = 2, total pad = 2 + 2 - 3 = 1, in
    // the back. Windows: {-3, -1}, {-2}.
    const x = { data: [-3, -1, -2], shape: [1, 1, 1, 3, 1] };
    expect([...refMaxPool3d(x, [1, 1, 2], [1, 1, 2], 'same').data]).toEqual([-1, -2]);
    expect([...refAvgPool3d(x, [1, 1, 2], [1, 1, 2], 'same').data]).toEqual([-2, -2]);
    const dy = { data: [10, 7], shape: [1, 1, 1, 2, 1] };
    expect([...refMaxPool3dGrad(x, dy, [1, 1, 2], [1, 1, 2], 'same').data]).toEqual([0, 10, 7]);
    expect([...refAvgPool3dGrad(dy, x.shape, [1, 1, 2], [1, 1, 2], 'same').data]).toEqual([5, 5, 7]);
  });

  it('avgPool3d gradient is the adjoint of avgPool3d', () => {
    const rng = makeRng(13);
    const x = randn(rng, [2, 5, 6, 7, 2]);
    const y = randn(rng, refAvgPool3d(x, 3, 2, 'same').shape);
    const lhs = dot(refAvgPool3d(x, 3, 2, 'same').data, y.data);
    const rhs = dot(x.data, refAvgPool3dGrad(y, x.shape, 3, 2, 'same').data);
    expect(Math.abs(lhs - rhs)).toBeLessThan(1e-9 * Math.max(1, Math.abs(lhs)));
  });

  it('matmul, softmax and layerNorm on hand-worked values', () => {
    const a = { data: [1, 2, 3, 4], shape: [2, 2] };
    const b = { data: [5, 6, 7, 8], shape: [2, 2] };
    expect([...refMatMul(a, b).data]).toEqual([19, 22, 43, 50]);
    expect([...refMatMul(a, b, true).data]).toEqual([26, 30, 38, 44]);
    expect([...refMatMul(a, b, false, true).data]).toEqual([17, 23, 39, 53]);
    const sm = refSoftmax({ data: [0, Math.log(3), 1000, 1000], shape: [2, 2] });
    expect([...sm.data].map((v) => Math.round(v * 1e12) / 1e12)).toEqual([0.25, 0.75, 0.5, 0.5]);
    // x = [1, 3]: mean 2, var 1 -> (x - 2) / sqrt(1 + eps) * g + b.
    const ln = refLayerNorm({ data: [1, 3], shape: [1, 2] }, [2, 3], [10, 20], 0);
    expect([...ln.data]).toEqual([8, 23]);
  });

  it('rejects shapes that do not fit together, naming the op', () => {
    const x = { data: new Float64Array(2 * 4 * 4 * 4 * 3), shape: [2, 4, 4, 4, 3] };
    const f = { data: new Float64Array(27 * 2 * 4), shape: [3, 3, 3, 2, 4] };
    expect(() => refConv3d(x, f, 1, 'same')).toThrow(ReferenceShapeError);
    expect(() => refConv3d(x, f, 1, 'same')).toThrow(/refConv3d/);
    expect(() => refMatMul({ data: [1, 2], shape: [1, 2] }, { data: [1, 2], shape: [1, 2] })).toThrow(/inner dimensions/);
    expect(() => refMaxPool3d(x, 0, 1, 'same')).toThrow(ReferenceShapeError);
  });
});

describe('cpu backend vs float64 references', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  const convCases: { x: number[]; k: T3; cout: number; s: T3; pad: RefPadding }[] = [
    { x: [2, 5, 6, 7, 3], k: [3, 3, 3], cout: 4, s: [1, 1, 1], pad: 'same' },
    { x: [2, 5, 6, 7, 3], k: [3, 3, 3], cout: 4, s: [2, 2, 2], pad: 'same' },
    { x: [2, 5, 6, 7, 3], k: [3, 3, 3], cout: 4, s: [2, 2, 2], pad: 'valid' },
    { x: [1, 6, 5, 7, 2], k: [2, 3, 1], cout: 3, s: [1, 2, 3], pad: 'same' },
    { x: [1, 7, 6, 5, 2], k: [3, 2, 2], cout: 5, s: [2, 1, 2], pad: 'valid' },
    { x: [2, 4, 4, 4, 1], k: [2, 2, 2], cout: 8, s: [2, 2, 2], pad: 'valid' },
  ];

  it.each(convCases)('conv3d x $x k $k s $s $pad: forward, input grad, filter grad', async ({ x, k, cout, s, pad }) => {
    const rng = makeRng(21);
    const xh = randn(rng, x);
    const fh = randn(rng, [...k, x[4] as number, cout]);
    const ref = refConv3d(xh, fh, s, pad);
    const dyh = randn(rng, ref.shape);
    await expectNoLeak(async () => {
      const [xt, ft, dyt] = [toTensor(xh), toTensor(fh), toTensor(dyh)];
      const y = await take(tf.conv3d(xt as tf.Tensor5D, ft as tf.Tensor5D, s, pad));
      expectClose(y.data, y.shape, ref, 1e-5);
      const [gx, gf] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.conv3d(a as tf.Tensor5D, b as tf.Tensor5D, s, pad))(
        [xt, ft],
        dyt,
      ) as [tf.Tensor, tf.Tensor];
      const gxh = await take(gx);
      const gfh = await take(gf);
      expectClose(gxh.data, gxh.shape, refConv3dTranspose(dyh, fh, x, s, pad), 1e-5);
      expectClose(gfh.data, gfh.shape, refConv3dFilterGrad(xh, dyh, fh.shape, s, pad), 1e-5);
      tf.dispose([xt, ft, dyt]);
    }, 'conv3d');
  });

  it.each(convCases)('conv3dTranspose to $x k $k s $s $pad: forward', async ({ x, k, cout, s, pad }) => {
    const rng = makeRng(22);
    const fh = randn(rng, [...k, x[4] as number, cout]);
    const yShape = refConv3d({ data: new Float64Array(x.reduce((a, b) => a * b, 1)), shape: x }, fh, s, pad).shape;
    const dyh = randn(rng, yShape);
    await expectNoLeak(async () => {
      const [dyt, ft] = [toTensor(dyh), toTensor(fh)];
      const out = await take(
        tf.conv3dTranspose(dyt as tf.Tensor5D, ft as tf.Tensor5D, x as [number, number, number, number, number], s, pad),
      );
      expectClose(out.data, out.shape, refConv3dTranspose(dyh, fh, x, s, pad), 1e-5);
      tf.dispose([dyt, ft]);
    }, 'conv3dTranspose');
  });

  const poolCases: { x: number[]; k: T3; s: T3; pad: RefPadding; kind: 'normal' | 'negative' }[] = [];
  for (const kind of ['normal', 'negative'] as const) {
    poolCases.push(
      { x: [2, 6, 8, 8, 3], k: [2, 2, 2], s: [2, 2, 2], pad: 'valid', kind },
      { x: [2, 5, 7, 6, 2], k: [3, 3, 3], s: [2, 2, 2], pad: 'same', kind },
      { x: [1, 5, 6, 7, 2], k: [3, 3, 3], s: [1, 1, 1], pad: 'same', kind },
      { x: [1, 5, 6, 7, 3], k: [2, 3, 3], s: [1, 2, 2], pad: 'same', kind },
      { x: [2, 6, 8, 8, 2], k: [2, 2, 2], s: [2, 2, 2], pad: 'same', kind },
      { x: [2, 7, 6, 5, 2], k: [3, 2, 2], s: [2, 1, 2], pad: 'valid', kind },
    );
  }

  it.each(poolCases)('maxPool3d $kind x $x k $k s $s $pad: forward and gradient', async ({ x, k, s, pad, kind }) => {
    const rng = makeRng(31);
    const xh = randn(rng, x, kind);
    const ref = refMaxPool3d(xh, k, s, pad);
    const dyh = randn(rng, ref.shape);
    await expectNoLeak(async () => {
      const [xt, dyt] = [toTensor(xh), toTensor(dyh)];
      const y = await take(tf.maxPool3d(xt as tf.Tensor5D, k, s, pad));
      expectClose(y.data, y.shape, ref, 1e-6);
      const g = await take(tf.grad((a: tf.Tensor) => tf.maxPool3d(a as tf.Tensor5D, k, s, pad))(xt, dyt));
      expectClose(g.data, g.shape, refMaxPool3dGrad(xh, dyh, k, s, pad), 1e-6);
      tf.dispose([xt, dyt]);
    }, 'maxPool3d');
  });

  it.each(poolCases)('avgPool3d $kind x $x k $k s $s $pad: forward and gradient', async ({ x, k, s, pad, kind }) => {
    const rng = makeRng(32);
    const xh = randn(rng, x, kind);
    const ref = refAvgPool3d(xh, k, s, pad);
    const dyh = randn(rng, ref.shape);
    await expectNoLeak(async () => {
      const [xt, dyt] = [toTensor(xh), toTensor(dyh)];
      const y = await take(tf.avgPool3d(xt as tf.Tensor5D, k, s, pad));
      expectClose(y.data, y.shape, ref, 1e-6);
      // Where 'same' padding clips windows, tfjs-core's gradient is wrong; @goe/tf re-registers it.
      const g = await take(tf.grad((a: tf.Tensor) => tf.avgPool3d(a as tf.Tensor5D, k, s, pad))(xt, dyt));
      expectClose(g.data, g.shape, refAvgPool3dGrad(dyh, x, k, s, pad), 1e-6);
      tf.dispose([xt, dyt]);
    }, 'avgPool3d');
  });

  it.each([
    { a: [5, 7], b: [7, 6], ta: false, tb: false },
    { a: [7, 5], b: [7, 6], ta: true, tb: false },
    { a: [5, 7], b: [6, 7], ta: false, tb: true },
    { a: [3, 5, 7], b: [3, 7, 6], ta: false, tb: false },
    { a: [2, 3, 7, 5], b: [2, 3, 6, 7], ta: true, tb: true },
  ])('matMul a $a b $b transposeA $ta transposeB $tb', async ({ a, b, ta, tb }) => {
    const rng = makeRng(41);
    const ah = randn(rng, a);
    const bh = randn(rng, b);
    await expectNoLeak(async () => {
      const [at, bt] = [toTensor(ah), toTensor(bh)];
      const y = await take(tf.matMul(at, bt, ta, tb));
      expectClose(y.data, y.shape, refMatMul(ah, bh, ta, tb), 1e-5);
      tf.dispose([at, bt]);
    }, 'matMul');
  });

  it('softmax over the last axis, including large logits', async () => {
    const rng = makeRng(42);
    const xh = randn(rng, [3, 4, 9]);
    for (let i = 0; i < 9; i++) xh.data[i] = Math.fround((xh.data[i] as number) * 40); // saturating row
    await expectNoLeak(async () => {
      const xt = toTensor(xh);
      const y = await take(tf.softmax(xt));
      expectClose(y.data, y.shape, refSoftmax(xh), 1e-6);
      xt.dispose();
    }, 'softmax');
  });

  it('LayerNorm module matches the reference with non-trivial gain and bias', async () => {
    const rng = makeRng(43);
    const xh = randn(rng, [2, 5, 16]);
    for (let i = 0; i < xh.data.length; i++) xh.data[i] = Math.fround((xh.data[i] as number) * 3 + 1.5);
    const gh = randn(rng, [16]);
    const bh = randn(rng, [16]);
    const ln = new LayerNorm(16, makeRng(1));
    ln.gain.assign(toTensor(gh));
    ln.bias.assign(toTensor(bh));
    await expectNoLeak(async () => {
      const xt = toTensor(xh);
      const y = await take(ln.apply(xt));
      expectClose(y.data, y.shape, refLayerNorm(xh, gh.data, bh.data, ln.eps), 1e-5);
      xt.dispose();
    }, 'LayerNorm');
    ln.dispose();
  });
});

/**
 * Defects of tfjs 4.22 itself (tfjs-core and the cpu kernels, so every backend that copies them),
 * found with the references above and not corrected in @goe/tf. `it.fails` passes while the defect is
 * present; when a fix lands, the test reports failure, and it should become a plain `it`. (The
 * avgPool3d gradient under clipping 'same' windows was one; grads.ts corrects it, and the table above
 * checks it.)
 */
describe('tfjs 4.22 defects the references expose', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it.fails("maxPool3d gradient is routed to the wrong element when kernel height != width (cpu maxPool3dPositions uses wRow * filterHeight)", async () => {
    const rng = makeRng(51);
    const x = [1, 3, 6, 7, 2];
    const [k, s]: [T3, T3] = [[2, 3, 2], [1, 2, 2]];
    const xh = randn(rng, x);
    const dyh = randn(rng, refMaxPool3d(xh, k, s, 'same').shape);
    const [xt, dyt] = [toTensor(xh), toTensor(dyh)];
    const g = await take(tf.grad((a: tf.Tensor) => tf.maxPool3d(a as tf.Tensor5D, k, s, 'same'))(xt, dyt));
    tf.dispose([xt, dyt]);
    expectClose(g.data, g.shape, refMaxPool3dGrad(xh, dyh, k, s, 'same'), 1e-6);
  });

  it.fails("'same' padding with a kernel smaller than the stride shifts windows one element (negative front padding)", async () => {
    // k = 1, s = 2 on size 8: TensorFlow pads max(0, 3*2 + 1 - 8) = 0; tfjs computes -1 and starts at 1.
    const rng = makeRng(53);
    const xh = randn(rng, [1, 8, 8, 8, 2]);
    const fh = randn(rng, [1, 1, 1, 2, 3]);
    const [xt, ft] = [toTensor(xh), toTensor(fh)];
    const y = await take(tf.conv3d(xt as tf.Tensor5D, ft as tf.Tensor5D, 2, 'same'));
    tf.dispose([xt, ft]);
    expectClose(y.data, y.shape, refConv3d(xh, fh, 2, 'same'), 1e-5);
  });
});
