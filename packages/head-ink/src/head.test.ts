import { describe, expect, it } from 'vitest';
import { backendsUnderTest, expectNoLeak, makeRng, tf, useBackend } from '@goe/tf';
import { InkHead, InkInputError, inkLoss, resolveInkHeadConfig, type InkHeadConfigInput, type TokenGrid } from './index.js';

const clamp = (v: number, n: number): number => Math.min(n - 1, Math.max(0, v));

async function f64(t: tf.Tensor): Promise<Float64Array> {
  return Float64Array.from(await t.data());
}

/** The head from the definitions in float64: LN, Linear to cell logits, cell -> voxel, 3-tap filters z, y, x. */
async function headRef(head: InkHead, tokens: Float32Array, B: number, grid: TokenGrid): Promise<Float64Array> {
  const { d } = head.config;
  const [gd, gh, gw] = grid.dims;
  const [cz, cy, cx] = grid.cell;
  const [D, H, W] = grid.inputShape;
  const N = gd * gh * gw;
  const cv = cz * cy * cx;
  const w = await f64(head.toCell.w);
  const b = await f64(head.toCell.b!);
  const g = head.norm ? await f64(head.norm.gain) : undefined;
  const beta = head.norm ? await f64(head.norm.bias) : undefined;
  const vol = new Float64Array(B * D * H * W);
  for (let bb = 0; bb < B; bb++)
    for (let t = 0; t < N; t++) {
      let row = Float64Array.from(tokens.subarray((bb * N + t) * d, (bb * N + t + 1) * d));
      if (g && beta) {
        const mean = row.reduce((s, v) => s + v, 0) / d;
        const vr = row.reduce((s, v) => s + (v - mean) ** 2, 0) / d;
        row = row.map((v, i) => ((v - mean) / Math.sqrt(vr + 1e-5)) * g[i]! + beta[i]!);
      }
      const tz = Math.floor(t / (gh * gw));
      const ty = Math.floor(t / gw) % gh;
      const tx = t % gw;
      for (let k = 0; k < cv; k++) {
        let s = b[k]!;
        for (let i = 0; i < d; i++) s += row[i]! * w[i * cv + k]!;
        const z = tz * cz + Math.floor(k / (cy * cx));
        const y = ty * cy + (Math.floor(k / cx) % cy);
        const x = tx * cx + (k % cx);
        vol[((bb * D + z) * H + y) * W + x] = s;
      }
    }
  if (!head.smoothing) return vol;
  const taps = await f64(head.smoothing.taps); // rows z, y, x
  const idx = (bb: number, z: number, y: number, x: number) => ((bb * D + z) * H + y) * W + x;
  let cur = vol;
  for (const axis of [2, 1, 0]) {
    const t = taps.subarray(axis * 3, axis * 3 + 3);
    const next = new Float64Array(cur.length);
    for (let bb = 0; bb < B; bb++)
      for (let z = 0; z < D; z++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            const at = (o: number): number =>
              axis === 0
                ? cur[idx(bb, clamp(z + o, D), y, x)]!
                : axis === 1
                  ? cur[idx(bb, z, clamp(y + o, H), x)]!
                  : cur[idx(bb, z, y, clamp(x + o, W))]!;
            next[idx(bb, z, y, x)] = t[0]! * at(-1) + t[1]! * at(0) + t[2]! * at(1);
          }
    cur = next;
  }
  return cur;
}

function gridOf(inputShape: [number, number, number], cell: [number, number, number]): TokenGrid {
  return { dims: [inputShape[0] / cell[0], inputShape[1] / cell[1], inputShape[2] / cell[2]], cell, inputShape };
}

describe('InkHead', () => {
  const cases: Array<{ name: string; cfg: InkHeadConfigInput; grid: TokenGrid }> = [
    { name: 'default (LN, linear, smoothing)', cfg: { d: 8, cell: [2, 2, 4] }, grid: gridOf([4, 6, 8], [2, 2, 4]) },
    { name: 'no norm, no smoothing', cfg: { d: 6, cell: 2, norm: false, smoothing: false }, grid: gridOf([4, 4, 6], [2, 2, 2]) },
  ];
  for (const { name, cfg, grid } of cases) {
    it(`${name}: logits [B, D, H, W] equal a float64 reference on every backend`, async () => {
      await useBackend('cpu');
      const B = 2;
      const N = grid.dims[0] * grid.dims[1] * grid.dims[2];
      const rng = makeRng(2);
      const d = cfg.d!;
      const tokens = Float32Array.from({ length: B * N * d }, () => rng.normal());
      const refHead = new InkHead(resolveInkHeadConfig(cfg), makeRng(4));
      // Non-trivial smoothing taps, so the reference checks the filter rather than the identity.
      refHead.smoothing?.taps.assign(tf.tensor2d([0.2, 0.7, 0.1, 0.3, 0.5, 0.25, 0.15, 0.6, 0.3], [3, 3]));
      const taps = refHead.smoothing ? await refHead.smoothing.taps.data() : undefined;
      const ref = await headRef(refHead, tokens, B, grid);
      refHead.dispose();
      for (const backend of await backendsUnderTest()) {
        await useBackend(backend);
        const head = new InkHead(resolveInkHeadConfig(cfg), makeRng(4));
        if (taps) head.smoothing!.taps.assign(tf.tensor2d(taps, [3, 3]));
        await expectNoLeak(async () => {
          const t = tf.tensor3d(tokens, [B, N, d]);
          const out = head.apply(t, grid);
          expect(out.shape).toEqual([B, ...grid.inputShape]);
          const got = await out.data();
          let err = 0;
          for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(got[i]! - ref[i]!));
          expect(err, backend).toBeLessThan(1e-4);
          tf.dispose([t, out]);
        }, `ink head on ${backend}`);
        head.dispose();
      }
    });
  }

  it('every variable gets a finite, non-zero gradient; no leaks across training steps; the loss falls', async () => {
    await useBackend('wasm');
    const grid = gridOf([8, 16, 16], [4, 4, 4]);
    const B = 2;
    const N = 2 * 4 * 4;
    const d = 16;
    const head = new InkHead(resolveInkHeadConfig({ d, hidden: 16 }), makeRng(5));
    const rng = makeRng(6);
    const tokens = tf.tensor3d(Float32Array.from({ length: B * N * d }, () => rng.normal()), [B, N, d]);
    // Synthetic target: ink where a fixed random direction of the token features is positive, blurred
    // to voxel level by a smooth within-cell pattern (learnable from the tokens, not trivially).
    const dir = Float32Array.from({ length: d }, () => rng.normal());
    const tok = await tokens.data();
    const [D, H, W] = grid.inputShape;
    const target = new Float32Array(B * D * H * W);
    for (let b = 0; b < B; b++)
      for (let z = 0; z < D; z++)
        for (let y = 0; y < H; y++)
          for (let x = 0; x < W; x++) {
            const t = (Math.floor(z / 4) * 4 + Math.floor(y / 4)) * 4 + Math.floor(x / 4);
            let s = 0;
            for (let i = 0; i < d; i++) s += tok[(b * N + t) * d + i]! * dir[i]!;
            target[((b * D + z) * H + y) * W + x] = s + 0.5 * Math.sin(x + y) > 0 ? 1 : 0;
          }
    const y = tf.tensor4d(target, [B, D, H, W]);
    const lossFn = (): tf.Scalar => tf.tidy(() => inkLoss(head.apply(tokens, grid), y).total);

    const { value, grads } = tf.variableGrads(lossFn);
    for (const [path, v] of head.variables()) {
      const g = await grads[v.name]!.data();
      expect(g.every(Number.isFinite), path).toBe(true);
      expect(g.some((e) => e !== 0), path).toBe(true);
    }
    tf.dispose([value, ...Object.values(grads)]);

    const opt = tf.train.adam(1e-2);
    const first = (await lossFn().data())[0]!;
    const step = (): void => {
      const cost = opt.minimize(lossFn, true);
      cost?.dispose();
    };
    step(); // Adam creates its state on the first step.
    const before = tf.memory().numTensors;
    for (let i = 0; i < 59; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    const l = lossFn();
    const last = (await l.data())[0]!;
    l.dispose();
    expect(last).toBeLessThan(0.6 * first);
    opt.dispose();
    tf.dispose([tokens, y]);
    head.dispose();
  });

  it('rejects a grid whose cell differs from the head and tokens that do not fit the grid', async () => {
    await useBackend('cpu');
    const head = new InkHead(resolveInkHeadConfig({ d: 4 }), makeRng(1));
    const t = tf.zeros([1, 8, 4]) as tf.Tensor3D;
    expect(() => head.apply(t, gridOf([8, 8, 8], [4, 4, 4]))).not.toThrow();
    expect(() => head.apply(t, gridOf([4, 8, 16], [2, 4, 8]))).toThrow(InkInputError);
    expect(() => head.apply(t, gridOf([8, 8, 16], [4, 4, 4]))).toThrow(/tokens/);
    tf.dispose(t);
    head.dispose();
  });
});
