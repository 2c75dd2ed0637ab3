/**
 * Ink metrics on the host in float64 (tfjs reductions lose precision over millions of voxels, FACTS.md).
 *
 * F0.5 as in the Kaggle "Vesuvius Challenge - Ink Detection" competition: precision and recall over
 * every labelled pixel pooled together (not averaged per image), F_β = (1 + β²)·P·R / (β²·P + R) with
 * β = 0.5, which weighs precision higher (false ink is worse than missed ink for reading). A voxel is
 * predicted ink when prob ≥ threshold; the threshold sweep 0.05, 0.10, …, 0.95 is reported and the best
 * F0.5 kept (lowest threshold on ties). AUC is the rank statistic (Mann–Whitney U / (n+·n−), ties 1/2).
 */
import { InkInputError } from './errors.js';

export interface InkMetricOptions {
  /** β of F_β (default 0.5). */
  beta?: number;
  /** Thresholds to sweep (default 0.05 … 0.95 in steps of 0.05), ascending. */
  thresholds?: readonly number[];
  /** Label value meaning "unlabelled": skipped like mask = 0. */
  ignoreValue?: number;
}

export interface InkThresholdPoint {
  threshold: number;
  f05: number;
  precision: number;
  recall: number;
}

export interface InkMetrics {
  /** Best F_β over the sweep (named for the default β = 0.5). */
  f05: number;
  precision: number;
  recall: number;
  /** The threshold of the best F_β. */
  threshold: number;
  /** ROC AUC (NaN when only one class is labelled). */
  auc: number;
  /** Every swept threshold. */
  sweep: InkThresholdPoint[];
  /** Labelled voxels counted, and how many of them are ink. */
  count: number;
  positives: number;
}

/** The default sweep: 0.05, 0.10, …, 0.95. */
export const INK_THRESHOLDS: readonly number[] = Object.freeze(Array.from({ length: 19 }, (_, k) => (k + 1) / 20));

function fBeta(p: number, r: number, beta: number): number {
  const b2 = beta * beta;
  const den = b2 * p + r;
  return den > 0 ? ((1 + b2) * p * r) / den : 0;
}

/**
 * @param prob ink probabilities in [0, 1], one per voxel
 * @param label 0/1 labels (any value ≥ 0.5 is ink, so 0/255 PNG masks work), same length
 * @param mask optional, 1 = labelled, 0 = never counted, same length
 * @throws InkInputError on mismatched lengths
 */
export function inkMetrics(
  prob: ArrayLike<number>,
  label: ArrayLike<number>,
  mask?: ArrayLike<number>,
  opts: InkMetricOptions = {},
): InkMetrics {
  const n = prob.length;
  if (label.length !== n) throw new InkInputError('label', `${n} values (as prob)`, `${label.length}`);
  if (mask && mask.length !== n) throw new InkInputError('mask', `${n} values (as prob)`, `${mask.length}`);
  const beta = opts.beta ?? 0.5;
  const th = opts.thresholds ?? INK_THRESHOLDS;
  const T = th.length;
  // passPos[c] / passNeg[c]: labelled voxels that pass exactly the c lowest thresholds.
  const passPos = new Float64Array(T + 1);
  const passNeg = new Float64Array(T + 1);
  let nPos = 0;
  let nNeg = 0;
  for (let i = 0; i < n; i++) {
    if (mask && !(mask[i] as number)) continue;
    const l = label[i] as number;
    if (opts.ignoreValue !== undefined && l === opts.ignoreValue) continue;
    nPos += l >= 0.5 ? 1 : 0;
    nNeg += l >= 0.5 ? 0 : 1;
  }
  const posProbs = new Float64Array(nPos);
  const negProbs = new Float64Array(nNeg);
  let ip = 0;
  let ineg = 0;
  for (let i = 0; i < n; i++) {
    if (mask && !(mask[i] as number)) continue;
    const l = label[i] as number;
    if (opts.ignoreValue !== undefined && l === opts.ignoreValue) continue;
    const p = prob[i] as number;
    const c = thresholdsPassed(p, th);
    if (l >= 0.5) {
      passPos[c]! += 1;
      posProbs[ip++] = p;
    } else {
      passNeg[c]! += 1;
      negProbs[ineg++] = p;
    }
  }
  const { sweep, best: b } = sweepFromPassCounts(passPos, passNeg, th, beta);
  return { ...b, auc: sortedRankAuc(posProbs.sort(), negProbs.sort()), sweep, count: nPos + nNeg, positives: nPos };
}

/**
 * c = #{k : p ≥ th[k]} for ascending thresholds: a guess from a uniform grid, corrected exactly.
 * @internal shared by `inkMetrics` and `InkMetricAccumulator`
 */
export function thresholdsPassed(p: number, th: readonly number[]): number {
  const T = th.length;
  let c = Math.min(T, Math.max(0, Math.floor(p * (T + 1))));
  while (c > 0 && p < (th[c - 1] as number)) c--;
  while (c < T && p >= (th[c] as number)) c++;
  return c;
}

/**
 * The threshold sweep from per-class counts of voxels passing exactly c of the thresholds
 * (`passPos[c]`, `passNeg[c]`, c = 0 … T): voxels predicted ink at threshold k pass more than k of
 * them (suffix sums). Best F_β kept, the lowest threshold on ties.
 * @internal shared by `inkMetrics` and `InkMetricAccumulator`
 */
export function sweepFromPassCounts(
  passPos: Float64Array,
  passNeg: Float64Array,
  th: readonly number[],
  beta: number,
): { sweep: InkThresholdPoint[]; best: InkThresholdPoint; positives: number; negatives: number } {
  const T = th.length;
  let nPos = 0;
  let nNeg = 0;
  for (let c = 0; c <= T; c++) {
    nPos += passPos[c] as number;
    nNeg += passNeg[c] as number;
  }
  const tps = new Float64Array(T);
  const fps = new Float64Array(T);
  let tp = 0;
  let fp = 0;
  for (let c = T; c >= 1; c--) {
    tp += passPos[c] as number;
    fp += passNeg[c] as number;
    tps[c - 1] = tp;
    fps[c - 1] = fp;
  }
  const sweep: InkThresholdPoint[] = [];
  let best: InkThresholdPoint | undefined;
  for (let k = 0; k < T; k++) {
    const precision = tps[k]! + fps[k]! > 0 ? tps[k]! / (tps[k]! + fps[k]!) : 0;
    const recall = nPos > 0 ? tps[k]! / nPos : 0;
    const point = { threshold: th[k] as number, f05: fBeta(precision, recall, beta), precision, recall };
    sweep.push(point);
    if (!best || point.f05 > best.f05) best = point;
  }
  return { sweep, best: best ?? { threshold: NaN, f05: 0, precision: 0, recall: 0 }, positives: nPos, negatives: nNeg };
}

/** Mann–Whitney AUC of positive vs negative scores, ties counted 1/2; NaN if a class is empty. */
export function rankAuc(pos: ArrayLike<number>, neg: ArrayLike<number>): number {
  return sortedRankAuc(Float64Array.from(pos).sort(), Float64Array.from(neg).sort());
}

/** `rankAuc` on ascending-sorted scores: one merge pass. */
function sortedRankAuc(pos: Float64Array, neg: Float64Array): number {
  if (pos.length === 0 || neg.length === 0) return NaN;
  let u = 0;
  let below = 0; // negatives strictly below the current positive
  let j = 0;
  for (let i = 0; i < pos.length; ) {
    const p = pos[i] as number;
    let same = 1;
    while (i + same < pos.length && pos[i + same] === p) same++;
    while (j < neg.length && (neg[j] as number) < p) {
      below++;
      j++;
    }
    let equal = 0;
    while (j + equal < neg.length && neg[j + equal] === p) equal++;
    u += same * (below + 0.5 * equal);
    i += same;
  }
  return u / (pos.length * neg.length);
}
