/**
 * `goe report RUN`: the pictures of a run in one folder, `RUN/report/`, from what the run wrote
 * (`metrics.jsonl`, the routing pictures of the last validation, the predictions): every training loss
 * part over steps, the learning rate and gradient norm, every validation metric over steps, and an
 * `index.md` that shows them all with the routing pictures and sample predictions beside labels.
 * Each file is written atomically, so a report is never half old, half new.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { atomicWriteFile } from '@goe/scroll-io';
import { ConfigError } from './errors.js';
import { ROUTER_HEALTH_KEYS } from './model.js';
import { writeLineChartPng, type Series } from './plot.js';
import type { MetricsRecord } from './train.js';

/** What `writeReport` wrote. */
export interface RunReport {
  dir: string;
  /** Charts drawn from `metrics.jsonl`, and the run's own pictures the index shows, all absolute paths. */
  charts: string[];
  pictures: string[];
  index: string;
}

/** Train fields that are not loss parts. */
const NOT_LOSS = new Set(['step', 'split', 'lr', 'gradNorm', 'seconds', ...ROUTER_HEALTH_KEYS]);

function series(records: MetricsRecord[], keys: string[]): Series[] {
  return keys.map((k) => ({
    name: k,
    x: records.filter((r) => typeof r[k] === 'number').map((r) => r.step),
    y: records.filter((r) => typeof r[k] === 'number').map((r) => r[k] as number),
  }));
}

/** Numeric fields present in the records, in first-seen order. */
function numericKeys(records: MetricsRecord[], skip: Set<string>): string[] {
  const keys: string[] = [];
  for (const r of records) for (const [k, v] of Object.entries(r)) if (!skip.has(k) && typeof v === 'number' && !keys.includes(k)) keys.push(k);
  return keys;
}

/**
 * Writes `RUN/report/`.
 * @param runDir a run folder written by `goe train`
 * @throws ConfigError naming `RUN/metrics.jsonl` when it is missing, empty or has a line that is not JSON
 */
export async function writeReport(runDir: string): Promise<RunReport> {
  const run = resolve(runDir);
  const metricsPath = join(run, 'metrics.jsonl');
  if (!existsSync(metricsPath)) throw new ConfigError('RUN', `${metricsPath} not found: not a run folder written by goe train`);
  const records: MetricsRecord[] = [];
  const lines = (await readFile(metricsPath, 'utf8')).split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      records.push(JSON.parse(line) as MetricsRecord);
    } catch {
      throw new ConfigError('RUN', `${metricsPath} line ${i + 1} is not JSON`);
    }
  });
  const train = records.filter((r) => r.split === 'train');
  if (train.length === 0) throw new ConfigError('RUN', `${metricsPath} holds no training records`);
  const val = records.filter((r) => r.split === 'val');
  const dir = join(run, 'report');
  const charts: string[] = [];
  const chart = async (name: string, s: Series[], title: string, yLabel: string, logY: boolean): Promise<void> => {
    const path = join(dir, name);
    await writeLineChartPng(path, s, { title, xLabel: 'step', yLabel, logY });
    charts.push(path);
  };
  const lossKeys = numericKeys(train, NOT_LOSS);
  const positive = (keys: string[], rs: MetricsRecord[]) => rs.every((r) => keys.every((k) => typeof r[k] !== 'number' || (r[k] as number) > 0));
  await chart('loss-parts.png', series(train, lossKeys), 'Training loss and its parts', 'loss', positive(lossKeys, train));
  await chart('learning-rate.png', series(train, ['lr']), 'Learning rate (warm-up, cosine decay)', 'learning rate', false);
  await chart('grad-norm.png', series(train, ['gradNorm']), 'Global gradient norm (before clipping)', 'norm', positive(['gradNorm'], train));
  if (train.some((r) => typeof r['cycles'] === 'number')) {
    await chart('router-health.png', series(train, [...ROUTER_HEALTH_KEYS]), 'Router health: M x top expert share (1 = balanced), routing entropy (nats), cycles run', 'value', false);
  }
  if (val.length > 0) {
    const keys = numericKeys(val, new Set(['step', 'split']));
    // One chart per unit: fractions in [0, 1] (F0.5, AUC, Dice), angles in degrees (fibre, normals),
    // distances in voxels (sheet surface), cycles (halting per token class), and the rest (losses,
    // bits per byte).
    const angle = keys.filter((k) => /^(fiber|normal)/.test(k));
    const surface = keys.filter((k) => k.startsWith('surface'));
    const halting = keys.filter((k) => k.startsWith('halting'));
    const rest = keys.filter((k) => ![...angle, ...surface, ...halting].includes(k));
    const unit = rest.filter((k) => val.every((r) => typeof r[k] !== 'number' || ((r[k] as number) >= 0 && (r[k] as number) <= 1)) && k !== 'loss');
    const other = rest.filter((k) => !unit.includes(k) && k !== 'maskedBytes');
    if (unit.length > 0) await chart('validation-metrics.png', series(val, unit), 'Validation metrics', 'value', false);
    if (angle.length > 0) await chart('validation-angles.png', series(val, angle), 'Validation angular errors (fibres, sheet normals)', 'degrees', false);
    if (surface.length > 0) await chart('validation-surface.png', series(val, surface), 'Validation sheet surface distance', 'voxels', false);
    if (halting.length > 0) await chart('validation-halting.png', series(val, halting), 'Mean cycles run per token class', 'cycles', false);
    if (other.length > 0) await chart('validation-loss.png', series(val, other), 'Validation loss', 'value', positive(other, val));
  }
  const candidates = ['loss.png', 'predictions.png', 'routing/graph.png', 'routing/adjacency.png', 'routing/transitions.png', 'routing/load.png', 'routing/halting.png'];
  const pictures = candidates.map((p) => join(run, p)).filter((p) => existsSync(p));
  const index = join(dir, 'index.md');
  const link = (p: string, what: string) => `![${what}](${relative(dir, p)})`;
  const describe: Record<string, string> = {
    'loss-parts.png': 'training loss and its parts',
    'learning-rate.png': 'learning rate',
    'grad-norm.png': 'gradient norm',
    'router-health.png': 'router health over training: load balance, routing entropy, halting depth',
    'validation-metrics.png': 'validation metrics',
    'validation-loss.png': 'validation loss',
    'validation-angles.png': 'validation angular errors of fibres and sheet normals',
    'validation-surface.png': 'validation sheet surface distances',
    'validation-halting.png': 'mean cycles run per token class over training',
    'loss.png': 'training and validation loss',
    'predictions.png': 'validation patches: the image, then per head its label and prediction (ink: label, probability, overlay; fibre: true and predicted direction as colour; geometry: sheet label, probability, normals)',
    'routing/graph.png': 'the learned expert graph A',
    'routing/adjacency.png': 'A as a heat map',
    'routing/transitions.png': 'expert-to-expert transitions between cycles',
    'routing/load.png': 'expert load per cycle',
    'routing/halting.png': 'halting depth per token class (air, papyrus, ink)',
  };
  const last = val[val.length - 1];
  const text = [
    `# Run report: ${run}`,
    '',
    `${train.length} logged training steps up to step ${train[train.length - 1]!.step}; ${val.length} validations${last ? ` (last, step ${last.step}: ${Object.entries(last).filter(([k, v]) => typeof v === 'number' && k !== 'step').map(([k, v]) => `${k} ${(v as number).toPrecision(4)}`).join(', ')})` : ''}.`,
    '',
    ...charts.map((p) => `## ${describe[relative(dir, p)] ?? relative(dir, p)}\n\n${link(p, relative(dir, p))}\n`),
    ...pictures.map((p) => `## ${describe[relative(run, p)] ?? relative(run, p)}\n\n${link(p, relative(run, p))}\n`),
  ].join('\n');
  await atomicWriteFile(index, `${text}\n`);
  return { dir, charts, pictures, index };
}
