import { backendsUnderTest, expectNoLeak, makeRng, maxAbsDiff, tf, useBackend, type BackendName } from '@goe/tf';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ByteHead,
  ByteHeadConfigError,
  ByteHeadInputError,
  byteLogProbs,
  byteLoss,
  resolveByteHeadConfig,
} from './head.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');

function randomLogits(count: number, seed: number, scale = 3): Float32Array {
  const rng = makeRng(seed);
  return Float32Array.from({ length: count * 256 }, () => scale * rng.normal());
}

/** Float64 reference: log-sum-exp per row, then −Σ w log p(y) / Σ w. */
function ceReference(logits: Float32Array, targets: Int32Array, weights: Float32Array): { lp: Float64Array; ce: number } {
  const rows = targets.length;
  const lp = new Float64Array(rows);
  let num = 0;
  let den = 0;
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * 256, r * 256 + 256);
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
    lp[r] = (row[targets[r] as number] as number) - lse;
    num -= (weights[r] as number) * (lp[r] as number);
    den += weights[r] as number;
  }
  return { lp, ce: num / den };
}

describe('byte head config', () => {
  it('fills defaults and names a bad or unknown field', () => {
    expect(resolveByteHeadConfig({ d: 16 })).toEqual({ d: 16, norm: true });
    for (const [bad, field] of [
      [{ d: 0 }, 'd'],
      [{ norm: 'yes' }, 'norm'],
      [{ width: 3 }, 'width'],
    ] as const) {
      try {
        resolveByteHeadConfig(bad as never);
        throw new Error('no error');
      } catch (e) {
        expect(e).toBeInstanceOf(ByteHeadConfigError);
        expect((e as ByteHeadConfigError).field).toBe(field);
      }
    }
  });
});

describe.each(BACKENDS)('byte head on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  it('log-probabilities and the weighted cross-entropy match a float64 log-sum-exp', async () => {
    const [b, n] = [3, 7];
    const logits = randomLogits(b * n, 1);
    const rng = makeRng(2);
    const targets = Int32Array.from({ length: b * n }, () => rng.int(256));
    const weights = Float32Array.from({ length: b * n }, (_, i) => (i % 3 === 0 ? 1 : i % 5 === 0 ? 0.5 : 0));
    const ref = ceReference(logits, targets, weights);
    const z = tf.tensor3d(logits, [b, n, 256]);
    const y = tf.tensor2d(targets, [b, n], 'int32');
    const w = tf.tensor2d(weights, [b, n]);
    const lp = byteLogProbs(z, y);
    expect(lp.shape).toEqual([b, n]);
    expect(maxAbsDiff(await lp.data(), ref.lp)).toBeLessThan(1e-4);
    const loss = byteLoss(z, y, w);
    expect((await loss.ce.data())[0]).toBeCloseTo(ref.ce, 4);
    expect((await loss.bitsPerByte.data())[0]).toBeCloseTo(ref.ce / Math.LN2, 4);
    tf.dispose([z, y, w, lp, loss.ce, loss.bitsPerByte]);
  });

  it('the gradient of the loss in the logits is w (softmax − one-hot) / Σw', async () => {
    const [b, n] = [2, 5];
    const logits = randomLogits(b * n, 3, 1);
    const targets = Int32Array.from({ length: b * n }, (_, i) => (i * 37) % 256);
    const weights = Float32Array.from({ length: b * n }, (_, i) => (i % 2 === 0 ? 1 : 0));
    const sw = weights.reduce((a, v) => a + v, 0);
    const y = tf.tensor2d(targets, [b, n], 'int32');
    const w = tf.tensor2d(weights, [b, n]);
    const z = tf.tensor3d(logits, [b, n, 256]);
    const g = tf.grad((x: tf.Tensor) => byteLoss(x as tf.Tensor3D, y, w).ce)(z);
    const got = await g.data();
    const want = new Float64Array(b * n * 256);
    for (let r = 0; r < b * n; r++) {
      const row = logits.subarray(r * 256, r * 256 + 256);
      const mx = Math.max(...row);
      const z0 = row.reduce((a, v) => a + Math.exp(v - mx), 0);
      for (let c = 0; c < 256; c++) {
        const p = Math.exp((row[c] as number) - mx) / z0;
        want[r * 256 + c] = ((weights[r] as number) * (p - (c === targets[r] ? 1 : 0))) / sw;
      }
    }
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-6);
    tf.dispose([y, w, z, g]);
  });

  it('without the norm the head is one matmul; every variable gets a finite non-zero gradient; no leaks', async () => {
    const d = 6;
    const plain = new ByteHead(resolveByteHeadConfig({ d, norm: false }), makeRng(4));
    const rng = makeRng(5);
    const tokens = Float32Array.from({ length: 2 * 3 * d }, () => rng.normal());
    const t = tf.tensor3d(tokens, [2, 3, d]);
    const out = plain.apply(t);
    expect(out.shape).toEqual([2, 3, 256]);
    const wv = await plain.proj.w.data();
    const bv = await plain.proj.b!.data();
    const want = new Float64Array(2 * 3 * 256);
    for (let r = 0; r < 6; r++)
      for (let o = 0; o < 256; o++) {
        let acc = bv[o] as number;
        for (let c = 0; c < d; c++) acc += (tokens[r * d + c] as number) * (wv[c * 256 + o] as number);
        want[r * 256 + o] = acc;
      }
    expect(maxAbsDiff(await out.data(), want)).toBeLessThan(1e-5);
    out.dispose();
    plain.dispose();

    const head = new ByteHead(resolveByteHeadConfig({ d }), makeRng(6));
    const y = tf.tensor2d([[1, 2, 3], [200, 255, 0]], [2, 3], 'int32');
    const w = tf.ones([2, 3]) as tf.Tensor2D;
    const loss = (): tf.Scalar => byteLoss(head.apply(t), y, w).ce;
    const vars = head.trainableVariables();
    const step = async (): Promise<void> => {
      const { value, grads } = tf.variableGrads(loss, vars);
      for (const v of vars) {
        const g = Array.from(await grads[v.name]!.data());
        const norm = Math.sqrt(g.reduce((s, q) => s + q * q, 0));
        expect(Number.isFinite(norm) && norm > 0, v.name).toBe(true);
      }
      tf.dispose([value, ...Object.values(grads)]);
    };
    await step();
    await expectNoLeak(step, 'byte head');
    tf.dispose([t, y, w]);
    head.dispose();
  });

  it('rejects logits, targets and weights of the wrong shape or dtype', () => {
    const head = new ByteHead(resolveByteHeadConfig({ d: 4 }), makeRng(1));
    const t = tf.zeros([1, 2, 5]) as tf.Tensor3D;
    const z = tf.zeros([1, 2, 256]) as tf.Tensor3D;
    const yf = tf.zeros([1, 2]) as tf.Tensor2D;
    const y = tf.zeros([1, 2], 'int32') as tf.Tensor2D;
    const w3 = tf.ones([1, 3]) as tf.Tensor2D;
    expect(() => head.apply(t)).toThrow(ByteHeadInputError);
    expect(() => byteLogProbs(tf.zeros([1, 2, 10]) as tf.Tensor3D, y)).toThrow(/input 'logits'/);
    expect(() => byteLogProbs(z, yf)).toThrow(/input 'targets': expected int32 \[1, 2\]/);
    expect(() => byteLoss(z, y, w3)).toThrow(/input 'weights'/);
    tf.dispose([t, z, yf, y, w3]);
    head.dispose();
  });
});

// WebGPU (lavapipe here, so slow): the loss and its gradient through the head, one small case.
describe.runIf((await backendsUnderTest()).includes('webgpu'))('byte head on webgpu', () => {
  it('matches the float64 cross-entropy and gives every variable a gradient', async () => {
    await useBackend('webgpu');
    const [b, n, d] = [2, 3, 4];
    const head = new ByteHead(resolveByteHeadConfig({ d, norm: false }), makeRng(9));
    const rng = makeRng(10);
    const t = tf.tensor3d(Float32Array.from({ length: b * n * d }, () => rng.normal()), [b, n, d]);
    const targets = Int32Array.from([3, 250, 7, 7, 0, 128]);
    const weights = Float32Array.from([1, 0, 1, 1, 0, 1]);
    const y = tf.tensor2d(targets, [b, n], 'int32');
    const w = tf.tensor2d(weights, [b, n]);
    const logits = head.apply(t);
    const ref = ceReference((await logits.data()) as Float32Array, targets, weights);
    const { value, grads } = tf.variableGrads(() => byteLoss(head.apply(t), y, w).ce, head.trainableVariables());
    expect((await value.data())[0]).toBeCloseTo(ref.ce, 4);
    for (const v of head.trainableVariables()) {
      const g = Array.from(await grads[v.name]!.data());
      expect(g.every(Number.isFinite) && g.some((q) => q !== 0), v.name).toBe(true);
    }
    tf.dispose([t, y, w, logits, value, ...Object.values(grads)]);
    head.dispose();
    await useBackend('cpu');
  });
});
