/**
 * Evaluation over scroll chunks: a checkpoint's model runs over a region of a volume tile by tile (the
 * same tiling and prediction as `goe segment`) and every trained head is scored against the labels that
 * sit beside the volume (the OME-Zarr `labels/` group the phantom writes). Nothing grows with the region:
 * each tile's prediction and labels are folded into fixed-size counts and dropped.
 */
import { initBackend, type BackendChoice } from '@goe/tf';
import { AUC_BINS, InkMetricAccumulator, type StreamedInkMetrics } from '@goe/head-ink';
import { openVolume, parseRegion, ScrollIoOptionError, ZarrNotFoundError, type Region, type Volume } from '@goe/scroll-io';
import { resolve } from 'node:path';
import { ConfigError } from './errors.js';
import { loadInkModel, predictRegion } from './segment.js';

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
