import { describe, expect, it } from 'vitest';
import { PhantomConfigError, type PhantomConfig, resolvePhantomConfig } from './config.js';
import { phantomRegion } from './phantom.js';

const TWO_PI = 2 * Math.PI;

/**
 * Independent reference for a sheet without waviness: the signed radial distance of voxel (y, x) to
 * the spiral r = r0 + b θ, over every wrap θ = φ + 2πk in [0, 2π wraps] (brute force over all k), for
 * the wrap whose sheet contains the voxel; undefined when none does.
 */
function refDistance(c: PhantomConfig, y: number, x: number): number | undefined {
  const cy = (c.shape[1] - 1) / 2;
  const cx = (c.shape[2] - 1) / 2;
  const b = (c.thickness + c.gap) / TWO_PI;
  const r = Math.sqrt((y - cy) ** 2 + (x - cx) ** 2);
  let phi = Math.atan2(y - cy, x - cx);
  if (phi < 0) phi += TWO_PI;
  for (let k = 0; k <= Math.ceil(c.wraps); k++) {
    const theta = phi + TWO_PI * k;
    if (theta > TWO_PI * c.wraps) break;
    const d = r - (c.innerRadius + b * theta);
    if (Math.abs(d) < c.thickness / 2) return d;
  }
  return undefined;
}

const sum = (a: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
};

function crop(data: ArrayLike<number>, shape: number[], off: number[], sub: number[]): number[] {
  const out: number[] = [];
  for (let z = 0; z < sub[0]; z++)
    for (let y = 0; y < sub[1]; y++)
      for (let x = 0; x < sub[2]; x++) out.push(data[((off[0] + z) * shape[1] + off[1] + y) * shape[2] + off[2] + x]);
  return out;
}

describe('resolvePhantomConfig', () => {
  it('fills presets and names unknown keys and bad values', () => {
    expect(resolvePhantomConfig({ preset: 'easy' }).shape).toEqual([32, 64, 64]);
    expect(resolvePhantomConfig().shape).toEqual([64, 128, 128]);
    expect(resolvePhantomConfig({ seed: 5, wraps: 2 })).toMatchObject({ seed: 5, wraps: 2, thickness: 3 });
    const field = (input: object) => {
      try {
        resolvePhantomConfig(input as never);
      } catch (e) {
        expect(e).toBeInstanceOf(PhantomConfigError);
        return (e as PhantomConfigError).field;
      }
      return undefined;
    };
    expect(field({ thicknes: 3 })).toBe('thicknes');
    expect(field({ preset: 'hardest' })).toBe('preset');
    expect(field({ shape: [4, 4] })).toBe('shape');
    expect(field({ gap: 2, waviness: 1.5 })).toBe('waviness');
    expect(field({ noise: -1 })).toBe('noise');
    expect(field({ window: [1, 0] })).toBe('window');
    expect(field({ inkCoverage: 2 })).toBe('inkCoverage');
  });
});

describe('phantomRegion', () => {
  const flat = resolvePhantomConfig({ preset: 'easy', waviness: 0, compression: 0, thicknessVariation: 0, seed: 3 });

  it('puts papyrus exactly on the Archimedean spiral sheet (no waviness), in a sensible fraction of the volume', () => {
    const [D, H, W] = flat.shape;
    const r = phantomRegion(flat, { offset: [0, 0, 0], shape: flat.shape });
    let mismatches = 0;
    for (let z = 0; z < D; z++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) if (r.papyrus[(z * H + y) * W + x] !== (refDistance(flat, y, x) !== undefined ? 1 : 0)) mismatches++;
    expect(mismatches).toBe(0);
    // In-plane area of the sheet = thickness x arc length of its centre line (all of it inside the frame).
    const b = (flat.thickness + flat.gap) / TWO_PI;
    const F = (q: number) => (q * Math.sqrt(q * q + b * b) + b * b * Math.asinh(q / b)) / (2 * b);
    const length = F(flat.innerRadius + b * TWO_PI * flat.wraps) - F(flat.innerRadius);
    const fraction = sum(r.papyrus) / r.papyrus.length;
    expect(fraction).toBeCloseTo((flat.thickness * length) / (H * W), 1);
    expect(Math.abs(fraction / ((flat.thickness * length) / (H * W)) - 1)).toBeLessThan(0.03);
    const wavy = phantomRegion(resolvePhantomConfig({ preset: 'easy' }), { offset: [0, 0, 0], shape: flat.shape });
    const wf = sum(wavy.papyrus) / wavy.papyrus.length;
    expect(wf).toBeGreaterThan(0.15);
    expect(wf).toBeLessThan(0.45);
  });

  it('puts ink only on papyrus at the recto (outer) surface', () => {
    const [D, H, W] = flat.shape;
    const r = phantomRegion(flat, { offset: [0, 0, 0], shape: flat.shape });
    const cy = (H - 1) / 2;
    const cx = (W - 1) / 2;
    let inkCount = 0;
    let rectoLayer = 0;
    const bad = { offPapyrus: 0, notRecto: 0, outwardNotGap: 0 };
    for (let z = 0; z < D; z++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          const i = (z * H + y) * W + x;
          const d = refDistance(flat, y, x);
          if (d !== undefined && d > flat.thickness / 2 - flat.inkDepth) rectoLayer++;
          if (!r.ink[i]) continue;
          inkCount++;
          if (r.papyrus[i] !== 1) bad.offPapyrus++;
          // Within inkDepth of the outer face of its wrap ...
          if (!(d !== undefined && d > flat.thickness / 2 - flat.inkDepth)) bad.notRecto++;
          // ... so that stepping 2.5 voxels outwards (radially, to the nearest voxel) lands in the gap.
          const rr = Math.hypot(y - cy, x - cx);
          const oy = Math.round(cy + ((y - cy) * (rr + 2.5)) / rr);
          const ox = Math.round(cx + ((x - cx) * (rr + 2.5)) / rr);
          if (oy >= 0 && oy < H && ox >= 0 && ox < W && r.papyrus[(z * H + oy) * W + ox] !== 0) bad.outwardNotGap++;
        }
    expect(bad).toEqual({ offPapyrus: 0, notRecto: 0, outwardNotGap: 0 });
    // Letters cover a good part of the recto layer, not all of it.
    expect(inkCount / rectoLayer).toBeGreaterThan(0.05);
    expect(inkCount / rectoLayer).toBeLessThan(0.6);
    // With waviness as well, ink stays on papyrus.
    const wavy = phantomRegion(resolvePhantomConfig({ preset: 'default', shape: [16, 128, 128] }), { offset: [0, 0, 0], shape: [16, 128, 128] });
    let outside = 0;
    for (let i = 0; i < wavy.ink.length; i++) if (wavy.ink[i] && !wavy.papyrus[i]) outside++;
    expect(sum(wavy.ink)).toBeGreaterThan(100);
    expect(outside).toBe(0);
  });

  it('images ink brighter than papyrus (noiseless), and the ink term only ever brightens', () => {
    const c = resolvePhantomConfig({ preset: 'default', shape: [24, 128, 128], noise: 0 });
    const box = { offset: [0, 0, 0], shape: c.shape };
    const r = phantomRegion(c, box);
    let inkSum = 0;
    let inkN = 0;
    let papSum = 0;
    let papN = 0;
    for (let i = 0; i < r.image.length; i++) {
      if (r.ink[i]) {
        inkSum += r.image[i];
        inkN++;
      } else if (r.papyrus[i]) {
        papSum += r.image[i];
        papN++;
      }
    }
    expect(inkN).toBeGreaterThan(500);
    expect(inkSum / inkN).toBeGreaterThan(papSum / papN + 2);
    // Removing the ink term changes the image only near ink, and only downwards.
    const plain = phantomRegion({ ...c, inkContrast: 0 }, box);
    let inkDiff = 0;
    let darker = 0;
    for (let i = 0; i < r.image.length; i++) {
      if (r.image[i] < plain.image[i]) darker++;
      if (r.ink[i]) inkDiff += r.image[i] - plain.image[i];
    }
    expect(darker).toBe(0);
    expect(inkDiff / inkN).toBeGreaterThan(0.5 * c.inkContrast * 255 * 0.5);
    expect(sum(plain.ink)).toBe(inkN); // labels do not depend on contrast
  });

  it('computes any region equal to the same voxels cut from a larger one (chunks are independent)', () => {
    const c = resolvePhantomConfig({ preset: 'default', shape: [32, 96, 96], seed: 11 });
    const bigOff = [-3, 10, 20];
    const bigShape = [30, 60, 70];
    const big = phantomRegion(c, { offset: bigOff, shape: bigShape });
    for (const [off, sh] of [
      [[-3, 10, 20], [5, 7, 9]],
      [[4, 33, 41], [13, 17, 29]],
      [[20, 60, 80], [7, 10, 10]],
    ]) {
      const sub = phantomRegion(c, { offset: off, shape: sh });
      const rel = off.map((o, i) => o - bigOff[i]);
      expect(Array.from(sub.image)).toEqual(crop(big.image, bigShape, rel, sh));
      expect(Array.from(sub.ink)).toEqual(crop(big.ink, bigShape, rel, sh));
      expect(Array.from(sub.papyrus)).toEqual(crop(big.papyrus, bigShape, rel, sh));
    }
  });

  it('is a function of the seed: same seed same voxels, another seed other voxels', () => {
    const box = { offset: [0, 0, 0], shape: [8, 64, 64] };
    const a = phantomRegion(resolvePhantomConfig({ preset: 'easy', seed: 1 }), box);
    const b = phantomRegion(resolvePhantomConfig({ preset: 'easy', seed: 1 }), box);
    const c = phantomRegion(resolvePhantomConfig({ preset: 'easy', seed: 2 }), box);
    expect(Buffer.from(a.image).equals(Buffer.from(b.image))).toBe(true);
    expect(Buffer.from(a.image).equals(Buffer.from(c.image))).toBe(false);
    expect(Buffer.from(a.ink).equals(Buffer.from(c.ink))).toBe(false);
  });
});
