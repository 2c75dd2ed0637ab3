/**
 * Evaluation over scroll chunks: a checkpoint's model runs over a region of a volume tile by tile (the
 * same tiling and prediction as `goe segment`) and every trained head is scored against the labels that
 * sit beside the volume (the OME-Zarr `labels/` group the phantom writes). Nothing grows with the region:
 * each tile's prediction and labels are folded into fixed-size counts and dropped.
 */
import { angleDegrees, initBackend, tf, type BackendChoice } from '@goe/tf';
import { AUC_BINS, InkMetricAccumulator, type StreamedInkMetrics } from '@goe/head-ink';
import { structureTensorFibers } from '@goe/head-fiber';
import { surfaceDistance } from '@goe/head-geometry';
import { copyBox, openVolume, ZarrNotFoundError, type Region, type Volume } from '@goe/scroll-io';
import { makeTokenGrid, tokenCellVoxels, type TokenGrid } from '@goe/volume-stem';
import { resolve } from 'node:path';
import { ConfigError } from './errors.js';
import { resolveRegionSpec } from './region.js';
import { fieldTokenTargets, normaliseIntensity, type VolumeModel } from './model.js';
import { dtypeMax, loadVolumeModel } from './segment.js';
import type { VolumeHeadName } from './spec.js';

export interface EvalOptions {
  /** A run folder (holding `checkpoint/`) or a checkpoint folder. */
  checkpoint: string;
  /** The volume: an OME-Zarr group (its level 0) or a Zarr array. */
  data: string;
  /** `z0:z1,y0:y1,x0:x1`, half-open, inside the volume (default: the whole volume). */
  region?: string;
  /** The ink label array or OME-Zarr label group (default: the `labels/ink` group beside the volume). */
  labels?: string;
  /** The papyrus (sheet) labels for the geometry head (default: `labels/papyrus` beside the volume). */
  papyrus?: string;
  /** The fibre direction field `[3, D, H, W]` for the fibre head (default: `fields/fibre` beside the volume). */
  fibreField?: string;
  /** The sheet normal field `[3, D, H, W]` for the geometry head's normals (default: `fields/normal`). */
  normalField?: string;
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
  /** Where each head's labels were read. */
  labels: Partial<Record<'ink' | 'papyrus' | 'fibre' | 'normal', string>>;
  /** The region scored, `z0:z1,y0:y1,x0:x1`. */
  region: string;
  /** Every trained head's metrics. */
  heads: { ink?: StreamedInkMetrics; fiber?: FiberEvalMetrics; geometry?: GeometryEvalMetrics };
  tiles: number;
  seconds: number;
  backend: string;
}

/** Angular errors in degrees, streamed: exact mean, median from a 0.01° histogram. */
export interface AngleSummary {
  mean: number;
  /** Within 0.005° of the exact median (the middle of its 0.01° bin). */
  median: number;
  count: number;
}

/** The fibre head's metrics over a region (tokens whose cell centre lies in it). */
export interface FiberEvalMetrics {
  all: AngleSummary;
  /** True fibre within 45° of the plane normal to the scroll axis (recto). */
  horizontal: AngleSummary;
  /** True fibre within 45° of the scroll axis (verso). */
  vertical: AngleSummary;
  /**
   * The classical estimate on the same tokens, for comparison: the least-change eigenvector of the
   * cell-averaged gradient structure tensor of the tile (@goe/head-fiber `structureTensorFibers`).
   */
  structureTensor: AngleSummary;
}

/** The geometry head's metrics over a region. */
export interface GeometryEvalMetrics {
  /** Sheet Dice at probability 0.5 over the region's voxels. */
  dice: number;
  /**
   * Surface distances in voxels, measured tile by tile (each tile's predicted sheet boundary against
   * the label's inside the same tile, cut to the region): `surfaceMean` is pooled over every boundary
   * voxel (so exactly the mean of all those distances), `surfaceP95` the boundary-weighted mean of the
   * tiles' HD95. A boundary whose nearest counterpart lies in the next tile counts a longer distance.
   */
  surfaceMean: number;
  surfaceP95: number;
  /** Sheet normals, sign-free (only when the head predicts them). */
  normal?: AngleSummary;
}

const ANGLE_BINS = 9000;

/** Streams sign-free angles between predicted and true directions into a fixed histogram. */
export class AngleAccumulator {
  #sum = 0;
  #count = 0;
  readonly #hist = new Float64Array(ANGLE_BINS + 1);

  /** Adds acos(|v·t| / |v||t|) in degrees (@goe/tf's `angleDegrees`); rows with a zero vector are skipped. */
  add(v: ArrayLike<number>, vi: number, t: ArrayLike<number>, ti: number): number | undefined {
    const deg = angleDegrees(v, vi, t, ti);
    if (deg === undefined) return undefined;
    this.#sum += deg;
    this.#count++;
    (this.#hist as Float64Array)[Math.min(ANGLE_BINS, Math.floor(deg * 100))]! += 1;
    return deg;
  }

  result(): AngleSummary {
    if (this.#count === 0) return { mean: NaN, median: NaN, count: 0 };
    // The median of an even count is the mean of the two middle values, as the packages compute it.
    const at = (k: number): number => {
      let seen = 0;
      for (let i = 0; i <= ANGLE_BINS; i++) {
        seen += this.#hist[i] as number;
        if (seen > k) return (i + 0.5) / 100;
      }
      return NaN;
    };
    const median = (at(Math.floor((this.#count - 1) / 2)) + at(Math.floor(this.#count / 2))) / 2;
    return { mean: this.#sum / this.#count, median, count: this.#count };
  }
}

/** `Region` as the `--region` flag spells it. */
export function formatRegion(r: Region): string {
  return r.offset.map((o, a) => `${o}:${o + r.shape[a]!}`).join(',');
}

/**
 * Where an array that sits beside `data` lives (`sub` e.g. `labels/ink`, `fields/fibre`): `DATA/sub`
 * for an OME-Zarr group, or, for a level array such as `scroll.zarr/0`, the `sub` of the group
 * holding it.
 */
export function besideCandidates(data: string, sub: string): string[] {
  const base = data.replace(/\/+$/, '');
  const out = [`${base}/${sub}`];
  const m = /^(.*)\/\d+$/.exec(base);
  if (m && m[1]) out.push(`${m[1]}/${sub}`);
  return out;
}

/** The ink labels' candidates (see `besideCandidates`). */
export function inkLabelCandidates(data: string): string[] {
  return besideCandidates(data, 'labels/ink');
}

/**
 * Opens the array `given` names, or the first of the candidates beside `data` that exists.
 * @throws ConfigError naming `flag` when none exists, or when its shape is not `shape`
 */
async function openBeside(data: string, volumeShape: string, sub: string, given: string | undefined, flag: string, shape: string, what: string): Promise<{ path: string; volume: Volume }> {
  const tried = given !== undefined ? [given] : besideCandidates(data, sub);
  for (const path of tried) {
    let volume: Volume;
    try {
      volume = await openVolume(path);
    } catch (err) {
      if (err instanceof ZarrNotFoundError) continue;
      throw err;
    }
    if (volume.shape.join(', ') !== shape) {
      throw new ConfigError(flag, `${path} has shape [${volume.shape.join(', ')}] but ${data} has [${volumeShape}]; ${what} must be [${shape}]`);
    }
    return { path, volume };
  }
  const hint = given !== undefined ? '' : ` (pass ${flag} PATH)`;
  throw new ConfigError(flag, `no ${what} found at ${tried.join(' or ')}${hint}`);
}

/** One tile's raw outputs of every head, over the whole tile. */
interface TileOutputs {
  origin: number[];
  /** `[D*H*W]` the tile's normalised intensities (the model's input). */
  image: Float32Array;
  /** `[D*H*W]` ink probability. */
  ink?: Float32Array;
  /** `[N*3]` fibre directions. */
  fiber?: Float32Array;
  /** `[D*H*W]` sheet probability and `[N*3]` normals. */
  sheet?: Float32Array;
  normals?: Float32Array;
}

/**
 * Every head's outputs over the tiles of `region`: non-overlapping tiles on the volume's fixed grid
 * (multiples of the patch from voxel 0, whatever the region, so a voxel's prediction never depends on
 * the region asked for), `batch` tiles per forward pass; tiles over the volume's edge padded with its
 * fill value, as the sampler pads training patches. Memory is one batch of tiles.
 */
async function forEachTile(model: VolumeModel, volume: Volume, patch: readonly [number, number, number], region: Region, batch: number, onTile: (t: TileOutputs) => Promise<void>): Promise<number> {
  const scale = dtypeMax(volume.dtype);
  const lo = region.offset.map((v, a) => Math.floor(v / patch[a]!) * patch[a]!);
  const hi = region.offset.map((v, a) => v + region.shape[a]!);
  const origins: number[][] = [];
  for (let z = lo[0]!; z < hi[0]!; z += patch[0]) for (let y = lo[1]!; y < hi[1]!; y += patch[1]) for (let x = lo[2]!; x < hi[2]!; x += patch[2]) origins.push([z, y, x]);
  const n = patch[0] * patch[1] * patch[2];
  for (let i = 0; i < origins.length; i += batch) {
    const group = origins.slice(i, i + batch);
    const x = new Float32Array(group.length * n);
    const reads = await Promise.all(group.map((origin) => volume.read({ offset: origin, shape: [...patch] })));
    reads.forEach((r, b) => {
      for (let j = 0; j < n; j++) x[b * n + j] = normaliseIntensity(r.data[j] as number, scale);
    });
    const skip = model.fiberFeatures(x, group.length, patch);
    const out = tf.tidy(() => ({ ...model.predict(tf.tensor5d(x, [group.length, ...patch, 1]), skip) }) as Record<string, tf.Tensor>);
    skip?.dispose();
    const host: Record<string, Float32Array> = {};
    for (const [k, t] of Object.entries(out)) host[k] = (await t.data()) as Float32Array;
    tf.dispose(Object.values(out));
    for (let b = 0; b < group.length; b++) {
      const part = (k: string): Float32Array | undefined => {
        const a = host[k];
        if (!a) return undefined;
        const per = a.length / group.length;
        return a.subarray(b * per, (b + 1) * per);
      };
      await onTile({ origin: group[b] as number[], image: x.subarray(b * n, (b + 1) * n), ink: part('ink'), fiber: part('fiber'), sheet: part('sheet'), normals: part('normals') });
    }
  }
  return origins.length;
}

/** The part of tile `origin` (extent `patch`) inside `region`: its box and offset within the tile. */
function tileBox(origin: readonly number[], patch: readonly number[], region: Region): { box: Region; within: number[] } {
  const start = origin.map((v, a) => Math.max(v, region.offset[a]!));
  const size = origin.map((v, a) => Math.min(v + patch[a]!, region.offset[a]! + region.shape[a]!) - start[a]!);
  return { box: { offset: start, shape: size }, within: start.map((v, a) => v - origin[a]!) };
}

/** `src` (a tile `[D, H, W]`) cut to `box`. */
function cutTile(src: Float32Array, patch: readonly number[], within: number[], size: number[]): Float32Array {
  const out = new Float32Array(size[0]! * size[1]! * size[2]!);
  copyBox(src, [...patch], within, out, size, [0, 0, 0], size);
  return out;
}

/** Per-token sign-free targets of a tile from a field `[3, D, H, W]` read at the tile, derived as in training. */
async function tileTargets(field: Volume, origin: readonly number[], grid: TokenGrid): Promise<Float32Array> {
  const f = (await field.read({ offset: [0, ...origin], shape: [3, ...grid.inputShape] })).data;
  return fieldTokenTargets([f], grid).target;
}

/** Tokens of a tile whose cell centre lies inside `region`, as (token index, is-vertical?) visitors. */
function* tokensInRegion(origin: readonly number[], grid: TokenGrid, region: Region): Generator<number> {
  const [gd, gh, gw] = grid.dims;
  const c = grid.cell;
  let t = 0;
  for (let z = 0; z < gd; z++)
    for (let y = 0; y < gh; y++)
      for (let x = 0; x < gw; x++, t++) {
        const centre = [z, y, x].map((k, a) => origin[a]! + k * c[a]! + c[a]! / 2);
        if (centre.every((v, a) => v >= region.offset[a]! && v < region.offset[a]! + region.shape[a]!)) yield t;
      }
}

/**
 * Runs the checkpoint's model over the region and scores every trained head against the labels beside
 * the volume (ink: `labels/ink`; fibre: `fields/fibre`; geometry: `labels/papyrus` and, for normals,
 * `fields/normal`), tile by tile with fixed-size accumulators.
 */
export async function evaluate(o: EvalOptions): Promise<EvalResult> {
  const backend: BackendChoice = await initBackend({ backend: o.backend });
  const { model, restored } = await loadVolumeModel(o.checkpoint, 'evaluation');
  const t0 = performance.now();
  try {
    const volume = await openVolume(o.data);
    if (volume.shape.length !== 3) throw new ConfigError('--data', `${o.data} has ${volume.shape.length} dimensions; expected 3 (z, y, x)`);
    const region = resolveRegionSpec(o.region, volume.shape, { field: '--region', source: o.data });
    const patch = restored.config.model.patch;
    const grid = makeTokenGrid(patch, tokenCellVoxels(model.spec.stem));
    const heads = new Set<VolumeHeadName>(model.heads);
    const shape = volume.shape.join(', ');
    const fieldShape = `3, ${shape}`;
    const labels: EvalResult['labels'] = {};
    const beside = (sub: string, given: string | undefined, flag: string, want: string, what: string) => openBeside(o.data, shape, sub, given, flag, want, what);
    const ink = heads.has('ink') ? await beside('labels/ink', o.labels, '--labels', shape, 'ink labels') : undefined;
    const papyrus = heads.has('geometry') ? await beside('labels/papyrus', o.papyrus, '--papyrus', shape, 'papyrus (sheet) labels') : undefined;
    const fibre = heads.has('fiber') ? await beside('fields/fibre', o.fibreField, '--fibre-field', fieldShape, 'fibre direction field') : undefined;
    const normal = model.spec.geometryHead?.normals ? await beside('fields/normal', o.normalField, '--normal-field', fieldShape, 'sheet normal field') : undefined;
    for (const [k, v] of Object.entries({ ink, papyrus, fibre, normal })) if (v) labels[k as 'ink'] = v.path;

    const inkAcc = new InkMetricAccumulator({ ignoreValue: o.ignoreValue });
    const fiberAcc = { all: new AngleAccumulator(), horizontal: new AngleAccumulator(), vertical: new AngleAccumulator(), structureTensor: new AngleAccumulator() };
    const normalAcc = new AngleAccumulator();
    const sheet = { tp: 0, fp: 0, fn: 0, boundary: 0, distSum: 0, p95Sum: 0 };
    const tiles = await forEachTile(model, volume, patch, region, o.batch ?? 4, async (t) => {
      const { box, within } = tileBox(t.origin, patch, region);
      if (t.ink && ink) inkAcc.add(cutTile(t.ink, patch, within, box.shape), (await ink.volume.read(box)).data);
      if (t.fiber && fibre) {
        const target = await tileTargets(fibre.volume, t.origin, grid);
        const classical = structureTensorFibers(t.image, grid, 1).direction;
        for (const k of tokensInRegion(t.origin, grid, region)) {
          fiberAcc.structureTensor.add(classical, 3 * k, target, 3 * k);
          const deg = fiberAcc.all.add(t.fiber, 3 * k, target, 3 * k);
          if (deg === undefined) continue;
          // Vertical (verso) when the true fibre is within 45° of the scroll axis z.
          const tz = Math.abs(target[3 * k] as number) / Math.hypot(target[3 * k] as number, target[3 * k + 1] as number, target[3 * k + 2] as number);
          (tz > Math.SQRT1_2 ? fiberAcc.vertical : fiberAcc.horizontal).add(t.fiber, 3 * k, target, 3 * k);
        }
      }
      if (t.sheet && papyrus) {
        const p = cutTile(t.sheet, patch, within, box.shape);
        const l = (await papyrus.volume.read(box)).data;
        for (let i = 0; i < p.length; i++) {
          const a = (p[i] as number) >= 0.5;
          const b = (l[i] as number) > 0;
          if (a && b) sheet.tp++;
          else if (a) sheet.fp++;
          else if (b) sheet.fn++;
        }
        const d = surfaceDistance(p, l, box.shape as [number, number, number]);
        const w = d.predSurface + d.targetSurface;
        if (w > 0 && Number.isFinite(d.mean)) {
          sheet.boundary += w;
          sheet.distSum += d.mean * w;
          sheet.p95Sum += d.p95 * w;
        }
      }
      if (t.normals && normal) {
        const target = await tileTargets(normal.volume, t.origin, grid);
        for (const k of tokensInRegion(t.origin, grid, region)) normalAcc.add(t.normals, 3 * k, target, 3 * k);
      }
    });
    const result: EvalResult['heads'] = {};
    if (ink) result.ink = inkAcc.result();
    if (fibre) {
      result.fiber = {
        all: fiberAcc.all.result(),
        horizontal: fiberAcc.horizontal.result(),
        vertical: fiberAcc.vertical.result(),
        structureTensor: fiberAcc.structureTensor.result(),
      };
    }
    if (papyrus) {
      const den = 2 * sheet.tp + sheet.fp + sheet.fn;
      result.geometry = {
        dice: den === 0 ? 1 : (2 * sheet.tp) / den,
        surfaceMean: sheet.distSum / sheet.boundary,
        surfaceP95: sheet.p95Sum / sheet.boundary,
        ...(normal ? { normal: normalAcc.result() } : {}),
      };
    }
    return {
      checkpoint: resolve(restored.dir),
      data: o.data,
      labels,
      region: formatRegion(region),
      heads: result,
      tiles,
      seconds: (performance.now() - t0) / 1000,
      backend: backend.name,
    };
  } finally {
    model.dispose();
  }
}

/** A readable table of `r`: one block per head, with the ink head's threshold sweep. */
export function formatEvalTable(r: EvalResult): string {
  const f = (v: number) => (Number.isFinite(v) ? v.toFixed(4) : 'n/a');
  const deg = (a: AngleSummary) => `${Number.isFinite(a.mean) ? a.mean.toFixed(2) : 'n/a'}° mean, ${Number.isFinite(a.median) ? a.median.toFixed(2) : 'n/a'}° median (${a.count} tokens)`;
  const lines = [
    `checkpoint ${r.checkpoint}`,
    `data       ${r.data}  region ${r.region}  (${r.tiles} tiles, ${r.seconds.toFixed(1)} s on ${r.backend})`,
  ];
  const ink = r.heads.ink;
  if (ink) {
    lines.push(
      '',
      'head  F0.5    threshold  precision  recall  AUC     voxels      ink voxels',
      `ink   ${f(ink.f05)}  ${ink.threshold.toFixed(2).padEnd(9)}  ${f(ink.precision).padEnd(9)}  ${f(ink.recall)}  ${f(ink.auc)}  ${String(ink.count).padEnd(10)}  ${ink.positives}`,
      '',
      `ink threshold sweep (AUC from a ${AUC_BINS}-bin logit histogram, within ±${ink.aucResolution.toExponential(1)} of the exact rank AUC):`,
      '  threshold  F0.5    precision  recall',
      ...ink.sweep.map((s) => `  ${s.threshold.toFixed(2).padEnd(9)}  ${f(s.f05)}  ${f(s.precision).padEnd(9)}  ${f(s.recall)}`),
    );
  }
  const fiber = r.heads.fiber;
  if (fiber) {
    lines.push(
      '',
      'fibre direction, sign-free angular error:',
      `  all         ${deg(fiber.all)}`,
      `  horizontal  ${deg(fiber.horizontal)}`,
      `  vertical    ${deg(fiber.vertical)}`,
      `  structure tensor (classical, same tokens)  ${deg(fiber.structureTensor)}`,
    );
  }
  const g = r.heads.geometry;
  if (g) {
    lines.push('', `geometry: sheet Dice ${f(g.dice)}, surface distance ${f(g.surfaceMean)} voxels mean, ${f(g.surfaceP95)} HD95`);
    if (g.normal) lines.push(`  normals   ${deg(g.normal)}`);
  }
  return lines.join('\n');
}
