import {
  Adam,
  Linear,
  backendsUnderTest,
  directionalGradCheck,
  expectNoLeak,
  makeRng,
  maxAbsDiff,
  refConv3d,
  refLayerNorm,
  refMatMul,
  tf,
  useBackend,
  type BackendName,
  type HostTensor,
  type HostTensorLike,
  type Module,
} from '@goe/tf';
import { beforeAll, describe, expect, it } from 'vitest';
import { resolveGoeConfig, type GoeConfigInput } from './config.js';
import { dispatchDense, dispatchExact } from './dispatch.js';
import { AttentionExpert, ConvExpert, SwiGluExpert, depthwiseConv3dRows, type Expert, type ExpertContext } from './experts.js';
import { GoeLayer, disposeGoeOutput } from './layer.js';
import { slotMessages } from './messages.js';
import { goeReference, swigluReference, type HostArray } from './reference.js';
import { adamStep, copyWeights, hostWeights, normals } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');

// ---------------------------------------------------------------------------------------------------
// Float64 host references, written from the definitions (shared with the tensor code: nothing).

/** Every variable of a module on the host, by dotted name. */
async function weightsOf(m: Module): Promise<Map<string, HostArray>> {
  const out = new Map<string, HostArray>();
  for (const [name, v] of m.variables()) out.set(name, { data: await v.data(), shape: v.shape });
  return out;
}

function w(map: ReadonlyMap<string, HostArray>, name: string): HostArray {
  const v = map.get(name);
  if (!v) throw new Error(`no weight '${name}'`);
  return v;
}

/** `x W + b` on `[n, in]` rows. */
function dense(x: HostTensorLike, weight: HostArray, bias?: HostArray): HostTensor {
  const y = refMatMul(x, weight);
  const o = y.shape[1] as number;
  if (bias) for (let i = 0; i < y.data.length; i++) y.data[i] = (y.data[i] as number) + (bias.data[i % o] as number);
  return y;
}

/** GELU, tanh approximation (Hendrycks & Gimpel 2016), elementwise. */
function geluRef(x: HostTensor): HostTensor {
  const c = Math.sqrt(2 / Math.PI);
  return { data: x.data.map((v) => 0.5 * v * (1 + Math.tanh(c * (v + 0.044715 * v * v * v)))), shape: x.shape };
}

function addRef(a: HostTensorLike, b: HostTensorLike): HostTensor {
  return { data: Float64Array.from(a.data, (v, i) => v + (b.data[i] as number)), shape: [...a.shape] };
}

/**
 * The attention expert in float64: pre-norm multi-head attention where row i sees row j only when both
 * come from the same sample (softmax over those keys alone), residual, pre-norm GELU feed-forward, residual.
 */
function attentionRef(x: HostTensorLike, sample: ArrayLike<number>, wt: ReadonlyMap<string, HostArray>, heads: number): HostTensor {
  const [n, c] = x.shape as [number, number];
  const dh = c / heads;
  const a = refLayerNorm(x, w(wt, 'norm1.gain').data, w(wt, 'norm1.bias').data);
  const [q, k, v] = ['wq', 'wk', 'wv'].map((p) => dense(a, w(wt, `${p}.w`))) as [HostTensor, HostTensor, HostTensor];
  const att = new Float64Array(n * c);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < n; i++) {
      const keys = Array.from({ length: n }, (_, j) => j).filter((j) => sample[j] === sample[i]);
      const s = keys.map((j) => {
        let dot = 0;
        for (let d = 0; d < dh; d++) dot += q.data[i * c + h * dh + d]! * k.data[j * c + h * dh + d]!;
        return dot / Math.sqrt(dh);
      });
      const mx = Math.max(...s);
      const e = s.map((z) => Math.exp(z - mx));
      const z = e.reduce((p, r) => p + r, 0);
      keys.forEach((j, t) => {
        for (let d = 0; d < dh; d++) att[i * c + h * dh + d] = att[i * c + h * dh + d]! + (e[t]! / z) * v.data[j * c + h * dh + d]!;
      });
    }
  }
  const y = addRef(x, dense({ data: att, shape: [n, c] }, w(wt, 'wo.w')));
  const f = dense(geluRef(dense(refLayerNorm(y, w(wt, 'norm2.gain').data, w(wt, 'norm2.bias').data), w(wt, 'ff1.w'), w(wt, 'ff1.b'))), w(wt, 'ff2.w'), w(wt, 'ff2.b'));
  return addRef(y, f);
}

/**
 * The conv expert in float64: rows scattered onto a zero `[B, gz, gy, gx, C]` volume, a 3x3x3 'same'
 * conv3d whose filter is the depthwise taps on the channel diagonal (refConv3d), the routed rows
 * gathered back, bias, then the pointwise GELU MLP.
 */
function convRef(x: HostTensorLike, rows: ArrayLike<number>, batch: number, grid: readonly number[], wt: ReadonlyMap<string, HostArray>): HostTensor {
  const [n, c] = x.shape as [number, number];
  const [gz, gy, gx] = grid as [number, number, number];
  const vol = new Float64Array(batch * gz * gy * gx * c);
  for (let p = 0; p < n; p++) for (let ch = 0; ch < c; ch++) vol[rows[p]! * c + ch] = x.data[p * c + ch]!;
  const dw = w(wt, 'depthwise');
  const filter = new Float64Array(27 * c * c);
  for (let t = 0; t < 27; t++) for (let ch = 0; ch < c; ch++) filter[(t * c + ch) * c + ch] = dw.data[t * c + ch]!;
  const y = refConv3d({ data: vol, shape: [batch, gz, gy, gx, c] }, { data: filter, shape: [3, 3, 3, c, c] }, 1, 'same');
  const z = new Float64Array(n * c);
  const b = w(wt, 'depthwiseBias');
  for (let p = 0; p < n; p++) for (let ch = 0; ch < c; ch++) z[p * c + ch] = y.data[rows[p]! * c + ch]! + b.data[ch]!;
  return dense(geluRef(dense({ data: z, shape: [n, c] }, w(wt, 'pw1.w'), w(wt, 'pw1.b'))), w(wt, 'pw2.w'), w(wt, 'pw2.b'));
}

/** `k` distinct values of [0, n) in random order. */
function distinct(n: number, k: number, seed: number): Int32Array {
  const rng = makeRng(seed);
  const all = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return Int32Array.from(all.slice(0, k));
}

/** `[n, C]` tensor of seeded normals and its host copy. */
function rowsOf(n: number, c: number, seed: number): { x: tf.Tensor2D; host: HostTensorLike } {
  const data = normals(n * c, seed);
  return { x: tf.tensor2d(data, [n, c]), host: { data, shape: [n, c] } };
}

/** Directional finite-difference check of `loss` for every variable of `m` (relative 2e-2). */
async function checkGrads(m: Module, loss: () => tf.Scalar, seed: number): Promise<void> {
  const vars = [...m.variables().entries()];
  const { value, grads } = tf.variableGrads(loss, vars.map(([, v]) => v));
  const rng = makeRng(seed);
  for (const [name, v] of vars) {
    const g = await grads[v.name]!.data();
    const norm = Math.sqrt(Array.from(g).reduce((s, x) => s + x * x, 0));
    expect(Number.isFinite(norm) && norm > 0, name).toBe(true);
    const { analytic, numeric } = await directionalGradCheck(v, g, loss, rng, 1e-2);
    expect(Math.abs(numeric - analytic), name).toBeLessThan(2e-2 * Math.max(Math.abs(analytic), 1e-2));
  }
  tf.dispose([value, ...Object.values(grads)]);
}

describe.each(BACKENDS)('expert library on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  it('attention expert equals a float64 reference, and samples do not see each other', async () => {
    const [B, N, C] = [2, 6, 16];
    const expert = new AttentionExpert(C, 24, makeRng(1));
    expect(expert.heads).toBe(2);
    // Rows of both samples, interleaved, as a dispatcher would hand them over.
    const rows = Int32Array.from([7, 1, 3, 11, 0, 9, 4, 6]);
    const ctx: ExpertContext = { batch: B, tokens: N, rows };
    const sample = Array.from(rows, (r) => Math.floor(r / N));
    const { x, host } = rowsOf(rows.length, C, 2);
    // LayerNorm gains and biases away from 1 and 0, so that they matter.
    for (const ln of [expert.norm1, expert.norm2]) {
      ln.gain.assign(tf.tensor1d(normals(C, 3, 0.3).map((v) => 1 + v)));
      ln.bias.assign(tf.tensor1d(normals(C, 4, 0.3)));
    }
    const wt = await weightsOf(expert);
    const y = expert.apply(x, ctx);
    const got = await y.data();
    expect(maxAbsDiff(got, attentionRef(host, sample, wt, 2).data)).toBeLessThan(2e-5);
    // Without a context every row is one sample.
    const y1 = expert.apply(x);
    expect(maxAbsDiff(await y1.data(), attentionRef(host, new Array(rows.length).fill(0), wt, 2).data)).toBeLessThan(2e-5);

    // Perturbing the rows of sample 1 leaves every row of sample 0 exactly as it was.
    const moved = Float32Array.from(host.data as Float32Array);
    const noise = normals(moved.length, 5, 2);
    sample.forEach((b, i) => {
      if (b === 1) for (let ch = 0; ch < C; ch++) moved[i * C + ch] = moved[i * C + ch]! + noise[i * C + ch]!;
    });
    const x2 = tf.tensor2d(moved, [rows.length, C]);
    const y2 = await expert.apply(x2, ctx).data();
    sample.forEach((b, i) => {
      const diff = maxAbsDiff(got.subarray(i * C, (i + 1) * C), y2.subarray(i * C, (i + 1) * C));
      if (b === 0) expect(diff, `row ${i}`).toBe(0);
      else expect(diff, `row ${i}`).toBeGreaterThan(1e-3);
    });

    const probe = tf.tensor2d(normals(rows.length * C, 6), [rows.length, C]);
    await checkGrads(expert, () => tf.tidy(() => tf.sum(tf.mul(expert.apply(x, ctx), probe)) as tf.Scalar), 7);
    await expectNoLeak(() => tf.dispose(expert.apply(x, ctx)), 'attention apply');
    tf.dispose([x, x2, y, y1, probe]);
    expert.dispose();
  });

  it('conv expert equals a float64 reference (scatter, depthwise conv3d, gather, pointwise) and needs a grid', async () => {
    const [B, C] = [2, 8];
    const grid = [2, 3, 4] as const;
    const N = 24;
    const expert = new ConvExpert(C, 12, makeRng(11));
    expect(expert.needsGrid).toBe(true);
    expert.depthwiseBias.assign(tf.tensor1d(normals(C, 12, 0.5)));
    const rows = distinct(B * N, 29, 13); // some of both samples' tokens, unsorted
    const ctx: ExpertContext = { batch: B, tokens: N, grid, rows };
    const { x, host } = rowsOf(rows.length, C, 14);
    const wt = await weightsOf(expert);
    const y = expert.apply(x, ctx);
    expect(maxAbsDiff(await y.data(), convRef(host, rows, B, grid, wt).data)).toBeLessThan(1e-5);
    // Every token routed here (dense layout, rows = the whole grid).
    const all = Int32Array.from({ length: B * N }, (_, i) => i);
    const full = rowsOf(B * N, C, 15);
    const yAll = expert.apply(full.x, { ...ctx, rows: all });
    expect(maxAbsDiff(await yAll.data(), convRef(full.host, all, B, grid, wt).data)).toBeLessThan(1e-5);

    const namesGrid = expect.objectContaining({ name: 'GoeInputError', input: 'grid' });
    expect(() => expert.apply(x)).toThrow(namesGrid);
    expect(() => expert.apply(x, { batch: B, tokens: N, rows })).toThrow(namesGrid);
    expect(() => expert.apply(x, { ...ctx, grid: [2, 3, 3] })).toThrow(namesGrid);

    const probe = tf.tensor2d(normals(rows.length * C, 16), [rows.length, C]);
    await checkGrads(expert, () => tf.tidy(() => tf.sum(tf.mul(expert.apply(x, ctx), probe)) as tf.Scalar), 17);
    // And the input gradient (through scatter, convolution and gather) along a random direction.
    const gx = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(expert.apply(xx as tf.Tensor2D, ctx), probe)))(x);
    const dir = normals(x.size, 18);
    const at = async (s: number): Promise<number> => {
      const xs = tf.tensor2d(Float32Array.from(host.data, (v, i) => v + s * 1e-2 * dir[i]!), x.shape);
      const l = tf.tidy(() => tf.sum(tf.mul(expert.apply(xs, ctx), probe)));
      const v = (await l.data())[0]!;
      tf.dispose([xs, l]);
      return v;
    };
    const numeric = ((await at(1)) - (await at(-1))) / 2e-2;
    const analytic = Array.from(await gx.data()).reduce((s, g, i) => s + g * dir[i]!, 0);
    expect(Math.abs(numeric - analytic)).toBeLessThan(2e-2 * Math.abs(analytic));
    await expectNoLeak(() => tf.dispose(expert.apply(x, ctx)), 'conv apply');
    tf.dispose([x, y, full.x, yAll, probe, gx]);
    expert.dispose();
  });

  it('depthwise conv: host loops and device slices agree in values and in both gradients', async () => {
    const [B, C] = [2, 5];
    const grid = [3, 2, 4] as const;
    const R = B * 24;
    const x = tf.tensor2d(normals(R * C, 71), [R, C]);
    const wt = tf.tensor2d(normals(27 * C, 72), [27, C]);
    const probe = tf.tensor2d(normals(R * C, 73), [R, C]);
    const run = (method: 'host' | 'slices') =>
      tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(depthwiseConv3dRows(xx as tf.Tensor2D, ww as tf.Tensor2D, B, grid, method), probe)))([x, wt]);
    const [host, slices] = [run('host'), run('slices')];
    for (let i = 0; i < 2; i++) {
      const h = await host[i]!.data();
      expect(Array.from(h).some((v) => v !== 0)).toBe(true);
      expect(maxAbsDiff(h, await slices[i]!.data())).toBeLessThan(1e-4);
    }
    const [yh, ys] = (['host', 'slices'] as const).map((m) => depthwiseConv3dRows(x, wt, B, grid, m));
    expect(maxAbsDiff(await yh!.data(), await ys!.data())).toBeLessThan(1e-5);
    tf.dispose([x, wt, probe, ...host, ...slices, yh!, ys!]);
  });

  it('exact and dense dispatch agree for a mixed library (values and gradients)', async () => {
    const [B, N, DE, S] = [2, 12, 8, 2];
    const R = B * N;
    const layout = { batch: B, tokens: N, grid: [1, 3, 4] as const };
    const rng = makeRng(21);
    const experts: Expert[] = [new AttentionExpert(DE, 12, rng), new ConvExpert(DE, 12, rng), new SwiGluExpert(DE, 12, rng), new ConvExpert(DE, 12, rng)];
    const M = experts.length;
    const ids = new Int32Array(R * S);
    for (let i = 0; i < R; i++) {
      const halted = rng.next() < 0.2;
      const first = rng.int(M);
      ids[i * S] = halted ? -1 : first;
      ids[i * S + 1] = halted ? -1 : (first + 1 + rng.int(M - 1)) % M;
    }
    const idsT = tf.tensor2d(ids, [R, S], 'int32');
    const x = tf.tensor2d(normals(R * DE, 22), [R, DE]);
    const probes = Array.from({ length: S }, (_, j) => tf.tensor2d(normals(R * DE, 23 + j), [R, DE]));
    const vars = experts.flatMap((e) => e.trainableVariables());
    const loss = (mode: 'exact' | 'dense', xx: tf.Tensor2D): tf.Scalar => {
      const outs = mode === 'exact' ? dispatchExact(experts, xx, idsT, layout).out : dispatchDense(experts, xx, idsT, layout);
      return tf.addN(outs.map((o, j) => tf.sum(tf.mul(o, probes[j]!)))) as tf.Scalar;
    };
    const ex = tf.variableGrads(() => loss('exact', x), vars);
    const de = tf.variableGrads(() => loss('dense', x), vars);
    const [ve, vd] = [(await ex.value.data())[0]!, (await de.value.data())[0]!];
    expect(Math.abs(ve - vd)).toBeLessThan(1e-4 * Math.max(1, Math.abs(ve)));
    for (const v of vars) expect(maxAbsDiff(await ex.grads[v.name]!.data(), await de.grads[v.name]!.data()), v.name).toBeLessThan(1e-4);
    const [gxe, gxd] = (['exact', 'dense'] as const).map((mode) => tf.grad((xx: tf.Tensor) => loss(mode, xx as tf.Tensor2D))(x));
    expect(maxAbsDiff(await gxe!.data(), await gxd!.data())).toBeLessThan(1e-4);
    tf.dispose([idsT, x, ...probes, ex.value, de.value, ...Object.values(ex.grads), ...Object.values(de.grads), gxe!, gxd!]);
    experts.forEach((e) => e.dispose());
  });

  it('a heterogeneous library builds its kinds round robin; a GoeLayer with it trains with gradients for every expert used, without leaks', async () => {
    const [B, N, D, DA] = [2, 12, 8, 4];
    const grid = [2, 2, 3];
    const cfg: GoeConfigInput = { d: D, da: DA, experts: 5, k: 2, cycles: 2, expertDim: 8, expertHidden: 12, haltEps: 0, expert: ' mlp, attention ,conv' };
    const c = resolveGoeConfig(cfg);
    expect(c.expert).toBe('mlp,attention,conv');
    for (const expert of ['mlp,nope', 'mlp,', '']) {
      expect(() => resolveGoeConfig({ expert })).toThrow(expect.objectContaining({ name: 'GoeConfigError', field: 'expert' }));
    }
    const layer = new GoeLayer(c, makeRng(31));
    expect(layer.experts.map((e) => e.constructor)).toEqual([SwiGluExpert, AttentionExpert, ConvExpert, SwiGluExpert, AttentionExpert]);
    const tokens = tf.tensor3d(normals(B * N * D, 32), [B, N, D]);
    const aux = tf.tensor3d(normals(B * N * DA, 33), [B, N, DA]);
    const namesGrid = expect.objectContaining({ name: 'GoeInputError', input: 'grid' });
    expect(() => layer.apply({ tokens, aux })).toThrow(namesGrid);
    expect(() => layer.apply({ tokens, aux, grid: [2, 2, 2] })).toThrow(namesGrid);
    expect(() => layer.apply({ tokens, aux, grid: [12] })).toThrow(namesGrid);

    // Exact and dense dispatch of the whole layer agree.
    const dense = new GoeLayer(resolveGoeConfig({ ...cfg, dispatch: 'dense' }), makeRng(1));
    copyWeights(layer, dense);
    const o1 = layer.apply({ tokens, aux, grid });
    const o2 = dense.apply({ tokens, aux, grid });
    expect(maxAbsDiff(await o1.tokens.data(), await o2.tokens.data())).toBeLessThan(1e-4);
    const used = new Set(Array.from(await o1.provenance.experts.data()).filter((e) => e >= 0));
    [o1, o2].forEach(disposeGoeOutput);
    dense.dispose();

    const target = tf.tensor3d(normals(B * N * D, 34), [B, N, D]);
    const loss = (): tf.Scalar => {
      const out = layer.apply({ tokens, aux, grid }, { training: true });
      return tf.add(tf.mean(tf.square(tf.sub(out.tokens, target))), out.losses.total) as tf.Scalar;
    };
    const named = [...layer.variables().entries()].filter(([n, v]) => v.trainable && n.startsWith('experts.'));
    const { value, grads } = tf.variableGrads(loss, named.map(([, v]) => v));
    for (const [name, v] of named) {
      const m = Number(name.split('.')[1]);
      const g = grads[v.name];
      if (!used.has(m)) {
        expect(g === undefined || (await g.data()).every((x) => x === 0), name).toBe(true);
        continue;
      }
      const norm = Math.sqrt(Array.from(await g!.data()).reduce((s, x) => s + x * x, 0));
      expect(Number.isFinite(norm) && norm > 0, name).toBe(true);
    }
    expect([1, 2].every((m) => used.has(m))).toBe(true); // the attention and conv experts were exercised
    tf.dispose([value, ...Object.values(grads)]);

    await expectNoLeak(() => disposeGoeOutput(layer.apply({ tokens, aux, grid }, { training: true })), 'apply');
    const adam = new Adam();
    adamStep(layer, adam, loss, 1e-3); // Adam creates its moment tensors on the first step
    await expectNoLeak(() => adamStep(layer, adam, loss, 1e-3), 'train step');
    adam.dispose();
    tf.dispose([tokens, aux, target]);
    layer.dispose();
  });

  it('slot messages equal a float64 reference of the pooled form', async () => {
    // Unit level: two slots per cycle, some unused (−1), one expert visited by no token of sample 0.
    const [B, N, M, DE] = [2, 4, 3, 5];
    const R = B * N;
    const idsPrev = Int32Array.from([0, 1, 1, 0, -1, -1, 0, 1, 2, 0, 1, 2, -1, -1, 2, 1]);
    const idsCur = Int32Array.from([2, 0, 1, 2, 0, 1, -1, -1, 1, 0, 2, 0, 0, 1, 1, 2]);
    const hPrev = [0, 1].map((l) => tf.tensor2d(normals(R * DE, 40 + l), [R, DE]));
    const hHost = await Promise.all(hPrev.map((h) => h.data()));
    const adj = tf.softmax(tf.tensor2d(normals(M * M, 42, 1.5), [M, M])) as tf.Tensor2D;
    const aHost = await adj.data();
    const wc = new Linear(DE, DE, makeRng(43), { bias: false });
    const wcHost = { data: await wc.w.data(), shape: wc.w.shape };
    const ip = tf.tensor2d(idsPrev, [R, 2], 'int32');
    const ic = tf.tensor2d(idsCur, [R, 2], 'int32');
    const got = slotMessages(hPrev, ip, ic, adj, wc, B);
    for (let j = 0; j < 2; j++) {
      const ref = new Float64Array(R * DE);
      for (let i = 0; i < R; i++) {
        const m = idsCur[i * 2 + j]!;
        if (m < 0) continue;
        const b = Math.floor(i / N);
        for (let n = 0; n < M; n++) {
          // pool_{b,n}: mean of h^{k−1}[l][i'] over tokens i' of sample b and slots l with prev[i', l] = n.
          const pool = new Float64Array(DE);
          let count = 0;
          for (let i2 = b * N; i2 < (b + 1) * N; i2++) {
            for (let l = 0; l < 2; l++) {
              if (idsPrev[i2 * 2 + l] !== n) continue;
              count++;
              for (let c = 0; c < DE; c++) pool[c] = pool[c]! + hHost[l]![i2 * DE + c]!;
            }
          }
          if (count === 0) continue;
          const wcPool = refMatMul({ data: pool.map((v) => v / count), shape: [1, DE] }, wcHost).data;
          for (let c = 0; c < DE; c++) ref[i * DE + c] = ref[i * DE + c]! + aHost[n * M + m]! * wcPool[c]!;
        }
      }
      expect(maxAbsDiff(await got[j]!.data(), ref), `slot ${j}`).toBeLessThan(1e-5);
    }
    tf.dispose([...hPrev, adj, ip, ic, ...got]);
    wc.dispose();
  });

  it('a layer in slot mode equals the float64 reference (B=2, N=3, M=3, k=1, K=2); token mode is unchanged', async () => {
    const [B, N, D, DA, M] = [2, 3, 6, 2, 3];
    const R = B * N;
    const cfg: GoeConfigInput = { d: D, da: DA, experts: M, k: 1, cycles: 2, expertDim: 4, expertHidden: 6, haltEps: 0, graphGamma: 0.5 };
    const slot = new GoeLayer(resolveGoeConfig({ ...cfg, messageMode: 'slot' }), makeRng(51));
    const token = new GoeLayer(resolveGoeConfig(cfg), makeRng(52));
    slot.graph.variables().get('theta')!.assign(tf.tensor2d(normals(M * M, 53, 1.5), [M, M]));
    copyWeights(slot, token);
    const t = normals(R * D, 54);
    const a = normals(R * DA, 55);
    const tokens = tf.tensor3d(t, [B, N, D]);
    const aux = tf.tensor3d(a, [B, N, DA]);
    const wts = await hostWeights(slot);
    // Token mode: reference.ts, the float64 reference of DESIGN.md §4.
    const ref = goeReference(token.config, wts, t, a, R);
    expect(ref.minSelectionMargin).toBeGreaterThan(1e-4);
    const oTok = token.apply({ tokens, aux });
    expect(maxAbsDiff(await oTok.tokens.data(), ref.tokens)).toBeLessThan(1e-5);
    // Slot mode routes exactly as token mode (cycle 1 routing reads t after cycle 0 and q^0 only) and
    // differs only in the message: t_slot = t_token + g · W_o (msg_slot − msg_token), per token.
    const aff = (x: ArrayLike<number>, name: string, bias?: string): Float64Array =>
      dense({ data: x, shape: [1, x.length] }, w(wts, name), bias ? w(wts, bias) : undefined).data;
    const theta = w(wts, 'graph.theta').data;
    const adj = Array.from({ length: M }, (_, n) => {
      const row = Array.from({ length: M }, (_, m) => Math.exp(theta[n * M + m]!));
      const z = row.reduce((p, q) => p + q, 0);
      return row.map((v) => v / z);
    });
    const m0 = ref.ids[0]!.map((s) => s[0]!);
    const m1 = ref.ids[1]!.map((s) => s[0]!);
    // Cycle 0 expert states h0_i = f_{m0_i}(W_p [t_i; a_i]) (gate 1 with k = 1).
    const h0 = Array.from({ length: R }, (_, i) => {
      const r = [...t.subarray(i * D, (i + 1) * D), ...a.subarray(i * DA, (i + 1) * DA)];
      const e = m0[i]!;
      return swigluReference(aff(r, 'wp.w', 'wp.b'), w(wts, `experts.${e}.w1`), w(wts, `experts.${e}.w3`), w(wts, `experts.${e}.w2`));
    });
    const expected = Float64Array.from(ref.tokens);
    for (let i = 0; i < R; i++) {
      const b = Math.floor(i / N);
      const msgTok = aff(h0[i]!, 'wc.w').map((v) => adj[m0[i]!]![m1[i]!]! * v);
      const msgSlot = new Float64Array(4);
      for (let n = 0; n < M; n++) {
        const members = Array.from({ length: N }, (_, q) => b * N + q).filter((q) => m0[q] === n);
        if (members.length === 0) continue;
        const pool = new Float64Array(4).map((_, c) => members.reduce((s, q) => s + h0[q]![c]!, 0) / members.length);
        aff(pool, 'wc.w').forEach((v, c) => (msgSlot[c] = msgSlot[c]! + adj[n]![m1[i]!]! * v));
      }
      const delta = aff(msgSlot.map((v, c) => ref.gates[1]![i]![0]! * (v - msgTok[c]!)), 'wo.w');
      for (let c = 0; c < D; c++) expected[i * D + c] = expected[i * D + c]! + delta[c]!;
    }
    const oSlot = slot.apply({ tokens, aux });
    const gotSlot = await oSlot.tokens.data();
    expect(maxAbsDiff(gotSlot, expected)).toBeLessThan(1e-5);
    expect(Array.from(await oSlot.provenance.experts.data())).toEqual(ref.ids.flat(2));
    expect(maxAbsDiff(gotSlot, ref.tokens)).toBeGreaterThan(1e-3); // the message form matters here
    // The slot message carries gradient to W_c, Θ and the experts.
    const vars = [slot.wc!.w, slot.graph.variables().get('theta')!];
    const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(slot.apply({ tokens, aux }).tokens)) as tf.Scalar, vars);
    for (const v of vars) {
      const g = Array.from(await grads[v.name]!.data());
      expect(g.every(Number.isFinite) && g.some((x) => x !== 0), v.name).toBe(true);
    }
    await expectNoLeak(() => disposeGoeOutput(slot.apply({ tokens, aux })), 'slot apply');
    [oTok, oSlot].forEach(disposeGoeOutput);
    tf.dispose([tokens, aux, value, ...Object.values(grads)]);
    [slot, token].forEach((l) => l.dispose());
  });
});

// WebGPU in Node dispatches densely (no synchronous read-back): the structured experts then see every
// row with `ctx.routed`, and must still compute what the cpu backend computes (lavapipe: one small case).
describe.runIf((await backendsUnderTest()).includes('webgpu'))('expert library on webgpu', () => {
  it('a mixed library layer (auto = dense dispatch) matches the cpu backend, slot messages included, and trains', async () => {
    const [B, N, D, DA] = [2, 6, 8, 4];
    const grid = [1, 2, 3];
    const cfg = resolveGoeConfig({ d: D, da: DA, experts: 3, k: 2, cycles: 2, expertDim: 8, expertHidden: 12, haltEps: 0, expert: 'attention,conv,mlp', messageMode: 'slot' });
    const t = normals(B * N * D, 61);
    const a = normals(B * N * DA, 62);
    const run = async (backend: BackendName): Promise<{ out: Float32Array; ids: Int32Array }> => {
      await useBackend(backend);
      const layer = new GoeLayer(cfg, makeRng(63));
      const tokens = tf.tensor3d(t, [B, N, D]);
      const aux = tf.tensor3d(a, [B, N, DA]);
      const o = layer.apply({ tokens, aux, grid });
      const res = { out: (await o.tokens.data()) as Float32Array, ids: (await o.provenance.experts.data()) as Int32Array };
      disposeGoeOutput(o);
      if (backend === 'webgpu') {
        const vars = layer.trainableVariables().filter((v) => v !== layer.halt.w && v !== layer.halt.b);
        const { value, grads } = tf.variableGrads(() => tf.sum(tf.square(layer.apply({ tokens, aux, grid }).tokens)) as tf.Scalar, vars);
        for (const v of vars) {
          const g = grads[v.name];
          if (g) expect(Array.from(await g.data()).every(Number.isFinite), v.name).toBe(true);
        }
        tf.dispose([value, ...Object.values(grads)]);
      }
      tf.dispose([tokens, aux]);
      layer.dispose();
      return res;
    };
    const cpu = await run('cpu');
    const gpu = await run('webgpu');
    expect(Array.from(gpu.ids)).toEqual(Array.from(cpu.ids));
    expect(maxAbsDiff(gpu.out, cpu.out)).toBeLessThan(1e-4);
    await useBackend('cpu');
  });
});
