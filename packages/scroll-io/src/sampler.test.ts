import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScrollIoOptionError } from './errors.js';
import { createOmeLabel, createOmeZarr, openVolume } from './ome.js';
import { PatchSampler } from './sampler.js';
import { createVolume, type Volume } from './volume.js';

let dir: string;
let image: Volume;
let ink: Volume;
const shape = [12, 20, 18];
const value = (z: number, y: number, x: number) => (z * 31 + y * 7 + x) % 256;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-sampler-'));
  const path = join(dir, 'img.zarr');
  const img = await createOmeZarr(path, { shape, chunks: [5, 8, 7], dtype: 'uint8' });
  const data = new Uint8Array(shape[0] * shape[1] * shape[2]);
  const lab = new Uint8Array(data.length);
  let i = 0;
  for (let z = 0; z < shape[0]; z++)
    for (let y = 0; y < shape[1]; y++)
      for (let x = 0; x < shape[2]; x++, i++) {
        data[i] = value(z, y, x);
        lab[i] = (x + y) % 3 === 0 ? 1 : 0;
      }
  await img.levels[0].write({ offset: [0, 0, 0], shape }, data);
  const inkLabel = await createOmeLabel(img.group, 'ink');
  await inkLabel.levels[0].write({ offset: [0, 0, 0], shape }, lab);
  image = await openVolume(path);
  ink = await openVolume(join(path, 'labels', 'ink'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function take(s: PatchSampler, n: number) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await s.next());
  return out;
}

describe('PatchSampler', () => {
  it('draws patches inside the region that equal direct reads (image by formula, labels by read)', async () => {
    const region = { offset: [2, 3, 1], shape: [9, 15, 16] };
    const s = new PatchSampler({ volume: image, labels: { ink }, patchShape: [4, 6, 5], region, seed: 7, prefetch: 3 });
    const patches = await take(s, 25);
    await s.close();
    for (const [i, p] of patches.entries()) {
      expect(p.index).toBe(i);
      for (let d = 0; d < 3; d++) {
        expect(p.origin[d]).toBeGreaterThanOrEqual(region.offset[d]);
        expect(p.origin[d] + [4, 6, 5][d]).toBeLessThanOrEqual(region.offset[d] + region.shape[d]);
      }
      const [oz, oy, ox] = p.origin;
      let k = 0;
      for (let z = 0; z < 4; z++) for (let y = 0; y < 6; y++) for (let x = 0; x < 5; x++) expect(p.image[k++]).toBe(value(oz + z, oy + y, ox + x));
      const direct = await ink.read({ offset: p.origin, shape: [4, 6, 5] });
      expect(Array.from(p.labels.ink)).toEqual(Array.from(direct.data));
    }
    // Origins vary (not a constant stream) and cover the allowed range's corners eventually.
    expect(new Set(patches.map((p) => p.origin.join(','))).size).toBeGreaterThan(20);
  });

  it('is deterministic per seed, independent of prefetch depth, and resumes exactly from state()', async () => {
    const opts = { volume: image, labels: { ink }, patchShape: [3, 4, 5], seed: 123 };
    const a = new PatchSampler({ ...opts, prefetch: 0 });
    const b = new PatchSampler({ ...opts, prefetch: 4 });
    const c = new PatchSampler({ ...opts, seed: 124 });
    const pa = await take(a, 10);
    const pb = await take(b, 10);
    const pc = await take(c, 10);
    expect(pb.map((p) => p.origin)).toEqual(pa.map((p) => p.origin));
    expect(pc.map((p) => p.origin)).not.toEqual(pa.map((p) => p.origin));
    // Save after 4 patches (with reads in flight), continue, then restore a fresh sampler.
    const d = new PatchSampler({ ...opts, prefetch: 3 });
    await take(d, 4);
    const saved = JSON.parse(JSON.stringify(d.state()));
    expect(saved.drawn).toBe(4);
    const rest = await take(d, 6);
    expect(rest.map((p) => p.origin)).toEqual(pa.slice(4).map((p) => p.origin));
    const e = new PatchSampler({ ...opts, prefetch: 2 });
    e.restore(saved);
    const resumed = await take(e, 6);
    expect(resumed.map((p) => p.origin)).toEqual(pa.slice(4).map((p) => p.origin));
    expect(resumed.map((p) => p.index)).toEqual([4, 5, 6, 7, 8, 9]);
    expect(Array.from(resumed[0].image)).toEqual(Array.from(pa[4].image));
    for (const s of [a, b, c, d, e]) await s.close();
    await expect(a.next()).rejects.toThrow(ScrollIoOptionError);
  });

  it('validates its options by name', () => {
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return (e as ScrollIoOptionError).field;
      }
      return undefined;
    };
    expect(err(() => new PatchSampler({ volume: image, patchShape: [4, 4], seed: 1 }))).toBe('patchShape');
    expect(err(() => new PatchSampler({ volume: image, patchShape: [4, 4, 4], region: { offset: [0, 0, 0], shape: [3, 20, 18] }, seed: 1 }))).toBe('region');
    expect(err(() => new PatchSampler({ volume: image, patchShape: [4, 4, 4], seed: 1.5 }))).toBe('seed');
    const other = { ...ink, shape: [1, 2, 3] } as Volume;
    expect(err(() => new PatchSampler({ volume: image, labels: { other }, patchShape: [4, 4, 4], seed: 1 }))).toBe('labels.other');
  });
});

describe('PatchSampler with a mask and label balance', () => {
  let mask: Volume;
  let empty: Volume;
  const inMask = (z: number, y: number, x: number) => z >= 4 && y < 11 && x % 2 === 0;
  const inkAt = (_z: number, y: number, x: number) => (x + y) % 3 === 0;
  beforeAll(async () => {
    const m = await createVolume(join(dir, 'mask.zarr'), { shape, chunks: [5, 8, 7], dtype: 'uint8' });
    const data = new Uint8Array(shape[0] * shape[1] * shape[2]);
    let i = 0;
    for (let z = 0; z < shape[0]; z++) for (let y = 0; y < shape[1]; y++) for (let x = 0; x < shape[2]; x++) data[i++] = inMask(z, y, x) ? 255 : 0;
    await m.write({ offset: [0, 0, 0], shape }, data);
    mask = m;
    empty = await createVolume(join(dir, 'empty.zarr'), { shape, chunks: [5, 8, 7], dtype: 'uint8' });
  });
  const patchShape = [3, 4, 5];
  const centre = (o: number[]) => o.map((v, i) => v + Math.floor(patchShape[i] / 2));

  it('draws only origins whose centre is in the mask, on the grid, reaching every candidate', async () => {
    const region = { offset: [1, 2, 0], shape: [11, 17, 18] };
    const s = new PatchSampler({ volume: image, labels: { ink }, mask, patchShape, region, seed: 5, gridStep: [1, 2, 1] });
    // Expected candidates by formula: grid origins inside the region whose centre voxel is masked.
    const expected = new Set<string>();
    for (let z = 1; z + 3 <= 12; z++)
      for (let y = 2; y + 4 <= 19; y += 2)
        for (let x = 0; x + 5 <= 18; x++) {
          const [cz, cy, cx] = centre([z, y, x]);
          if (inMask(cz, cy, cx)) expected.add(`${z},${y},${x}`);
        }
    const seen = new Set<string>();
    for (let n = 0; n < 600; n++) {
      const p = await s.next();
      expect(expected.has(p.origin.join(','))).toBe(true);
      seen.add(p.origin.join(','));
      if (n < 20) {
        const direct = await image.read({ offset: p.origin, shape: patchShape });
        expect(Array.from(p.image)).toEqual(Array.from(direct.data));
      }
    }
    await s.close();
    // 600 uniform draws over the candidates reach nearly all of them (expected.size is ~100).
    expect(seen.size).toBeGreaterThan(0.9 * expected.size);
  });

  it('gives the asked fraction of patches a labelled centre (0, 0.8, 1)', async () => {
    for (const fraction of [0, 0.8, 1]) {
      const s = new PatchSampler({ volume: image, labels: { ink }, balance: { label: 'ink', fraction }, patchShape, seed: 9, gridStep: [1, 1, 1] });
      let labelled = 0;
      const N = 400;
      for (let n = 0; n < N; n++) {
        const p = await s.next();
        const [cz, cy, cx] = centre(p.origin);
        const hit = inkAt(cz, cy, cx);
        // The label patch agrees with the centre classification.
        expect(p.labels.ink[(1 * 4 + 2) * 5 + 2]).toBe(hit ? 1 : 0);
        if (hit) labelled++;
      }
      await s.close();
      // Binomial: sd = sqrt(0.8 * 0.2 / 400) = 0.02; 4 sd tolerance. Uniform draws would give ~1/3.
      if (fraction === 0 || fraction === 1) expect(labelled / N).toBe(fraction);
      else expect(Math.abs(labelled / N - fraction)).toBeLessThan(0.08);
    }
  });

  it('is deterministic and resumes exactly from state() with a mask and balance', async () => {
    const opts = { volume: image, labels: { ink }, mask, balance: { label: 'ink', fraction: 0.5 }, patchShape, seed: 77 };
    const a = new PatchSampler({ ...opts, prefetch: 0 });
    const pa = await take(a, 12);
    const b = new PatchSampler({ ...opts, prefetch: 5 });
    await take(b, 5);
    const saved = b.state();
    expect(saved.drawn).toBe(5);
    const c = new PatchSampler({ ...opts, prefetch: 1 });
    c.restore(saved);
    const pc = await take(c, 7);
    expect(pc.map((p) => p.origin)).toEqual(pa.slice(5).map((p) => p.origin));
    expect(pc.map((p) => p.index)).toEqual([5, 6, 7, 8, 9, 10, 11]);
    for (const s of [a, b, c]) await s.close();
  });

  it('an empty mask rejects next() with a typed error; bad options name their field', async () => {
    const s = new PatchSampler({ volume: image, mask: empty, patchShape, seed: 1 });
    const e = await s.next().catch((err: unknown) => err);
    expect(e).toBeInstanceOf(ScrollIoOptionError);
    expect((e as ScrollIoOptionError).field).toBe('mask');
    expect((e as Error).message).toContain('empty.zarr');
    await s.close();
    const field = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return (err as ScrollIoOptionError).field;
      }
      return undefined;
    };
    expect(field(() => new PatchSampler({ volume: image, labels: { ink }, balance: { label: 'papyrus', fraction: 0.5 }, patchShape, seed: 1 }))).toBe('balance.label');
    expect(field(() => new PatchSampler({ volume: image, labels: { ink }, balance: { label: 'ink', fraction: 1.5 }, patchShape, seed: 1 }))).toBe('balance.fraction');
    expect(field(() => new PatchSampler({ volume: image, mask, patchShape, gridStep: [1, 0, 1], seed: 1 }))).toBe('gridStep');
    const small = { ...mask, shape: [1, 2, 3] } as Volume;
    expect(field(() => new PatchSampler({ volume: image, mask: small, patchShape, seed: 1 }))).toBe('mask');
  });
});
