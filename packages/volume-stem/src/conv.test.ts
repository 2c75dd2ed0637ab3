import { describe, expect, it } from 'vitest';
import {
  backendsUnderTest,
  expectNoLeak,
  makeRng,
  refConv3d,
  refLayerNorm,
  tf,
  useBackend,
  type HostTensor,
} from '@goe/tf';
import {
  VolumeStem,
  VolumeStemInputError,
  resolveVolumeStemConfig,
  sinusoidalPositions3d,
  type VolumeStemConfigInput,
} from './index.js';
import { activationRef, clamp, expectStemGradients, maxRelErr, randomVolume, values } from './test-helpers.js';

type Shape4 = [number, number, number, number];

/**
 * φ from its definition in float64: a 3x3x3 first layer over edge-replicated borders sampled at voxels
 * 0, s, 2s, …; every other layer TensorFlow's 'same' conv3d (refConv3d); then bias, LayerNorm over
 * channels (refLayerNorm), activation.
 * @returns `[B, Df, Hf, Wf, C]`
 */
async function hostFeatures(stem: VolumeStem, vol: Float32Array, shape: Shape4): Promise<HostTensor> {
  const [B, D, H, W] = shape;
  let map: HostTensor = { data: Float64Array.from(vol), shape: [B, D, H, W, 1] };
  for (const [i, layer] of stem.convLayers.entries()) {
    const { channels: C, kernel, stride } = layer.spec;
    const w = await values(layer.w);
    const b = await values(layer.b);
    let pre: HostTensor;
    if (i === 0 && kernel.every((k) => k === 3)) {
      const [Do, Ho, Wo] = [D / stride[0], H / stride[1], W / stride[2]];
      const out = new Float64Array(B * Do * Ho * Wo * C);
      const at = (bb: number, z: number, y: number, x: number): number =>
        vol[((bb * D + clamp(z, D)) * H + clamp(y, H)) * W + clamp(x, W)] as number;
      let o = 0;
      for (let bb = 0; bb < B; bb++)
        for (let z = 0; z < Do; z++)
          for (let y = 0; y < Ho; y++)
            for (let x = 0; x < Wo; x++)
              for (let c = 0; c < C; c++) {
                let s = 0;
                for (let a = 0; a < 3; a++)
                  for (let e = 0; e < 3; e++)
                    for (let f = 0; f < 3; f++)
                      s += at(bb, z * stride[0] + a - 1, y * stride[1] + e - 1, x * stride[2] + f - 1) * w[((a * 3 + e) * 3 + f) * C + c]!;
                out[o++] = s;
              }
      pre = { data: out, shape: [B, Do, Ho, Wo, C] };
    } else {
      pre = refConv3d(map, { data: w, shape: [...kernel, layer.inChannels, C] }, stride, 'same');
    }
    const biased = Float64Array.from(pre.data, (v, j) => v + b[j % C]!);
    let normed: HostTensor = { data: biased, shape: pre.shape };
    if (layer.norm) normed = refLayerNorm(normed, await values(layer.norm.gain), await values(layer.norm.bias));
    map = { data: Float64Array.from(normed.data, (v) => activationRef(v, stem.config.activation)), shape: normed.shape };
  }
  return map;
}

/** Tokens from φ's map in float64: cells of `cell` feature voxels in (dz, dy, dx, c) order, W_t, positions. */
async function hostTokens(stem: VolumeStem, vol: Float32Array, shape: Shape4): Promise<Float64Array> {
  const feat = await hostFeatures(stem, vol, shape);
  const [B, Df, Hf, Wf, C] = feat.shape as [number, number, number, number, number];
  const [cz, cy, cx] = stem.config.cell;
  const [gd, gh, gw] = [Df / cz, Hf / cy, Wf / cx];
  const N = gd * gh * gw;
  const d = stem.config.d;
  const ew = await values(stem.embed.w);
  const eb = await values(stem.embed.b!);
  const [, D, H, W] = shape;
  // Positions of tokens that each cover cell × strides input voxels.
  const pos =
    stem.config.positional === 'sinusoidal'
      ? sinusoidalPositions3d({ dims: [gd, gh, gw], cell: [D / gd, H / gh, W / gw], inputShape: [D, H, W] }, B, stem.config)
      : new Float32Array(B * N * d);
  const out = new Float64Array(B * N * d);
  for (let b = 0; b < B; b++)
    for (let t = 0; t < N; t++) {
      const [tz, ty, tx] = [Math.floor(t / (gh * gw)), Math.floor(t / gw) % gh, t % gw];
      const row: number[] = [];
      for (let z = 0; z < cz; z++)
        for (let y = 0; y < cy; y++)
          for (let x = 0; x < cx; x++)
            for (let c = 0; c < C; c++)
              row.push(feat.data[(((b * Df + tz * cz + z) * Hf + ty * cy + y) * Wf + tx * cx + x) * C + c]!);
      for (let j = 0; j < d; j++) {
        let s = eb[j]! + pos[(b * N + t) * d + j]!;
        for (let i = 0; i < row.length; i++) s += row[i]! * ew[i * d + j]!;
        out[(b * N + t) * d + j] = s;
      }
    }
  return out;
}

const cases: Array<{ name: string; cfg: VolumeStemConfigInput; shape: Shape4; gridCell: [number, number, number] }> = [
  {
    name: 'stride-2 first layer on the columns, LayerNorm second layer',
    cfg: { d: 12, da: 3, cell: 2, convLayers: [{ channels: 3, stride: 2 }, { channels: 4, norm: 'layer' }] },
    shape: [2, 8, 8, 8],
    gridCell: [4, 4, 4],
  },
  {
    name: 'LayerNorm first layer, anisotropic stride-2 second layer, gelu',
    cfg: {
      d: 12,
      da: 3,
      cell: [1, 2, 2],
      activation: 'gelu',
      convLayers: [
        { channels: 2, norm: 'layer' },
        { channels: 3, kernel: [1, 3, 3], stride: [1, 2, 2] },
      ],
    },
    shape: [1, 4, 8, 8],
    gridCell: [1, 4, 4],
  },
  {
    name: 'a 1x1x1 first layer (off the columns path)',
    cfg: { d: 8, da: 2, cell: 2, positional: 'none', convLayers: [{ channels: 2, kernel: 1 }] },
    shape: [1, 4, 4, 4],
    gridCell: [2, 2, 2],
  },
];

describe('VolumeStem with convLayers', () => {
  for (const { name, cfg, shape, gridCell } of cases) {
    it(`${name}: tokens equal a float64 reference on every backend; the grid counts input voxels`, async () => {
      await useBackend('cpu');
      const vol = randomVolume(shape, 11);
      const refStem = new VolumeStem(resolveVolumeStemConfig(cfg), makeRng(2));
      const ref = await hostTokens(refStem, vol, shape);
      refStem.dispose();
      const [B, D, H, W] = shape;
      const dims = [D / gridCell[0], H / gridCell[1], W / gridCell[2]];
      const N = dims[0]! * dims[1]! * dims[2]!;
      for (const backend of await backendsUnderTest()) {
        await useBackend(backend);
        const stem = new VolumeStem(resolveVolumeStemConfig(cfg), makeRng(2));
        await expectNoLeak(async () => {
          const x = tf.tensor5d(vol, [B, D, H, W, 1]);
          const out = stem.apply(x, { withDescriptors: true });
          expect(out.grid).toEqual({ dims, cell: gridCell, inputShape: [D, H, W] });
          expect(out.tokens.shape).toEqual([B, N, stem.config.d]);
          expect(out.aux.shape).toEqual([B, N, stem.config.da]);
          expect(out.descriptors!.shape).toEqual([B, N, stem.descriptorCount]);
          expect(maxRelErr(await out.tokens.data(), ref), backend).toBeLessThan(2e-5);
          tf.dispose([x, out.tokens, out.aux, out.descriptors!]);
        }, `stem on ${backend}`);
        stem.dispose();
      }
    });
  }

  it('every variable of a 2-layer stem gets a finite, non-zero gradient; both conv filters match a finite difference; no leaks', async () => {
    await useBackend('cpu');
    const stem = new VolumeStem(resolveVolumeStemConfig(cases[0]!.cfg), makeRng(5));
    expect([...stem.variables().keys()].filter((k) => k.startsWith('conv'))).toEqual([
      'conv.w',
      'conv.b',
      'conv1.w',
      'conv1.b',
      'conv1.norm.gain',
      'conv1.norm.bias',
    ]);
    const x = tf.tensor5d(randomVolume([2, 8, 8, 8], 6), [2, 8, 8, 8, 1]);
    const rng = makeRng(7);
    await expectStemGradients(stem, x, rng, [stem.conv!.w, stem.convLayers[1]!.w]);
    x.dispose();
    stem.dispose();
  });

  it('the default stem keeps its checkpoint names; sizes the strides or cells do not divide are typed errors naming the field', async () => {
    await useBackend('cpu');
    const plain = new VolumeStem(resolveVolumeStemConfig({ d: 12 }), makeRng(3));
    expect([...plain.variables().keys()].filter((k) => k.startsWith('conv'))).toEqual(['conv.w', 'conv.b']);
    plain.dispose();
    const stem = new VolumeStem(resolveVolumeStemConfig({ d: 12, cell: 2, convLayers: [{ channels: 2 }, { channels: 2, stride: [1, 4, 2] }] }), makeRng(3));
    const notStride = tf.zeros([1, 4, 6, 8, 1]) as tf.Tensor5D; // H = 6 is not a multiple of stride 4
    expect(() => stem.apply(notStride)).toThrow(VolumeStemInputError);
    expect(() => stem.apply(notStride)).toThrow(/convLayers\[1\]\.stride/);
    const notCell = tf.zeros([1, 4, 4, 4, 1]) as tf.Tensor5D; // feature map [4, 1, 2]: cell 2 does not divide y
    expect(() => stem.apply(notCell)).toThrow(VolumeStemInputError);
    expect(() => stem.apply(notCell)).toThrow(/cell \[2, 2, 2\]/);
    tf.dispose([notStride, notCell]);
    stem.dispose();
  });
});
