/**
 * Angles between predicted and true 3-vectors on the host, in float64 (fibre directions, sheet
 * normals): the metric behind the fiber and geometry heads' angular errors.
 */
import type { InputErrorFactory } from './errors.js';

export interface AngleStats {
  /** Mean angle in degrees over counted rows (NaN when none). */
  mean: number;
  /** Median angle in degrees (NaN when none). */
  median: number;
  /** Rows counted (mask 1 and both vectors non-zero). */
  count: number;
}

/**
 * The angle in degrees between the 3-vectors at `v[vi…vi+2]` and `t[ti…ti+2]`: sign-free
 * acos(|v·t| / (|v||t|)) in [0°, 90°], or with `signed` the full [0°, 180°]; undefined when either
 * vector is zero (an unlabelled row). The one formula behind every angular metric, batch or streamed.
 */
export function angleDegrees(v: ArrayLike<number>, vi: number, t: ArrayLike<number>, ti: number, signed = false): number | undefined {
  const [a, b, c] = [v[vi] as number, v[vi + 1] as number, v[vi + 2] as number];
  const [x, y, z] = [t[ti] as number, t[ti + 1] as number, t[ti + 2] as number];
  const nv = Math.hypot(a, b, c);
  const nt = Math.hypot(x, y, z);
  if (!(nv > 0 && nt > 0)) return undefined;
  let cos = (a * x + b * y + c * z) / (nv * nt);
  if (!signed) cos = Math.abs(cos);
  return (Math.acos(Math.max(-1, Math.min(1, cos))) * 180) / Math.PI;
}

/**
 * Angle between `pred` and `target` rows in degrees: sign-free by default, acos(|v·t| / (|v||t|)) in
 * [0°, 90°] (v and −v are the same direction or orientation); with `signed: true` the full [0°, 180°].
 * Rows where either vector is zero are not counted.
 *
 * @param pred `[M*3]` vectors (any length)
 * @param target `[M*3]`; a zero vector marks an unlabelled row
 * @param mask `[M]`, 1 = counted (optional)
 * @param opts.fail builds the caller's typed error for mis-sized `target` or `mask`
 */
export function angularErrorStats(
  pred: ArrayLike<number>,
  target: ArrayLike<number>,
  mask: ArrayLike<number> | undefined,
  opts: { signed?: boolean; fail: InputErrorFactory },
): AngleStats {
  if (pred.length % 3 !== 0 || target.length !== pred.length) {
    throw opts.fail('target', `${pred.length} values (3 per row, as pred)`, `${target.length}`);
  }
  const M = pred.length / 3;
  if (mask && mask.length !== M) throw opts.fail('mask', `${M} values`, `${mask.length}`);
  const angles: number[] = [];
  for (let i = 0; i < M; i++) {
    if (mask && !(mask[i] as number)) continue;
    const deg = angleDegrees(pred, 3 * i, target, 3 * i, opts.signed);
    if (deg !== undefined) angles.push(deg);
  }
  if (angles.length === 0) return { mean: NaN, median: NaN, count: 0 };
  angles.sort((p, q) => p - q);
  const n = angles.length;
  const median = n % 2 ? (angles[(n - 1) / 2] as number) : ((angles[n / 2 - 1] as number) + (angles[n / 2] as number)) / 2;
  return { mean: angles.reduce((s, v) => s + v, 0) / n, median, count: n };
}
