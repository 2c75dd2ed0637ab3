/**
 * Ink metrics over volumes too large to hold: `inkMetrics` computed chunk by chunk in fixed memory
 * (per-class threshold counts and a probability histogram), for evaluation over whole scrolls.
 */
import { INK_THRESHOLDS, sweepFromPassCounts, thresholdsPassed, type InkMetrics } from './metrics.js';
import { InkInputError } from './errors.js';

/**
 * Histogram bins of the probabilities per class for the streamed AUC: 4001 bins uniform in the logit
 * over ±20, so bin b holds logits within ±0.005 of b/100 − 20 (see `aucBin`). 2 × 4001 float64 counts.
 */
export const AUC_BINS = 4001;

/** The AUC histogram spans logits in [−AUC_LOGIT_RANGE, AUC_LOGIT_RANGE]: p from 2·10⁻⁹ to 1 − 2·10⁻⁹. */
export const AUC_LOGIT_RANGE = 20;

/**
 * Histogram bin of probability `p` among `top + 1` bins: uniform in the logit ln(p / (1 − p)) over
 * ±AUC_LOGIT_RANGE (ends clipped). A monotone map, so voxels in different bins keep their order; the
 * logit rather than p itself because a trained model's probabilities crowd near 0 and 1 (on the default
 * run 1001 bins uniform in p put the AUC 0.008 off the exact rank AUC).
 */
function aucBin(p: number, top: number): number {
  const z = Math.log(p) - Math.log1p(-p);
  const u = (Math.min(AUC_LOGIT_RANGE, Math.max(-AUC_LOGIT_RANGE, z)) + AUC_LOGIT_RANGE) / (2 * AUC_LOGIT_RANGE);
  return Number.isNaN(u) ? 0 : Math.round(u * top);
}

/** The streamed ink metrics: `inkMetrics`' fields plus the AUC's resolution. */
export interface StreamedInkMetrics extends InkMetrics {
  /**
   * Largest possible |AUC − exact rank AUC|: pairs of an ink and a non-ink voxel whose probabilities
   * share a histogram bin count ½, where the exact statistic counts them 0, ½ or 1.
   */
  aucResolution: number;
}

export interface InkMetricAccumulatorOptions {
  /** β of F_β (default 0.5, the Kaggle ink-detection metric). */
  beta?: number;
  /** Thresholds to sweep, ascending (default `INK_THRESHOLDS`: 0.05 … 0.95). */
  thresholds?: readonly number[];
  /** Label value meaning "unlabelled": never counted. */
  ignoreValue?: number;
  /** Probability histogram bins for the AUC (default `AUC_BINS`). */
  bins?: number;
}

/**
 * `inkMetrics` of @goe/head-ink computed chunk by chunk in fixed memory. F0.5, precision and recall at
 * the swept thresholds are exact: a voxel's only contribution is which thresholds it passes, counted per
 * class exactly as `inkMetrics` counts them (prob ≥ threshold is ink; labels ≥ 0.5 are ink), in float64
 * (FACTS.md: float32 sums lose counts past 2^24). The AUC is the Mann–Whitney statistic of a per-class
 * histogram of probabilities (`bins` bins uniform in the logit, `aucBin`): pairs in different bins are
 * ordered as their probabilities are, pairs in one bin count ½, so the error is at most `aucResolution`,
 * and zero when no two different probabilities share a bin.
 */
export class InkMetricAccumulator {
  readonly beta: number;
  readonly thresholds: readonly number[];
  readonly ignoreValue: number | undefined;
  readonly bins: number;
  /** passPos[c] / passNeg[c]: labelled voxels that pass exactly the c lowest thresholds. */
  readonly #passPos: Float64Array;
  readonly #passNeg: Float64Array;
  readonly #histPos: Float64Array;
  readonly #histNeg: Float64Array;

  constructor(o: InkMetricAccumulatorOptions = {}) {
    this.beta = o.beta ?? 0.5;
    this.thresholds = o.thresholds ?? INK_THRESHOLDS;
    this.ignoreValue = o.ignoreValue;
    this.bins = o.bins ?? AUC_BINS;
    if (!Number.isInteger(this.bins) || this.bins < 2) throw new InkInputError('bins', 'an integer >= 2', String(this.bins));
    this.#passPos = new Float64Array(this.thresholds.length + 1);
    this.#passNeg = new Float64Array(this.thresholds.length + 1);
    this.#histPos = new Float64Array(this.bins);
    this.#histNeg = new Float64Array(this.bins);
  }

  /**
   * Adds voxels.
   * @param prob ink probabilities in [0, 1] `[n]`
   * @param label labels `[n]` (≥ 0.5 is ink; `ignoreValue` skipped)
   */
  add(prob: ArrayLike<number>, label: ArrayLike<number>): void {
    if (label.length !== prob.length) throw new InkInputError('label', `${prob.length} values (as prob)`, `${label.length}`);
    const th = this.thresholds;
    const top = this.bins - 1;
    for (let i = 0; i < prob.length; i++) {
      const l = label[i] as number;
      if (this.ignoreValue !== undefined && l === this.ignoreValue) continue;
      const p = prob[i] as number;
      const c = thresholdsPassed(p, th);
      const b = aucBin(p, top);
      if (l >= 0.5) {
        this.#passPos[c]! += 1;
        this.#histPos[b]! += 1;
      } else {
        this.#passNeg[c]! += 1;
        this.#histNeg[b]! += 1;
      }
    }
  }

  /** The metrics of everything added so far (best F_β over the sweep, lowest threshold on ties). */
  result(): StreamedInkMetrics {
    const { sweep, best, positives: nPos, negatives: nNeg } = sweepFromPassCounts(this.#passPos, this.#passNeg, this.thresholds, this.beta);
    let u = 0;
    let ties = 0;
    let below = 0;
    for (let b = 0; b < this.bins; b++) {
      u += this.#histPos[b]! * (below + 0.5 * this.#histNeg[b]!);
      ties += this.#histPos[b]! * this.#histNeg[b]!;
      below += this.#histNeg[b]!;
    }
    const pairs = nPos * nNeg;
    return {
      ...best,
      auc: pairs > 0 ? u / pairs : NaN,
      aucResolution: pairs > 0 ? (0.5 * ties) / pairs : NaN,
      sweep,
      count: nPos + nNeg,
      positives: nPos,
    };
  }
}

