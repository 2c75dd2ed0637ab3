/**
 * The ground truth checked against the phantom's own voxels by independent estimates: fibre labels
 * against a structure-tensor estimate of the noiseless texture, normals against the gradient of the
 * smoothed papyrus mask, ink against the labels along the normal, and the slow analytic path
 * (`sheetAt`) against the voxel labels; plus the compression, tears and thickness variation that make
 * the phantom hard in the ways real scrolls are.
 */
import { describe, expect, it } from 'vitest';
import { resolvePhantomConfig } from './config.js';
import { phantomRegion, sheetAt, thetaOfArc } from './phantom.js';

type Vec = [number, number, number];
const dot = (a: Vec, b: Vec) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a: Vec, b: Vec): Vec => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const deg = (c: number) => (Math.acos(Math.min(1, Math.abs(c))) * 180) / Math.PI;
const quantile = (xs: number[], q: number) => xs.slice().sort((a, b) => a - b)[Math.floor(q * (xs.length - 1))];

// Thick sheets and a coarse, strong fibre texture, noiseless and unblurred: the fibre orientation is
// then measurable from the image alone.
const thick = resolvePhantomConfig({
  preset: 'default',
  shape: [28, 112, 112],
  seed: 5,
  wraps: 2.2,
  innerRadius: 18,
  thickness: 14,
  gap: 8,
  waviness: 1.5,
  compression: 0.5,
  compressionScale: 30,
  tearRate: 0,
  fibreWavelength: 5,
  fibreContrast: 0.5,
  fibreMeander: 1.5,
  inkContrast: 0,
  noise: 0,
  blur: 0,
});
const [D, H, W] = thick.shape;
const N = D * H * W;
const vol = phantomRegion(thick, { offset: [0, 0, 0], shape: thick.shape });
const idx = (z: number, y: number, x: number) => (z * H + y) * W + x;
const vec = (a: Float32Array, i: number): Vec => [a[i], a[N + i], a[2 * N + i]];

describe('fibre and normal labels', () => {
  it('are unit vectors, exactly perpendicular, and zero outside papyrus', () => {
    let papyrus = 0;
    let worst = 0;
    const bad = { unit: 0, nonzeroOutside: 0, wrapLabel: 0 };
    for (let i = 0; i < N; i++) {
      const f = vec(vol.fibre, i);
      const n = vec(vol.normal, i);
      if (!vol.papyrus[i]) {
        if (f.some((v) => v !== 0) || n.some((v) => v !== 0)) bad.nonzeroOutside++;
        if (vol.wrap[i] !== 0) bad.wrapLabel++;
        continue;
      }
      papyrus++;
      if (Math.abs(Math.hypot(...f) - 1) > 1e-6 || Math.abs(Math.hypot(...n) - 1) > 1e-6) bad.unit++;
      if (vol.wrap[i] === 0) bad.wrapLabel++;
      worst = Math.max(worst, Math.abs(dot(f, n)));
    }
    expect(papyrus).toBeGreaterThan(0.1 * N);
    expect(bad).toEqual({ unit: 0, nonzeroOutside: 0, wrapLabel: 0 });
    expect(worst).toBeLessThan(1e-6);
  });

  it('fibre labels agree with a structure-tensor estimate of the noiseless texture (and a wrong label does not)', () => {
    const img = Float64Array.from(vol.image);
    const R = 1;
    const errors: number[] = [];
    const rotated: number[] = [];
    for (let z = R + 1; z < D - R - 1; z++)
      for (let y = R + 1; y < H - R - 1; y++)
        for (let x = R + 1; x < W - R - 1; x++) {
          const c = idx(z, y, x);
          if (!vol.papyrus[c]) continue;
          const f = vec(vol.fibre, c);
          const n = vec(vol.normal, c);
          // Only windows inside one face of one wrap (the texture changes across faces and edges).
          let inside = true;
          for (let dz = -R - 1; dz <= R + 1 && inside; dz++)
            for (let dy = -R - 1; dy <= R + 1 && inside; dy++)
              for (let dx = -R - 1; dx <= R + 1 && inside; dx++) {
                const j = idx(z + dz, y + dy, x + dx);
                if (vol.wrap[j] !== vol.wrap[c] || Math.abs(dot(vec(vol.fibre, j), f)) < 0.9) inside = false;
              }
          if (!inside) continue;
          // Structure tensor of the in-plane gradient (normal component removed), summed over the window.
          const T = [0, 0, 0, 0, 0, 0, 0, 0, 0];
          for (let dz = -R; dz <= R; dz++)
            for (let dy = -R; dy <= R; dy++)
              for (let dx = -R; dx <= R; dx++) {
                const Z = z + dz, Y = y + dy, X = x + dx;
                const g: Vec = [
                  (img[idx(Z + 1, Y, X)] - img[idx(Z - 1, Y, X)]) / 2,
                  (img[idx(Z, Y + 1, X)] - img[idx(Z, Y - 1, X)]) / 2,
                  (img[idx(Z, Y, X + 1)] - img[idx(Z, Y, X - 1)]) / 2,
                ];
                const gn = dot(g, n);
                const t: Vec = [g[0] - gn * n[0], g[1] - gn * n[1], g[2] - gn * n[2]];
                for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) T[3 * a + b] += t[a] * t[b];
              }
          // In the plane spanned by e1 = f and e2 = n x f: the direction of least change.
          const e1 = f;
          const e2 = cross(n, f);
          const q = (u: Vec, v: Vec) => {
            let s = 0;
            for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) s += u[a] * T[3 * a + b] * v[b];
            return s;
          };
          const m11 = q(e1, e1);
          const m22 = q(e2, e2);
          const m12 = q(e1, e2);
          if (m11 + m22 < 1e-9) continue;
          // Angle of the principal (largest-change) axis from e1; the fibre estimate is 90° from it.
          const major = 0.5 * Math.atan2(2 * m12, m11 - m22);
          const minor = major + Math.PI / 2;
          errors.push(deg(Math.cos(minor)));
          rotated.push(deg(Math.sin(minor))); // the same estimate against the label turned 90° in the plane
        }
    expect(errors.length).toBeGreaterThan(200);
    // Measured: median 0.9°, 90th percentile 2.3° over ~29k windows.
    expect(quantile(errors, 0.5)).toBeLessThan(3);
    expect(quantile(errors, 0.9)).toBeLessThan(8);
    expect(quantile(rotated, 0.5)).toBeGreaterThan(70);
  });

  it('normals agree with the gradient of the smoothed papyrus mask', () => {
    // Box-smoothed mask (5^3), then central differences; the gradient points into the sheet.
    const S = 2;
    const sm = new Float64Array(N);
    for (let z = S; z < D - S; z++)
      for (let y = S; y < H - S; y++)
        for (let x = S; x < W - S; x++) {
          let acc = 0;
          for (let dz = -S; dz <= S; dz++) for (let dy = -S; dy <= S; dy++) for (let dx = -S; dx <= S; dx++) acc += vol.papyrus[idx(z + dz, y + dy, x + dx)];
          sm[idx(z, y, x)] = acc / (2 * S + 1) ** 3;
        }
    const errors: number[] = [];
    for (let z = S + 1; z < D - S - 1; z++)
      for (let y = S + 1; y < H - S - 1; y++)
        for (let x = S + 1; x < W - S - 1; x++) {
          const c = idx(z, y, x);
          if (!vol.papyrus[c]) continue;
          const g: Vec = [(sm[idx(z + 1, y, x)] - sm[idx(z - 1, y, x)]) / 2, (sm[idx(z, y + 1, x)] - sm[idx(z, y - 1, x)]) / 2, (sm[idx(z, y, x + 1)] - sm[idx(z, y, x - 1)]) / 2];
          const len = Math.hypot(...g);
          if (len < 0.08) continue; // deep inside the sheet, or where wraps merge: no edge to measure
          errors.push(deg(dot(g, vec(vol.normal, c)) / len));
        }
    expect(errors.length).toBeGreaterThan(1000);
    // Measured: median 4.4°, 90th percentile 8.3° (the smoothed mask of a voxelised sheet).
    expect(quantile(errors, 0.5)).toBeLessThan(7);
    expect(quantile(errors, 0.9)).toBeLessThan(15);
  });
});

describe('ink', () => {
  it('lies on recto surfaces only: outward along the normal the sheet ends within the ink depth, inward it goes on', () => {
    const c = resolvePhantomConfig({ preset: 'default', shape: [24, 128, 128], seed: 8 });
    const [d, h, w] = c.shape;
    const n = d * h * w;
    const r = phantomRegion(c, { offset: [0, 0, 0], shape: c.shape });
    const at = (z: number, y: number, x: number) => (z >= 0 && y >= 0 && x >= 0 && z < d && y < h && x < w ? (z * h + y) * w + x : -1);
    let inked = 0;
    const bad = { offPapyrus: 0, noOuterFace: 0, outerFaceOnly: 0 };
    for (let z = 0; z < d; z++)
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const i = at(z, y, x);
          if (!r.ink[i]) continue;
          inked++;
          if (!r.papyrus[i]) bad.offPapyrus++;
          const nz = r.normal[i], ny = r.normal[n + i], nx = r.normal[2 * n + i];
          // Outward: within inkDepth + 1.5 voxels, leave this wrap (air or the next wrap).
          let left = false;
          for (let t = 0.5; t <= c.inkDepth + 1.5 && !left; t += 0.25) {
            const j = at(Math.round(z + t * nz), Math.round(y + t * ny), Math.round(x + t * nx));
            if (j < 0 || r.wrap[j] !== r.wrap[i]) left = true;
          }
          if (!left) bad.noOuterFace++;
          // Inward by the same distance the sheet is still there (ink is not on the verso face).
          const j = at(Math.round(z - (c.inkDepth + 0.5) * nz), Math.round(y - (c.inkDepth + 0.5) * ny), Math.round(x - (c.inkDepth + 0.5) * nx));
          if (j >= 0 && r.wrap[j] !== r.wrap[i]) bad.outerFaceOnly++;
        }
    expect(inked).toBeGreaterThan(300);
    expect(bad.offPapyrus).toBe(0);
    // A few voxels at the ends of thin sheets may round onto neighbours; almost all must pass.
    expect(bad.noOuterFace / inked).toBeLessThan(0.01);
    expect(bad.outerFaceOnly / inked).toBeLessThan(0.02);
  });
});

describe('sheetAt (the analytic slow path)', () => {
  it('agrees with the voxel labels: its centre points are papyrus of its wrap, with the same frame', () => {
    const c = thick;
    const b = (c.thickness + c.gap) / (2 * Math.PI);
    const F = (q: number) => (q * Math.sqrt(q * q + b * b) + b * b * Math.asinh(q / b)) / (2 * b);
    const sMax = F(c.innerRadius + b * 2 * Math.PI * c.wraps) - F(c.innerRadius);
    let checked = 0;
    let wrong = 0;
    const angles: number[] = [];
    for (let s = 1; s < sMax; s += 3.7)
      for (let z = 2; z < D - 2; z += 5) {
        const p = sheetAt(c, s, z);
        expect(thetaOfArc(c, s)).toBeCloseTo(p.theta, 12);
        // θ(s) inverts s(θ).
        expect(F(c.innerRadius + b * p.theta) - F(c.innerRadius)).toBeCloseTo(s, 8);
        const [pz, py, px] = p.point.map(Math.round);
        if (py < 0 || px < 0 || py >= H || px >= W || !p.present) continue;
        const i = idx(pz, py, px);
        checked++;
        if (vol.wrap[i] !== Math.floor(p.theta / (2 * Math.PI)) + 1) wrong++;
        else angles.push(deg(dot(vec(vol.normal, i), p.normal)));
        expect(Math.hypot(...p.normal)).toBeCloseTo(1, 12);
        expect(Math.abs(dot(p.normal, p.rectoFibre))).toBeLessThan(1e-12);
        expect(Math.abs(dot(p.normal, p.versoFibre))).toBeLessThan(1e-12);
      }
    expect(checked).toBeGreaterThan(100);
    expect(wrong).toBe(0);
    // The voxel's label is the frame at the voxel (up to half a voxel off the centre surface).
    expect(quantile(angles, 0.9)).toBeLessThan(5);
  });
});

describe('what makes it hard', () => {
  const c = resolvePhantomConfig({ preset: 'default', shape: [48, 128, 128], seed: 2 });
  const r = phantomRegion(c, { offset: [0, 0, 0], shape: c.shape });
  const [d, , w] = c.shape;

  it('compression makes neighbouring wraps touch in places, and not everywhere', () => {
    // Papyrus voxels of one wrap whose x-neighbour is papyrus of another wrap: sheets in contact.
    const contacts = (wrap: Uint16Array) => {
      let n = 0;
      let surface = 0;
      for (let i = 0; i + 1 < wrap.length; i++) {
        if ((i + 1) % w === 0 || !wrap[i] || wrap[i] === wrap[i + 1]) continue;
        surface++;
        if (wrap[i + 1]) n++;
      }
      return { n, fraction: n / surface };
    };
    const touching = contacts(r.wrap);
    expect(touching.n).toBeGreaterThan(20);
    expect(touching.fraction).toBeLessThan(0.3);
    // Without compression or thickness variation, and with waviness well under gap / 2, wraps never touch.
    const loose = phantomRegion({ ...c, compression: 0, thicknessVariation: 0, waviness: 0.5 }, { offset: [0, 0, 0], shape: c.shape });
    expect(contacts(loose.wrap).n).toBe(0);
  });

  it('tears remove the sheet along cracks, and the thickness varies along the sheet', () => {
    const noTears = phantomRegion({ ...c, tearRate: 0 }, { offset: [0, 0, 0], shape: c.shape });
    let removed = 0;
    let added = 0;
    for (let i = 0; i < r.papyrus.length; i++) {
      if (noTears.papyrus[i] && !r.papyrus[i]) removed++;
      if (!noTears.papyrus[i] && r.papyrus[i]) added++;
    }
    expect(removed).toBeGreaterThan(50);
    expect(added).toBe(0);
    // Half thickness along one wrap's sheet varies by about ±thicknessVariation.
    const hs: number[] = [];
    for (let s = 0; s < 300; s += 2) for (let z = 0; z < d; z += 4) hs.push(sheetAt(c, s, z).halfThickness);
    const min = Math.min(...hs);
    const max = Math.max(...hs);
    expect(max / min).toBeGreaterThan(1 + c.thicknessVariation);
    expect(min).toBeGreaterThanOrEqual((c.thickness / 2) * (1 - c.thicknessVariation) - 1e-9);
    expect(max).toBeLessThanOrEqual((c.thickness / 2) * (1 + c.thicknessVariation) + 1e-9);
  });
});
