/**
 * The volume task: ink segmentation, fibre orientation and sheet geometry on scroll patches, alone or
 * together (`model.heads`). Patches stream from the volume (the synthetic phantom, written into the run
 * folder, or a Zarr volume with its labels) through scroll-io's prefetching sampler; each head's targets
 * come from the labels read at the same box (ink and papyrus voxel labels; fibre and normal fields
 * `[3, D, H, W]`, turned into per-token sign-free targets). Validation scores a fixed set of patches from
 * the held-out z slab with every head's metric (ink: the Kaggle-style F0.5, precision, recall, AUC;
 * fibre: angular error, split into horizontal and vertical fibres; geometry: sheet Dice, surface
 * distances, normal angular error) and writes middle slices of its predictions as a PNG.
 */
import { tf } from '@goe/tf';
import { openFragment, openVolume, PatchSampler, type Fragment, type PatchSamplerState, type Region, type RegionData, type Volume } from '@goe/scroll-io';
import { resolvePhantomConfig, writePhantom, writePhantomFragment } from '@goe/phantom';
import { collapseDepth, inkMetrics } from '@goe/head-ink';
import { fiberErrorByFace } from '@goe/head-fiber';
import { dice, normalAngularError, surfaceDistance } from '@goe/head-geometry';
import { makeTokenGrid, tokenCellVoxels, type TokenGrid } from '@goe/volume-stem';
import { join } from 'node:path';
import type { TrainConfig } from './config.js';
import { resolveRegionSpec } from './region.js';
import { ConfigError } from './errors.js';
import { batchTensors, patchBatch, ROUTER_HEALTH_KEYS, type VolumeModel, type PatchBatch, type PatchBatchOptions, type RawPatch } from './model.js';
import { dtypeMax } from './segment.js';
import { directionColour, grey, redOver, writePanelsPng, type Rgb } from './plot.js';
import { tokenClassesFromLabels } from './halting.js';
import type { VolumeHeadName } from './spec.js';
import type { TrainTask } from './task.js';

/** The volume, its labels and fields as the heads need them, and the split. */
interface DataSources {
  volume: Volume;
  /** Largest intensity of the volume's dtype, the scale of `normaliseIntensity`. */
  scale: number;
  /** Fragments: labels are per column (the same on every layer) and the sampler keeps to the mask. */
  fragment?: { mask?: Volume };
  /** Voxel labels of the volume's shape, by name (`ink`, `papyrus`), that training patches carry. */
  labels: Record<string, Volume>;
  /** Those the validation patches carry (default `labels`): also papyrus, to class tokens. */
  valLabels?: Record<string, Volume>;
  /** Vector fields `[3, D, H, W]`, by name (`fibre`, `normal`). */
  fields: Record<string, Volume>;
  /** Training region (z below the validation slab) and validation region. */
  trainRegion: Region;
  valRegion: Region;
}

/** Which labels (voxel arrays) and fields each head reads; normals only when the geometry head predicts them. */
function needs(heads: readonly VolumeHeadName[], normals: boolean): { labels: string[]; fields: string[] } {
  const labels: string[] = [];
  const fields: string[] = [];
  if (heads.includes('ink')) labels.push('ink');
  if (heads.includes('fiber')) fields.push('fibre');
  if (heads.includes('geometry')) {
    labels.push('papyrus');
    if (normals) fields.push('normal');
  }
  return { labels, fields };
}

/**
 * A 2D image `[H, W]` seen as a volume `[L, H, W]` whose every layer is the image: a fragment's column
 * labels (ink, mask) read at the same boxes as its layers by the patch sampler.
 */
class ColumnVolume implements Volume {
  readonly shape: number[];
  readonly chunks: number[];
  readonly dtype = 'uint8' as const;
  readonly fillValue = 0;
  readonly attributes: Record<string, unknown> = {};
  constructor(
    readonly path: string,
    readonly image: Uint8Array | Uint16Array,
    layers: number,
    height: number,
    width: number,
  ) {
    this.shape = [layers, height, width];
    this.chunks = [1, height, width];
  }
  async read(region: Region): Promise<RegionData> {
    const [L, H, W] = region.shape as [number, number, number];
    const [l0, y0, x0] = region.offset as [number, number, number];
    const data = new Uint8Array(L * H * W);
    for (let l = 0; l < L; l++) {
      if (l0 + l < 0 || l0 + l >= (this.shape[0] as number)) continue;
      for (let y = 0; y < H; y++) {
        const yy = y0 + y;
        if (yy < 0 || yy >= (this.shape[1] as number)) continue;
        for (let x = 0; x < W; x++) {
          const xx = x0 + x;
          if (xx >= 0 && xx < (this.shape[2] as number)) data[(l * H + y) * W + x] = (this.image[yy * (this.shape[2] as number) + xx] as number) > 0 ? 1 : 0;
        }
      }
    }
    return { data, shape: [L, H, W] } as RegionData;
  }
}

/**
 * A fragment folder (or, with `data.fragment` empty, a phantom fragment written into the run folder):
 * its layers as the volume, its ink labels and mask as column volumes; patches take the middle
 * `patch[0]` layers, and validation holds out the bottom rows.
 */
async function prepareFragment(c: TrainConfig, runDir: string): Promise<DataSources> {
  let dir = c.data.fragment;
  if (!dir) {
    const pc = resolvePhantomConfig({ shape: c.data.phantomShape, seed: c.seed, preset: c.data.phantomPreset });
    dir = (await writePhantomFragment(join(runDir, 'data'), pc, { overwrite: true })).dir;
  }
  let frag: Fragment;
  try {
    frag = await openFragment(dir);
  } catch (err) {
    throw new ConfigError('data.fragment', (err as Error).message, { cause: err });
  }
  const [L, H, W] = frag.shape as [number, number, number];
  const [pd, ph, pw] = c.model.patch;
  const valH = Math.floor(H * c.data.validationFraction);
  if (!c.data.trainRegion && (pd > L || ph > valH || ph > H - valH || pw > W)) {
    throw new ConfigError('model.patch', `patch ${c.model.patch.join('x')} does not fit the fragment ${dir} of ${L} layers x ${H} x ${W} split into ${H - valH} training and ${valH} validation rows`);
  }
  const ink = await frag.inkLabels();
  if (!ink) throw new ConfigError('data.fragment', `${dir} has no inklabels.png (or *_inklabels.png) to train the ink head on`);
  const maskImage = await frag.mask();
  const mask = maskImage ? new ColumnVolume(maskImage.path, maskImage.data, L, H, W) : undefined;
  const l0 = Math.floor((L - pd) / 2);
  return {
    volume: frag,
    scale: dtypeMax(frag.dtype),
    fragment: { mask },
    labels: { ink: new ColumnVolume(ink.path, ink.data, L, H, W), ...(mask ? { mask } : {}) },
    fields: {},
    trainRegion: { offset: [l0, 0, 0], shape: [pd, H - valH, W] },
    valRegion: { offset: [l0, H - valH, 0], shape: [pd, valH, W] },
  };
}

/**
 * The explicit `data.trainRegion` / `data.valRegion` boxes, when given, in place of the split: each
 * inside the volume and at least one patch, and the two disjoint.
 * @throws ConfigError naming the key
 */
function explicitRegions(c: TrainConfig, d: DataSources): DataSources {
  if (!c.data.trainRegion) return d;
  const shape = d.volume.shape;
  const box = (key: 'trainRegion' | 'valRegion'): Region => {
    const r = resolveRegionSpec(c.data[key], shape, { field: `data.${key}`, source: d.volume.path });
    if (r.shape.some((s, a) => s < c.model.patch[a]!)) throw new ConfigError(`data.${key}`, `'${c.data[key]}' is smaller than the patch ${c.model.patch.join('x')}`);
    return r;
  };
  const boxes = { trainRegion: box('trainRegion'), valRegion: box('valRegion') };
  const [t, v] = [boxes.trainRegion, boxes.valRegion];
  const overlap = t.offset.every((o, a) => o < v.offset[a]! + v.shape[a]! && v.offset[a]! < o + t.shape[a]!);
  if (overlap) throw new ConfigError('data.valRegion', `'${c.data.valRegion}' overlaps data.trainRegion '${c.data.trainRegion}': validation must never see a training voxel`);
  return { ...d, trainRegion: t, valRegion: v };
}

async function prepareData(c: TrainConfig, runDir: string, model: VolumeModel): Promise<DataSources> {
  return explicitRegions(c, c.data.source === 'fragment' ? await prepareFragment(c, runDir) : await prepareVolume(c, runDir, model));
}

async function prepareVolume(c: TrainConfig, runDir: string, model: VolumeModel): Promise<DataSources> {
  const want = needs(model.heads, model.spec.geometryHead?.normals ?? false);
  const paths: Record<string, string> = {
    image: c.data.volume,
    ink: c.data.inkLabels,
    papyrus: c.data.papyrusLabels,
    fibre: c.data.fibreField,
    normal: c.data.normalField,
  };
  const keys: Record<string, string> = { ink: 'data.inkLabels', papyrus: 'data.papyrusLabels', fibre: 'data.fibreField', normal: 'data.normalField' };
  if (c.data.source === 'phantom') {
    const pc = resolvePhantomConfig({ shape: c.data.phantomShape, seed: c.seed, preset: c.data.phantomPreset });
    const written = await writePhantom(join(runDir, 'data'), pc, { overwrite: true });
    Object.assign(paths, { image: written.image, ...written.labels, ...written.fields });
  }
  const volume = await openVolume(paths['image'] as string);
  const shape = volume.shape.join(',');
  const labels: Record<string, Volume> = {};
  // Papyrus labels, where there are any, also class the validation tokens for halting depth per class;
  // training patches read only what the heads need.
  const readLabels = paths['papyrus'] && !want.labels.includes('papyrus') ? [...want.labels, 'papyrus'] : want.labels;
  for (const name of readLabels) {
    const v = await openVolume(paths[name] as string);
    if (v.shape.join(',') !== shape) {
      throw new ConfigError(keys[name] as string, `${paths[name]} has shape [${v.shape}] but the volume ${paths['image']} has [${volume.shape}]`);
    }
    labels[name] = v;
  }
  const fields: Record<string, Volume> = {};
  for (const name of want.fields) {
    const v = await openVolume(paths[name] as string);
    if (v.shape.join(',') !== `3,${shape}`) {
      throw new ConfigError(keys[name] as string, `${paths[name]} has shape [${v.shape}]; expected [3, ${volume.shape}] (components, z, y, x)`);
    }
    fields[name] = v;
  }
  const [D, H, W] = volume.shape as [number, number, number];
  const valD = Math.floor(D * c.data.validationFraction);
  return {
    volume,
    scale: dtypeMax(volume.dtype, 'data.volume'),
    labels: Object.fromEntries(want.labels.map((k) => [k, labels[k] as Volume])),
    valLabels: labels,
    fields,
    trainRegion: { offset: [0, 0, 0], shape: [D - valD, H, W] },
    valRegion: { offset: [D - valD, 0, 0], shape: [valD, H, W] },
  };
}

function concat<T extends Float32Array | Uint8Array>(parts: T[], make: (n: number) => T): T {
  const out = make(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const fmt = (v: number, digits = 3): string => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');

/** Host copies of one validation batch's predictions. */
interface ValPrediction {
  ink?: Float32Array;
  fiber?: Float32Array;
  sheet?: Float32Array;
  normals?: Float32Array;
}

/** The volume task for `model` per `c`, with its data in `runDir`. */
export async function volumeTask(c: TrainConfig, runDir: string, model: VolumeModel): Promise<TrainTask<PatchBatch>> {
  const data = await prepareData(c, runDir, model);
  const patch = c.model.patch;
  const heads = model.heads;
  // The stem's token grid over a patch, for per-token targets (fibres, normals).
  const grid: TokenGrid = makeTokenGrid(patch, tokenCellVoxels(model.spec.stem));
  /** A sampler patch with its fields read at the same box. */
  const withFields = async (p: { origin: number[]; image: ArrayLike<number>; labels: Record<string, ArrayLike<number>> }): Promise<RawPatch> => {
    const fields: Record<string, ArrayLike<number>> = {};
    for (const [name, f] of Object.entries(data.fields)) {
      fields[name] = (await f.read({ offset: [0, ...p.origin], shape: [3, ...patch] })).data;
    }
    return { image: p.image, labels: p.labels, fields };
  };
  const batchOptions: PatchBatchOptions = {
    heads,
    grid,
    scale: data.scale,
    ...(data.fragment ? { columns: c.data.collapse.mode === 'logsumexp' ? { ...c.data.collapse } : { mode: c.data.collapse.mode } } : {}),
  };
  // Fragments: patches centred inside the mask, half of them on ink (a few per cent of the columns).
  const fragmentSampling = data.fragment ? { ...(data.fragment.mask ? { mask: data.fragment.mask } : {}), balance: { label: 'ink', fraction: 0.5 } } : {};
  const sampler = new PatchSampler({
    volume: data.volume,
    labels: data.labels,
    patchShape: patch,
    region: data.trainRegion,
    seed: c.seed,
    prefetch: c.data.prefetch,
    ...fragmentSampling,
  });
  // A fixed validation set: the same patches every time, from the held-out slab.
  const valSampler = new PatchSampler({
    volume: data.volume,
    labels: data.valLabels ?? data.labels,
    patchShape: patch,
    region: data.valRegion,
    seed: c.seed + 1,
    prefetch: 0,
    ...fragmentSampling,
  });
  /** The fibre head's sheet-frame features of a batch, when it takes them (computed from the host image). */
  const withFiberFeatures = (b: PatchBatch): PatchBatch => {
    const skip = model.fiberFeatures(b.image, b.x.shape[0], patch);
    if (skip) b.fiberSkip = skip;
    return b;
  };
  const valBatches: PatchBatch[] = [];
  for (let i = 0; i < c.validationPatches; i += c.batch) {
    const n = Math.min(c.batch, c.validationPatches - i);
    const patches: RawPatch[] = [];
    for (let j = 0; j < n; j++) patches.push(await withFields(await valSampler.next()));
    valBatches.push(withFiberFeatures(patchBatch(patches, patch, batchOptions)));
  }
  valSampler.close();
  const predictions = join(runDir, 'predictions.png');
  const [pd, ph, pw] = patch;
  const shown = [
    ...(heads.includes('ink') ? ['bce', 'dice'] : []),
    ...(heads.includes('fiber') ? ['fiber'] : []),
    ...(heads.includes('geometry') ? ['sheetBce', 'normal'] : []),
    'router',
    ...ROUTER_HEALTH_KEYS,
  ];
  const first = heads[0] as VolumeHeadName;
  const plotted = { ink: { key: 'bce', name: 'train BCE' }, fiber: { key: 'fiber', name: 'train fibre 1 - (v.t)^2' }, geometry: { key: 'geometry', name: 'train geometry' } }[first];

  return {
    model,
    unit: 'patches',
    perStep: c.batch,
    shown,
    plotted,
    predictions,
    description: `data: ${c.data.source === 'phantom' ? `phantom ${c.data.phantomShape.join('x')}` : c.data.source === 'fragment' ? `fragment ${data.volume.path} (${data.volume.shape.join('x')}, middle ${pd} layers, ink collapsed by ${c.data.collapse.mode})` : c.data.volume}, patches ${pd}x${ph}x${pw}, heads ${heads.join(', ')}`,
    async nextBatch() {
      const patches: RawPatch[] = [];
      for (let j = 0; j < c.batch; j++) patches.push(await withFields(await sampler.next()));
      return withFiberFeatures(patchBatch(patches, patch, batchOptions));
    },
    losses(batch, training) {
      return model.loss(model.forward(batch.x, { training, fiberSkip: batch.fiberSkip }), batch);
    },
    disposeBatch(batch) {
      tf.dispose(batchTensors(batch));
    },
    async validate() {
      const preds: ValPrediction[] = [];
      let lossSum = 0;
      for (const b of valBatches) {
        const out = tf.tidy(() => {
          const f = model.forward(b.x, { training: false, fiberSkip: b.fiberSkip });
          const kept = { loss: model.loss(f, b).total, ...model.predictionsOf(f) } as Record<string, tf.Tensor>;
          // Fragments are scored on the collapsed 2D map, as their labels are.
          if (b.inkColumns && f.logits) kept['ink'] = tf.sigmoid(collapseDepth(f.logits, b.inkColumns.collapse));
          return kept;
        });
        const p: ValPrediction = {};
        for (const k of ['ink', 'fiber', 'sheet', 'normals'] as const) if (out[k]) p[k] = (await out[k].data()) as Float32Array;
        lossSum += (await (out['loss'] as tf.Tensor).data())[0] as number;
        tf.dispose(Object.values(out));
        preds.push(p);
      }
      const loss = lossSum / valBatches.length;
      const metrics: Record<string, number> = { loss };
      const parts: string[] = [`loss ${loss.toString().slice(0, 6)}`];
      const all = <K extends keyof ValPrediction>(k: K): Float32Array => concat(preds.map((p) => p[k] as Float32Array), (n) => new Float32Array(n));
      if (heads.includes('ink')) {
        const u8 = (k: 'inkLabels' | 'inkColumnLabels' | 'inkColumnMask') => concat(valBatches.map((b) => b[k] as Uint8Array), (n) => new Uint8Array(n));
        const m = data.fragment ? inkMetrics(all('ink'), u8('inkColumnLabels'), u8('inkColumnMask')) : inkMetrics(all('ink'), u8('inkLabels'));
        Object.assign(metrics, { f05: m.f05, precision: m.precision, recall: m.recall, auc: m.auc, threshold: m.threshold });
        parts.push(`F0.5 ${fmt(m.f05)} (threshold ${m.threshold.toFixed(2)}), AUC ${fmt(m.auc)}`);
      }
      if (heads.includes('fiber')) {
        const t = valBatches.map((b) => b.fiberTargets as { target: Float32Array; mask: Uint8Array });
        const e = fiberErrorByFace(all('fiber'), concat(t.map((x) => x.target), (n) => new Float32Array(n)), concat(t.map((x) => x.mask), (n) => new Uint8Array(n)));
        Object.assign(metrics, { fiberError: e.all.mean, fiberMedian: e.all.median, fiberHorizontal: e.horizontal.mean, fiberVertical: e.vertical.mean });
        parts.push(`fibre ${fmt(e.all.mean, 1)}° (horizontal ${fmt(e.horizontal.mean, 1)}°, vertical ${fmt(e.vertical.mean, 1)}°)`);
      }
      if (heads.includes('geometry')) {
        const sheet = all('sheet');
        const labels = concat(valBatches.map((b) => b.sheetLabels as Uint8Array), (n) => new Uint8Array(n));
        const v = pd * ph * pw;
        // Surface distances per patch (a patch is a closed box), averaged; patches without sheet in
        // both the prediction and the label are skipped (no surface to measure).
        let surfMean = 0;
        let surfP95 = 0;
        let counted = 0;
        for (let i = 0; i < labels.length / v; i++) {
          const s = surfaceDistance(sheet.subarray(i * v, (i + 1) * v), labels.subarray(i * v, (i + 1) * v), patch);
          if (!Number.isFinite(s.mean) || s.predSurface + s.targetSurface === 0) continue;
          surfMean += s.mean;
          surfP95 += s.p95;
          counted++;
        }
        Object.assign(metrics, { sheetDice: dice(sheet, labels), surfaceMean: surfMean / counted, surfaceP95: surfP95 / counted });
        let line = `sheet Dice ${fmt(metrics['sheetDice'] as number)}, surface ${fmt(surfMean / counted, 2)} vx (p95 ${fmt(surfP95 / counted, 2)})`;
        if (model.spec.geometryHead?.normals) {
          const t = valBatches.map((b) => b.normalTargets as { target: Float32Array; mask: Uint8Array });
          const e = normalAngularError(all('normals'), concat(t.map((x) => x.target), (n) => new Float32Array(n)), concat(t.map((x) => x.mask), (n) => new Uint8Array(n)));
          metrics['normalError'] = e.mean;
          line += `, normals ${fmt(e.mean, 1)}°`;
        }
        parts.push(line);
      }
      const b0 = valBatches[0];
      if (b0 && preds[0]) {
        if (data.fragment) await writeFragmentPanels(predictions, b0, preds[0].ink as Float32Array, patch);
        else await writeValidationPanels(predictions, b0, preds[0], patch, grid);
      }
      return { metrics: metrics as { loss: number } & Record<string, number>, line: parts.join(', ') };
    },
    routing() {
      return model.routing((valBatches[0] as PatchBatch).x);
    },
    ...(data.fragment
      ? {}
      : {
          tokenClasses() {
            const b = valBatches[0] as PatchBatch;
            return tokenClassesFromLabels(grid, b.x.shape[0], { ink: b.inkLabels, papyrus: b.sheetLabels });
          },
        }),
    state() {
      return sampler.state();
    },
    restore(state) {
      sampler.restore(state as PatchSamplerState);
    },
    close() {
      sampler.close();
      for (const b of valBatches) tf.dispose(batchTensors(b));
    },
  };
}

/**
 * Middle z slice of each validation patch: the image, then per head its label and prediction (ink:
 * label, probability, red overlay on the image; fibre: true and predicted direction as colour on
 * labelled tokens; geometry: sheet label and probability, predicted normal as colour).
 */
async function writeValidationPanels(path: string, b: PatchBatch, p: ValPrediction, patch: [number, number, number], grid: TokenGrid): Promise<void> {
  const [D, H, W] = patch;
  const z = Math.floor(D / 2);
  const rows = b.image.length / (D * H * W);
  const at = (i: number, y: number, x: number): number => ((i * D + z) * H + y) * W + x;
  const N = grid.dims[0] * grid.dims[1] * grid.dims[2];
  const token = (i: number, y: number, x: number): number =>
    i * N + (Math.floor(z / grid.cell[0]) * grid.dims[1] + Math.floor(y / grid.cell[1])) * grid.dims[2] + Math.floor(x / grid.cell[2]);
  const image = (i: number, y: number, x: number): number => ((b.image[at(i, y, x)] ?? -1) + 1) / 2;
  const dark: Rgb = [40, 40, 40];
  const direction = (v: Float32Array, mask: Uint8Array) => (i: number, y: number, x: number): Rgb => {
    const t = token(i, y, x);
    return mask[t] ? directionColour(v[3 * t] ?? 0, v[3 * t + 1] ?? 0, v[3 * t + 2] ?? 0) : dark;
  };
  const columns: ((i: number, y: number, x: number) => Rgb)[] = [(i, y, x) => grey(image(i, y, x))];
  if (p.ink && b.inkLabels) {
    const [label, prob] = [b.inkLabels, p.ink];
    columns.push((i, y, x) => grey(label[at(i, y, x)] ?? 0), (i, y, x) => grey(prob[at(i, y, x)] ?? 0), (i, y, x) => redOver(image(i, y, x), prob[at(i, y, x)] ?? 0));
  }
  if (p.fiber && b.fiberTargets) {
    const t = b.fiberTargets;
    columns.push(direction(t.target, t.mask), direction(p.fiber, t.mask));
  }
  if (p.sheet && b.sheetLabels) {
    const [label, prob] = [b.sheetLabels, p.sheet];
    columns.push((i, y, x) => grey(label[at(i, y, x)] ?? 0), (i, y, x) => grey(prob[at(i, y, x)] ?? 0));
    if (p.normals && b.normalTargets) columns.push(direction(p.normals, b.normalTargets.mask));
  }
  await writePanelsPng(path, { rows, H, W }, columns);
}

/**
 * A fragment's validation patches: the middle layer, the column ink label, the collapsed probability
 * and the probability in red over the layer.
 */
async function writeFragmentPanels(path: string, b: PatchBatch, prob: Float32Array, patch: [number, number, number]): Promise<void> {
  const [D, H, W] = patch;
  const rows = b.image.length / (D * H * W);
  const mid = Math.floor(D / 2);
  const image = (i: number, y: number, x: number): number => ((b.image[((i * D + mid) * H + y) * W + x] ?? -1) + 1) / 2;
  const at = (i: number, y: number, x: number): number => (i * H + y) * W + x;
  const label = b.inkColumnLabels as Uint8Array;
  const mask = b.inkColumnMask as Uint8Array;
  await writePanelsPng(path, { rows, H, W }, [
    (i, y, x) => grey(image(i, y, x)),
    (i, y, x) => (mask[at(i, y, x)] ? grey(label[at(i, y, x)] ?? 0) : [0, 0, 90]),
    (i, y, x) => grey(prob[at(i, y, x)] ?? 0),
    (i, y, x) => redOver(image(i, y, x), prob[at(i, y, x)] ?? 0),
  ]);
}
