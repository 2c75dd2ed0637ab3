import { describe, expect, it } from 'vitest';
import { backendsUnderTest, directionalGradCheck, expectNoLeak, hostGradients, makeRng, tf, useBackend, type Rng } from '@goe/tf';
import {
  ENCODER_DEFAULTS,
  Encoder,
  EncoderConfigError,
  EncoderInputError,
  dropout,
  resolveEncoderConfig,
  scaledDotProductAttention,
  type EncoderConfigInput,
} from './index.js';

// ---------------------------------------------------------------------------------------------------
// float64 host reference of the encoder, from the definitions (rows are [B*N, ·] Float64Arrays)

type Mat = { data: Float64Array; rows: number; cols: number };

async function param(v: tf.Tensor): Promise<Float64Array> {
  return Float64Array.from(await v.data());
}

function linear(x: Mat, w: Float64Array, b: Float64Array | undefined, out: number): Mat {
  const y = new Float64Array(x.rows * out);
  for (let r = 0; r < x.rows; r++)
    for (let j = 0; j < out; j++) {
      let s = b ? b[j]! : 0;
      for (let i = 0; i < x.cols; i++) s += x.data[r * x.cols + i]! * w[i * out + j]!;
      y[r * out + j] = s;
    }
  return { data: y, rows: x.rows, cols: out };
}

function layerNorm(x: Mat, g: Float64Array, b: Float64Array): Mat {
  const y = new Float64Array(x.data.length);
  for (let r = 0; r < x.rows; r++) {
    const row = x.data.subarray(r * x.cols, (r + 1) * x.cols);
    const mean = row.reduce((s, v) => s + v, 0) / x.cols;
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / x.cols;
    for (let i = 0; i < x.cols; i++) y[r * x.cols + i] = ((row[i]! - mean) / Math.sqrt(variance + 1e-5)) * g[i]! + b[i]!;
  }
  return { data: y, rows: x.rows, cols: x.cols };
}

const geluRef = (v: number): number => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

function add(a: Mat, b: Mat): Mat {
  return { ...a, data: a.data.map((v, i) => v + b.data[i]!) };
}

/** Multi-head attention on rows [B*N, 3d] of (q | k | v), keys with mask 0 excluded. */
function attentionRef(qkv: Mat, B: number, N: number, h: number, mask?: ArrayLike<number>): Mat {
  const d = qkv.cols / 3;
  const dh = d / h;
  const out = new Float64Array(B * N * d);
  for (let b = 0; b < B; b++)
    for (let head = 0; head < h; head++)
      for (let i = 0; i < N; i++) {
        const q = (c: number): number => qkv.data[(b * N + i) * 3 * d + head * dh + c]!;
        const scores: number[] = [];
        for (let j = 0; j < N; j++) {
          if (mask && mask[b * N + j] === 0) {
            scores.push(-Infinity);
            continue;
          }
          let s = 0;
          for (let c = 0; c < dh; c++) s += q(c) * qkv.data[(b * N + j) * 3 * d + d + head * dh + c]!;
          scores.push(s / Math.sqrt(dh));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((s, v) => s + v, 0);
        for (let c = 0; c < dh; c++) {
          let s = 0;
          for (let j = 0; j < N; j++) s += (e[j]! / z) * qkv.data[(b * N + j) * 3 * d + 2 * d + head * dh + c]!;
          out[(b * N + i) * d + head * dh + c] = s;
        }
      }
  return { data: out, rows: B * N, cols: d };
}

async function encoderRef(
  enc: Encoder,
  tokens: Float32Array,
  aux: Float32Array,
  B: number,
  N: number,
  mask?: ArrayLike<number>,
): Promise<{ tokens: Float64Array; aux: Float64Array }> {
  const { d, da, heads } = enc.config;
  let x: Mat = { data: Float64Array.from(tokens), rows: B * N, cols: d };
  for (const blk of enc.blocks) {
    const h1 = layerNorm(x, await param(blk.norm1.gain), await param(blk.norm1.bias));
    const qkv = linear(h1, await param(blk.attn.qkv.w), await param(blk.attn.qkv.b!), 3 * d);
    const att = linear(attentionRef(qkv, B, N, heads, mask), await param(blk.attn.out.w), await param(blk.attn.out.b!), d);
    x = add(x, att);
    const h2 = layerNorm(x, await param(blk.norm2.gain), await param(blk.norm2.bias));
    const hidden = blk.fc1.outDim;
    const f1 = linear(h2, await param(blk.fc1.w), await param(blk.fc1.b!), hidden);
    const f2 = linear({ ...f1, data: f1.data.map(geluRef) }, await param(blk.fc2.w), await param(blk.fc2.b!), d);
    x = add(x, f2);
  }
  if (enc.finalNorm) x = layerNorm(x, await param(enc.finalNorm.gain), await param(enc.finalNorm.bias));
  let a: Mat = { data: Float64Array.from(aux), rows: B * N, cols: da };
  if (enc.auxProj) {
    const cat = new Float64Array(B * N * (da + d));
    for (let r = 0; r < B * N; r++) {
      cat.set(a.data.subarray(r * da, (r + 1) * da), r * (da + d));
      cat.set(x.data.subarray(r * d, (r + 1) * d), r * (da + d) + da);
    }
    a = add(a, linear({ data: cat, rows: B * N, cols: da + d }, await param(enc.auxProj.w), await param(enc.auxProj.b!), da));
  }
  if (enc.auxAttn && enc.auxNorm) {
    // a' = a + W_o MHA(LN(a) W_q, T' W_k, T' W_v): rows of (q | k | v) for attentionRef.
    const { q: wq, kv: wkv, out: wo } = enc.auxAttn;
    const D = enc.config.auxDim;
    const q = linear(layerNorm(a, await param(enc.auxNorm.gain), await param(enc.auxNorm.bias)), await param(wq.w), await param(wq.b!), D);
    const kv = linear(x, await param(wkv.w), await param(wkv.b!), 2 * D);
    const qkv = new Float64Array(B * N * 3 * D);
    for (let r = 0; r < B * N; r++) {
      qkv.set(q.data.subarray(r * D, (r + 1) * D), r * 3 * D);
      qkv.set(kv.data.subarray(r * 2 * D, (r + 1) * 2 * D), r * 3 * D + D);
    }
    const att = attentionRef({ data: qkv, rows: B * N, cols: 3 * D }, B, N, enc.config.auxHeads, mask);
    a = add(a, linear(att, await param(wo.w), await param(wo.b!), da));
  }
  return { tokens: x.data, aux: a.data };
}

function randn(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal());
}

function maxErr(a: ArrayLike<number>, b: ArrayLike<number>, rows?: (i: number) => boolean): number {
  let e = 0;
  for (let i = 0; i < a.length; i++) if (!rows || rows(i)) e = Math.max(e, Math.abs((a[i] as number) - (b[i] as number)));
  return e;
}

async function run(
  enc: Encoder,
  tokens: Float32Array,
  aux: Float32Array,
  B: number,
  N: number,
  mask?: Float32Array,
): Promise<{ tokens: Float32Array; aux: Float32Array }> {
  const { d, da } = enc.config;
  const t = tf.tensor3d(tokens, [B, N, d]);
  const a = tf.tensor3d(aux, [B, N, da]);
  const m = mask ? tf.tensor2d(mask, [B, N]) : undefined;
  const out = enc.apply({ tokens: t, aux: a }, { mask: m });
  const res = { tokens: (await out.tokens.data()) as Float32Array, aux: (await out.aux.data()) as Float32Array };
  tf.dispose([t, a, out.tokens, out.aux, ...(m ? [m] : [])]);
  return res;
}

// ---------------------------------------------------------------------------------------------------

describe('scaledDotProductAttention', () => {
  it('equals softmax(q kᵀ / √dh) v in float64 on a tiny hand-sized input', async () => {
    await useBackend('cpu');
    // One head, 3 tokens, dh = 2: q = k, v = identity-ish, so the weights are visible.
    const q = [1, 0, 0, 1, 1, 1];
    const v = [1, 0, 0, 1, 2, 2];
    const out = tf.tidy(() => {
      const t = (a: number[]) => tf.tensor3d(a, [1, 3, 2]);
      return scaledDotProductAttention(t(q), t(q), t(v), { heads: 1 }).out;
    });
    const got = await out.data();
    out.dispose();
    for (let i = 0; i < 3; i++) {
      const s = [0, 1, 2].map((j) => (q[i * 2]! * q[j * 2]! + q[i * 2 + 1]! * q[j * 2 + 1]!) / Math.SQRT2);
      const e = s.map(Math.exp);
      const z = e[0]! + e[1]! + e[2]!;
      for (let c = 0; c < 2; c++) {
        const want = [0, 1, 2].reduce((acc, j) => acc + (e[j]! / z) * v[j * 2 + c]!, 0);
        expect(got[i * 2 + c]).toBeCloseTo(want, 6);
      }
    }
  });
});

describe.each(['linear', 'cross'] as const)('Encoder with auxRefine %s', (auxRefine) => {
  const cfg: EncoderConfigInput = { d: 8, da: 3, depth: 2, heads: 2, mlpRatio: 2, auxRefine, auxDim: 4, auxHeads: 2 };
  const B = 2;
  const N = 5;

  it('builds the aux path it names', () => {
    const enc = new Encoder(resolveEncoderConfig(cfg), makeRng(1));
    expect(enc.auxProj !== undefined).toBe(auxRefine === 'linear');
    expect(enc.auxAttn !== undefined).toBe(auxRefine === 'cross');
    enc.dispose();
  });

  it('equals a float64 reference (blocks, final norm, aux refinement) on every backend, with and without a mask', async () => {
    await useBackend('cpu');
    const rng = makeRng(1);
    const tokens = randn(rng, B * N * 8);
    const aux = randn(rng, B * N * 3);
    const mask = Float32Array.from([1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
    const refEnc = new Encoder(resolveEncoderConfig(cfg), makeRng(2));
    const ref = await encoderRef(refEnc, tokens, aux, B, N);
    const refMasked = await encoderRef(refEnc, tokens, aux, B, N, mask);
    refEnc.dispose();
    const byBackend = new Map<string, { tokens: Float32Array; aux: Float32Array }>();
    for (const backend of await backendsUnderTest()) {
      await useBackend(backend);
      const enc = new Encoder(resolveEncoderConfig(cfg), makeRng(2));
      await expectNoLeak(async () => {
        const got = await run(enc, tokens, aux, B, N);
        byBackend.set(backend, got);
        expect(maxErr(got.tokens, ref.tokens), backend).toBeLessThan(1e-4);
        expect(maxErr(got.aux, ref.aux), backend).toBeLessThan(1e-4);
        const gotM = await run(enc, tokens, aux, B, N, mask);
        // Real tokens only: padded queries have no defined output.
        expect(maxErr(gotM.tokens, refMasked.tokens, (i) => mask[Math.floor(i / 8)] === 1), backend).toBeLessThan(1e-4);
        expect(maxErr(gotM.aux, refMasked.aux, (i) => mask[Math.floor(i / 3)] === 1), backend).toBeLessThan(1e-4);
      }, `encoder on ${backend}`);
      enc.dispose();
    }
    // The backends agree with each other, not only each with the reference.
    const cpu = byBackend.get('cpu');
    for (const [backend, got] of byBackend) {
      if (!cpu) break;
      expect(maxErr(got.tokens, cpu.tokens), `${backend} vs cpu`).toBeLessThan(1e-5);
      expect(maxErr(got.aux, cpu.aux), `${backend} vs cpu`).toBeLessThan(1e-5);
    }
  });

  it('outputs of real tokens do not depend on the values of padded tokens', async () => {
    await useBackend('cpu');
    const enc = new Encoder(resolveEncoderConfig(cfg), makeRng(3));
    const rng = makeRng(4);
    const tokens = randn(rng, B * N * 8);
    const aux = randn(rng, B * N * 3);
    const mask = Float32Array.from([1, 0, 1, 1, 0, 1, 1, 1, 1, 0]);
    const other = tokens.slice();
    const otherAux = aux.slice();
    for (let t = 0; t < B * N; t++) {
      if (mask[t] === 1) continue;
      for (let c = 0; c < 8; c++) other[t * 8 + c] = 100 * rng.normal();
      for (let c = 0; c < 3; c++) otherAux[t * 3 + c] = 100 * rng.normal();
    }
    const a = await run(enc, tokens, aux, B, N, mask);
    const b = await run(enc, other, otherAux, B, N, mask);
    expect(maxErr(a.tokens, b.tokens, (i) => mask[Math.floor(i / 8)] === 1)).toBeLessThan(1e-6);
    expect(maxErr(a.aux, b.aux, (i) => mask[Math.floor(i / 3)] === 1)).toBeLessThan(1e-6);
    // ... while without the mask they do.
    const c = await run(enc, other, otherAux, B, N);
    expect(maxErr(a.tokens, c.tokens, (i) => mask[Math.floor(i / 8)] === 1)).toBeGreaterThan(1e-3);
    expect(maxErr(a.aux, c.aux, (i) => mask[Math.floor(i / 3)] === 1)).toBeGreaterThan(1e-3);
    enc.dispose();
  });

  it('is permutation-equivariant (no positions inside)', async () => {
    await useBackend('cpu');
    const enc = new Encoder(resolveEncoderConfig(cfg), makeRng(5));
    const rng = makeRng(6);
    const tokens = randn(rng, B * N * 8);
    const aux = randn(rng, B * N * 3);
    const perm = [3, 0, 4, 1, 2];
    const permute = (x: Float32Array, w: number): Float32Array => {
      const y = new Float32Array(x.length);
      for (let b = 0; b < B; b++)
        for (let i = 0; i < N; i++) y.set(x.subarray((b * N + perm[i]!) * w, (b * N + perm[i]! + 1) * w), (b * N + i) * w);
      return y;
    };
    const out = await run(enc, tokens, aux, B, N);
    const outP = await run(enc, permute(tokens, 8), permute(aux, 3), B, N);
    expect(maxErr(outP.tokens, permute(out.tokens, 8))).toBeLessThan(1e-5);
    expect(maxErr(outP.aux, permute(out.aux, 3))).toBeLessThan(1e-5);
    enc.dispose();
  });

  it('every variable gets a finite, non-zero gradient; one matches a finite difference; no leaks', async () => {
    await useBackend('cpu');
    const enc = new Encoder(resolveEncoderConfig(cfg), makeRng(7));
    const rng = makeRng(8);
    if (enc.auxAttn) {
      // The output projection starts near zero (a' ≈ a), which would shrink the gradients of the
      // weights before it below what a float32 finite difference resolves: check at ordinary weights.
      const wo = enc.auxAttn.out.w;
      tf.tidy(() => wo.assign(tf.tensor(randn(rng, wo.size), wo.shape)));
    }
    const t = tf.tensor3d(randn(rng, B * N * 8), [B, N, 8]);
    const a = tf.tensor3d(randn(rng, B * N * 3), [B, N, 3]);
    const r1 = tf.tensor3d(randn(rng, B * N * 8), [B, N, 8]);
    const r2 = tf.tensor3d(randn(rng, B * N * 3), [B, N, 3]);
    const lossFn = (): tf.Scalar =>
      tf.tidy(() => {
        const o = enc.apply({ tokens: t, aux: a }, { training: true });
        return tf.add(tf.sum(tf.mul(o.tokens, r1)), tf.sum(tf.mul(o.aux, r2))) as tf.Scalar;
      });
    const grads = await hostGradients(lossFn);
    for (const [path, v] of enc.variables()) {
      const g = grads.get(v.name);
      expect(g, path).toBeDefined();
      expect(g!.every(Number.isFinite), path).toBe(true);
      expect(g!.some((e) => e !== 0), path).toBe(true);
    }
    const checked = [enc.blocks[0]!.attn.qkv.w, ...(enc.auxAttn ? [enc.auxAttn.q.w, enc.auxAttn.kv.w, enc.auxNorm!.gain] : [enc.auxProj!.w])];
    for (const w of checked) {
      const { analytic, numeric } = await directionalGradCheck(w, grads.get(w.name)!, lossFn, rng);
      expect(Math.abs(analytic), w.name).toBeGreaterThan(1e-3);
      expect(Math.abs(numeric - analytic), w.name).toBeLessThan(1e-2 * Math.max(0.1, Math.abs(analytic)));
    }
    tf.dispose([t, a, r1, r2]);
    enc.dispose();
  });

});

describe('Encoder', () => {
  const cfg: EncoderConfigInput = { d: 8, da: 3, depth: 2, heads: 2, mlpRatio: 2 };
  const B = 2;
  const N = 5;

  it('dropout is active only in training, reproducible from the seed, and keeps the expectation', async () => {
    await useBackend('cpu');
    const x = tf.ones([200, 50]);
    const y = dropout(x, 0.25, makeRng(1));
    const v = await y.data();
    const zeros = v.filter((e) => e === 0).length / v.length;
    expect(Math.abs(zeros - 0.25)).toBeLessThan(0.02);
    for (const e of v) expect(e === 0 || Math.abs(e - 1 / 0.75) < 1e-6).toBe(true);
    const y2 = dropout(x, 0.25, makeRng(1));
    expect(Array.from(await y2.data())).toEqual(Array.from(v));
    tf.dispose([x, y, y2]);

    const dcfg = { ...cfg, dropout: 0.5, attnDropout: 0.5 };
    const rng = makeRng(9);
    const tokens = randn(rng, B * N * 8);
    const aux = randn(rng, B * N * 3);
    const mk = (): Encoder => new Encoder(resolveEncoderConfig(dcfg), makeRng(10));
    const e1 = mk();
    const e2 = mk();
    const evalA = await run(e1, tokens, aux, B, N);
    const evalB = await run(e1, tokens, aux, B, N);
    expect(maxErr(evalA.tokens, evalB.tokens)).toBe(0);
    const train = async (enc: Encoder): Promise<Float32Array> => {
      const t = tf.tensor3d(tokens, [B, N, 8]);
      const a = tf.tensor3d(aux, [B, N, 3]);
      const o = enc.apply({ tokens: t, aux: a }, { training: true });
      const out = (await o.tokens.data()) as Float32Array;
      tf.dispose([t, a, o.tokens, o.aux]);
      return out;
    };
    const t1 = await train(e1);
    expect(maxErr(t1, evalA.tokens)).toBeGreaterThan(1e-3);
    expect(maxErr(t1, await train(e2))).toBe(0); // same seed, same masks
    e1.dispose();
    e2.dispose();
  });

  it('rejects bad configs and inputs with typed errors naming the field', async () => {
    await useBackend('cpu');
    expect(resolveEncoderConfig()).toEqual(ENCODER_DEFAULTS);
    const field = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        if (e instanceof EncoderConfigError) return e.field;
        throw e;
      }
      return '(none)';
    };
    expect(field(() => resolveEncoderConfig({ width: 8 } as never))).toBe('width');
    expect(field(() => resolveEncoderConfig({ d: 10, heads: 4 }))).toBe('heads');
    expect(field(() => resolveEncoderConfig({ dropout: 1 }))).toBe('dropout');
    expect(field(() => resolveEncoderConfig({ depth: -1 }))).toBe('depth');
    expect(field(() => resolveEncoderConfig({ auxRefine: 'attention' as never }))).toBe('auxRefine');
    expect(field(() => resolveEncoderConfig({ auxRefine: 'cross', auxDim: 6, auxHeads: 4 }))).toBe('auxHeads');
    expect(field(() => resolveEncoderConfig({ auxDim: 0 }))).toBe('auxDim');
    expect(field(() => resolveEncoderConfig({ auxHeads: 1.5 }))).toBe('auxHeads');
    const enc = new Encoder(resolveEncoderConfig(cfg), makeRng(1));
    const t = tf.zeros([2, 5, 8]) as tf.Tensor3D;
    const a = tf.zeros([2, 5, 3]) as tf.Tensor3D;
    const badT = tf.zeros([2, 5, 7]) as tf.Tensor3D;
    const badA = tf.zeros([2, 4, 3]) as tf.Tensor3D;
    const badM = tf.ones([2, 4]) as tf.Tensor2D;
    expect(() => enc.apply({ tokens: badT, aux: a })).toThrow(EncoderInputError);
    expect(() => enc.apply({ tokens: t, aux: badA })).toThrow(/aux/);
    expect(() => enc.apply({ tokens: t, aux: a }, { mask: badM })).toThrow(/mask/);
    tf.dispose([t, a, badT, badA, badM]);
    enc.dispose();
  });
});
