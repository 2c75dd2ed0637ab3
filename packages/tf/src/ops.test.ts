/**
 * The fast ops against independent references, on every available backend:
 * - patchify3d / unpatchify3d: forward against the index formula (float64 host loop), gradients
 *   against the cpu backend's autodiff of the plain rank-8 reshape/transpose formulation.
 * - conv3dFast: forward and both gradients against tf.conv3d on the cpu backend (itself held to
 *   float64 loops in reference.test.ts), and against a float64 loop where tfjs' 'same' padding differs
 *   from TensorFlow's.
 * - attention: forward against a float64 host implementation, gradients against float64 central
 *   finite differences of that implementation.
 * Every run is checked for leaked tensors.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend, type BackendName } from './backend.js';
// tfjs-core's Node entry registers no gradients: @goe/tf's own (corrected) set is registered here.
import './grads.js';
import {
  OpArgumentError,
  attention,
  conv3dFast,
  patchify3d,
  preferredConv3dMethod,
  unpatchify3d,
  type Conv3dMethod,
  type PatchMethod,
  type Triple,
} from './ops.js';
import { makeRng, type Rng } from './rng.js';
import { backendsUnderTest, expectNoLeak } from './testing.js';

const backends = await backendsUnderTest();

function normal(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal());
}

const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** Max |a - b| must be within tol * max(1, max |b|). */
function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  expect(a.length, `${what}: length`).toBe(b.length);
  let err = 0;
  let scale = 1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (!(d <= err)) err = d; // NaN-sticky
    scale = Math.max(scale, Math.abs(b[i] as number));
  }
  expect(err, `${what}: max abs error`).toBeLessThanOrEqual(tol * scale);
}

/**
 * Runs `fn` on `backend` from host inputs, with `L = Σ out · R` (R a fixed random cotangent) for the
 * gradients, and returns the output and the gradient wrt every input as host arrays. Asserts no leak.
 */
async function valueAndGrads(
  backend: BackendName,
  inputs: { data: Float32Array; shape: number[] }[],
  fn: (...xs: tf.Tensor[]) => tf.Tensor,
  cotangentSeed: number,
): Promise<{ y: Float32Array; yShape: number[]; grads: Float32Array[] }> {
  await useBackend(backend);
  return expectNoLeak(async () => {
    const xs = inputs.map((i) => tf.tensor(i.data, i.shape, 'float32'));
    const y = tf.tidy(() => fn(...xs));
    const yShape = [...y.shape];
    const r = tf.tensor(normal(makeRng(cotangentSeed), y.size), yShape);
    const gs = tf.tidy(() => tf.grads((...args: tf.Tensor[]) => tf.sum(tf.mul(fn(...args), r)))(xs));
    const out = { y: (await y.data()) as Float32Array, yShape, grads: [] as Float32Array[] };
    for (const g of gs) out.grads.push((await g.data()) as Float32Array);
    tf.dispose([...xs, y, r, ...gs]);
    return out;
  }, `${backend} run`);
}

// ---------------------------------------------------------------------------------------------------

/** float64 patchify by the definition: token (tz, ty, tx), feature (dz, dy, dx, c). */
function refPatchify(x: Float32Array, [B, D, H, W, C]: number[], [pz, py, px]: Triple): Float64Array {
  const [gz, gy, gx] = [D / pz, H / py, W / px];
  const out = new Float64Array(x.length);
  let i = 0;
  for (let b = 0; b < B; b++)
    for (let tz = 0; tz < gz; tz++)
      for (let ty = 0; ty < gy; ty++)
        for (let tx = 0; tx < gx; tx++)
          for (let dz = 0; dz < pz; dz++)
            for (let dy = 0; dy < py; dy++)
              for (let dx = 0; dx < px; dx++)
                for (let c = 0; c < C; c++) {
                  const z = tz * pz + dz;
                  const y = ty * py + dy;
                  const xx = tx * px + dx;
                  out[i++] = x[(((b * D + z) * H + y) * W + xx) * C + c] as number;
                }
  return out;
}

/** tfjs' plain formulation: one rank-8 reshape/transpose (fine on cpu, the reference backend). */
function rank8Patchify(x: tf.Tensor, [B, D, H, W, C]: number[], [pz, py, px]: Triple): tf.Tensor {
  const t = tf.reshape(x, [B, D / pz, pz, H / py, py, W / px, px, C]); // [B, gz, pz, gy, py, gx, px, C]
  const u = tf.transpose(t, [0, 1, 3, 5, 2, 4, 6, 7]); // [B, gz, gy, gx, pz, py, px, C]
  return tf.reshape(u, [B, (D / pz) * (H / py) * (W / px), pz * py * px * C]);
}

const PATCH_CASES: { shape: number[]; p: Triple }[] = [
  { shape: [2, 4, 6, 8, 3], p: [2, 3, 4] },
  { shape: [1, 4, 4, 4, 2], p: [1, 1, 1] },
  { shape: [2, 2, 6, 4, 1], p: [2, 6, 4] },
];

describe('patchify3d / unpatchify3d', () => {
  for (const { shape, p } of PATCH_CASES) {
    const label = `[${shape.join(',')}] p=[${p.join(',')}]`;
    const x = normal(makeRng(size(shape)), size(shape));
    const ref = refPatchify(x, shape, p);
    it(`${label}: cpu rank-8 autodiff is the gradient reference`, async () => {
      const want = await valueAndGrads('cpu', [{ data: x, shape }], (t) => rank8Patchify(t, shape, p), 7);
      expectClose(want.y, ref, 0, 'rank-8 forward');
    });
    for (const backend of backends) {
      for (const method of ['gather', 'transpose'] as PatchMethod[]) {
        it(`${label} ${method} on ${backend}: exact values, exact gradients, inverse`, async () => {
          const want = await valueAndGrads('cpu', [{ data: x, shape }], (t) => rank8Patchify(t, shape, p), 7);
          const got = await valueAndGrads(backend, [{ data: x, shape }], (t) => patchify3d(t, p, { method }), 7);
          const [B, D, H, W, C] = shape as [number, number, number, number, number];
          expect(got.yShape).toEqual([B, (D / p[0]) * (H / p[1]) * (W / p[2]), p[0] * p[1] * p[2] * C]);
          // Pure data movement: bit-exact.
          expectClose(got.y, ref, 0, 'forward');
          expectClose(got.grads[0] as Float32Array, want.grads[0] as Float32Array, 0, 'dL/dx');
          const tokens = { data: Float32Array.from(ref), shape: got.yShape };
          const back = await valueAndGrads(backend, [tokens], (t) => unpatchify3d(t, p, [D, H, W], { method }), 9);
          expect(back.yShape).toEqual(shape);
          expectClose(back.y, x, 0, 'unpatchify(patchify(x))');
          // The gradient of unpatchify is patchify of the cotangent.
          const r = normal(makeRng(9), size(shape));
          expectClose(back.grads[0] as Float32Array, refPatchify(r, shape, p), 0, 'unpatchify gradient');
        });
      }
    }
  }

  it('rejects volumes the patch does not divide, and token counts that do not fill the grid', () => {
    const x = tf.zeros([1, 4, 4, 5, 1]);
    expect(() => patchify3d(x, 2)).toThrow(OpArgumentError);
    const t = tf.zeros([1, 7, 8]);
    expect(() => unpatchify3d(t, 2, [4, 4, 4])).toThrow(/7 tokens/);
    tf.dispose([x, t]);
  });
});

// ---------------------------------------------------------------------------------------------------

interface ConvCase {
  name: string;
  x: [number, number, number, number, number];
  w: [number, number, number, number, number];
  s: number | [number, number, number];
  pad: 'same' | 'valid';
}

const CONV_CASES: ConvCase[] = [
  { name: 'k3 s1 same, Cin 1', x: [2, 5, 6, 7, 1], w: [3, 3, 3, 1, 4], s: 1, pad: 'same' },
  { name: 'k3 s2 same, odd sizes', x: [1, 7, 6, 5, 2], w: [3, 3, 3, 2, 3], s: 2, pad: 'same' },
  { name: 'k2 s2 valid (cells tile)', x: [2, 4, 6, 8, 3], w: [2, 2, 2, 3, 4], s: 2, pad: 'valid' },
  { name: 'k3 s2 valid with leftover voxels', x: [1, 8, 7, 6, 1], w: [3, 3, 3, 1, 2], s: 2, pad: 'valid' },
  { name: 'anisotropic k[3,1,2] s[1,2,3] same', x: [1, 5, 5, 7, 2], w: [3, 1, 2, 2, 3], s: [1, 2, 3], pad: 'same' },
];

function tiles(c: ConvCase): boolean {
  const s = typeof c.s === 'number' ? [c.s, c.s, c.s] : c.s;
  return [0, 1, 2].every((i) => c.w[i] === s[i] && c.x[i + 1]! % c.w[i]! === 0);
}

/** float64 cross-correlation with TensorFlow's padding (out = ceil(n/s), pad max(0, ·), small half first). */
function refConv3d(x: Float32Array, xs: number[], w: Float32Array, ws: number[], s: Triple, pad: 'same' | 'valid') {
  const [B, D, H, W, Ci] = xs as [number, number, number, number, number];
  const [kz, ky, kx, , Co] = ws as [number, number, number, number, number];
  const axis = (n: number, k: number, st: number) => {
    if (pad === 'valid') return { out: Math.floor((n - k) / st) + 1, before: 0 };
    const out = Math.ceil(n / st);
    return { out, before: Math.floor(Math.max(0, (out - 1) * st + k - n) / 2) };
  };
  const [az, ay, ax] = [axis(D, kz, s[0]), axis(H, ky, s[1]), axis(W, kx, s[2])];
  const y = new Float64Array(B * az.out * ay.out * ax.out * Co);
  let i = 0;
  for (let b = 0; b < B; b++)
    for (let oz = 0; oz < az.out; oz++)
      for (let oy = 0; oy < ay.out; oy++)
        for (let ox = 0; ox < ax.out; ox++)
          for (let co = 0; co < Co; co++) {
            let acc = 0;
            for (let a = 0; a < kz; a++)
              for (let c = 0; c < ky; c++)
                for (let e = 0; e < kx; e++) {
                  const [z, yy, xx] = [oz * s[0] + a - az.before, oy * s[1] + c - ay.before, ox * s[2] + e - ax.before];
                  if (z < 0 || z >= D || yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                  for (let ci = 0; ci < Ci; ci++) {
                    acc += (x[(((b * D + z) * H + yy) * W + xx) * Ci + ci] as number) * (w[(((a * ky + c) * kx + e) * Ci + ci) * Co + co] as number);
                  }
                }
            y[i++] = acc;
          }
  return { y, shape: [B, az.out, ay.out, ax.out, Co] };
}

describe('conv3dFast', () => {
  for (const c of CONV_CASES) {
    const rng = makeRng(size(c.x) + size(c.w));
    const x = { data: normal(rng, size(c.x)), shape: c.x };
    const w = { data: normal(rng, size(c.w)), shape: c.w };
    const methods: Conv3dMethod[] = ['slices', 'gather', 'native', ...(tiles(c) ? (['patch'] as const) : [])];
    for (const backend of backends) {
      for (const method of methods) {
        // wasm's own conv3d backward is what these paths replace (FACTS.md); not the subject here.
        if (method === 'native' && backend === 'wasm') continue;
        it(`${c.name}: ${method} on ${backend} equals tf.conv3d on cpu, values and both gradients`, async () => {
          const want = await valueAndGrads('cpu', [x, w], (a, b) => tf.conv3d(a as tf.Tensor5D, b as tf.Tensor5D, c.s, c.pad), 11);
          const got = await valueAndGrads(backend, [x, w], (a, b) => conv3dFast(a, b, c.s, c.pad, { method }), 11);
          expect(got.yShape).toEqual(want.yShape);
          expectClose(got.y, want.y, 1e-5, 'forward');
          expectClose(got.grads[0] as Float32Array, want.grads[0] as Float32Array, 1e-5, 'dL/dx');
          expectClose(got.grads[1] as Float32Array, want.grads[1] as Float32Array, 1e-5, 'dL/dw');
          for (const g of got.grads) expect(g.some((v) => v !== 0) && g.every(Number.isFinite)).toBe(true);
        });
      }
    }
    it(`${c.name}: tf.conv3d on cpu matches the float64 definition`, async () => {
      const want = await valueAndGrads('cpu', [x, w], (a, b) => tf.conv3d(a as tf.Tensor5D, b as tf.Tensor5D, c.s, c.pad), 11);
      const s: Triple = typeof c.s === 'number' ? [c.s, c.s, c.s] : c.s;
      const ref = refConv3d(x.data, c.x, w.data, c.w, s, c.pad);
      expect(want.yShape).toEqual(ref.shape);
      expectClose(want.y, ref.y, 1e-5, 'cpu conv3d vs float64');
    });
  }

  it("'same' with a kernel smaller than the stride follows TensorFlow (tfjs' own conv3d starts late)", async () => {
    // k=1, s=2 on even sizes: TensorFlow pads nothing and samples voxels 0, 2, 4, …; the second case
    // mixes such an axis (y) with axes that do need padding.
    const cases: { xs: number[]; ws: number[]; s: Triple }[] = [
      { xs: [1, 4, 6, 4, 2], ws: [1, 1, 1, 2, 3], s: [2, 2, 2] },
      { xs: [1, 5, 6, 7, 2], ws: [3, 1, 2, 2, 3], s: [1, 2, 3] },
    ];
    for (const { xs, ws, s } of cases) {
      const rng = makeRng(5);
      const x = normal(rng, size(xs));
      const w = normal(rng, size(ws));
      const ref = refConv3d(x, xs, w, ws, s, 'same');
      for (const backend of backends) {
        for (const method of ['slices', 'gather', 'native', 'auto'] as Conv3dMethod[]) {
          if (method === 'native' && backend === 'wasm') continue;
          const got = await valueAndGrads(backend, [{ data: x, shape: xs }, { data: w, shape: ws }], (a, b) => conv3dFast(a, b, s, 'same', { method }), 3);
          expect(got.yShape).toEqual(ref.shape);
          expectClose(got.y, ref.y, 1e-5, `${method} on ${backend}`);
        }
      }
    }
  });

  it('rejects mismatched channels and the patch method where cells do not tile', () => {
    const x = tf.zeros([1, 4, 4, 4, 2]);
    const w = tf.zeros([3, 3, 3, 1, 2]);
    const w2 = tf.zeros([3, 3, 3, 2, 2]);
    expect(() => conv3dFast(x, w)).toThrow(/input channels/);
    expect(() => conv3dFast(x, w2, 1, 'same', { method: 'patch' })).toThrow(OpArgumentError);
    tf.dispose([x, w, w2]);
  });

  it('auto picks the measured winner per backend, and the patch path where cells tile', () => {
    const geometry = { kernel: [3, 3, 3] as Triple, strides: [1, 1, 1] as Triple, volume: [32, 64, 64] as Triple };
    expect(preferredConv3dMethod(geometry, 'webgpu')).toBe('native');
    expect(preferredConv3dMethod(geometry, 'cpu')).toBe('native');
    expect(preferredConv3dMethod(geometry, 'wasm')).toBe('slices');
    const tiled = { kernel: [4, 4, 4] as Triple, strides: [4, 4, 4] as Triple, volume: [32, 64, 64] as Triple };
    expect(preferredConv3dMethod(tiled, 'wasm')).toBe('patch');
    expect(preferredConv3dMethod(tiled, 'webgpu')).toBe('patch');
    // Not divisible: the cells do not tile, so the general choice.
    expect(preferredConv3dMethod({ ...tiled, volume: [30, 64, 64] }, 'wasm')).toBe('slices');
  });
});

// ---------------------------------------------------------------------------------------------------

interface AttnCase {
  name: string;
  B: number;
  heads: number;
  Nq: number;
  Nk: number;
  dh: number;
  causal?: boolean;
  /** Key padding: key j of batch b is valid when j < lengths[b]. */
  lengths?: number[];
  /** Multiplies q, to push the logits far from 0. */
  qScale?: number;
}

const ATTN_CASES: AttnCase[] = [
  { name: 'self-attention', B: 2, heads: 3, Nq: 5, Nk: 5, dh: 4 },
  { name: 'cross-attention with key padding', B: 2, heads: 2, Nq: 4, Nk: 6, dh: 3, lengths: [6, 3] },
  { name: 'causal with key padding', B: 2, heads: 2, Nq: 5, Nk: 5, dh: 4, causal: true, lengths: [5, 4] },
  { name: 'logits of order 1e3 (softmax max subtraction)', B: 1, heads: 2, Nq: 4, Nk: 4, dh: 4, qScale: 300 },
];

/** float64 attention with max subtraction; returns [B, heads, Nq, dh]. */
function refAttention(c: AttnCase, q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>): Float64Array {
  const { B, heads, Nq, Nk, dh } = c;
  const out = new Float64Array(B * heads * Nq * dh);
  const scale = 1 / Math.sqrt(dh);
  const s = new Float64Array(Nk);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < heads; h++) {
      const base = (b * heads + h) * Nq;
      const kbase = (b * heads + h) * Nk;
      for (let i = 0; i < Nq; i++) {
        let max = -Infinity;
        for (let j = 0; j < Nk; j++) {
          let dot = 0;
          for (let d = 0; d < dh; d++) dot += (q[(base + i) * dh + d] as number) * (k[(kbase + j) * dh + d] as number);
          const masked = (c.lengths && j >= (c.lengths[b] as number)) || (c.causal && j > i + Nk - Nq);
          s[j] = masked ? -Infinity : dot * scale;
          max = Math.max(max, s[j] as number);
        }
        let z = 0;
        for (let j = 0; j < Nk; j++) z += s[j] = Math.exp((s[j] as number) - max);
        for (let d = 0; d < dh; d++) {
          let acc = 0;
          for (let j = 0; j < Nk; j++) acc += ((s[j] as number) / z) * (v[(kbase + j) * dh + d] as number);
          out[(base + i) * dh + d] = acc;
        }
      }
    }
  return out;
}

describe('attention', () => {
  for (const c of ATTN_CASES) {
    const rng = makeRng(c.Nq * 100 + c.Nk);
    const qs = [c.B, c.heads, c.Nq, c.dh];
    const ks = [c.B, c.heads, c.Nk, c.dh];
    const q = normal(rng, size(qs)).map((x) => x * (c.qScale ?? 1));
    const k = normal(rng, size(ks));
    const v = normal(rng, size(ks));
    const r = normal(makeRng(13), size(qs));
    const ref = refAttention(c, q, k, v);
    // Central differences of L = Σ out · r on the float64 implementation.
    const fd = [q, k, v].map((arr, which) => {
      const base = [Float64Array.from(q), Float64Array.from(k), Float64Array.from(v)];
      const loss = () => refAttention(c, base[0]!, base[1]!, base[2]!).reduce((acc, o, i) => acc + o * (r[i] as number), 0);
      const h = 1e-6 * (c.qScale ?? 1);
      return Float64Array.from(arr, (_, i) => {
        const t = base[which] as Float64Array;
        const orig = t[i] as number;
        t[i] = orig + h;
        const up = loss();
        t[i] = orig - h;
        const down = loss();
        t[i] = orig;
        return (up - down) / (2 * h);
      });
    });
    const mask = c.lengths
      ? Float32Array.from({ length: c.B * c.Nk }, (_, i) => (i % c.Nk < (c.lengths![Math.floor(i / c.Nk)] as number) ? 1 : 0))
      : undefined;
    for (const backend of backends) {
      it(`${c.name} on ${backend}: values vs float64, gradients vs finite differences`, async () => {
        const got = await valueAndGrads(
          backend,
          [
            { data: q, shape: qs },
            { data: k, shape: ks },
            { data: v, shape: ks },
          ],
          (a, b, d) =>
            tf.tidy(() =>
              attention(a, b, d, {
                causal: c.causal,
                mask: mask ? tf.tensor4d(mask, [c.B, 1, 1, c.Nk]) : undefined,
              }),
            ),
          13,
        );
        expect(got.yShape).toEqual(qs);
        expectClose(got.y, ref, 2e-5, 'forward');
        // Logits ~1e3 amplify float32 rounding of the scores: tolerance relative to that scale.
        const gtol = 2e-4 * (c.qScale ?? 1);
        got.grads.forEach((g, i) => {
          expectClose(g, fd[i] as Float64Array, gtol, `dL/d${'qkv'[i]}`);
          expect(g.every(Number.isFinite)).toBe(true);
        });
        if (c.lengths) {
          // Padded keys get no gradient and their values no influence.
          const dk = got.grads[1] as Float32Array;
          for (let b = 0; b < c.B; b++)
            for (let j = c.lengths[b] as number; j < c.Nk; j++)
              for (let h = 0; h < c.heads; h++)
                for (let d = 0; d < c.dh; d++) expect(dk[(((b * c.heads + h) * c.Nk + j) * c.dh) + d]).toBe(0);
        }
      });
    }
  }

  it('rejects masks that do not broadcast and mismatched heads', () => {
    const q = tf.zeros([2, 2, 3, 4]);
    const k = tf.zeros([2, 2, 5, 4]);
    const kBad = tf.zeros([2, 3, 5, 4]);
    const mask = tf.ones([2, 1, 1, 4]);
    expect(() => attention(q, k, k, { mask })).toThrow(/not broadcastable/);
    expect(() => attention(q, kBad, kBad)).toThrow(OpArgumentError);
    tf.dispose([q, k, kBad, mask]);
  });
});
