import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ChunkCache, FragmentExistsError, openFragment, openVolume } from '@goe/scroll-io';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PhantomConfig, PhantomConfigError, resolvePhantomConfig } from './config.js';
import { type PhantomFragment, writePhantomFragment } from './fragment.js';
import { type PhantomRegion, phantomRegion, sheetAt, thetaOfArc } from './phantom.js';

const dir = await mkdtemp(join(tmpdir(), 'phantom-fragment-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Every file below `root` with its bytes, keyed by path relative to `root`, in sorted order. */
async function snapshot(root: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const rel of (await readdir(root, { recursive: true })).sort()) {
    if ((await stat(join(root, rel))).isFile()) files.set(rel, await readFile(join(root, rel)));
  }
  return files;
}

async function entries(path: string): Promise<string[]> {
  return readdir(path).catch(() => []);
}

/** Reference trilinear interpolation of a `[D, H, W]` image in float64: 0 outside [0, n − 1] on any axis. */
function trilinear(image: ArrayLike<number>, shape: number[], q: number[]): number {
  if (!q.every((v, a) => v >= 0 && v <= shape[a] - 1)) return 0;
  const i0 = q.map(Math.floor);
  let sum = 0;
  for (let corner = 0; corner < 8; corner++) {
    const idx = [(corner >> 2) & 1, (corner >> 1) & 1, corner & 1].map((bit, a) => i0[a] + bit);
    let weight = 1;
    for (let a = 0; a < 3; a++) weight *= idx[a] === i0[a] ? 1 - (q[a] - i0[a]) : q[a] - i0[a];
    if (weight === 0) continue;
    sum += weight * image[(idx[0] * shape[1] + idx[1]) * shape[2] + idx[2]];
  }
  return sum;
}

/** The whole-volume label at the voxel nearest to `q`, or -1 outside the volume. */
function labelAt(labels: ArrayLike<number>, shape: number[], q: number[]): number {
  const v = q.map(Math.round);
  if (!v.every((x, a) => x >= 0 && x < shape[a])) return -1;
  return labels[(v[0] * shape[1] + v[1]) * shape[2] + v[2]];
}

/** Everything a fragment folder holds, read back through @goe/scroll-io: layers `[L, H, W]`, ink and mask `[H, W]`, mapping `[6, H, W]`. */
async function readBack(r: PhantomFragment) {
  const fragment = await openFragment(r.dir);
  const [L, H, W] = fragment.shape;
  const layers = (await fragment.read({ offset: [0, 0, 0], shape: [L, H, W] })).data as Uint16Array;
  const ink = (await fragment.inkLabels())!;
  const mask = (await fragment.mask())!;
  const map = await openVolume(r.mapping, { cache: new ChunkCache(0) });
  const mapping = (await map.read({ offset: [0, 0, 0], shape: [6, H, W] })).data as Float32Array;
  return { fragment, layers, ink, mask, map, mapping, plane: H * W };
}

/** Row, column and the sheet of fragment pixel `o` (row-major index), from the unrolled-sheet definition. */
function pixel(config: PhantomConfig, r: PhantomFragment, o: number) {
  const col = o % r.width;
  const row = (o - col) / r.width;
  return { row, col, sp: sheetAt(config, r.sStart + col, row) };
}

describe('writePhantomFragment', () => {
  // Noise-free and unblurred, so that the image is a function of the geometry alone.
  const clean = resolvePhantomConfig({ preset: 'easy', shape: [24, 96, 96], seed: 3, noise: 0, blur: 0 });
  let whole: PhantomRegion;
  let frag: PhantomFragment;
  let back: Awaited<ReturnType<typeof readBack>>;
  beforeAll(async () => {
    whole = phantomRegion(clean, { offset: [0, 0, 0], shape: clean.shape });
    frag = await writePhantomFragment(join(dir, 'clean'), clean);
    back = await readBack(frag);
  });

  it('writes the Kaggle layout that openFragment reads back, with mapping and metadata', async () => {
    expect(frag.dir).toBe(join(dir, 'clean', 'fragment'));
    expect(frag.wrap).toBe(1);
    expect(frag.layers).toBe(65);
    const names = (await readdir(join(frag.dir, 'surface_volume'))).sort();
    expect(names).toEqual(Array.from({ length: 65 }, (_, l) => `${String(l).padStart(2, '0')}.tif`));
    expect(frag.layerFiles.map((f) => basename(f))).toEqual(names);
    expect((await readdir(frag.dir)).sort()).toEqual(['fragment.json', 'inklabels.png', 'mapping.zarr', 'mask.png', 'surface_volume']);

    // The columns are one voxel of arc length each and span wrap 1's θ range [2π, 4π).
    expect(thetaOfArc(clean, frag.sStart)).toBeCloseTo(2 * Math.PI, 9);
    expect(thetaOfArc(clean, frag.sStart + frag.width - 1)).toBeLessThan(4 * Math.PI);
    expect(thetaOfArc(clean, frag.sStart + frag.width)).toBeGreaterThanOrEqual(4 * Math.PI - 1e-9);
    expect(frag.height).toBe(24);

    expect(back.fragment.shape).toEqual([65, 24, frag.width]);
    expect(back.fragment.layout).toBe('surface_volume');
    expect(back.ink.shape).toEqual([24, frag.width]);
    expect(back.mask.shape).toEqual([24, frag.width]);
    expect(back.ink.data).toBeInstanceOf(Uint8Array);
    expect(back.mask.data).toBeInstanceOf(Uint8Array);
    expect(new Set(back.ink.data)).toEqual(new Set([0, 255]));
    expect(back.map.shape).toEqual([6, 24, frag.width]);
    expect(back.map.dtype).toBe('float32');

    const meta = JSON.parse(await readFile(frag.metadata, 'utf8'));
    expect(meta).toMatchObject({ wrap: 1, layers: 65, step: 1, sStart: frag.sStart, width: frag.width, height: 24 });
    expect(meta.phantom).toEqual(clean);
    expect(meta.formula).toContain('voxel = point + (layer - (layers-1)/2) * step * normal');
  });

  it('maps mask pixels onto the wrap in the volume and samples the image along the normal', () => {
    const { layers, mask, mapping, plane } = back;
    let masked = 0;
    let onPapyrus = 0;
    let checkedLayers = 0;
    for (let o = 0; o < plane; o++) {
      if (mask.data[o] === 0) continue;
      masked++;
      const { row, col, sp } = pixel(clean, frag, o);
      const p = [0, 1, 2].map((a) => mapping[a * plane + o]);
      const papyrus = labelAt(whole.papyrus, clean.shape, p);
      if (papyrus === 1) onPapyrus++;
      // Where the sheet is at least 2 voxels thick, the nearest voxel (≤ √3/2 away) is always on it.
      if (sp.halfThickness >= 1) expect(papyrus, `pixel ${row},${col}`).toBe(1);
      expect(labelAt(whole.wrap, clean.shape, p), `pixel ${row},${col}`).toBe(frag.wrap + 1);
      // Layer l at point + (l − 32) · normal: the middle layer, the surfaces and the extremes.
      for (const l of [0, 28, 30, 32, 34, 36, 64]) {
        const q = [0, 1, 2].map((a) => sp.point[a] + (l - 32) * sp.normal[a]);
        const ref = 257 * trilinear(whole.image, clean.shape, q);
        expect(Math.abs(layers[l * plane + o] - ref), `layer ${l} pixel ${row},${col}`).toBeLessThanOrEqual(0.5 + 1e-6);
        checkedLayers++;
      }
    }
    expect(masked).toBeGreaterThan(0.9 * plane);
    expect(onPapyrus / masked).toBeGreaterThanOrEqual(0.95);
    expect(checkedLayers).toBe(7 * masked);
    // Off the sheet the image is air, on it papyrus: the middle layer is brighter than the outermost.
    let mid = 0;
    let far = 0;
    for (let o = 0; o < plane; o++) {
      mid += layers[32 * plane + o];
      far += layers[64 * plane + o];
    }
    expect(mid).toBeGreaterThan(2 * far);
  });

  it('keeps uint16 intensities unscaled and honours layers and step, across tiles and the volume edge', async () => {
    // Wrap 2 is 20 rows high (two strips) and its outer layers (6 voxels out) leave the 72-voxel-wide
    // volume where the wrap comes closest to the edge.
    const c16 = resolvePhantomConfig({ preset: 'easy', shape: [20, 72, 72], seed: 5, noise: 0, blur: 0, dtype: 'uint16' });
    const img = phantomRegion(c16, { offset: [0, 0, 0], shape: c16.shape }).image;
    const r = await writePhantomFragment(join(dir, 'u16'), c16, { wrap: 2, layers: 4, step: 4 });
    expect(r.thetaEnd).toBeCloseTo(6 * Math.PI, 12);
    const { fragment, layers, plane } = await readBack(r);
    expect(fragment.shape).toEqual([4, 20, r.width]);
    let outside = 0;
    for (let o = 0; o < plane; o++) {
      const { sp } = pixel(c16, r, o);
      for (let l = 0; l < 4; l++) {
        const q = [0, 1, 2].map((a) => sp.point[a] + (l - 1.5) * 4 * sp.normal[a]);
        if (!q.every((v, a) => v >= 0 && v <= c16.shape[a] - 1)) outside++;
        expect(Math.abs(layers[l * plane + o] - trilinear(img, c16.shape, q))).toBeLessThanOrEqual(0.5 + 1e-6);
      }
    }
    expect(outside).toBeGreaterThan(0);
  });

  it('labels ink on the recto of the wrap, only inside the mask', () => {
    const { ink, mask, mapping, plane } = back;
    let inked = 0;
    let masked = 0;
    let onStroke = 0;
    for (let o = 0; o < plane; o++) {
      if (mask.data[o]) masked++;
      if (!ink.data[o]) continue;
      inked++;
      expect(mask.data[o]).toBe(255);
      const { row, col, sp } = pixel(clean, frag, o);
      const h = sp.halfThickness;
      const p = [0, 1, 2].map((a) => mapping[a * plane + o]);
      const n = [3, 4, 5].map((a) => mapping[a * plane + o]);
      // Ink lies on the recto: along the outward normal within the sheet's half thickness (plus a
      // voxel), the nearest voxel carries ink, or at a stroke's edge, where rounding to the grid can
      // step off the stroke, one of the voxels around the sample (those the layers interpolate).
      let nearest = false;
      let around = false;
      for (let t = 0; t <= h + 1 && !(nearest && around); t += 0.25) {
        const q = [0, 1, 2].map((a) => p[a] + t * n[a]);
        nearest ||= labelAt(whole.ink, clean.shape, q) === 1;
        for (let corner = 0; corner < 8 && !around; corner++) {
          around = labelAt(whole.ink, clean.shape, q.map((v, a) => ((corner >> a) & 1 ? Math.ceil(v) : Math.floor(v)))) === 1;
        }
      }
      expect(around, `pixel ${row},${col}`).toBe(true);
      if (nearest) onStroke++;
    }
    expect(onStroke / inked).toBeGreaterThanOrEqual(0.95);
    expect(inked / masked).toBeGreaterThan(0.02);
    expect(inked / masked).toBeLessThan(0.7);
  });

  it('masks tears and points outside the volume, with ink only under the mask', async () => {
    // Tears, and a wrap (radius 38 to 44) that leaves the 72-voxel-wide volume on every side.
    const torn = resolvePhantomConfig({ preset: 'default', shape: [12, 72, 72], seed: 11, tearRate: 0.6 });
    const r = await writePhantomFragment(join(dir, 'torn'), torn, { wrap: 5, layers: 3 });
    const { ink, mask, mapping, plane } = await readBack(r);
    let outside = 0;
    let tornPixels = 0;
    let inked = 0;
    for (let o = 0; o < plane; o++) {
      const { sp } = pixel(torn, r, o);
      const p = [0, 1, 2].map((a) => mapping[a * plane + o]);
      const inVolume = p.every((v, a) => v >= 0 && v <= torn.shape[a] - 1);
      if (!inVolume) outside++;
      else if (!sp.present) tornPixels++;
      expect(mask.data[o]).toBe(inVolume && sp.present ? 255 : 0);
      expect(ink.data[o]).toBe(inVolume && sp.present && sp.ink ? 255 : 0);
      if (ink.data[o]) inked++;
    }
    expect(outside).toBeGreaterThan(0);
    expect(outside).toBeLessThan(plane);
    expect(tornPixels).toBeGreaterThan(0);
    expect(inked).toBeGreaterThan(0);
  });

  it('stores the unit normal and the centre point of sheetAt in the mapping', () => {
    const { mapping, plane } = back;
    for (let o = 0; o < plane; o++) {
      const { sp } = pixel(clean, frag, o);
      const n = [3, 4, 5].map((a) => mapping[a * plane + o]);
      expect(Math.abs(Math.hypot(n[0], n[1], n[2]) - 1)).toBeLessThanOrEqual(1e-5);
      for (let a = 0; a < 3; a++) {
        expect(n[a]).toBe(Math.fround(sp.normal[a]));
        expect(mapping[a * plane + o]).toBe(Math.fround(sp.point[a]));
      }
    }
  });
});

describe('writePhantomFragment output', () => {
  const config: PhantomConfig = resolvePhantomConfig({ preset: 'easy', shape: [10, 48, 48], seed: 7, wraps: 2 });

  it('is byte-identical for the same config, however finely the phantom computation is split', async () => {
    const a = await snapshot((await writePhantomFragment(join(dir, 'same-a'), config, { layers: 9 })).dir);
    // Boxes of at most 2000 voxels: every strip is split down to arcs of a few columns.
    const b = await snapshot((await writePhantomFragment(join(dir, 'same-b'), config, { layers: 9, maxBoxVoxels: 2000 })).dir);
    expect(a.size).toBeGreaterThan(12);
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [f, bytes] of a) expect(b.get(f)!.equals(bytes), f).toBe(true);
    const c = await snapshot((await writePhantomFragment(join(dir, 'same-c'), { ...config, seed: 8 }, { layers: 9 })).dir);
    expect(c.get(join('surface_volume', '04.tif'))!.equals(a.get(join('surface_volume', '04.tif'))!)).toBe(false);
  });

  it('rejects bad options with a typed error naming the option and writes nothing', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ bogus: 1 }, 'bogus'],
      [{ wrap: 2 }, 'wrap'],
      [{ wrap: -1 }, 'wrap'],
      [{ wrap: 0.5 }, 'wrap'],
      [{ layers: 0 }, 'layers'],
      [{ layers: 2.5 }, 'layers'],
      [{ step: 0 }, 'step'],
      [{ step: -1 }, 'step'],
      [{ step: Number.NaN }, 'step'],
      [{ overwrite: 'yes' }, 'overwrite'],
      [{ maxBoxVoxels: 0 }, 'maxBoxVoxels'],
    ];
    for (const [options, field] of cases) {
      const out = join(dir, `bad-${field}`);
      const err = await writePhantomFragment(out, config, options as never).catch((e: unknown) => e);
      expect(err, JSON.stringify(options)).toBeInstanceOf(PhantomConfigError);
      expect((err as PhantomConfigError).field).toBe(field);
      expect(await entries(out)).toEqual([]);
    }
  });

  it('refuses an existing fragment unless told to overwrite, and leaves no temporary folders', async () => {
    const out = join(dir, 'exists');
    const first = await writePhantomFragment(out, config, { layers: 3 });
    const before = await snapshot(first.dir);
    const err = await writePhantomFragment(out, config, { layers: 5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FragmentExistsError);
    expect((err as FragmentExistsError).path).toBe(first.dir);
    expect(await snapshot(first.dir)).toEqual(before);
    expect(await readdir(out)).toEqual(['fragment']);

    const second = await writePhantomFragment(out, config, { layers: 5, overwrite: true });
    expect((await openFragment(second.dir)).shape[0]).toBe(5);
    expect(JSON.parse(await readFile(second.metadata, 'utf8')).layers).toBe(5);
    expect(await readdir(out)).toEqual(['fragment']);
  });

  it('leaves no fragment when the output folder cannot be written', async () => {
    // A file where outDir should be: nothing can be created below it.
    const blocker = join(dir, 'blocked');
    await writeFile(blocker, 'not a folder');
    await expect(writePhantomFragment(join(blocker, 'out'), config, { layers: 3 })).rejects.toThrow();
    expect(await entries(join(blocker, 'out'))).toEqual([]);
  });
});
