import { describe, expect, it } from 'vitest';
import { backendsUnderTest, expectNoLeak, makeRng, tf, useBackend } from '@goe/tf';
import {
  GEOMETRY_HEAD_DEFAULTS,
  GeometryHead,
  GeometryHeadConfigError,
  GeometryInputError,
  dice,
  geometryLoss,
  normalAngularError,
  resolveGeometryHeadConfig,
  type TokenGrid,
} from './index.js';

function gridOf(inputShape: [number, number, number], cell: [number, number, number]): TokenGrid {
  return { dims: [inputShape[0] / cell[0], inputShape[1] / cell[1], inputShape[2] / cell[2]], cell, inputShape };
}

describe('dice', () => {
  it('hand-computed: 2TP / (2TP + FP + FN) over labelled voxels', () => {
    // pred ≥ 0.5: [1, 1, 0, 1, 0, 1]; target [1, 0, 1, 1, 0, 1]; voxel 5 unlabelled.
    const pred = [0.9, 0.6, 0.2, 0.5, 0.1, 0.99];
    const target = [1, 0, 1, 1, 0, 1];
    const mask = [1, 1, 1, 1, 1, 0];
    // TP 2 (0, 3), FP 1 (1), FN 1 (2): 4 / 6
    expect(dice(pred, target, mask)).toBeCloseTo(4 / 6, 12);
    // unmasked: TP 3, FP 1, FN 1 -> 6 / 8
    expect(dice(pred, target)).toBeCloseTo(6 / 8, 12);
    // threshold 0.7: pred [1, 0, 0, 0, 0, 1]: TP 2, FP 0, FN 2 -> 4 / 6
    expect(dice(pred, target, undefined, { threshold: 0.7 })).toBeCloseTo(4 / 6, 12);
    expect(dice([0, 0], [0, 0])).toBe(1);
    expect(dice([1, 1], [0, 0])).toBe(0);
    expect(() => dice([1], [1, 0])).toThrow(GeometryInputError);
  });
});

describe('normalAngularError', () => {
  it('sign-free by default, signed on request, in degrees', () => {
    const s = Math.SQRT1_2;
    const pred = [1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0];
    const target = [-1, 0, 0, s, s, 0, 0, 1, 0, 0, 0, 0];
    const r = normalAngularError(pred, target);
    // 0° (flipped), 45°, 90°, (zero target skipped)
    expect(r.count).toBe(3);
    expect(r.mean).toBeCloseTo(45, 9);
    expect(r.median).toBeCloseTo(45, 9);
    const signed = normalAngularError(pred, target, [1, 1, 0, 1], { signed: true });
    expect(signed.count).toBe(2);
    expect(signed.mean).toBeCloseTo((180 + 45) / 2, 9);
  });
});

describe('GeometryHead', () => {
  it('sheet logits [B, D, H, W] place each token cell where it belongs, normals are unit [B, N, 3], on every backend', async () => {
    const grid = gridOf([4, 4, 6], [2, 2, 3]);
    const N = 2 * 2 * 2;
    const B = 2;
    const d = 5;
    const rng = makeRng(1);
    const tokens = Float32Array.from({ length: B * N * d }, () => rng.normal());
    // Reference: with no norm/hidden/smoothing, voxel (z, y, x) of token t is Linear(tokens_t)[k] where
    // k = ((z mod cz)·cy + y mod cy)·cx + x mod cx.
    await useBackend('cpu');
    const cfg = { d, cell: [2, 2, 3] as const, norm: false, smoothing: false };
    const ref = new GeometryHead(resolveGeometryHeadConfig(cfg), makeRng(2));
    const w = Float64Array.from(await ref.toCell.w.data());
    const b = Float64Array.from(await ref.toCell.b!.data());
    ref.dispose();
    const [D, H, W] = grid.inputShape;
    const want = new Float64Array(B * D * H * W);
    for (let bb = 0; bb < B; bb++)
      for (let z = 0; z < D; z++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            const t = (Math.floor(z / 2) * 2 + Math.floor(y / 2)) * 2 + Math.floor(x / 3);
            const k = ((z % 2) * 2 + (y % 2)) * 3 + (x % 3);
            let s = b[k]!;
            for (let i = 0; i < d; i++) s += tokens[(bb * N + t) * d + i]! * w[i * 12 + k]!;
            want[((bb * D + z) * H + y) * W + x] = s;
          }
    for (const backend of await backendsUnderTest()) {
      await useBackend(backend);
      const head = new GeometryHead(resolveGeometryHeadConfig(cfg), makeRng(2));
      await expectNoLeak(async () => {
        const t = tf.tensor3d(tokens, [B, N, d]);
        const out = head.apply(t, grid);
        expect(out.sheetLogits.shape).toEqual([B, D, H, W]);
        expect(out.normals!.shape).toEqual([B, N, 3]);
        const got = await out.sheetLogits.data();
        for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!), backend).toBeLessThan(1e-5);
        const n = await out.normals!.data();
        for (let r = 0; r < B * N; r++) expect(Math.hypot(n[3 * r]!, n[3 * r + 1]!, n[3 * r + 2]!)).toBeCloseTo(1, 5);
        tf.dispose([t, out.sheetLogits, out.normals!]);
      }, `geometry head on ${backend}`);
      head.dispose();
    }
  });

  it('geometryLoss matches float64 definitions; every variable gets a gradient; training lowers it', async () => {
    await useBackend('cpu');
    const grid = gridOf([4, 8, 8], [4, 4, 4]);
    const B = 1;
    const N = 4;
    const d = 8;
    const head = new GeometryHead(resolveGeometryHeadConfig({ d, hidden: 8 }), makeRng(3));
    const rng = makeRng(4);
    const tokens = tf.tensor3d(Float32Array.from({ length: N * d }, () => rng.normal()), [B, N, d]);
    const sheet = Float32Array.from({ length: 256 }, (_, i) => ((i >> 3) % 8 < 3 ? 1 : 0));
    const sheetMask = Float32Array.from({ length: 256 }, (_, i) => (i % 5 === 0 ? 0 : 1));
    const normals = Float32Array.from([0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0]);
    const targets = {
      sheet: tf.tensor4d(sheet, [1, 4, 8, 8]),
      sheetMask: tf.tensor4d(sheetMask, [1, 4, 8, 8]),
      normals: tf.tensor3d(normals, [1, N, 3]),
    };
    // float64 reference from the head's own outputs.
    const out = head.apply(tokens, grid);
    const x = await out.sheetLogits.data();
    const nv = await out.normals!.data();
    let bce = 0;
    let cnt = 0;
    let inter = 0;
    let sp = 0;
    let sy = 0;
    for (let i = 0; i < 256; i++) {
      if (!sheetMask[i]) continue;
      const p = 1 / (1 + Math.exp(-x[i]!));
      bce += -(sheet[i]! * Math.log(p) + (1 - sheet[i]!) * Math.log(1 - p));
      cnt++;
      inter += p * sheet[i]!;
      sp += p;
      sy += sheet[i]!;
    }
    let nl = 0;
    let nc = 0;
    for (let r = 0; r < N; r++) {
      const t = normals.subarray(3 * r, 3 * r + 3);
      const tn = Math.hypot(t[0]!, t[1]!, t[2]!);
      if (tn === 0) continue;
      const c = (nv[3 * r]! * t[0]! + nv[3 * r + 1]! * t[1]! + nv[3 * r + 2]! * t[2]!) / tn;
      nl += 1 - c * c;
      nc++;
    }
    const l = geometryLoss(out, targets, { normal: 0.5 });
    expect((await l.sheetBce.data())[0]).toBeCloseTo(bce / cnt, 5);
    expect((await l.sheetDice.data())[0]).toBeCloseTo(1 - (2 * inter + 1) / (sp + sy + 1), 5);
    expect((await l.normal.data())[0]).toBeCloseTo(nl / nc, 5);
    expect((await l.total.data())[0]).toBeCloseTo(bce / cnt + 1 - (2 * inter + 1) / (sp + sy + 1) + 0.5 * (nl / nc), 5);
    tf.dispose([out.sheetLogits, out.normals!, l.total, l.sheetBce, l.sheetDice, l.normal]);

    const lossFn = (): tf.Scalar => tf.tidy(() => geometryLoss(head.apply(tokens, grid), targets).total);
    const { value, grads } = tf.variableGrads(lossFn);
    for (const [path, v] of head.variables()) {
      const g = await grads[v.name]!.data();
      expect(g.every(Number.isFinite), path).toBe(true);
      expect(g.some((e) => e !== 0), path).toBe(true);
    }
    const first = (await value.data())[0]!;
    tf.dispose([value, ...Object.values(grads)]);
    const opt = tf.train.adam(2e-2);
    opt.minimize(lossFn, true)?.dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 40; i++) opt.minimize(lossFn, true)?.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const last = lossFn();
    expect((await last.data())[0]!).toBeLessThan(0.6 * first);
    tf.dispose([last, tokens, targets.sheet, targets.sheetMask, targets.normals]);
    opt.dispose();
    head.dispose();
  });

  it('config and input errors name the field', async () => {
    await useBackend('cpu');
    expect(resolveGeometryHeadConfig()).toEqual(GEOMETRY_HEAD_DEFAULTS);
    expect(() => resolveGeometryHeadConfig({ sdf: true } as never)).toThrow(GeometryHeadConfigError);
    expect(() => resolveGeometryHeadConfig({ cell: [4, 4] })).toThrow(/'cell'/);
    const head = new GeometryHead(resolveGeometryHeadConfig({ d: 4, normals: false }), makeRng(1));
    const t = tf.zeros([1, 8, 4]) as tf.Tensor3D;
    const out = head.apply(t, gridOf([8, 8, 8], [4, 4, 4]));
    expect(out.normals).toBeUndefined();
    expect(() => head.apply(t, gridOf([8, 8, 16], [4, 4, 8]))).toThrow(GeometryInputError);
    const bad = tf.zeros([1, 8, 8, 7]);
    expect(() => geometryLoss(out, { sheet: bad })).toThrow(/sheet/);
    tf.dispose([t, out.sheetLogits, bad]);
    head.dispose();
  });
});
