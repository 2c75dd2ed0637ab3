import { describe, expect, it } from 'vitest';
import { backendsUnderTest, expectNoLeak, makeRng, tf, useBackend } from '@goe/tf';
import {
  FIBER_HEAD_DEFAULTS,
  FiberHead,
  FiberHeadConfigError,
  FiberInputError,
  angularErrorDegrees,
  fiberErrorByFace,
  fiberLoss,
  fiberTargetsFromVoxels,
  resolveFiberHeadConfig,
  structureTensorFibers,
  symmetricEigen3,
  type TokenGrid,
} from './index.js';
import { expectGradMatchesFloat64, expectHeadTrains, layerNormRef } from './test-helpers.js';

const deg = (r: number): number => (r * Math.PI) / 180;

/** float64 mean(1 − (v̂·t̂)²) over rows with mask 1 and a non-zero target. */
function lossRef(v: ArrayLike<number>, t: ArrayLike<number>, mask?: ArrayLike<number>): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < v.length / 3; i++) {
    const nt = Math.hypot(t[3 * i]!, t[3 * i + 1]!, t[3 * i + 2]!);
    if ((mask && !mask[i]) || nt === 0) continue;
    const nv = Math.hypot(v[3 * i]!, v[3 * i + 1]!, v[3 * i + 2]!);
    const c = (v[3 * i]! * t[3 * i]! + v[3 * i + 1]! * t[3 * i + 1]! + v[3 * i + 2]! * t[3 * i + 2]!) / (nv * nt);
    s += 1 - c * c;
    n++;
  }
  return n ? s / n : 0;
}

describe('fiberLoss', () => {
  it('hand-computed values: aligned 0, flipped 0, orthogonal 1, 45° 1/2; masked and zero targets skipped', async () => {
    await useBackend('cpu');
    const s = Math.SQRT1_2;
    const pred = [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0];
    const target = [2, 0, 0, -1, 0, 0, 0, 1, 0, s, s, 0, 0, 0, 0, 0, 3, 0];
    const mask = [1, 1, 1, 1, 1, 0];
    const p = tf.tensor3d(pred, [1, 6, 3]);
    const t = tf.tensor3d(target, [1, 6, 3]);
    const m = tf.tensor2d(mask, [1, 6]);
    const l = fiberLoss(p, t, m);
    // rows: 0, 0, 1, 1/2, (zero target: skipped), (masked) -> 1.5 / 4
    expect((await l.data())[0]).toBeCloseTo(1.5 / 4, 6);
    const all = fiberLoss(p, t);
    expect((await all.data())[0]).toBeCloseTo(2.5 / 5, 6);
    tf.dispose([p, t, m, l, all]);
  });

  it('gradient matches finite differences of the float64 loss', async () => {
    await useBackend('cpu');
    const rng = makeRng(1);
    const v = Float32Array.from({ length: 30 }, () => rng.normal());
    const t = Float32Array.from({ length: 30 }, () => rng.normal());
    const mask = Float32Array.from([1, 1, 0, 1, 1, 1, 0, 1, 1, 1]);
    const tt = tf.tensor2d(t, [10, 3]);
    const mt = tf.tensor1d(mask);
    await expectGradMatchesFloat64((x) => fiberLoss(x, tt, mt), (x) => lossRef(x, t, mask), v, [10, 3]);
    tf.dispose([tt, mt]);
  });
});

describe('angularErrorDegrees', () => {
  it('is sign-free, in degrees, with mean and median over counted rows', () => {
    const c = Math.cos(deg(30));
    const s = Math.sin(deg(30));
    const pred = [0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0];
    const target = [0, 0, -5, 0, 1, 0, 0, s, c, 0, 0, 0, 1, 0, 0];
    const r = angularErrorDegrees(pred, target, [1, 1, 1, 1, 0]);
    // rows: 0° (flipped), 90°, 30°, (zero target: skipped), (masked)
    expect(r.count).toBe(3);
    expect(r.mean).toBeCloseTo(40, 9);
    expect(r.median).toBeCloseTo(30, 9);
    expect(angularErrorDegrees([1, 0, 0, 1, 0, 0], [1, 1, 0, 0, 1, 0]).median).toBeCloseTo(67.5, 9); // (45 + 90) / 2
    expect(Number.isNaN(angularErrorDegrees([1, 0, 0], [0, 0, 0]).mean)).toBe(true);
    expect(() => angularErrorDegrees([1, 0, 0], [1, 0])).toThrow(FiberInputError);
  });
});

describe('fiberErrorByFace', () => {
  it('splits rows by the true direction against the scroll axis, each group as angularErrorDegrees on it', () => {
    // Targets (z, y, x): vertical (along z), horizontal (along x), 30° from z (vertical), 60° from z
    // (horizontal), unlabelled, masked.
    const c30 = Math.cos(deg(30));
    const s30 = Math.sin(deg(30));
    const target = [1, 0, 0, 0, 0, 1, c30, s30, 0, s30, c30, 0, 0, 0, 0, 1, 0, 0];
    const pred = [1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0];
    const mask = [1, 1, 1, 1, 1, 0];
    const r = fiberErrorByFace(pred, target, mask);
    expect([r.vertical.count, r.horizontal.count, r.all.count]).toEqual([2, 2, 4]);
    expect(r.vertical.mean).toBeCloseTo((0 + 30) / 2, 9); // 0°, then 30°
    expect(r.horizontal.mean).toBeCloseTo((90 + 30) / 2, 9); // x vs y: 90°; 60° from z vs y: 30°
    expect(r.all.mean).toBeCloseTo(150 / 4, 9);
    // Another axis swaps the roles of z and x.
    const byX = fiberErrorByFace(pred, target, mask, [0, 0, 1]);
    expect([byX.vertical.count, byX.horizontal.count]).toEqual([1, 3]);
    expect(() => fiberErrorByFace(pred, target, mask, [0, 0, 0])).toThrow(FiberInputError);
    expect(() => fiberErrorByFace(pred, target.slice(3), mask)).toThrow(FiberInputError);
  });
});

describe('symmetricEigen3', () => {
  it('gives orthonormal eigenvectors with A v = λ v, values descending', () => {
    const rng = makeRng(2);
    for (let k = 0; k < 50; k++) {
      const m = Array.from({ length: 6 }, () => rng.normal());
      const e = symmetricEigen3(m);
      const A = [
        [m[0]!, m[3]!, m[4]!],
        [m[3]!, m[1]!, m[5]!],
        [m[4]!, m[5]!, m[2]!],
      ];
      expect(e.values[0]).toBeGreaterThanOrEqual(e.values[1]);
      expect(e.values[1]).toBeGreaterThanOrEqual(e.values[2]);
      e.vectors.forEach((v, i) => {
        for (let r = 0; r < 3; r++) {
          const av = A[r]![0]! * v[0] + A[r]![1]! * v[1] + A[r]![2]! * v[2];
          expect(Math.abs(av - e.values[i]! * v[r]!)).toBeLessThan(1e-12);
        }
        e.vectors.forEach((w, j) => expect(v[0] * w[0] + v[1] * w[1] + v[2] * w[2]).toBeCloseTo(i === j ? 1 : 0, 12));
      });
    }
  });
});

function gridOf(inputShape: [number, number, number], cell: [number, number, number]): TokenGrid {
  return { dims: [inputShape[0] / cell[0], inputShape[1] / cell[1], inputShape[2] / cell[2]], cell, inputShape };
}

describe('fiber targets and the structure-tensor estimate', () => {
  it('token targets are the sign-free mean direction, with coherence and a labelled mask', () => {
    const grid = gridOf([2, 2, 4], [2, 2, 2]); // 2 tokens along x
    const dirs = new Float32Array(16 * 3);
    for (let v = 0; v < 16; v++) {
      const x = v % 4;
      if (x < 2) dirs.set([0, 0, v % 2 ? 1 : -2], 3 * v); // token 0: ±x everywhere
      else if (v % 8 < 4) dirs.set([v % 2 ? 1 : 0, v % 2 ? 0 : 1, 0], 3 * v); // token 1, rows y = 0 only: x = 3 along z, x = 2 along y
    }
    const r = fiberTargetsFromVoxels(dirs, grid, 1);
    expect(Math.abs(r.target[2]!)).toBeCloseTo(1, 12);
    expect(r.coherence[0]).toBeCloseTo(1, 12);
    expect(r.mask[0]).toBe(1);
    // token 1: 4 labelled of 8 voxels (y = 0 rows), 2 along z and 2 along y: no dominant direction.
    expect(r.mask[1]).toBe(1);
    expect(r.coherence[1]).toBeCloseTo(0, 12);
    expect(fiberTargetsFromVoxels(dirs, grid, 1, { minLabelled: 0.75 }).mask[1]).toBe(0);
  });

  it('the structure tensor finds fibres along x and along an oblique direction', () => {
    const grid = gridOf([16, 16, 16], [8, 8, 8]);
    const vol = (f: (z: number, y: number, x: number) => number): Float32Array => {
      const v = new Float32Array(16 ** 3);
      for (let z = 0, i = 0; z < 16; z++) for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) v[i++] = f(z, y, x);
      return v;
    };
    const alongX = structureTensorFibers(vol((z, y) => Math.sin((2 * Math.PI * z) / 8) * Math.sin((2 * Math.PI * y) / 8)), grid, 1);
    for (let t = 0; t < 8; t++) expect(Math.abs(alongX.direction[3 * t + 2]!)).toBeGreaterThan(0.999);
    // Constant along u = (1, 1, 0)/√2: a function of z − y and x only.
    const oblique = structureTensorFibers(
      vol((z, y, x) => Math.sin((2 * Math.PI * (z - y)) / 8) * Math.sin((2 * Math.PI * x) / 6)),
      grid,
      1,
    );
    const u = [Math.SQRT1_2, Math.SQRT1_2, 0];
    const err = angularErrorDegrees(oblique.direction, Array.from({ length: 8 }, () => u).flat());
    expect(err.mean).toBeLessThan(10); // border replication tilts edge cells a little
    expect(err.median).toBeLessThan(10);
  });
});

describe('FiberHead', () => {
  it('unit directions [B, N, 3] equal a float64 reference on every backend; no leaks', async () => {
    const cfg = { d: 6 };
    const rng = makeRng(3);
    const tokens = Float32Array.from({ length: 2 * 4 * 6 }, () => rng.normal());
    await useBackend('cpu');
    const refHead = new FiberHead(resolveFiberHeadConfig(cfg), makeRng(4));
    const [g, b, w, wb] = await Promise.all(
      [refHead.norm!.gain, refHead.norm!.bias, refHead.out.w, refHead.out.b!].map(async (t) => Float64Array.from(await t.data())),
    );
    refHead.dispose();
    const ref = new Float64Array(8 * 3);
    for (let r = 0; r < 8; r++) {
      const ln = layerNormRef(tokens.subarray(r * 6, r * 6 + 6), g!, b!);
      const o = [0, 1, 2].map((j) => ln.reduce((s, v, i) => s + v * w![i * 3 + j]!, wb![j]!));
      const n = Math.hypot(o[0]!, o[1]!, o[2]!);
      ref.set(o.map((v) => v / n), r * 3);
    }
    for (const backend of await backendsUnderTest()) {
      await useBackend(backend);
      const head = new FiberHead(resolveFiberHeadConfig(cfg), makeRng(4));
      await expectNoLeak(async () => {
        const t = tf.tensor3d(tokens, [2, 4, 6]);
        const out = head.apply(t);
        expect(out.shape).toEqual([2, 4, 3]);
        const got = await out.data();
        for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i]! - ref[i]!), backend).toBeLessThan(1e-5);
        tf.dispose([t, out]);
      }, `fiber head on ${backend}`);
      head.dispose();
    }
  });

  it('every variable gets a finite, non-zero gradient and a short training lowers the loss', async () => {
    await useBackend('cpu');
    const head = new FiberHead(resolveFiberHeadConfig({ d: 8, hidden: 8 }), makeRng(5));
    const rng = makeRng(6);
    const tokens = tf.tensor3d(Float32Array.from({ length: 64 * 8 }, () => rng.normal()), [1, 64, 8]);
    // Target: a fixed linear map of the token, so that it is learnable.
    const tok = await tokens.data();
    const map = Float32Array.from({ length: 24 }, () => rng.normal());
    const tgt = new Float32Array(64 * 3);
    for (let r = 0; r < 64; r++)
      for (let j = 0; j < 3; j++) for (let i = 0; i < 8; i++) tgt[r * 3 + j]! += tok[r * 8 + i]! * map[i * 3 + j]!;
    const target = tf.tensor3d(tgt, [1, 64, 3]);
    await expectHeadTrains(head, () => fiberLoss(head.apply(tokens), target), 80);
    tf.dispose([tokens, target]);
    head.dispose();
  });

  it('config and input errors name the field', async () => {
    await useBackend('cpu');
    expect(resolveFiberHeadConfig()).toEqual(FIBER_HEAD_DEFAULTS);
    expect(() => resolveFiberHeadConfig({ width: 3 } as never)).toThrow(FiberHeadConfigError);
    expect(() => resolveFiberHeadConfig({ eps: 0 })).toThrow(/'eps'/);
    const head = new FiberHead(resolveFiberHeadConfig({ d: 4 }), makeRng(1));
    const bad = tf.zeros([1, 2, 5]) as tf.Tensor3D;
    expect(() => head.apply(bad)).toThrow(FiberInputError);
    const p = tf.zeros([2, 3]);
    const t = tf.zeros([2, 2]);
    expect(() => fiberLoss(p, t)).toThrow(/target/);
    tf.dispose([bad, p, t]);
    head.dispose();
  });
});
