/**
 * Fiber metrics and target derivation on the host, in float64.
 *
 * - `angularErrorDegrees`: sign-free angle between predicted and true directions, mean and median.
 * - `fiberTargetsFromVoxels`: one direction per token from a voxel direction field: the principal
 *   eigenvector of the mean outer product Σ t tᵀ (the sign-free average; averaging t itself would let
 *   t and −t cancel), with its coherence (λ1 − λ2)/λ1.
 * - `structureTensorFibers`: the classical estimate to compare a learned head with: the fibre runs
 *   along the direction of least intensity change, the eigenvector of the smallest eigenvalue of the
 *   cell-averaged gradient structure tensor (Bigün & Granlund 1987).
 *
 * Directions are (z, y, x); arrays are row-major, 3 values per row.
 */
import { angularErrorStats, type AngleStats, type TokenGrid } from '@goe/tf';
import { FiberInputError } from './errors.js';

/** Mean and median sign-free angle in degrees, and the rows counted (mask 1 and both vectors non-zero). */
export type AngularError = AngleStats;

/**
 * Sign-free angle between directions: acos(|v·t| / (|v||t|)) in degrees, in [0, 90].
 *
 * @param pred `[M*3]` directions (any length)
 * @param target `[M*3]`; a zero vector marks an unlabelled row
 * @param mask `[M]`, 1 = counted (optional)
 */
export function angularErrorDegrees(pred: ArrayLike<number>, target: ArrayLike<number>, mask?: ArrayLike<number>): AngularError {
  return angularErrorStats(pred, target, mask, { fail: (i, e, r) => new FiberInputError(i, e, r) });
}

/** Angular errors of all counted rows and of the rows whose true fibre is horizontal or vertical. */
export interface FiberErrorByFace {
  all: AngularError;
  /** Rows whose true direction is within 45° of the plane normal to the scroll axis (recto fibres). */
  horizontal: AngularError;
  /** Rows whose true direction is within 45° of the scroll axis (verso fibres). */
  vertical: AngularError;
}

/**
 * Angular error split by the true fibre's orientation to the scroll axis. On a papyrus sheet the two
 * faces carry crossed fibres: horizontal on the recto, running around the scroll, and vertical on the
 * verso, along its axis (DESIGN.md §7; the phantom draws them so). Classifying by the true direction
 * needs no face label: a row is vertical when |t·axis| / |t| > cos 45°.
 * @param pred `[M*3]` (z, y, x) @param target `[M*3]`; zero rows are unlabelled @param mask `[M]`
 * @param axis the scroll axis (default z = (1, 0, 0))
 */
export function fiberErrorByFace(
  pred: ArrayLike<number>,
  target: ArrayLike<number>,
  mask?: ArrayLike<number>,
  axis: readonly [number, number, number] = [1, 0, 0],
): FiberErrorByFace {
  const all = angularErrorDegrees(pred, target, mask); // validates the sizes
  const na = Math.hypot(...axis);
  if (!(na > 0) || !axis.every(Number.isFinite)) throw new FiberInputError('axis', 'a non-zero finite 3-vector', JSON.stringify(axis));
  const m = target.length / 3;
  const vertical = new Uint8Array(m);
  const horizontal = new Uint8Array(m);
  for (let i = 0; i < m; i++) {
    if (mask && !(mask[i] as number)) continue;
    const [z, y, x] = [target[3 * i] as number, target[3 * i + 1] as number, target[3 * i + 2] as number];
    const nt = Math.hypot(z, y, x);
    if (nt === 0) continue;
    const c = Math.abs(z * axis[0] + y * axis[1] + x * axis[2]) / (nt * na);
    if (c > Math.SQRT1_2) vertical[i] = 1;
    else horizontal[i] = 1;
  }
  return { all, horizontal: angularErrorDegrees(pred, target, horizontal), vertical: angularErrorDegrees(pred, target, vertical) };
}

export interface SymmetricEigen3 {
  /** Eigenvalues, descending. */
  values: [number, number, number];
  /** Unit eigenvectors (z, y, x), `vectors[k]` belongs to `values[k]`. */
  vectors: [[number, number, number], [number, number, number], [number, number, number]];
}

/**
 * The six entries (row, column) of a symmetric 3x3 matrix in the order this package stores them:
 * zz, yy, xx, zy, zx, yx (the order `symmetricEigen3` takes and the tensor head outputs).
 */
export const SYMMETRIC_ENTRIES: readonly (readonly [number, number])[] = Object.freeze([
  [0, 0],
  [1, 1],
  [2, 2],
  [0, 1],
  [0, 2],
  [1, 2],
] as const);

/** Columns p and q of a 3x3 `m` times the Jacobi rotation J: (m_kp, m_kq) <- (c m_kp − s m_kq, s m_kp + c m_kq). */
function rotateColumns(m: number[][], p: number, q: number, c: number, s: number): void {
  for (let k = 0; k < 3; k++) {
    const row = m[k] as number[];
    const mkp = row[p] as number;
    const mkq = row[q] as number;
    row[p] = c * mkp - s * mkq;
    row[q] = s * mkp + c * mkq;
  }
}

/**
 * Eigen-decomposition of a symmetric 3x3 matrix by cyclic Jacobi rotations (float64, to ~1e-15).
 * @param m (a00, a11, a22, a01, a02, a12)
 */
export function symmetricEigen3(m: ArrayLike<number>): SymmetricEigen3 {
  const a = [
    [m[0] as number, m[3] as number, m[4] as number],
    [m[3] as number, m[1] as number, m[5] as number],
    [m[4] as number, m[5] as number, m[2] as number],
  ];
  const v = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ];
  const A = (i: number, j: number): number => (a[i] as number[])[j] as number;
  for (let sweep = 0; sweep < 50; sweep++) {
    const off = A(0, 1) ** 2 + A(0, 2) ** 2 + A(1, 2) ** 2;
    const scale = A(0, 0) ** 2 + A(1, 1) ** 2 + A(2, 2) ** 2;
    if (off <= 1e-30 * scale || off === 0) break;
    for (const [p, q] of [
      [0, 1],
      [0, 2],
      [1, 2],
    ] as const) {
      const apq = A(p, q);
      if (apq === 0) continue;
      const theta = (A(q, q) - A(p, p)) / (2 * apq);
      const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
      const c = 1 / Math.sqrt(t * t + 1);
      const s = t * c;
      rotateColumns(a, p, q, c, s); // A J
      // Jᵀ (A J): rows p and q.
      const rp = a[p] as number[];
      const rq = a[q] as number[];
      for (let k = 0; k < 3; k++) {
        const apk = rp[k] as number;
        const aqk = rq[k] as number;
        rp[k] = c * apk - s * aqk;
        rq[k] = s * apk + c * aqk;
      }
      rotateColumns(v, p, q, c, s); // V J: accumulates the eigenvectors
    }
  }
  const order = [0, 1, 2].sort((i, j) => A(j, j) - A(i, i));
  const col = (k: number): [number, number, number] => [(v[0] as number[])[k]!, (v[1] as number[])[k]!, (v[2] as number[])[k]!];
  return {
    values: order.map((k) => A(k, k)) as [number, number, number],
    vectors: order.map(col) as SymmetricEigen3['vectors'],
  };
}

// The token grid (the volume stem's): `dims` tokens per axis, `cell` voxels per token, `inputShape` [D, H, W].
export type { TokenGrid };

export interface FiberTargets {
  /** `[B*N*3]` unit directions (z, y, x); zero where unlabelled. */
  target: Float32Array;
  /** `[B*N]` 1 = labelled token. */
  mask: Uint8Array;
  /** `[B*N]` (λ1 − λ2)/λ1 of the mean outer product: 1 = all voxels agree, 0 = no dominant direction. */
  coherence: Float32Array;
}

function voxelIndex(grid: TokenGrid, b: number, z: number, y: number, x: number): number {
  const [D, H, W] = grid.inputShape;
  return ((b * D + z) * H + y) * W + x;
}

/** Visits every token of `batch` patches in order, with an iterator over its cell's voxels (index into `[B, D, H, W]`, and z, y, x in the patch). */
export function forEachToken(
  grid: TokenGrid,
  batch: number,
  visit: (token: number, voxels: (f: (v: number, z: number, y: number, x: number) => void) => void) => void,
): void {
  const [gd, gh, gw] = grid.dims;
  const [cz, cy, cx] = grid.cell;
  let t = 0;
  for (let b = 0; b < batch; b++)
    for (let tz = 0; tz < gd; tz++)
      for (let ty = 0; ty < gh; ty++)
        for (let tx = 0; tx < gw; tx++, t++)
          visit(t, (f) => {
            for (let z = tz * cz; z < (tz + 1) * cz; z++)
              for (let y = ty * cy; y < (ty + 1) * cy; y++)
                for (let x = tx * cx; x < (tx + 1) * cx; x++) f(voxelIndex(grid, b, z, y, x), z, y, x);
          });
}

/**
 * Per-token fibre targets from a voxel direction field (e.g. the phantom's fibre labels).
 *
 * @param dirs `[B, D, H, W, 3]` directions, any length; zero vectors = unlabelled voxels
 * @param grid the token grid over `[D, H, W]`
 * @param opts.minLabelled fraction of a cell's voxels that must be labelled for the token to count (default 0.5)
 */
export function fiberTargetsFromVoxels(
  dirs: ArrayLike<number>,
  grid: TokenGrid,
  batch: number,
  opts: { minLabelled?: number } = {},
): FiberTargets {
  const [D, H, W] = grid.inputShape;
  if (dirs.length !== batch * D * H * W * 3) {
    throw new FiberInputError('dirs', `${batch * D * H * W * 3} values ([B, D, H, W, 3])`, `${dirs.length}`);
  }
  const N = grid.dims[0] * grid.dims[1] * grid.dims[2];
  const cv = grid.cell[0] * grid.cell[1] * grid.cell[2];
  const minLabelled = opts.minLabelled ?? 0.5;
  const target = new Float32Array(batch * N * 3);
  const mask = new Uint8Array(batch * N);
  const coherence = new Float32Array(batch * N);
  forEachToken(grid, batch, (t, voxels) => {
    const J = [0, 0, 0, 0, 0, 0];
    let labelled = 0;
    voxels((i) => {
      const a = dirs[3 * i] as number;
      const b = dirs[3 * i + 1] as number;
      const c = dirs[3 * i + 2] as number;
      const n2 = a * a + b * b + c * c;
      if (n2 === 0) return;
      labelled++;
      J[0] += (a * a) / n2;
      J[1] += (b * b) / n2;
      J[2] += (c * c) / n2;
      J[3] += (a * b) / n2;
      J[4] += (a * c) / n2;
      J[5] += (b * c) / n2;
    });
    if (labelled === 0 || labelled < minLabelled * cv) return;
    const e = symmetricEigen3(J);
    target.set(e.vectors[0], 3 * t);
    mask[t] = 1;
    coherence[t] = e.values[0] > 0 ? (e.values[0] - e.values[1]) / e.values[0] : 0;
  });
  return { target, mask, coherence };
}

/**
 * Classical fibre direction per token: the least-change eigenvector of the cell-averaged gradient
 * structure tensor (central differences, replicated borders).
 *
 * @param volume `[B, D, H, W]` intensities
 * @returns `[B*N*3]` unit directions (z, y, x) and the token-wise linearity (λ2 − λ3)/λ1 as confidence
 */
export function structureTensorFibers(
  volume: ArrayLike<number>,
  grid: TokenGrid,
  batch: number,
): { direction: Float32Array; confidence: Float32Array } {
  const [D, H, W] = grid.inputShape;
  if (volume.length !== batch * D * H * W) {
    throw new FiberInputError('volume', `${batch * D * H * W} values ([B, D, H, W])`, `${volume.length}`);
  }
  const N = grid.dims[0] * grid.dims[1] * grid.dims[2];
  const direction = new Float32Array(batch * N * 3);
  const confidence = new Float32Array(batch * N);
  const cl = (v: number, n: number): number => Math.min(n - 1, Math.max(0, v));
  forEachToken(grid, batch, (t, voxels) => {
    const b = Math.floor(t / N);
    const at = (z: number, y: number, x: number): number => volume[voxelIndex(grid, b, cl(z, D), cl(y, H), cl(x, W))] as number;
    const J = [0, 0, 0, 0, 0, 0];
    voxels((_i, z, y, x) => {
      const gz = (at(z + 1, y, x) - at(z - 1, y, x)) / 2;
      const gy = (at(z, y + 1, x) - at(z, y - 1, x)) / 2;
      const gx = (at(z, y, x + 1) - at(z, y, x - 1)) / 2;
      J[0] += gz * gz;
      J[1] += gy * gy;
      J[2] += gx * gx;
      J[3] += gz * gy;
      J[4] += gz * gx;
      J[5] += gy * gx;
    });
    const e = symmetricEigen3(J);
    direction.set(e.vectors[2], 3 * t);
    confidence[t] = e.values[0] > 0 ? (e.values[1] - e.values[2]) / e.values[0] : 0;
  });
  return { direction, confidence };
}
