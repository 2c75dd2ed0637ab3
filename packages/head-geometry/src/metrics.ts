/**
 * Geometry metrics on the host in float64 (tfjs reductions lose precision over millions of voxels).
 */
import { GeometryInputError } from './errors.js';

/**
 * Dice = 2·TP / (2·TP + FP + FN) over labelled voxels; 1 when neither prediction nor target has any
 * positive (both empty agree perfectly).
 *
 * @param pred probabilities or a 0/1 mask, one per voxel (positive when ≥ `threshold`)
 * @param target 0/1 (any value ≥ 0.5 is positive), same length
 * @param mask optional, 1 = labelled
 */
export function dice(
  pred: ArrayLike<number>,
  target: ArrayLike<number>,
  mask?: ArrayLike<number>,
  opts: { threshold?: number } = {},
): number {
  if (target.length !== pred.length) throw new GeometryInputError('target', `${pred.length} values (as pred)`, `${target.length}`);
  if (mask && mask.length !== pred.length) throw new GeometryInputError('mask', `${pred.length} values (as pred)`, `${mask.length}`);
  const th = opts.threshold ?? 0.5;
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < pred.length; i++) {
    if (mask && !(mask[i] as number)) continue;
    const p = (pred[i] as number) >= th;
    const t = (target[i] as number) >= 0.5;
    if (p && t) tp++;
    else if (p) fp++;
    else if (t) fn++;
  }
  const den = 2 * tp + fp + fn;
  return den === 0 ? 1 : (2 * tp) / den;
}

export interface NormalAngularError {
  /** Mean angle in degrees over counted rows (NaN when none). */
  mean: number;
  /** Median angle in degrees (NaN when none). */
  median: number;
  count: number;
}

/**
 * Angle between predicted and true normals in degrees: sign-free by default (n and −n are the same
 * sheet orientation: [0°, 90°]); with `signed: true` the full [0°, 180°] (when recto/verso matters).
 *
 * @param pred `[M*3]` normals (any length)
 * @param target `[M*3]`; zero vectors are unlabelled
 * @param mask `[M]`, 1 = counted (optional)
 */
export function normalAngularError(
  pred: ArrayLike<number>,
  target: ArrayLike<number>,
  mask?: ArrayLike<number>,
  opts: { signed?: boolean } = {},
): NormalAngularError {
  if (pred.length % 3 !== 0 || target.length !== pred.length) {
    throw new GeometryInputError('target', `${pred.length} values (3 per row, as pred)`, `${target.length}`);
  }
  const M = pred.length / 3;
  if (mask && mask.length !== M) throw new GeometryInputError('mask', `${M} values`, `${mask.length}`);
  const angles: number[] = [];
  for (let i = 0; i < M; i++) {
    if (mask && !(mask[i] as number)) continue;
    const a = [pred[3 * i] as number, pred[3 * i + 1] as number, pred[3 * i + 2] as number];
    const t = [target[3 * i] as number, target[3 * i + 1] as number, target[3 * i + 2] as number];
    const na = Math.hypot(a[0]!, a[1]!, a[2]!);
    const nt = Math.hypot(t[0]!, t[1]!, t[2]!);
    if (na === 0 || nt === 0) continue;
    let c = (a[0]! * t[0]! + a[1]! * t[1]! + a[2]! * t[2]!) / (na * nt);
    if (!opts.signed) c = Math.abs(c);
    angles.push((Math.acos(Math.max(-1, Math.min(1, c))) * 180) / Math.PI);
  }
  if (angles.length === 0) return { mean: NaN, median: NaN, count: 0 };
  angles.sort((p, q) => p - q);
  const n = angles.length;
  const median = n % 2 ? (angles[(n - 1) / 2] as number) : ((angles[n / 2 - 1] as number) + (angles[n / 2] as number)) / 2;
  return { mean: angles.reduce((s, v) => s + v, 0) / n, median, count: n };
}
