/**
 * Geometry metrics on the host in float64 (tfjs reductions lose precision over millions of voxels).
 */
import { angularErrorStats, type AngleStats } from '@goe/tf';
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

/** Mean and median angle in degrees, and the rows counted (mask 1 and both vectors non-zero). */
export type NormalAngularError = AngleStats;

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
  return angularErrorStats(pred, target, mask, {
    signed: opts.signed ?? false,
    fail: (i, e, r) => new GeometryInputError(i, e, r),
  });
}
