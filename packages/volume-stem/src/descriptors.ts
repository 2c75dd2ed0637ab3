/**
 * Routing descriptors a_i = g_aux(f_0[Ω_i]) (GoE draft eq. 3), the fixed part: per-token statistics
 * that tell the router what kind of structure a cell holds before any learning.
 *
 * - intensity mean and standard deviation over the cell;
 * - mean gradient magnitude, from central differences (fixed filters, edge-replicated borders);
 * - shape of the cell-averaged structure tensor J = mean(∇x ∇xᵀ) (Bigün & Granlund 1987; Knutsson 1989),
 *   eigenvalues λ1 ≥ λ2 ≥ λ3, as planarity (λ1 − λ2)/λ1, linearity (λ2 − λ3)/λ1, isotropy λ3/λ1.
 *   Note the naming is of the *imaged structure*: a sheet has its gradients along one normal (one large
 *   eigenvalue -> planar), a fibre has gradients across it in two directions (two large -> linear). These are
 *   Westin et al.'s (1997) measures with "linear" and "planar" swapped, as is usual for gradient tensors.
 * - optionally J / tr(J) (6 values): a sign-free orientation cue (recto fibres run around the scroll,
 *   verso fibres along z).
 *
 * The eigenvalues come from the trigonometric closed form for symmetric 3x3 matrices (Smith 1961) in
 * float32 tensor ops, not from a float64 solve on the host: the descriptors sit on the forward path of
 * every step, and a host solve would force a device read-back (a stall, and impossible synchronously on
 * WebGPU) and break `apply`'s synchronous contract. The closed form costs ~40 element-wise ops on
 * `[B*N, 1]` columns. Its float32 error is at most ~1e-3 · λ1 near repeated eigenvalues (acos is
 * ill-conditioned at ±1), ample for ratios that feed a learned projection; the tests check it against
 * a float64 Jacobi solver. No gradient is needed: the descriptors depend only on the input volume.
 */
import { tf } from '@goe/tf';
import type { TokenGrid } from './grid.js';
import { cellMean, tapColumn } from './neighbourhood.js';

/** Names of the descriptor channels, in order (the last six only with `orientation`). */
export const DESCRIPTOR_NAMES = [
  'mean',
  'std',
  'gradMag',
  'planarity',
  'linearity',
  'isotropy',
  'Jzz',
  'Jyy',
  'Jxx',
  'Jzy',
  'Jzx',
  'Jyx',
] as const;

/** Number of descriptor channels. */
export function descriptorCount(orientation: boolean): number {
  return orientation ? 12 : 6;
}

/** `[27, 4]`: neighbourhood columns -> (value, ∂z, ∂y, ∂x) by central differences. */
function basisMatrix(): tf.Tensor2D {
  const m = new Float32Array(27 * 4);
  m[tapColumn(0, 0, 0) * 4 + 0] = 1;
  m[tapColumn(1, 0, 0) * 4 + 1] = 0.5;
  m[tapColumn(-1, 0, 0) * 4 + 1] = -0.5;
  m[tapColumn(0, 1, 0) * 4 + 2] = 0.5;
  m[tapColumn(0, -1, 0) * 4 + 2] = -0.5;
  m[tapColumn(0, 0, 1) * 4 + 3] = 0.5;
  m[tapColumn(0, 0, -1) * 4 + 3] = -0.5;
  return tf.tensor2d(m, [27, 4]);
}

/** Pairs (i, j) of (v, gz, gy, gx) whose products form the quadratic voxel features. */
const QUAD_PAIRS: ReadonlyArray<readonly [number, number]> = [
  [0, 0], // v²
  [1, 1], // gz²
  [2, 2], // gy²
  [3, 3], // gx²
  [1, 2], // gz gy
  [1, 3], // gz gx
  [2, 3], // gy gx
];

function selector(side: 0 | 1): tf.Tensor2D {
  const m = new Float32Array(4 * QUAD_PAIRS.length);
  QUAD_PAIRS.forEach((p, k) => (m[(p[side] as number) * QUAD_PAIRS.length + k] = 1));
  return tf.tensor2d(m, [4, QUAD_PAIRS.length]);
}

/**
 * Per-voxel features whose cell means give the descriptors, as matmuls and element-wise ops on rank 2.
 *
 * @param cols `[R, 27]` neighbourhood columns (`neighbourhoodColumns`)
 * @returns `[R, 9]`: v, v², gz², gy², gx², gz·gy, gz·gx, gy·gx, |∇v|
 */
export function voxelFeatures(cols: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const basis = tf.matMul(cols, basisMatrix()); // [R, 4]: v, gz, gy, gx
    const quad = tf.mul(tf.matMul(basis, selector(0)), tf.matMul(basis, selector(1))); // [R, 7]
    const sumSq = tf.matMul(quad, tf.tensor2d([0, 1, 1, 1, 0, 0, 0], [7, 1])); // [R, 1]
    const value = tf.matMul(basis, tf.tensor2d([1, 0, 0, 0], [4, 1])); // [R, 1]
    return tf.concat([value, quad, tf.sqrt(sumSq)], 1) as tf.Tensor2D; // [R, 9]
  });
}

/**
 * Eigenvalues of symmetric 3x3 matrices by the trigonometric closed form (Smith 1961), descending.
 *
 * @param m `[M, 6]` entries (a00, a11, a22, a01, a02, a12)
 * @returns `[M, 3]` (λ1 ≥ λ2 ≥ λ3)
 */
export function symmetricEigenvalues3(m: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const [a, b, c, d, e, f] = tf.split(m, 6, 1) as tf.Tensor2D[] as [
      tf.Tensor2D,
      tf.Tensor2D,
      tf.Tensor2D,
      tf.Tensor2D,
      tf.Tensor2D,
      tf.Tensor2D,
    ];
    const q = tf.div(tf.add(tf.add(a, b), c), 3); // [M, 1] trace / 3
    const aq = tf.sub(a, q);
    const bq = tf.sub(b, q);
    const cq = tf.sub(c, q);
    const p1 = tf.add(tf.add(tf.square(d), tf.square(e)), tf.square(f));
    const p2 = tf.add(tf.add(tf.add(tf.square(aq), tf.square(bq)), tf.square(cq)), tf.mul(p1, 2));
    const p = tf.sqrt(tf.div(p2, 6)); // [M, 1]
    // B = (A − qI) / p; a multiple of I has p = 0, B = 0, r = 0 and all three eigenvalues q.
    const inv = tf.div(1, tf.maximum(p, 1e-30));
    const [ba, bb, bc, bd, be, bf] = [aq, bq, cq, d, e, f].map((t) => tf.mul(t, inv)) as [
      tf.Tensor,
      tf.Tensor,
      tf.Tensor,
      tf.Tensor,
      tf.Tensor,
      tf.Tensor,
    ];
    const det = tf.add(
      tf.sub(tf.mul(ba, tf.sub(tf.mul(bb, bc), tf.square(bf))), tf.mul(bd, tf.sub(tf.mul(bd, bc), tf.mul(bf, be)))),
      tf.mul(be, tf.sub(tf.mul(bd, bf), tf.mul(bb, be))),
    );
    const r = tf.clipByValue(tf.div(det, 2), -1, 1);
    const phi = tf.div(tf.acos(r), 3); // in [0, π/3], so λ1 ≥ λ2 ≥ λ3 below
    const l1 = tf.add(q, tf.mul(tf.mul(p, 2), tf.cos(phi)));
    const l3 = tf.add(q, tf.mul(tf.mul(p, 2), tf.cos(tf.add(phi, (2 * Math.PI) / 3))));
    const l2 = tf.sub(tf.sub(tf.mul(q, 3), l1), l3);
    return tf.concat([l1, l2, l3], 1) as tf.Tensor2D; // [M, 3]
  });
}

/**
 * The descriptor vector of every token.
 *
 * @param cols `[B*D*H*W, 27]` neighbourhood columns of the (normalised) input
 * @returns `[B*N, 6]` (mean, std, gradMag, planarity, linearity, isotropy), or `[B*N, 12]` with the six
 *   trace-normalised structure-tensor components (Jzz, Jyy, Jxx, Jzy, Jzx, Jyx) appended
 */
export function cellDescriptors(
  cols: tf.Tensor2D,
  batch: number,
  grid: TokenGrid,
  opts: { orientation: boolean; eps: number },
): tf.Tensor2D {
  return tf.tidy(() => {
    const means = cellMean(voxelFeatures(cols), batch, grid); // [B*N, 9]
    const [mean, meanSq, J, gradMag] = tf.split(means, [1, 1, 6, 1], 1) as [
      tf.Tensor2D,
      tf.Tensor2D,
      tf.Tensor2D,
      tf.Tensor2D,
    ];
    const std = tf.sqrt(tf.relu(tf.sub(meanSq, tf.square(mean)))); // [B*N, 1]
    const lam = symmetricEigenvalues3(J); // [B*N, 3]
    const [l1, l2, l3] = tf.split(lam, 3, 1) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
    const inv = tf.div(1, tf.add(tf.relu(l1), opts.eps)); // [B*N, 1]
    const planarity = tf.mul(tf.relu(tf.sub(l1, l2)), inv);
    const linearity = tf.mul(tf.relu(tf.sub(l2, l3)), inv);
    const isotropy = tf.mul(tf.relu(l3), inv);
    const parts: tf.Tensor[] = [mean, std, gradMag, planarity, linearity, isotropy];
    if (opts.orientation) {
      const trace = tf.matMul(J, tf.tensor2d([1, 1, 1, 0, 0, 0], [6, 1])); // [B*N, 1]
      parts.push(tf.div(J, tf.add(trace, opts.eps))); // [B*N, 6]
    }
    return tf.concat(parts, 1) as tf.Tensor2D; // [B*N, 6 or 12]
  });
}
