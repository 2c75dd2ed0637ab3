/**
 * The orientation-tensor output (its loss, read-out and head) and the sheet-frame features.
 */
import { describe, expect, it } from 'vitest';
import { backendsUnderTest, expectNoLeak, makeRng, tf, useBackend } from '@goe/tf';
import {
  FiberHead,
  FiberHeadConfigError,
  FiberInputError,
  SHEET_FEATURE_NAMES,
  SHEET_FEATURE_WIDTH,
  SYMMETRIC_ENTRIES,
  fiberTensorLoss,
  resolveFiberHeadConfig,
  sheetFrameFeatures,
  sheetFrameFibers,
  tensorFibers,
  type TokenGrid,
} from './index.js';
import { gaussianSmooth, smoothedCellSums } from './features.js';
import { expectGradMatchesFloat64, expectHeadTrains, layerNormRef } from './test-helpers.js';

/** float64 mean ‖M − t̂t̂ᵀ‖²_F over rows with mask 1 and a non-zero target; M rows are (zz, yy, xx, zy, zx, yx). */
function tensorLossRef(m: ArrayLike<number>, t: ArrayLike<number>, mask?: ArrayLike<number>): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < t.length / 3; i++) {
    const nt = Math.hypot(t[3 * i]!, t[3 * i + 1]!, t[3 * i + 2]!);
    if ((mask && !mask[i]) || nt === 0) continue;
    const u = [t[3 * i]! / nt, t[3 * i + 1]! / nt, t[3 * i + 2]! / nt];
    const full = [
      [m[6 * i]!, m[6 * i + 3]!, m[6 * i + 4]!],
      [m[6 * i + 3]!, m[6 * i + 1]!, m[6 * i + 5]!],
      [m[6 * i + 4]!, m[6 * i + 5]!, m[6 * i + 2]!],
    ];
    for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) s += (full[a]![b]! - u[a]! * u[b]!) ** 2;
    n++;
  }
  return n ? s / n : 0;
}

describe('fiberTensorLoss and tensorFibers', () => {
  it('hand-computed values: t tᵀ of either sign 0, zero tensor 1, identity 2; masked and zero targets skipped', async () => {
    await useBackend('cpu');
    const s = Math.SQRT1_2;
    // rows: e_z e_zᵀ vs -2 e_z (0); 0 vs e_y (1); I vs e_x (‖I − e_x e_xᵀ‖² = 2); (e_y+e_x)/√2 outer vs itself (0);
    // zero target (skipped); masked (skipped)
    const pred = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0.5, 0.5, 0, 0, 0.5, 0, 0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 5];
    const target = [-2, 0, 0, 0, 1, 0, 0, 0, 3, 0, s, s, 0, 0, 0, 1, 0, 0];
    const p = tf.tensor3d(pred, [1, 6, 6]);
    const t = tf.tensor3d(target, [1, 6, 3]);
    const m = tf.tensor2d([1, 1, 1, 1, 1, 0], [1, 6]);
    const l = fiberTensorLoss(p, t, m);
    expect((await l.data())[0]).toBeCloseTo(3 / 4, 6);
    expect((await l.data())[0]).toBeCloseTo(tensorLossRef(pred, target, [1, 1, 1, 1, 1, 0]), 6);
    tf.dispose([p, t, m, l]);
  });

  it('gradient matches finite differences of the float64 loss', async () => {
    await useBackend('cpu');
    const rng = makeRng(11);
    const v = Float32Array.from({ length: 60 }, () => rng.normal());
    const t = Float32Array.from({ length: 30 }, () => rng.normal());
    const mask = Float32Array.from([1, 0, 1, 1, 1, 1, 0, 1, 1, 1]);
    const tt = tf.tensor2d(t, [10, 3]);
    const mt = tf.tensor1d(mask);
    await expectGradMatchesFloat64((x) => fiberTensorLoss(x, tt, mt), (x) => tensorLossRef(x, t, mask), v, [10, 6]);
    tf.dispose([tt, mt]);
  });

  it('reads the principal direction of a mixture p a aᵀ + (1 − p) b bᵀ: a when p > 1/2, else b', () => {
    const a = [0.6, 0.8, 0];
    const b = [0, 0, -1];
    const mix = (p: number): number[] => {
      const o = (u: number[], i: number, j: number): number => u[i]! * u[j]!;
      return SYMMETRIC_ENTRIES.map(([i, j]) => p * o(a, i, j) + (1 - p) * o(b, i, j));
    };
    const dirs = tensorFibers([...mix(0.7), ...mix(0.3)]);
    expect(Math.abs(dirs[0]! * a[0]! + dirs[1]! * a[1]! + dirs[2]! * a[2]!)).toBeCloseTo(1, 6);
    expect(Math.abs(dirs[5]!)).toBeCloseTo(1, 6);
    expect(() => tensorFibers([1, 2, 3])).toThrow(/tensors/);
  });
});

describe('FiberHead with tensor output and skip features', () => {
  it('tensors [B, N, 6] equal a float64 reference (LayerNorm of the tokens, then the features, then Linear) on every backend; no leaks', async () => {
    const cfg = { d: 5, output: 'tensor' as const, skip: 2 };
    const rng = makeRng(21);
    const tokens = Float32Array.from({ length: 2 * 3 * 5 }, () => rng.normal());
    const skip = Float32Array.from({ length: 2 * 3 * 2 }, () => rng.normal());
    await useBackend('cpu');
    const refHead = new FiberHead(resolveFiberHeadConfig(cfg), makeRng(22));
    const [g, b, w, wb] = await Promise.all([refHead.norm!.gain, refHead.norm!.bias, refHead.out.w, refHead.out.b!].map(async (t) => Float64Array.from(await t.data())));
    expect([...refHead.variables()].map(([p]) => p)).toContain('toTensor.w');
    refHead.dispose();
    const ref = new Float64Array(6 * 6);
    for (let r = 0; r < 6; r++) {
      const x = [...layerNormRef(tokens.subarray(r * 5, r * 5 + 5), g!, b!), skip[2 * r]!, skip[2 * r + 1]!];
      ref.set(
        [0, 1, 2, 3, 4, 5].map((j) => x.reduce((s, v, i) => s + v * w![i * 6 + j]!, wb![j]!)),
        r * 6,
      );
    }
    for (const backend of await backendsUnderTest()) {
      await useBackend(backend);
      const head = new FiberHead(resolveFiberHeadConfig(cfg), makeRng(22));
      await expectNoLeak(async () => {
        const t = tf.tensor3d(tokens, [2, 3, 5]);
        const s = tf.tensor3d(skip, [2, 3, 2]);
        const out = head.apply(t, s);
        expect(out.shape).toEqual([2, 3, 6]);
        const got = await out.data();
        for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i]! - ref[i]!), backend).toBeLessThan(1e-5);
        expect(head.directions(got).length).toBe(18);
        tf.dispose([t, s, out]);
      }, `tensor fiber head on ${backend}`);
      head.dispose();
    }
  });

  it('every variable gets a finite, non-zero gradient and a short training lowers the loss', async () => {
    await useBackend('cpu');
    const head = new FiberHead(resolveFiberHeadConfig({ d: 6, hidden: 8, output: 'tensor', skip: 3 }), makeRng(23));
    const rng = makeRng(24);
    const tokens = tf.tensor3d(Float32Array.from({ length: 64 * 6 }, () => rng.normal()), [1, 64, 6]);
    // The target direction is the skip feature itself: learnable only through the skip path.
    const feat = Float32Array.from({ length: 64 * 3 }, () => rng.normal());
    const skip = tf.tensor3d(feat, [1, 64, 3]);
    const target = tf.tensor3d(feat, [1, 64, 3]);
    await expectHeadTrains(head, () => head.loss(head.apply(tokens, skip), target), 100);
    tf.dispose([tokens, skip, target]);
    head.dispose();
  });

  it('config and input errors name the field', async () => {
    await useBackend('cpu');
    expect(() => resolveFiberHeadConfig({ output: 'matrix' as never })).toThrow(FiberHeadConfigError);
    expect(() => resolveFiberHeadConfig({ output: 'matrix' as never })).toThrow(/'output'/);
    expect(() => resolveFiberHeadConfig({ skip: -1 })).toThrow(/'skip'/);
    const head = new FiberHead(resolveFiberHeadConfig({ d: 4, skip: 2 }), makeRng(1));
    const t = tf.zeros([1, 3, 4]) as tf.Tensor3D;
    const bad = tf.zeros([1, 3, 1]) as tf.Tensor3D;
    expect(() => head.apply(t)).toThrow(FiberInputError);
    expect(() => head.apply(t, bad)).toThrow(/skip/);
    const plain = new FiberHead(resolveFiberHeadConfig({ d: 4 }), makeRng(1));
    expect(() => plain.apply(t, bad)).toThrow(/skip/);
    const p = tf.zeros([3, 3]);
    const tg = tf.zeros([3, 3]);
    expect(() => fiberTensorLoss(p, tg)).toThrow(/pred/);
    tf.dispose([t, bad, p, tg]);
    head.dispose();
    plain.dispose();
  });
});

describe('sheetFrameFeatures', () => {
  const PATCH: [number, number, number] = [8, 32, 32];
  const GRID: TokenGrid = { inputShape: PATCH, cell: [4, 4, 4], dims: [2, 8, 8] };
  const PERIOD = 6;

  /**
   * Concentric cylindrical sheets around an axis along z at (cy, cx): intensity 0.1 + 0.5 exp(−d²/2),
   * d the signed radial distance to the nearest sheet centre (radius a multiple of PERIOD), plus noise.
   */
  function shells(cy: number, cx: number, noise: number): Float64Array {
    const rng = makeRng(7);
    const [D, H, W] = PATCH;
    const v = new Float64Array(D * H * W);
    for (let z = 0, i = 0; z < D; z++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++, i++) {
          const r = Math.hypot(y - cy, x - cx);
          const d = r - PERIOD * Math.round(r / PERIOD);
          v[i] = 0.1 + 0.5 * Math.exp(-(d * d) / 2) + noise * rng.normal();
        }
    return v;
  }

  for (const [cy, cx] of [
    [-30, 16],
    [60, 5],
  ] as const) {
    it(`finds the outward normal and the face of sheets around an axis at (y, x) = (${cy}, ${cx})`, () => {
      const f = sheetFrameFeatures(shells(cy, cx, 0.03), GRID, 1);
      expect(f.features.length).toBe(128 * SHEET_FEATURE_WIDTH);
      expect(SHEET_FEATURE_NAMES.length).toBe(SHEET_FEATURE_WIDTH);
      const dirs = sheetFrameFibers(f);
      let checked = 0;
      let normalOk = 0;
      let faceOk = 0;
      let faceChecked = 0;
      for (let t = 0; t < 128; t++) {
        const [ty, tx] = [Math.floor(t / 8) % 8, t % 8];
        // The cell's analytic radial direction and papyrus-weighted share of its outer (d > 0) halves.
        const [py, px] = [ty * 4 + 1.5, tx * 4 + 1.5];
        const r = Math.hypot(py - cy, px - cx);
        const radial = [0, (py - cy) / r, (px - cx) / r];
        let outer = 0;
        let total = 0;
        for (let y = ty * 4; y < ty * 4 + 4; y++)
          for (let x = tx * 4; x < tx * 4 + 4; x++) {
            const rr = Math.hypot(y - cy, x - cx);
            const d = rr - PERIOD * Math.round(rr / PERIOD);
            const w = Math.exp(-(d * d) / 2);
            total += w;
            if (d > 0) outer += w;
          }
        const n = Array.from(f.normal.subarray(3 * t, 3 * t + 3));
        const k = t * SHEET_FEATURE_WIDTH;
        const h = Array.from(f.features.subarray(k + 3, k + 6));
        // recto = z × n: unit, perpendicular to the axis and to n.
        expect(Math.hypot(...h)).toBeCloseTo(1, 5);
        expect(Math.abs(h[0]!)).toBeLessThan(1e-6);
        expect(Math.abs(h[1]! * n[1]! + h[2]! * n[2]!)).toBeLessThan(1e-5);
        checked++;
        if (n[0]! * radial[0]! + n[1]! * radial[1]! + n[2]! * radial[2]! > Math.cos((15 * Math.PI) / 180)) normalOk++;
        const share = outer / total;
        if (share > 0.75 || share < 0.25) {
          faceChecked++;
          const recto = f.face[t]! < 0;
          if (recto === share > 0.5) faceOk++;
          // The rule's direction: the recto direction or the axis.
          expect(Array.from(dirs.subarray(3 * t, 3 * t + 3))).toEqual(recto ? h.map((v) => Math.fround(v)) : [1, 0, 0]);
        }
      }
      // The normal points outward (signed, within 15°) nearly everywhere; the face is right on the clear cells.
      expect(normalOk / checked).toBeGreaterThan(0.9);
      expect(faceChecked).toBeGreaterThan(20);
      expect(faceOk / faceChecked).toBeGreaterThan(0.9);
    });
  }

  it('smooths with replicated borders, and its per-cell sums equal smoothing at full resolution then summing each cell', () => {
    const dims: [number, number, number] = [8, 6, 12];
    const rng = makeRng(31);
    const a = Float64Array.from({ length: 8 * 6 * 12 }, () => rng.normal());
    const sigma = 1.3;
    // Direct 3-D convolution with the normalised separable Gaussian (radius ⌈3σ⌉), clamped indices.
    const r = Math.ceil(3 * sigma);
    const k = Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
    const ks = k.reduce((s, v) => s + v, 0);
    const cl = (v: number, n: number): number => Math.min(n - 1, Math.max(0, v));
    const ref = new Float64Array(a.length);
    for (let z = 0; z < 8; z++)
      for (let y = 0; y < 6; y++)
        for (let x = 0; x < 12; x++) {
          let acc = 0;
          for (let i = -r; i <= r; i++)
            for (let j = -r; j <= r; j++)
              for (let l = -r; l <= r; l++) acc += ((k[i + r]! * k[j + r]! * k[l + r]!) / ks ** 3) * a[(cl(z + i, 8) * 6 + cl(y + j, 6)) * 12 + cl(x + l, 12)]!;
          ref[(z * 6 + y) * 12 + x] = acc;
        }
    const got = gaussianSmooth(a, dims, sigma);
    for (let i = 0; i < a.length; i++) expect(Math.abs(got[i]! - ref[i]!)).toBeLessThan(1e-12);
    const grid: TokenGrid = { inputShape: dims, cell: [4, 2, 3], dims: [2, 3, 4] };
    const sums = smoothedCellSums(a, grid, sigma);
    expect(sums.length).toBe(24);
    for (let t = 0; t < 24; t++) {
      const [tz, ty, tx] = [Math.floor(t / 12), Math.floor(t / 4) % 3, t % 4];
      let acc = 0;
      for (let z = tz * 4; z < tz * 4 + 4; z++) for (let y = ty * 2; y < ty * 2 + 2; y++) for (let x = tx * 3; x < tx * 3 + 3; x++) acc += ref[(z * 6 + y) * 12 + x]!;
      expect(Math.abs(sums[t]! - acc)).toBeLessThan(1e-11);
    }
  });

  it('rejects a volume of the wrong size and bad smoothing scales, naming them', () => {
    expect(() => sheetFrameFeatures(new Float32Array(10), GRID, 1)).toThrow(/volume/);
    expect(() => sheetFrameFeatures(new Float32Array(8 * 32 * 32), GRID, 1, { tensorSigma: -1 })).toThrow(/tensorSigma/);
  });
});
