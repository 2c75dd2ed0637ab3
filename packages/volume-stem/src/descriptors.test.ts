import { describe, expect, it } from 'vitest';
import { backendsUnderTest, expectNoLeak, makeRng, tf, useBackend } from '@goe/tf';
import {
  DESCRIPTOR_NAMES,
  cellDescriptors,
  cellMean,
  makeTokenGrid,
  neighbourhoodColumns,
  patchifyRows,
  symmetricEigenvalues3,
  tapColumn,
  type Triple,
} from './index.js';

// ---------------------------------------------------------------------------------------------------
// float64 host references, written from the definitions

/** Eigenvalues of a symmetric 3x3 (a00, a11, a22, a01, a02, a12) by cyclic Jacobi rotations, descending. */
function jacobiEigen3(e: ArrayLike<number>): [number, number, number] {
  const a = [
    [e[0] as number, e[3] as number, e[4] as number],
    [e[3] as number, e[1] as number, e[5] as number],
    [e[4] as number, e[5] as number, e[2] as number],
  ] as number[][];
  const at = (i: number, j: number): number => (a[i] as number[])[j] as number;
  const set = (i: number, j: number, v: number): void => {
    (a[i] as number[])[j] = v;
  };
  for (let sweep = 0; sweep < 50; sweep++) {
    const off = at(0, 1) ** 2 + at(0, 2) ** 2 + at(1, 2) ** 2;
    if (off < 1e-30) break;
    for (const [p, q] of [
      [0, 1],
      [0, 2],
      [1, 2],
    ] as const) {
      if (Math.abs(at(p, q)) < 1e-300) continue;
      const theta = (at(q, q) - at(p, p)) / (2 * at(p, q));
      const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
      const c = 1 / Math.sqrt(t * t + 1);
      const s = t * c;
      for (let k = 0; k < 3; k++) {
        const akp = at(k, p);
        const akq = at(k, q);
        set(k, p, c * akp - s * akq);
        set(k, q, s * akp + c * akq);
      }
      for (let k = 0; k < 3; k++) {
        const apk = at(p, k);
        const aqk = at(q, k);
        set(p, k, c * apk - s * aqk);
        set(q, k, s * apk + c * aqk);
      }
    }
  }
  return [at(0, 0), at(1, 1), at(2, 2)].sort((x, y) => y - x) as [number, number, number];
}

const clamp = (v: number, n: number): number => Math.min(n - 1, Math.max(0, v));

/** Descriptors of every token of `[B, D, H, W]` `vol`, from the definitions in descriptors.ts. */
function hostDescriptors(
  vol: ArrayLike<number>,
  shape: [number, number, number, number],
  cell: Triple,
  eps: number,
): Float64Array {
  const [B, D, H, W] = shape;
  const [cz, cy, cx] = cell;
  const [gd, gh, gw] = [D / cz, H / cy, W / cx];
  const at = (b: number, z: number, y: number, x: number): number =>
    vol[((b * D + clamp(z, D)) * H + clamp(y, H)) * W + clamp(x, W)] as number;
  const out = new Float64Array(B * gd * gh * gw * 12);
  let o = 0;
  for (let b = 0; b < B; b++)
    for (let tz = 0; tz < gd; tz++)
      for (let ty = 0; ty < gh; ty++)
        for (let tx = 0; tx < gw; tx++) {
          let s1 = 0;
          let s2 = 0;
          let sg = 0;
          const J = [0, 0, 0, 0, 0, 0];
          for (let z = tz * cz; z < (tz + 1) * cz; z++)
            for (let y = ty * cy; y < (ty + 1) * cy; y++)
              for (let x = tx * cx; x < (tx + 1) * cx; x++) {
                const v = at(b, z, y, x);
                const gz = (at(b, z + 1, y, x) - at(b, z - 1, y, x)) / 2;
                const gy = (at(b, z, y + 1, x) - at(b, z, y - 1, x)) / 2;
                const gx = (at(b, z, y, x + 1) - at(b, z, y, x - 1)) / 2;
                s1 += v;
                s2 += v * v;
                sg += Math.sqrt(gz * gz + gy * gy + gx * gx);
                J[0] += gz * gz;
                J[1] += gy * gy;
                J[2] += gx * gx;
                J[3] += gz * gy;
                J[4] += gz * gx;
                J[5] += gy * gx;
              }
          const n = cz * cy * cx;
          const mean = s1 / n;
          const Jm = J.map((v) => v / n);
          const [l1, l2, l3] = jacobiEigen3(Jm);
          const tr = (Jm[0] as number) + (Jm[1] as number) + (Jm[2] as number);
          const den = Math.max(l1, 0) + eps;
          out.set(
            [
              mean,
              Math.sqrt(Math.max(0, s2 / n - mean * mean)),
              sg / n,
              Math.max(0, l1 - l2) / den,
              Math.max(0, l2 - l3) / den,
              Math.max(0, l3) / den,
              ...Jm.map((v) => v / (tr + eps)),
            ],
            o,
          );
          o += 12;
        }
  return out;
}

function volume(shape: [number, number, number, number], f: (b: number, z: number, y: number, x: number) => number): Float32Array {
  const [B, D, H, W] = shape;
  const v = new Float32Array(B * D * H * W);
  let i = 0;
  for (let b = 0; b < B; b++)
    for (let z = 0; z < D; z++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) v[i++] = f(b, z, y, x);
  return v;
}

async function descriptorsOf(vol: Float32Array, shape: [number, number, number, number], cell: Triple): Promise<Float32Array> {
  const grid = makeTokenGrid(shape.slice(1), cell);
  const t = tf.tidy(() =>
    cellDescriptors(neighbourhoodColumns(tf.tensor4d(vol, shape)), shape[0], grid, { orientation: true, eps: 1e-8 }),
  );
  const data = (await t.data()) as Float32Array;
  t.dispose();
  return data;
}

/** Column `name` of `[rows, 12]` descriptors. */
function column(desc: ArrayLike<number>, name: (typeof DESCRIPTOR_NAMES)[number]): number[] {
  const k = DESCRIPTOR_NAMES.indexOf(name);
  const out: number[] = [];
  for (let i = k; i < desc.length; i += 12) out.push(desc[i] as number);
  return out;
}

// ---------------------------------------------------------------------------------------------------

describe('symmetricEigenvalues3', () => {
  it('matches a float64 Jacobi solver on random, rank-deficient and isotropic matrices', async () => {
    await useBackend('cpu');
    const rng = makeRng(3);
    const mats: number[][] = [];
    for (let i = 0; i < 200; i++) {
      // J = Σ_k g_k g_kᵀ with 1..4 random vectors: PSD, rank 1-3, like a structure tensor.
      const m = [0, 0, 0, 0, 0, 0];
      const rank = 1 + (i % 4);
      for (let k = 0; k < rank; k++) {
        const g = [rng.normal(), rng.normal(), rng.normal()] as [number, number, number];
        m[0] += g[0] * g[0];
        m[1] += g[1] * g[1];
        m[2] += g[2] * g[2];
        m[3] += g[0] * g[1];
        m[4] += g[0] * g[2];
        m[5] += g[1] * g[2];
      }
      mats.push(m.map((v) => Math.fround(v)));
    }
    mats.push([2, 2, 2, 0, 0, 0], [0, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0]);
    const t = tf.tidy(() => symmetricEigenvalues3(tf.tensor2d(mats.flat(), [mats.length, 6])));
    const got = await t.data();
    t.dispose();
    let worst = 0;
    mats.forEach((m, i) => {
      const ref = jacobiEigen3(m);
      const scale = Math.max(ref[0], 1e-6);
      for (let k = 0; k < 3; k++) worst = Math.max(worst, Math.abs((got[i * 3 + k] as number) - ref[k]!) / scale);
      expect(got[i * 3]! + 1e-5 * scale).toBeGreaterThanOrEqual(got[i * 3 + 1]!);
      expect(got[i * 3 + 1]! + 1e-5 * scale).toBeGreaterThanOrEqual(got[i * 3 + 2]!);
    });
    // float32 closed form: error relative to λ1 stays below 2e-3 even at repeated eigenvalues.
    expect(worst).toBeLessThan(2e-3);
  });
});

describe('neighbourhoodColumns / patchifyRows / cellMean', () => {
  it('equal host gathers on every backend', async () => {
    const shape: [number, number, number, number] = [2, 4, 6, 8];
    const [B, D, H, W] = shape;
    const rng = makeRng(5);
    const vol = volume(shape, () => rng.normal());
    const cell: Triple = [2, 3, 4];
    const grid = makeTokenGrid([D, H, W], cell);
    for (const backend of await backendsUnderTest()) {
      await useBackend(backend);
      const cols = tf.tidy(() => neighbourhoodColumns(tf.tensor4d(vol, shape)));
      const c = await cols.data();
      expect(cols.shape).toEqual([B * D * H * W, 27]);
      let err = 0;
      for (let b = 0, r = 0; b < B; b++)
        for (let z = 0; z < D; z++)
          for (let y = 0; y < H; y++)
            for (let x = 0; x < W; x++, r++)
              for (let dz = -1; dz <= 1; dz++)
                for (let dy = -1; dy <= 1; dy++)
                  for (let dx = -1; dx <= 1; dx++) {
                    const want = vol[((b * D + clamp(z + dz, D)) * H + clamp(y + dy, H)) * W + clamp(x + dx, W)]!;
                    err = Math.max(err, Math.abs(c[r * 27 + tapColumn(dz, dy, dx)]! - want));
                  }
      expect(err, backend).toBe(0);
      cols.dispose();

      // Two feature channels per voxel: (v, 10 v) so that channel order is checked too.
      const feat = tf.tidy(() => {
        const v = tf.tensor2d(vol, [B * D * H * W, 1]);
        return tf.concat([v, tf.mul(v, 10)], 1) as tf.Tensor2D;
      });
      const p = tf.tidy(() => patchifyRows(feat, B, grid));
      const m = tf.tidy(() => cellMean(feat, B, grid));
      const pd = await p.data();
      const md = await m.data();
      const [gd, gh, gw] = grid.dims;
      expect(p.shape).toEqual([B * gd * gh * gw, 2 * 2 * 3 * 4]);
      expect(m.shape).toEqual([B * gd * gh * gw, 2]);
      let perr = 0;
      let merr = 0;
      for (let b = 0, t = 0; b < B; b++)
        for (let tz = 0; tz < gd; tz++)
          for (let ty = 0; ty < gh; ty++)
            for (let tx = 0; tx < gw; tx++, t++) {
              let k = 0;
              let sum = 0;
              for (let z = 0; z < 2; z++)
                for (let y = 0; y < 3; y++)
                  for (let x = 0; x < 4; x++) {
                    const v = vol[((b * D + tz * 2 + z) * H + ty * 3 + y) * W + tx * 4 + x]!;
                    sum += v;
                    perr = Math.max(perr, Math.abs(pd[t * 48 + k]! - v), Math.abs(pd[t * 48 + k + 1]! - 10 * v));
                    k += 2;
                  }
              merr = Math.max(merr, Math.abs(md[t * 2]! - sum / 24), Math.abs(md[t * 2 + 1]! - (10 * sum) / 24));
            }
      expect(perr, backend).toBeLessThan(1e-5); // 10·v rounds in float32 on the device
      expect(merr, backend).toBeLessThan(1e-5);
      tf.dispose([feat, p, m]);
    }
  });
});

describe('cellDescriptors', () => {
  it('match the float64 definitions on a random volume, on every backend, without leaks', async () => {
    const shape: [number, number, number, number] = [2, 8, 8, 8];
    const rng = makeRng(11);
    // Smooth-ish random volume: a few random plane waves plus noise, so all measures vary.
    const waves = Array.from({ length: 3 }, () => [rng.normal(), rng.normal(), rng.normal(), rng.next() * 6]);
    const vol = volume(shape, (b, z, y, x) =>
      waves.reduce((s, [a, c, e, ph]) => s + Math.sin(a! * z + c! * y + e! * x + ph! + b), 0) + 0.3 * rng.normal(),
    );
    const ref = hostDescriptors(vol, shape, [4, 4, 4], 1e-8);
    for (const backend of await backendsUnderTest()) {
      await useBackend(backend);
      const got = await expectNoLeak(() => descriptorsOf(vol, shape, [4, 4, 4]), `descriptors on ${backend}`);
      expect(got.length).toBe(ref.length);
      let err = 0;
      for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i]! - ref[i]!));
      expect(err, backend).toBeLessThan(2e-3);
    }
  });

  it('a plane wave is planar, fibres along x are linear, white noise is isotropic', async () => {
    await useBackend('cpu');
    const shape: [number, number, number, number] = [1, 16, 16, 16];
    // Oblique sheets: intensity varies only along n = (1, 2, 2)/3.
    const plane = volume(shape, (_b, z, y, x) => Math.sin((2 * Math.PI * (z + 2 * y + 2 * x)) / 3 / 7));
    // Parallel fibres along x on a lattice in (z, y): gradients only in (z, y), in both directions.
    const fibres = volume(shape, (_b, z, y) => Math.sin((2 * Math.PI * z) / 8) * Math.sin((2 * Math.PI * y) / 8));
    const rng = makeRng(2);
    const noise = volume(shape, () => rng.normal());

    const p = await descriptorsOf(plane, shape, [8, 8, 8]);
    for (const v of column(p, 'planarity')) expect(v).toBeGreaterThan(0.9);
    for (const v of column(p, 'linearity')) expect(v).toBeLessThan(0.1);
    for (const v of column(p, 'isotropy')) expect(v).toBeLessThan(0.05);

    const f = await descriptorsOf(fibres, shape, [8, 8, 8]);
    for (const v of column(f, 'linearity')) expect(v).toBeGreaterThan(0.8);
    for (const v of column(f, 'planarity')) expect(v).toBeLessThan(0.2);
    for (const v of column(f, 'isotropy')) expect(v).toBeLessThan(1e-4); // no gradient along x at all
    for (const v of column(f, 'Jxx')) expect(Math.abs(v)).toBeLessThan(1e-6);

    const n = await descriptorsOf(noise, shape, [8, 8, 8]);
    const iso = column(n, 'isotropy');
    const lin = column(n, 'linearity');
    const pla = column(n, 'planarity');
    iso.forEach((v, i) => {
      expect(v).toBeGreaterThan(0.5);
      expect(v).toBeGreaterThan(lin[i]!);
      expect(v).toBeGreaterThan(pla[i]!);
    });
    // Unit-variance noise: per-cell mean near 0, std near 1.
    for (const v of column(n, 'std')) expect(Math.abs(v - 1)).toBeLessThan(0.15);
  });
});
