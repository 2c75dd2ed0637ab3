/**
 * The volume task: ink segmentation on scroll patches. Patches stream from the volume (the synthetic
 * phantom, written into the run folder, or a Zarr volume with ink labels) through scroll-io's
 * prefetching sampler; validation scores a fixed set of patches from the held-out z slab with the
 * Kaggle-style F0.5 and writes middle slices of its predictions as a PNG.
 */
import { tf } from '@goe/tf';
import { openVolume, PatchSampler, type PatchSamplerState, type Volume } from '@goe/scroll-io';
import { resolvePhantomConfig, writePhantom } from '@goe/phantom';
import { inkMetrics } from '@goe/head-ink';
import { join } from 'node:path';
import type { TrainConfig } from './config.js';
import { patchBatch, type InkModel, type PatchBatch } from './model.js';
import { writeInkPanelsPng } from './plot.js';
import type { TrainTask } from './task.js';

interface DataSources {
  volume: Volume;
  ink: Volume;
  /** Training region (z below the validation slab) and validation region. */
  trainRegion: { offset: number[]; shape: number[] };
  valRegion: { offset: number[]; shape: number[] };
}

async function prepareData(c: TrainConfig, runDir: string): Promise<DataSources> {
  let volumePath = c.data.volume;
  let inkPath = c.data.inkLabels;
  if (c.data.source === 'phantom') {
    const pc = resolvePhantomConfig({ shape: c.data.phantomShape, seed: c.seed, preset: c.data.phantomPreset });
    const written = await writePhantom(join(runDir, 'data'), pc, { overwrite: true });
    volumePath = written.image;
    inkPath = written.labels.ink;
  }
  const volume = await openVolume(volumePath);
  const ink = await openVolume(inkPath);
  if (volume.shape.join(',') !== ink.shape.join(',')) {
    throw new Error(`ink labels ${inkPath} have shape [${ink.shape}] but the volume ${volumePath} has [${volume.shape}]`);
  }
  const [D, H, W] = volume.shape as [number, number, number];
  const valD = Math.floor(D * c.data.validationFraction);
  return {
    volume,
    ink,
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

/** The ink task for `model` per `c`, with its data in `runDir`. */
export async function volumeTask(c: TrainConfig, runDir: string, model: InkModel): Promise<TrainTask<PatchBatch>> {
  const data = await prepareData(c, runDir);
  const sampler = new PatchSampler({
    volume: data.volume,
    labels: { ink: data.ink },
    patchShape: c.model.patch,
    region: data.trainRegion,
    seed: c.seed,
    prefetch: c.data.prefetch,
  });
  // A fixed validation set: the same patches every time, from the held-out slab.
  const valSampler = new PatchSampler({
    volume: data.volume,
    labels: { ink: data.ink },
    patchShape: c.model.patch,
    region: data.valRegion,
    seed: c.seed + 1,
    prefetch: 0,
  });
  const valBatches: PatchBatch[] = [];
  for (let i = 0; i < c.validationPatches; i += c.batch) {
    const n = Math.min(c.batch, c.validationPatches - i);
    const patches = [];
    for (let j = 0; j < n; j++) patches.push(await valSampler.next());
    valBatches.push(patchBatch(patches, c.model.patch));
  }
  valSampler.close();
  const predictions = join(runDir, 'predictions.png');
  const [pd, ph, pw] = c.model.patch;

  return {
    model,
    unit: 'patches',
    perStep: c.batch,
    shown: ['bce', 'dice', 'router'],
    plotted: { key: 'bce', name: 'train BCE' },
    predictions,
    description: `data: ${c.data.source === 'phantom' ? `phantom ${c.data.phantomShape.join('x')}` : c.data.volume}, patches ${pd}x${ph}x${pw}`,
    async nextBatch() {
      const patches = [];
      for (let j = 0; j < c.batch; j++) patches.push(await sampler.next());
      return patchBatch(patches, c.model.patch);
    },
    losses(batch, training) {
      return model.loss(model.forward(batch.x, { training }), batch.ink);
    },
    disposeBatch(batch) {
      tf.dispose([batch.x, batch.ink]);
    },
    async validate() {
      const probs: Float32Array[] = [];
      const labels: Uint8Array[] = [];
      let lossSum = 0;
      for (const b of valBatches) {
        const out = tf.tidy(() => {
          const f = model.forward(b.x, { training: false });
          return { prob: tf.sigmoid(f.logits), loss: model.loss(f, b.ink).total };
        });
        probs.push((await out.prob.data()) as Float32Array);
        labels.push(b.inkLabels);
        lossSum += (await out.loss.data())[0] as number;
        tf.dispose([out.prob, out.loss]);
      }
      const first = valBatches[0];
      if (first) {
        await writeInkPanelsPng(predictions, {
          image: first.image,
          label: first.inkLabels,
          prob: (probs[0] as Float32Array).subarray(0, first.inkLabels.length),
          shape: [first.inkLabels.length / (pd * ph * pw), pd, ph, pw],
        });
      }
      const m = inkMetrics(concat(probs, (n) => new Float32Array(n)), concat(labels, (n) => new Uint8Array(n)));
      const loss = lossSum / valBatches.length;
      return {
        metrics: { loss, f05: m.f05, precision: m.precision, recall: m.recall, auc: m.auc, threshold: m.threshold },
        line: `loss ${loss.toString().slice(0, 6)}, F0.5 ${m.f05.toFixed(3)} (threshold ${m.threshold.toFixed(2)}), AUC ${m.auc.toFixed(3)}`,
      };
    },
    routing() {
      return model.routing((valBatches[0] as PatchBatch).x);
    },
    state() {
      return sampler.state();
    },
    restore(state) {
      sampler.restore(state as PatchSamplerState);
    },
    close() {
      sampler.close();
      for (const b of valBatches) tf.dispose([b.x, b.ink]);
    },
  };
}
