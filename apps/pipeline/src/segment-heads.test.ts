/**
 * `goe segment` with the fibre and geometry heads: their outputs blend as the ink output does (fibre
 * directions as orientation tensors, so v and −v do not cancel), are stored as uint8 arrays beside the
 * ink, and get PNG previews.
 */
import { openVolume, product } from '@goe/scroll-io';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFiber, FIBER_CHANNELS, tokenTensorsToVoxels, type WindowPredictor } from './predictor.js';
import { segmentVolume } from './segment.js';
import { referenceBlend, trainedSegmentFixture } from './segment-test-utils.js';

const root = mkdtempSync(join(tmpdir(), 'goe-segment-heads-'));
const shape: [number, number, number] = [16, 32, 40];
const settings = { chunks: [8, 16, 16], levels: 2, overlap: [2, 4, 4] as [number, number, number], partVoxels: 4096, progressStream: null, modelId: 'test' };
let predictor: WindowPredictor;
let image = '';

/** Unit direction (z, y, x) -> the 6 tensor entries zz, yy, xx, zy, zx, yx. */
const tensorOf = (v: number[]): number[] => [v[0]! * v[0]!, v[1]! * v[1]!, v[2]! * v[2]!, v[0]! * v[1]!, v[0]! * v[2]!, v[1]! * v[2]!];

beforeAll(async () => {
  ({ image, predictor } = await trainedSegmentFixture(root, { shape, seed: 4, heads: ['ink', 'fiber', 'geometry'] }));
}, 60_000);

afterAll(() => {
  predictor?.dispose();
  rmSync(root, { recursive: true, force: true });
});

describe('fibre channels', () => {
  it('tokenTensorsToVoxels gives every voxel of a cell its token’s v vᵀ', () => {
    const grid = { dims: [1, 1, 2] as [number, number, number], cell: [2, 2, 2] as [number, number, number], inputShape: [2, 2, 4] as [number, number, number] };
    const a = [0.6, 0, 0.8];
    const b = [0, -1, 0];
    const out = tokenTensorsToVoxels(Float32Array.from([...a, ...b]), 1, grid);
    const V = 16;
    for (let i = 0; i < V; i++) {
      const want = tensorOf(i % 4 < 2 ? a : b);
      for (let e = 0; e < 6; e++) expect(out[e * V + i]).toBeCloseTo(want[e]!, 6);
    }
  });

  it('encodes the principal direction sign-free (v and −v blend to v), with its sign bits and coherence', () => {
    // Voxel 0: v and −v averaged; voxel 1: a 50/50 blend of two orthogonal directions (no dominant one);
    // voxel 2: mostly (z, y, x) = (0.6, 0, −0.8) with a little of the z axis.
    const v = [0.6, 0, -0.8];
    const mix = (ws: [number, number[]][]) => tensorOf([0, 0, 0]).map((_, e) => ws.reduce((s, [w, d]) => s + w * tensorOf(d)[e]!, 0));
    const t = [mix([[0.5, v], [0.5, v.map((c) => -c)]]), mix([[0.5, [1, 0, 0]], [0.5, [0, 1, 0]]]), mix([[0.9, v], [0.1, [1, 0, 0]]])];
    const blended = new Float32Array(6 * 3);
    t.forEach((entries, i) => entries.forEach((x, e) => (blended[e * 3 + i] = x)));
    const out = encodeFiber(blended, 3);
    const ch = (c: string, i: number) => out[FIBER_CHANNELS.indexOf(c as (typeof FIBER_CHANNELS)[number]) * 3 + i]!;
    expect([ch('absX', 0), ch('absY', 0), ch('absZ', 0)]).toEqual([204, 0, 153]); // |x| 0.8, |y| 0, |z| 0.6
    expect(ch('signs', 0)).toBe(1); // z >= 0 form: x < 0
    expect(ch('coherence', 0)).toBe(255);
    expect(ch('coherence', 1)).toBe(0);
    expect(ch('signs', 2)).toBe(1);
    expect(ch('coherence', 2)).toBeGreaterThan(200);
    expect(ch('absX', 2)).toBeLessThan(204); // pulled a little toward z
    expect(ch('absZ', 2)).toBeGreaterThan(153);
  });
});

describe('goe segment with three heads', () => {
  it('stores ink, fibre (5 channels) and geometry; fibre and sheet equal a float64 Gaussian blend of every window run alone', async () => {
    const out = join(root, 'seg.zarr');
    const png = join(root, 'png');
    const r = await segmentVolume(predictor, { ...settings, chunks: [...settings.chunks], overlap: [...settings.overlap], volume: image, out, png });
    expect(r.heads).toEqual(['ink', 'fiber', 'geometry']);
    const fib = await openVolume(join(out, 'fiber'));
    expect(fib.shape).toEqual([5, ...shape]);
    expect(fib.axes).toEqual(['c', 'z', 'y', 'x']);
    const geo = await openVolume(join(out, 'geometry'));
    expect(geo.shape).toEqual(shape);
    expect(r.previews.map((f) => relative(png, f).replace(/-z\d+\.png$/, ''))).toEqual(expect.arrayContaining(['ink', 'fiber', 'geometry']));

    // The reference: every window of the grid alone, blended in float64 with the same Gaussian weights.
    const V = product(shape);
    const ref = await referenceBlend(predictor, image, shape, settings.overlap);
    const want = encodeFiber(Float32Array.from(ref['fiber']!), V);
    const got = (await fib.read({ offset: [0, 0, 0, 0], shape: [5, ...shape] })).data;
    const gGot = (await geo.read({ offset: [0, 0, 0], shape })).data;
    let dirDiff = 0;
    let coherent = 0;
    for (let v = 0; v < V; v++) {
      expect(Math.abs(gGot[v]! - Math.round(ref['geometry']![v]! * 255))).toBeLessThanOrEqual(1);
      // Where the blend has a clear direction (coherence >= 0.25) the stored one is the reference's.
      if (want[4 * V + v]! < 64) continue;
      coherent++;
      for (let c = 0; c < 3; c++) dirDiff = Math.max(dirDiff, Math.abs(got[c * V + v]! - want[c * V + v]!));
      expect(got[3 * V + v]).toBe(want[3 * V + v]);
    }
    expect(coherent).toBeGreaterThan(V / 4);
    expect(dirDiff).toBeLessThanOrEqual(2);
  }, 120_000);
});
