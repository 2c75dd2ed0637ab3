/**
 * Sheet-frame features per token, computed from the input volume on the host in float64: what a fibre
 * head needs and cannot easily learn from a weak texture.
 *
 * On a papyrus sheet the fibres lie in the sheet, crossed on its two faces: around the scroll on the
 * recto (outer face) and along the scroll axis on the verso (DESIGN.md §7). The sheet normal is robust
 * even where the fibre texture drowns in noise (the sheet/air contrast is strong), so the direction is
 * nearly settled once the normal and the face are known: recto ≈ axis × n, verso ≈ axis. Both come from
 * the volume alone:
 *
 * - Normal: the principal eigenvector of the gradient structure tensor at sheet scale (Bigün & Granlund
 *   1987; gradient of a Gaussian-smoothed volume, σ = `gradientSigma`, products smoothed with σ =
 *   `tensorSigma`, then averaged over the token's cell).
 * - Outward sign: the sheets of a scroll wrap around its axis, so the normal lines of a patch meet near
 *   the axis. The point c (in the y-x plane) nearest to all of them, in weighted least squares
 *   (Σ w P (x − c) = 0 with P = I − m mᵀ, m the in-plane normal), gives the inside; n is turned to
 *   point away from it.
 * - Face: across a sheet the intensity rises to its centre surface and falls beyond it, so on the outer
 *   half the intensity gradient points inward (g·n < 0) and on the inner half outward. The token's face
 *   score is the papyrus-weighted mean of g·n over its cell, over the patch's RMS gradient:
 *   negative = mostly recto, positive = mostly verso.
 *
 * The scroll axis is z (DESIGN.md §3, volumes are [B, D, H, W] with D along the axis). Directions are
 * (z, y, x).
 */
import { FiberInputError } from './errors.js';
import { SYMMETRIC_ENTRIES, forEachToken, symmetricEigen3, type TokenGrid } from './metrics.js';

export interface SheetFrameOptions {
  /** σ in voxels of the Gaussian smoothing before the gradient (default 0.7). */
  gradientSigma?: number;
  /** σ in voxels of the smoothing of the gradient products, the sheet scale (default 2). */
  tensorSigma?: number;
}

/** Names of the per-token feature channels, in order. */
export const SHEET_FEATURE_NAMES = Object.freeze([
  'normal.z', // outward sheet normal n (3)
  'normal.y',
  'normal.x',
  'recto.z', // axis × n, unit: the recto fibre if it runs straight around the scroll (3)
  'recto.y',
  'recto.x',
  'face', // papyrus-weighted mean g·n over the RMS gradient: < 0 recto, > 0 verso
  'coherence', // (λ1 − λ2)/λ1 of the sheet-scale tensor: 1 = one clear sheet
  'papyrus', // the cell's mean smoothed intensity, standardised over the patch
  'texture.axis', // fine-scale gradient energy along the axis, over the cell's total
  'texture.recto', // ... along axis × n
  'texture.cross', // ... the axis/recto cross term
  'rectoTensor.yy', // components of (axis × n)(axis × n)ᵀ (its z row is zero), so a head can mix
  'rectoTensor.xx', // the recto and verso orientation tensors without forming products itself
  'rectoTensor.yx',
] as const);

export const SHEET_FEATURE_WIDTH = SHEET_FEATURE_NAMES.length;

export interface SheetFrame {
  /** `[B*N*K]` features per token, K = `SHEET_FEATURE_WIDTH`, channels as `SHEET_FEATURE_NAMES`. */
  features: Float32Array;
  /** `[B*N*3]` outward unit normals (z, y, x). */
  normal: Float32Array;
  /** `[B*N]` face scores (< 0 recto, > 0 verso). */
  face: Float32Array;
}

/** Normalised Gaussian taps for σ > 0, radius ⌈3σ⌉. */
function gaussianTaps(sigma: number): Float64Array {
  const r = Math.ceil(3 * sigma);
  const k = Float64Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sigma * sigma)));
  const ks = k.reduce((s, v) => s + v, 0);
  return k.map((v) => v / ks);
}

/**
 * One axis of a separable filter over a `[n0, n1, n2]` array, line by line: each line is copied into a
 * buffer with `left` replicated edge values before it and enough after, and output c is
 * Σ_t taps[t] · padded[c · step + t], for `n / step` outputs. With step 1 and left = radius this is a
 * convolution with replicated borders; with step = cell it also sums each run of `cell` outputs.
 */
function filterAxis(a: Float64Array, shape: [number, number, number], axis: 0 | 1 | 2, taps: Float64Array, left: number, step: number): Float64Array {
  const n = shape[axis];
  const m = n / step;
  const outShape: [number, number, number] = [...shape];
  outShape[axis] = m;
  const strides = [shape[1] * shape[2], shape[2], 1];
  const outStrides = [outShape[1] * outShape[2], outShape[2], 1];
  const [u, v] = ([0, 1, 2] as const).filter((x) => x !== axis) as [0 | 1 | 2, 0 | 1 | 2];
  const [su, sv, sa] = [strides[u] as number, strides[v] as number, strides[axis] as number];
  const [ou, ov, oa] = [outStrides[u] as number, outStrides[v] as number, outStrides[axis] as number];
  const out = new Float64Array(outShape[0] * outShape[1] * outShape[2]);
  const nt = taps.length;
  const pad = new Float64Array((m - 1) * step + nt);
  for (let i = 0; i < shape[u]; i++)
    for (let j = 0; j < shape[v]; j++) {
      const base = i * su + j * sv;
      const outBase = i * ou + j * ov;
      for (let q = 0; q < pad.length; q++) pad[q] = a[base + (q < left ? 0 : q - left >= n ? n - 1 : q - left) * sa] as number;
      for (let c = 0; c < m; c++) {
        let acc = 0;
        const o = c * step;
        for (let t = 0; t < nt; t++) acc += (taps[t] as number) * (pad[o + t] as number);
        out[outBase + c * oa] = acc;
      }
    }
  return out;
}

/** Separable Gaussian smoothing of a `[D, H, W]` volume with replicated borders (σ = 0: a copy). */
export function gaussianSmooth(a: Float64Array, dims: readonly [number, number, number], sigma: number): Float64Array {
  if (sigma <= 0) return a.slice();
  const taps = gaussianTaps(sigma);
  const r = (taps.length - 1) / 2;
  const shape: [number, number, number] = [...dims];
  return filterAxis(filterAxis(filterAxis(a, shape, 0, taps, r, 1), shape, 1, taps, r, 1), shape, 2, taps, r, 1);
}

/**
 * Per-cell sums of the Gaussian-smoothed volume (σ = 0: of the volume), `[gd, gh, gw]` in token order:
 * the same numbers as smoothing at full resolution and then summing each cell, with the cell sum
 * folded into the taps (Gaussian ⊛ box) so that each axis is filtered only at the cells' positions.
 */
export function smoothedCellSums(a: Float64Array, grid: TokenGrid, sigma: number): Float64Array {
  const g = sigma > 0 ? gaussianTaps(sigma) : Float64Array.of(1);
  const r = (g.length - 1) / 2;
  let cur = a;
  const shape: [number, number, number] = [...grid.inputShape];
  for (const axis of [0, 1, 2] as const) {
    const cell = grid.cell[axis];
    const taps = new Float64Array(g.length + cell - 1);
    for (let t = 0; t < g.length; t++) for (let j = 0; j < cell; j++) taps[t + j]! += g[t] as number;
    cur = filterAxis(cur, shape, axis, taps, r, cell);
    shape[axis] = shape[axis] / cell;
  }
  return cur;
}

/** Central-difference gradient `[3][D*H*W]` (z, y, x) with replicated borders. */
function gradient(s: Float64Array, dims: readonly [number, number, number]): [Float64Array, Float64Array, Float64Array] {
  const [D, H, W] = dims;
  const g: [Float64Array, Float64Array, Float64Array] = [new Float64Array(s.length), new Float64Array(s.length), new Float64Array(s.length)];
  const at = (z: number, y: number, x: number): number =>
    s[(Math.min(D - 1, Math.max(0, z)) * H + Math.min(H - 1, Math.max(0, y))) * W + Math.min(W - 1, Math.max(0, x))] as number;
  for (let z = 0, i = 0; z < D; z++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++, i++) {
        g[0][i] = (at(z + 1, y, x) - at(z - 1, y, x)) / 2;
        g[1][i] = (at(z, y + 1, x) - at(z, y - 1, x)) / 2;
        g[2][i] = (at(z, y, x + 1) - at(z, y, x - 1)) / 2;
      }
  return g;
}

/**
 * Sheet-frame features of every token of `batch` patches.
 *
 * @param volume `[B, D, H, W]` intensities (any scale: the features are scale-free)
 * @param grid the token grid over `[D, H, W]`
 */
export function sheetFrameFeatures(volume: ArrayLike<number>, grid: TokenGrid, batch: number, opts: SheetFrameOptions = {}): SheetFrame {
  const dims = grid.inputShape;
  const V = dims[0] * dims[1] * dims[2];
  if (volume.length !== batch * V) throw new FiberInputError('volume', `${batch * V} values ([B, D, H, W])`, `${volume.length}`);
  const gradientSigma = opts.gradientSigma ?? 0.7;
  const tensorSigma = opts.tensorSigma ?? 2;
  for (const [name, v] of [['gradientSigma', gradientSigma], ['tensorSigma', tensorSigma]] as const) {
    if (!(Number.isFinite(v) && v >= 0)) throw new FiberInputError(name, 'a finite number >= 0', String(v));
  }
  const N = grid.dims[0] * grid.dims[1] * grid.dims[2];
  const K = SHEET_FEATURE_WIDTH;
  const features = new Float32Array(batch * N * K);
  const normal = new Float32Array(batch * N * 3);
  const face = new Float32Array(batch * N);
  const cellSize = grid.cell[0] * grid.cell[1] * grid.cell[2];
  for (let b = 0; b < batch; b++) {
    const patch = new Float64Array(V);
    for (let i = 0; i < V; i++) patch[i] = volume[b * V + i] as number;
    const s = gaussianSmooth(patch, dims, gradientSigma);
    const g = gradient(s, dims);
    // The sheet-scale tensor is only needed per cell: [N] sums of each smoothed component.
    const J = SYMMETRIC_ENTRIES.map(([p, q]) => {
      const prod = new Float64Array(V);
      const [gp, gq] = [g[p] as Float64Array, g[q] as Float64Array];
      for (let i = 0; i < V; i++) prod[i] = (gp[i] as number) * (gq[i] as number);
      return smoothedCellSums(prod, grid, tensorSigma);
    });
    let sMean = 0;
    let g2 = 0;
    for (let i = 0; i < V; i++) {
      sMean += s[i] as number;
      g2 += (g[0][i] as number) ** 2 + (g[1][i] as number) ** 2 + (g[2][i] as number) ** 2;
    }
    sMean /= V;
    const gRms = Math.sqrt(g2 / V) || 1;
    let sVar = 0;
    for (let i = 0; i < V; i++) sVar += ((s[i] as number) - sMean) ** 2;
    const sStd = Math.sqrt(sVar / V) || 1;

    // Pass 1: per-cell sheet tensor, normal, coherence, centre, papyrus level and fine texture tensor.
    const cells: { n: number[]; coh: number; pos: number[]; level: number; fine: number[]; voxels: number[] }[] = [];
    forEachToken(grid, 1, (t, voxels) => {
      const Jc = J.map((c) => c[t] as number);
      const fine = [0, 0, 0, 0, 0, 0];
      const pos = [0, 0, 0];
      let level = 0;
      const list: number[] = [];
      voxels((i, z, y, x) => {
        for (let k = 0; k < 6; k++) {
          const [p, q] = SYMMETRIC_ENTRIES[k]!;
          fine[k]! += (g[p][i] as number) * (g[q][i] as number);
        }
        pos[0]! += z;
        pos[1]! += y;
        pos[2]! += x;
        level += s[i] as number;
        list.push(i);
      });
      const e = symmetricEigen3(Jc);
      cells.push({
        n: [...e.vectors[0]],
        coh: e.values[0] > 0 ? (e.values[0] - e.values[1]) / e.values[0] : 0,
        pos: pos.map((v) => v / cellSize),
        level: level / cellSize,
        fine,
        voxels: list,
      });
    });
    // The point of the y-x plane nearest to every normal line, weighted by how clearly the cell holds a
    // sheet: the side of the scroll axis. Degenerate (all normals parallel: a flat sheet) leaves c at
    // infinity along no preferred side; the signs then stay as the eigen-solver gave them.
    let a11 = 0;
    let a12 = 0;
    let a22 = 0;
    let r1 = 0;
    let r2 = 0;
    for (const c of cells) {
      const [, ny, nx] = c.n as [number, number, number];
      const l2 = ny * ny + nx * nx;
      if (l2 < 1e-12) continue;
      const w = c.coh * Math.max(0, c.level - sMean) * l2;
      const p11 = 1 - (ny * ny) / l2;
      const p12 = -(ny * nx) / l2;
      const p22 = 1 - (nx * nx) / l2;
      a11 += w * p11;
      a12 += w * p12;
      a22 += w * p22;
      r1 += w * (p11 * c.pos[1]! + p12 * c.pos[2]!);
      r2 += w * (p12 * c.pos[1]! + p22 * c.pos[2]!);
    }
    const det = a11 * a22 - a12 * a12;
    const centre = det > 1e-9 * (a11 + a22) ** 2 ? [(a22 * r1 - a12 * r2) / det, (a11 * r2 - a12 * r1) / det] : undefined;

    // Pass 2: orient, score the face, write the features.
    cells.forEach((c, t) => {
      const row = b * N + t;
      let n = c.n;
      if (centre && n[1]! * (c.pos[1]! - centre[0]!) + n[2]! * (c.pos[2]! - centre[1]!) < 0) n = n.map((v) => -v);
      let f = 0;
      let wf = 0;
      for (const i of c.voxels) {
        const w = Math.max(0, (s[i] as number) - sMean);
        f += w * ((g[0][i] as number) * n[0]! + (g[1][i] as number) * n[1]! + (g[2][i] as number) * n[2]!);
        wf += w;
      }
      const faceScore = wf > 0 ? f / wf / gRms : 0;
      // axis × n with axis = z: (0, −n_x, n_y).
      const hl = Math.hypot(n[2]!, n[1]!);
      const h = hl > 1e-12 ? [0, -n[2]! / hl, n[1]! / hl] : [0, 1, 0];
      // Fine texture in the sheet frame: a recto (stripes across z) varies along the axis, a verso
      // (stripes along z) along h.
      const T = c.fine;
      const tr = T[0]! + T[1]! + T[2]! || 1;
      const tAxis = T[0]!;
      const tRecto = h[1]! * h[1]! * T[1]! + h[2]! * h[2]! * T[2]! + 2 * h[1]! * h[2]! * T[5]!;
      const tCross = h[1]! * T[3]! + h[2]! * T[4]!;
      const out = [
        ...n,
        ...h,
        faceScore,
        c.coh,
        (c.level - sMean) / sStd,
        tAxis / tr,
        tRecto / tr,
        tCross / tr,
        h[1]! * h[1]!,
        h[2]! * h[2]!,
        h[1]! * h[2]!,
      ];
      features.set(out, row * K);
      normal.set(n, row * 3);
      face[row] = faceScore;
    });
  }
  return { features, normal, face };
}

/**
 * The classical sheet-frame rule, for comparison with a learned head: axis × n where the face score
 * says recto (< 0), the axis where it says verso.
 * @returns `[B*N*3]` unit directions (z, y, x)
 */
export function sheetFrameFibers(frame: SheetFrame): Float32Array {
  const rows = frame.face.length;
  const out = new Float32Array(rows * 3);
  for (let r = 0; r < rows; r++) {
    const k = r * SHEET_FEATURE_WIDTH;
    if ((frame.face[r] as number) < 0) out.set(frame.features.subarray(k + 3, k + 6), 3 * r);
    else out[3 * r] = 1;
  }
  return out;
}
