import { describe, expect, it } from 'vitest';
import { backendsUnderTest, expectNoLeak, makeRng, tf, useBackend } from '@goe/tf';
import {
  VolumeStem,
  VolumeStemInputError,
  resolveVolumeStemConfig,
  sinusoidalPositions3d,
  type VolumeStemConfigInput,
} from './index.js';
import { activationRef, clamp, expectStemGradients, maxRelErr, randomVolume, values } from './test-helpers.js';



/**
 * Tokens of the stem from the definitions, in float64: replicate-padded 3x3x3 conv, GELU, cell
 * features in (dz, dy, dx, c) order, one Linear, plus positions.
 */
async function hostTokens(stem: VolumeStem, vol: Float32Array, shape: [number, number, number, number]): Promise<Float64Array> {
  const [B, D, H, W] = shape;
  const { cell, d, convChannels: C } = stem.config;
  const [cz, cy, cx] = cell;
  const [gd, gh, gw] = [D / cz, H / cy, W / cx];
  const N = gd * gh * gw;
  const cv = cz * cy * cx;
  const at = (b: number, z: number, y: number, x: number): number =>
    vol[((b * D + clamp(z, D)) * H + clamp(y, H)) * W + clamp(x, W)] as number;
  const cw = stem.conv ? await values(stem.conv.w) : undefined; // [3,3,3,1,C]
  const cb = stem.conv ? await values(stem.conv.b) : undefined;
  const ew = await values(stem.embed.w); // [cv*C', d]
  const eb = await values(stem.embed.b!);
  const Cf = Math.max(C, 1);
  const feat = (b: number, z: number, y: number, x: number, c: number): number => {
    if (!cw || !cb) return at(b, z, y, x);
    let s = cb[c]!;
    for (let a = 0; a < 3; a++)
      for (let e = 0; e < 3; e++)
        for (let f = 0; f < 3; f++) s += at(b, z + a - 1, y + e - 1, x + f - 1) * cw[((a * 3 + e) * 3 + f) * C + c]!;
    return activationRef(s, stem.config.activation);
  };
  const pos =
    stem.config.positional === 'sinusoidal'
      ? sinusoidalPositions3d({ dims: [gd, gh, gw], cell, inputShape: [D, H, W] }, B, stem.config)
      : new Float32Array(B * N * d);
  const out = new Float64Array(B * N * d);
  for (let b = 0; b < B; b++)
    for (let tz = 0; tz < gd; tz++)
      for (let ty = 0; ty < gh; ty++)
        for (let tx = 0; tx < gw; tx++) {
          const t = (tz * gh + ty) * gw + tx;
          const row = new Float64Array(cv * Cf);
          let k = 0;
          for (let z = 0; z < cz; z++)
            for (let y = 0; y < cy; y++)
              for (let x = 0; x < cx; x++)
                for (let c = 0; c < Cf; c++) row[k++] = feat(b, tz * cz + z, ty * cy + y, tx * cx + x, c);
          for (let j = 0; j < d; j++) {
            let s = eb[j]! + pos[(b * N + t) * d + j]!;
            for (let i = 0; i < row.length; i++) s += row[i]! * ew[i * d + j]!;
            out[(b * N + t) * d + j] = s;
          }
        }
  return out;
}

describe('VolumeStem', () => {
  const cases: Array<{ name: string; cfg: VolumeStemConfigInput; shape: [number, number, number, number] }> = [
    { name: 'conv + silu, cubic cells', cfg: { d: 24, da: 5, cell: 4, convChannels: 3 }, shape: [2, 8, 8, 8] },
    { name: 'conv + gelu', cfg: { d: 12, da: 2, cell: 4, convChannels: 2, activation: 'gelu' }, shape: [1, 4, 8, 8] },
    {
      name: 'no conv, anisotropic cells, no positions',
      cfg: { d: 8, da: 3, cell: [2, 4, 8], convChannels: 0, positional: 'none', orientationDescriptors: false },
      shape: [1, 4, 8, 16],
    },
    { name: 'conv + relu, level 2', cfg: { d: 12, da: 4, cell: [2, 2, 4], convChannels: 2, activation: 'relu', pyramidLevel: 2 }, shape: [1, 4, 4, 8] },
  ];

  for (const { name, cfg, shape } of cases) {
    it(`${name}: tokens equal a float64 reference on every backend, shapes and grid`, async () => {
      await useBackend('cpu');
      const refStem = new VolumeStem(resolveVolumeStemConfig(cfg), makeRng(1));
      const vol = randomVolume(shape, 4);
      const ref = await hostTokens(refStem, vol, shape);
      refStem.dispose();
      const [B, D, H, W] = shape;
      for (const backend of await backendsUnderTest()) {
        await useBackend(backend);
        // Built per backend from the same seed: host-initialised weights are the same everywhere
        // (and WebGPU tensors cannot move to another backend synchronously).
        const stem = new VolumeStem(resolveVolumeStemConfig(cfg), makeRng(1));
        const [cz, cy, cx] = stem.config.cell;
        const N = (D / cz) * (H / cy) * (W / cx);
        await expectNoLeak(async () => {
          const x = tf.tensor5d(vol, [B, D, H, W, 1]);
          const out = stem.apply(x, { withDescriptors: true, withPositions: true });
          expect(out.tokens.shape).toEqual([B, N, stem.config.d]);
          expect(out.aux.shape).toEqual([B, N, stem.config.da]);
          expect(out.descriptors!.shape).toEqual([B, N, stem.descriptorCount]);
          expect(out.positions!.shape).toEqual([B, N, stem.config.d]);
          expect(out.grid).toEqual({ dims: [D / cz, H / cy, W / cx], cell: [cz, cy, cx], inputShape: [D, H, W] });
          expect(maxRelErr(await out.tokens.data(), ref), backend).toBeLessThan(2e-5);
          // aux = Linear(LayerNorm(descriptors)) — checked from the returned descriptors.
          const desc = await values(out.descriptors!);
          const nd = stem.descriptorCount;
          const [g, bb, w, b] = await Promise.all(
            [stem.auxNorm.gain, stem.auxNorm.bias, stem.auxProj.w, stem.auxProj.b!].map(values),
          );
          const da = stem.config.da;
          const auxRef = new Float64Array(B * N * da);
          for (let r = 0; r < B * N; r++) {
            const row = desc.subarray(r * nd, (r + 1) * nd);
            const mean = row.reduce((s, v) => s + v, 0) / nd;
            const vr = row.reduce((s, v) => s + (v - mean) ** 2, 0) / nd;
            const ln = Array.from(row, (v, i) => ((v - mean) / Math.sqrt(vr + 1e-5)) * g![i]! + bb![i]!);
            for (let j = 0; j < da; j++) auxRef[r * da + j] = ln.reduce((s, v, i) => s + v * w![i * da + j]!, b![j]!);
          }
          expect(maxRelErr(await out.aux.data(), auxRef), backend).toBeLessThan(1e-4);
          tf.dispose([x, out.tokens, out.aux, out.descriptors!, out.positions!]);
        }, `stem on ${backend}`);
        stem.dispose();
      }
    });
  }

  it('every variable gets a finite, non-zero gradient; a conv weight matches a finite difference; no leaks', async () => {
    await useBackend('cpu');
    const stem = new VolumeStem(resolveVolumeStemConfig({ d: 16, da: 4, cell: 4, convChannels: 3 }), makeRng(7));
    const shape: [number, number, number, number] = [2, 8, 8, 8];
    const x = tf.tensor5d(randomVolume(shape, 9), [...shape, 1]);
    const rng = makeRng(8);
    // Directional finite difference on the conv filter (the reordered taps and the patchify sit in between).
    await expectStemGradients(stem, x, rng, [stem.conv!.w]);
    x.dispose();
    stem.dispose();
  });

  it('the same seed gives the same weights; bad inputs raise typed errors', async () => {
    await useBackend('cpu');
    const a = new VolumeStem(resolveVolumeStemConfig({ d: 12 }), makeRng(3));
    const b = new VolumeStem(resolveVolumeStemConfig({ d: 12 }), makeRng(3));
    for (const [k, v] of a.variables()) expect(Array.from(await v.data()), k).toEqual(Array.from(await b.variables().get(k)!.data()));
    const bad = [tf.zeros([1, 8, 8, 6, 1]), tf.zeros([1, 8, 8, 8, 2]), tf.zeros([8, 8, 8, 1])];
    for (const x of bad) expect(() => a.apply(x as tf.Tensor5D)).toThrow(VolumeStemInputError);
    const x = tf.zeros([2, 8, 8, 8, 1]) as tf.Tensor5D;
    expect(() => a.apply(x, { origin: [[0, 0, 0], [1, 1, 1], [2, 2, 2]] })).toThrow(/origin/);
    tf.dispose([...bad, x]);
    a.dispose();
    b.dispose();
  });
});
