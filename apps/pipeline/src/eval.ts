/**
 * Evaluation over scroll chunks: a checkpoint's model runs over a region of a volume tile by tile (the
 * same tiling and prediction as `goe segment`) and every trained head is scored against the labels that
 * sit beside the volume (the OME-Zarr `labels/` group the phantom writes). Nothing grows with the region:
 * each tile's prediction and labels are folded into fixed-size counts and dropped.
 */
import { initBackend, type BackendChoice } from '@goe/tf';
import { INK_THRESHOLDS, InkInputError, type InkMetrics, type InkThresholdPoint } from '@goe/head-ink';
import { openVolume, parseRegion, ScrollIoOptionError, ZarrNotFoundError, type Region, type Volume } from '@goe/scroll-io';
import { resolve } from 'node:path';
import { ConfigError } from './errors.js';
import { loadInkModel, predictRegion } from './segment.js';

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
    if (!Number.isInteger(this.bins) || this.bins < 2) throw new ConfigError('bins', `expected an integer >= 2, got ${this.bins}`);
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
    const T = th.length;
    const top = this.bins - 1;
    for (let i = 0; i < prob.length; i++) {
      const l = label[i] as number;
      if (this.ignoreValue !== undefined && l === this.ignoreValue) continue;
      const p = prob[i] as number;
      // c = #{k : p ≥ th[k]}: a guess from a uniform grid, corrected exactly against th (as inkMetrics).
      let c = Math.min(T, Math.max(0, Math.floor(p * (T + 1))));
      while (c > 0 && p < (th[c - 1] as number)) c--;
      while (c < T && p >= (th[c] as number)) c++;
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
    const T = this.thresholds.length;
    const b2 = this.beta * this.beta;
    let nPos = 0;
    let nNeg = 0;
    for (let c = 0; c <= T; c++) {
      nPos += this.#passPos[c]!;
      nNeg += this.#passNeg[c]!;
    }
    const sweep: InkThresholdPoint[] = new Array<InkThresholdPoint>(T);
    let tp = 0;
    let fp = 0;
    // Voxels predicted ink at threshold k pass more than k thresholds: suffix sums.
    for (let c = T; c >= 1; c--) {
      tp += this.#passPos[c]!;
      fp += this.#passNeg[c]!;
      const precision = tp + fp > 0 ? tp / (tp + fp) : 0;
      const recall = nPos > 0 ? tp / nPos : 0;
      const den = b2 * precision + recall;
      sweep[c - 1] = { threshold: this.thresholds[c - 1]!, f05: den > 0 ? ((1 + b2) * precision * recall) / den : 0, precision, recall };
    }
    let best: InkThresholdPoint | undefined;
    for (const point of sweep) if (!best || point.f05 > best.f05) best = point;
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
      ...(best ?? { threshold: NaN, f05: 0, precision: 0, recall: 0 }),
      auc: pairs > 0 ? u / pairs : NaN,
      aucResolution: pairs > 0 ? (0.5 * ties) / pairs : NaN,
      sweep,
      count: nPos + nNeg,
      positives: nPos,
    };
  }
}

export interface EvalOptions {
  /** A run folder (holding `checkpoint/`) or a checkpoint folder. */
  checkpoint: string;
  /** The volume: an OME-Zarr group (its level 0) or a Zarr array. */
  data: string;
  /** `z0:z1,y0:y1,x0:x1`, half-open, inside the volume (default: the whole volume). */
  region?: string;
  /** The ink label array or OME-Zarr label group (default: the `labels/ink` group beside the volume). */
  labels?: string;
  /** Ink label value meaning "unlabelled" (default: none, every voxel is labelled). */
  ignoreValue?: number;
  backend?: string;
  /** Tiles per forward pass (default 4). */
  batch?: number;
}

/** The JSON `goe eval --json` prints. */
export interface EvalResult {
  checkpoint: string;
  data: string;
  labels: { ink: string };
  /** The region scored, `z0:z1,y0:y1,x0:x1`. */
  region: string;
  heads: { ink: StreamedInkMetrics };
  tiles: number;
  seconds: number;
  backend: string;
}

/** `Region` as the `--region` flag spells it. */
export function formatRegion(r: Region): string {
  return r.offset.map((o, a) => `${o}:${o + r.shape[a]!}`).join(',');
}

/**
 * Where the ink labels beside `data` live: `DATA/labels/ink` for an OME-Zarr group, or, for a level
 * array such as `scroll.zarr/0`, the `labels/ink` of the group holding it.
 */
export function inkLabelCandidates(data: string): string[] {
  const base = data.replace(/\/+$/, '');
  const out = [`${base}/labels/ink`];
  const m = /^(.*)\/\d+$/.exec(base);
  if (m && m[1]) out.push(`${m[1]}/labels/ink`);
  return out;
}

async function openInkLabels(o: EvalOptions): Promise<{ path: string; volume: Volume }> {
  const tried = o.labels !== undefined ? [o.labels] : inkLabelCandidates(o.data);
  for (const path of tried) {
    try {
      return { path, volume: await openVolume(path) };
    } catch (err) {
      if (!(err instanceof ZarrNotFoundError)) throw err;
    }
  }
  const hint = o.labels !== undefined ? '' : ' (pass --labels PATH)';
  throw new ConfigError('--labels', `no ink labels found at ${tried.join(' or ')}${hint}`);
}

function resolveRegion(spec: string | undefined, shape: readonly number[], data: string): Region {
  if (spec === undefined) return { offset: [0, 0, 0], shape: [...shape] };
  let r: Region;
  try {
    r = parseRegion(spec, 3);
  } catch (err) {
    if (err instanceof ScrollIoOptionError) throw new ConfigError('--region', err.message.replace(/^option 'region': /, ''), { cause: err });
    throw err;
  }
  const axes = ['z', 'y', 'x'];
  for (let a = 0; a < 3; a++) {
    if (r.shape[a] === 0) throw new ConfigError('--region', `'${spec}' is empty along ${axes[a]}`);
    if (r.offset[a]! + r.shape[a]! > shape[a]!) {
      throw new ConfigError('--region', `'${spec}' reaches ${axes[a]} = ${r.offset[a]! + r.shape[a]!}, outside ${data} of shape [${shape.join(', ')}]`);
    }
  }
  return r;
}

/** Runs the checkpoint's model over the region and scores every trained head against the labels. */
export async function evaluate(o: EvalOptions): Promise<EvalResult> {
  const backend: BackendChoice = await initBackend({ backend: o.backend });
  const { model, restored } = await loadInkModel(o.checkpoint, 'evaluation');
  const t0 = performance.now();
  try {
    const volume = await openVolume(o.data);
    if (volume.shape.length !== 3) throw new ConfigError('--data', `${o.data} has ${volume.shape.length} dimensions; expected 3 (z, y, x)`);
    const { path: labelPath, volume: labels } = await openInkLabels(o);
    if (labels.shape.join(',') !== volume.shape.join(',')) {
      throw new ConfigError('--labels', `${labelPath} has shape [${labels.shape.join(', ')}] but ${o.data} has [${volume.shape.join(', ')}]`);
    }
    const region = resolveRegion(o.region, volume.shape, o.data);
    const ink = new InkMetricAccumulator({ ignoreValue: o.ignoreValue });
    const tiles = await predictRegion({ model, volume, patch: restored.config.model.patch, region, batch: o.batch }, async (t) => {
      ink.add(t.prob, (await labels.read(t.box)).data);
    });
    return {
      checkpoint: resolve(restored.dir),
      data: o.data,
      labels: { ink: labelPath },
      region: formatRegion(region),
      heads: { ink: ink.result() },
      tiles,
      seconds: (performance.now() - t0) / 1000,
      backend: backend.name,
    };
  } finally {
    model.dispose();
  }
}

/** A readable table of `r`: one row per head, then the ink head's threshold sweep. */
export function formatEvalTable(r: EvalResult): string {
  const f = (v: number) => (Number.isFinite(v) ? v.toFixed(4) : 'n/a');
  const ink = r.heads.ink;
  const lines = [
    `checkpoint ${r.checkpoint}`,
    `data       ${r.data}  region ${r.region}  (${r.tiles} tiles, ${r.seconds.toFixed(1)} s on ${r.backend})`,
    '',
    'head  F0.5    threshold  precision  recall  AUC     voxels      ink voxels',
    `ink   ${f(ink.f05)}  ${ink.threshold.toFixed(2).padEnd(9)}  ${f(ink.precision).padEnd(9)}  ${f(ink.recall)}  ${f(ink.auc)}  ${String(ink.count).padEnd(10)}  ${ink.positives}`,
    '',
    `ink threshold sweep (AUC from a ${AUC_BINS}-bin logit histogram, within ±${ink.aucResolution.toExponential(1)} of the exact rank AUC):`,
    '  threshold  F0.5    precision  recall',
    ...ink.sweep.map((s) => `  ${s.threshold.toFixed(2).padEnd(9)}  ${f(s.f05)}  ${f(s.precision).padEnd(9)}  ${f(s.recall)}`),
  ];
  return lines.join('\n');
}
