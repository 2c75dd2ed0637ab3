/**
 * The `goe` command: `goe train`, `goe segment`, `goe eval`, `goe synth`, `goe inspect`. Every subcommand has `--help`; unknown
 * flags and bad values are errors that name the flag, with exit code 2 (usage) or 1 (failure).
 */
import { routerPresets, routerRegistry } from '@goe/core';
import { BACKEND_ORDER, BackendUnavailableError } from '@goe/tf';
import { PHANTOM_PRESETS, PhantomConfigError, resolvePhantomConfig, writePhantom, writePhantomFragment } from '@goe/phantom';
import { inspectVolume, parseRegion, ScrollIoOptionError } from '@goe/scroll-io';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseHeads, resolveTrainConfig, DEFAULT_TRAIN_CONFIG, type DeepPartial, type TrainConfig } from './config.js';
import { layerPreset, readConfigFile, TRAIN_PRESETS } from './presets.js';
import { STEM_KINDS, type StemKind } from './spec.js';
import { CheckpointError, ConfigError, NonFiniteLossError } from './errors.js';
import { Progress } from './progress.js';
import { parseOverlap, SEGMENT_DEFAULTS, segment } from './segment.js';
import { evaluate, formatEvalTable } from './eval.js';
import { resumeTraining, train, type TrainResult } from './train.js';
import { writeReport } from './report.js';

type Options = NonNullable<ParseArgsConfig['options']>;

interface Command {
  summary: string;
  usage: string;
  options: Options;
  /** Help text per option. */
  help: Record<string, string>;
  /** The option that one positional argument may stand for (`goe inspect PATH`). */
  positional?: string;
  run(values: Record<string, string | boolean | undefined>): Promise<number>;
}

const BACKENDS = `auto, ${BACKEND_ORDER.join(', ')}`;

function parseIntFlag(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v)) throw new ConfigError(flag, `expected an integer, got '${v}'`);
  return Number(v);
}

function parseShape(v: string | undefined, flag: string): [number, number, number] | undefined {
  if (v === undefined) return undefined;
  const parts = v.split(/[,x]/).map((s) => s.trim());
  if (parts.length !== 3 || !parts.every((p) => /^\d+$/.test(p) && Number(p) > 0)) {
    throw new ConfigError(flag, `expected D,H,W (three positive integers), got '${v}'`);
  }
  return parts.map(Number) as [number, number, number];
}

/** The one-line JSON summary `goe train` prints when a run ends. */
function printTrainSummary(r: TrainResult): void {
  const first = r.history[0]?.['total'];
  const last = r.history[r.history.length - 1]?.['total'];
  console.log(
    JSON.stringify({
      run: r.runDir,
      stem: r.stem,
      backend: r.backend.name,
      steps: r.steps,
      firstLoss: first,
      finalLoss: last,
      validation: r.validation[r.validation.length - 1],
      secondsPerStep: Number(r.secondsPerStep.toFixed(4)),
      checkpoint: r.checkpoint,
      lossCurve: r.lossCurvePng,
      predictions: r.predictions,
    }),
  );
}

const commands: Record<string, Command> = {
  train: {
    summary: 'train a model: volume stem -> encoder -> GoE layer -> ink, fibre and geometry heads, or the sequence stem and a byte head',
    usage:
      'goe train [--preset NAME] [--config FILE.yaml|FILE.json] [--heads ink,fiber,geometry] [--stem volume|sequence] [--steps N] [--seed S] [--backend NAME] [--router NAME] [--out DIR] | goe train --resume [--out DIR]',
    options: {
      resume: { type: 'boolean' },
      stem: { type: 'string' },
      text: { type: 'string', multiple: true },
      steps: { type: 'string' },
      router: { type: 'string' },
      seed: { type: 'string' },
      backend: { type: 'string' },
      out: { type: 'string' },
      config: { type: 'string' },
      preset: { type: 'string' },
      heads: { type: 'string' },
      batch: { type: 'string' },
      'phantom-shape': { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    help: {
      stem: `input stem: volume (ink segmentation on the synthetic scroll or a Zarr volume) or sequence (masked-byte modelling of text, by default the project's own documentation); the encoder, GoE layer and training loop are the same (default ${DEFAULT_TRAIN_CONFIG.model.stemKind})`,
      text: 'with --stem sequence: a UTF-8 text file to train on instead of the project documentation (repeat for several)',
      steps: `training steps (default ${DEFAULT_TRAIN_CONFIG.steps})`,
      seed: `seed for weights, phantom and patch sampling (default ${DEFAULT_TRAIN_CONFIG.seed}); the same seed gives the same loss curve on every backend`,
      backend: `tensor backend: ${BACKENDS} (default auto, or GOE_BACKEND)`,
      router: `router of the GoE layer: ${routerRegistry.keys().join(', ')} (default goe); the baselines run behind the same interface`,
      out: `run folder for checkpoint/, metrics.jsonl, loss.png (default ${DEFAULT_TRAIN_CONFIG.out})`,
      config: 'YAML (.yaml, .yml) or JSON file with any part of the training config (and optionally `preset: NAME`); flags override it, it overrides the preset',
      preset: `named config under the file: ${Object.entries(TRAIN_PRESETS).map(([k, p]) => `${k} (${p.summary})`).join('; ')}`,
      heads: `task heads on the volume model, comma-separated: ink, fiber, geometry (default ${DEFAULT_TRAIN_CONFIG.model.heads.join(',')}); the loss is their weighted sum (model.lossWeights)`,
      batch: `patches per step (default ${DEFAULT_TRAIN_CONFIG.batch})`,
      'phantom-shape': `size D,H,W of the synthetic scroll generated for training (default ${DEFAULT_TRAIN_CONFIG.data.phantomShape.join(',')})`,
      quiet: 'no progress output',
      resume: `continue the run in --out (default ${DEFAULT_TRAIN_CONFIG.out}) from its last checkpoint with the config saved there, e.g. after the process was killed; the records logged after that checkpoint are dropped and those steps run again, so the loss curve equals an uninterrupted run's (only --out, --backend and --quiet may accompany it)`,
    },
    async run(v) {
      if (v['resume']) {
        const others = Object.keys(v).filter((k) => v[k] !== undefined && !['resume', 'out', 'backend', 'quiet'].includes(k));
        if (others.length > 0) throw new ConfigError('--resume', `takes its config from the checkpoint; drop --${others.join(', --')}`);
        const out = typeof v['out'] === 'string' ? v['out'] : DEFAULT_TRAIN_CONFIG.out;
        const r = await resumeTraining(out, {
          progressStream: v['quiet'] ? null : process.stderr,
          ...(typeof v['backend'] === 'string' ? { backend: v['backend'] } : {}),
        });
        printTrainSummary(r);
        return 0;
      }
      const file = typeof v['config'] === 'string' ? await readConfigFile(v['config']) : {};
      const partial = layerPreset(file, typeof v['preset'] === 'string' ? v['preset'] : undefined) as DeepPartial<TrainConfig>;
      if (typeof v['heads'] === 'string') partial.model = { ...(partial.model ?? {}), heads: parseHeads(v['heads'], '--heads') };
      const steps = parseIntFlag(v['steps'] as string | undefined, '--steps');
      const seed = parseIntFlag(v['seed'] as string | undefined, '--seed');
      const batch = parseIntFlag(v['batch'] as string | undefined, '--batch');
      const shape = parseShape(v['phantom-shape'] as string | undefined, '--phantom-shape');
      if (steps !== undefined) partial.steps = steps;
      if (seed !== undefined) partial.seed = seed;
      if (batch !== undefined) partial.batch = batch;
      if (typeof v['backend'] === 'string') partial.backend = v['backend'];
      if (typeof v['out'] === 'string') partial.out = v['out'];
      if (shape) partial.data = { ...(partial.data ?? {}), phantomShape: shape };
      const stem = v['stem'];
      if (typeof stem === 'string') {
        if (!STEM_KINDS.includes(stem as StemKind)) throw new ConfigError('--stem', `expected one of ${STEM_KINDS.join(', ')}, got '${stem}'`);
        partial.model = { ...(partial.model ?? {}), stemKind: stem as StemKind };
      }
      const text = v['text'] as unknown as string[] | undefined;
      if (text) {
        const data = partial.data ?? {};
        partial.data = { ...data, text: { ...(data.text ?? {}), files: text } };
      }
      const router = v['router'];
      if (typeof router === 'string') {
        if (!routerRegistry.keys().includes(router)) throw new ConfigError('--router', `expected one of ${routerRegistry.keys().join(', ')}, got '${router}'`);
        const model = partial.model ?? {};
        const core = (model.core ?? {}) as Record<string, unknown>;
        // A baseline trains with its paper's settings (routerPresets) unless the config file says otherwise.
        const base = (routerPresets.get(router) ?? {}) as Record<string, unknown>;
        const regularisers = { ...((base['regularisers'] as object) ?? {}), ...((core['regularisers'] as object) ?? {}) };
        partial.model = { ...model, core: { ...base, ...core, regularisers, router } };
      }
      const config = resolveTrainConfig(partial);
      if (text && config.model.stemKind !== 'sequence') throw new ConfigError('--text', 'applies to --stem sequence only');
      const r = await train(config, { progressStream: v['quiet'] ? null : process.stderr });
      printTrainSummary(r);
      return 0;
    },
  },
  segment: {
    summary: 'run a checkpoint over a scroll volume in blended windows into OME-Zarr (shardable, resumable), or over a fragment into a PNG and its RLE',
    usage:
      'goe segment --checkpoint RUN --volume PATH_OR_URL --out OUT.zarr [--region z0:z1,y0:y1,x0:x1] [--level L] [--heads ink,fiber,geometry] [--mask MASK] [--shard i/n] [--resume] [--png DIR] | goe segment --checkpoint RUN --fragment DIR [--out DIR]',
    options: {
      checkpoint: { type: 'string' },
      volume: { type: 'string' },
      fragment: { type: 'string' },
      out: { type: 'string' },
      region: { type: 'string' },
      level: { type: 'string' },
      heads: { type: 'string' },
      mask: { type: 'string' },
      shard: { type: 'string' },
      resume: { type: 'boolean' },
      png: { type: 'string' },
      overlap: { type: 'string' },
      chunks: { type: 'string' },
      levels: { type: 'string' },
      backend: { type: 'string' },
      batch: { type: 'string' },
      overwrite: { type: 'boolean' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    help: {
      checkpoint: 'run folder written by `goe train` (or its checkpoint/ folder); a volume-stem model',
      volume: 'input volume: Zarr v2/v3 array or OME-Zarr group, local path or http(s) URL',
      fragment: 'a fragment folder (surface_volume/NN.tif or layers/NN.tif, mask.png): writes inkpred.png (max over layers of the blended ink probability) and submission.csv (run-length encoding at the threshold the checkpoint\'s validation kept, else 0.5)',
      out: 'OME-Zarr group written: one multiscale uint8 image per head (probability x 255), the volume\'s shape; with --fragment a folder (default FRAGMENT/prediction)',
      region: 'half-open voxel ranges at --level, e.g. 0:256,1000:2000,1000:2000 (default: the whole volume); voxels outside stay 0',
      level: 'multiscale level of an OME-Zarr --volume (default 0)',
      heads: 'comma-separated heads to write (default: every head the checkpoint has)',
      mask: 'uint8 Zarr array of the level\'s shape: chunks where it is all 0 are skipped, voxels where it is 0 are 0',
      shard: 'i/n: do the i-th of n balanced, disjoint shares (blocks of the coarsest pyramid chunk); n runs on any machines together write exactly what one run writes',
      resume: 'finish an interrupted run (or join sibling shards): parts and blocks marked done are skipped',
      png: 'folder for PNG previews: a few z-slices per head over the input',
      overlap: `window overlap in voxels, one number or D,H,W (default ${SEGMENT_DEFAULTS.overlapFraction} of the model window)`,
      chunks: `output chunk D,H,W (default ${SEGMENT_DEFAULTS.chunks.join(',')})`,
      levels: `pyramid levels including level 0 (default: until the volume fits a chunk, at most ${SEGMENT_DEFAULTS.maxLevels})`,
      backend: `tensor backend: ${BACKENDS}`,
      batch: `windows per forward pass (default ${SEGMENT_DEFAULTS.batch})`,
      overwrite: 'replace --out if it exists (not with --shard i/n, n > 1)',
      quiet: 'no progress output',
    },
    async run(v) {
      if (typeof v['checkpoint'] !== 'string') throw new ConfigError('--checkpoint', 'is required');
      const r = await segment({
        checkpoint: v['checkpoint'],
        volume: v['volume'] as string | undefined,
        fragment: v['fragment'] as string | undefined,
        out: v['out'] as string | undefined,
        region: v['region'] as string | undefined,
        level: parseIntFlag(v['level'] as string | undefined, '--level'),
        heads: typeof v['heads'] === 'string' ? v['heads'].split(',').map((h) => h.trim()).filter((h) => h !== '') : undefined,
        mask: v['mask'] as string | undefined,
        shard: v['shard'] as string | undefined,
        resume: v['resume'] === true ? true : undefined,
        png: v['png'] as string | undefined,
        overlap: parseOverlap(v['overlap'] as string | undefined),
        chunks: parseShape(v['chunks'] as string | undefined, '--chunks'),
        levels: parseIntFlag(v['levels'] as string | undefined, '--levels'),
        backend: v['backend'] as string | undefined,
        batch: parseIntFlag(v['batch'] as string | undefined, '--batch'),
        overwrite: Boolean(v['overwrite']),
        progressStream: v['quiet'] ? null : process.stderr,
      });
      console.log(
        JSON.stringify({
          out: r.out,
          shape: r.shape,
          region: r.region,
          heads: r.heads,
          shard: `${r.shard.index}/${r.shard.count}`,
          tiles: r.tiles,
          parts: r.parts,
          partsAlreadyDone: r.partsAlreadyDone,
          chunksWritten: r.chunksWritten,
          chunksSkipped: r.chunksSkipped,
          previews: r.previews,
          ...(r.fragment ? { fragment: r.fragment } : {}),
          seconds: Number(r.seconds.toFixed(2)),
          voxelsPerSecond: Math.round(r.voxelsPerSecond),
          // Peak resident memory of the process: flat in the volume size (one part's windows and accumulators).
          peakRssBytes: process.resourceUsage().maxRSS * 1024,
          backend: r.backend.name,
        }),
      );
      return 0;
    },
  },
  eval: {
    summary: 'score every trained head of a checkpoint over a volume region against the labels beside the volume',
    usage:
      'goe eval --checkpoint RUN --data VOL.zarr [--region z0:z1,y0:y1,x0:x1] [--labels PATH] [--papyrus PATH] [--fibre-field PATH] [--normal-field PATH] [--ignore-value N] [--json] [--backend NAME] [--batch N]',
    options: {
      checkpoint: { type: 'string' },
      data: { type: 'string' },
      region: { type: 'string' },
      labels: { type: 'string' },
      papyrus: { type: 'string' },
      'fibre-field': { type: 'string' },
      'normal-field': { type: 'string' },
      'ignore-value': { type: 'string' },
      json: { type: 'boolean' },
      backend: { type: 'string' },
      batch: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    help: {
      checkpoint: 'run folder written by `goe train` (or its checkpoint/ folder); a volume-stem model',
      data: 'the volume: OME-Zarr group (level 0) or Zarr array, e.g. RUN/data/scroll.zarr',
      region: 'half-open voxel ranges per axis, inside the volume (default: the whole volume)',
      labels: 'ink label array or OME-Zarr label group (default: DATA/labels/ink, or the labels/ink of the group holding a level array)',
      papyrus: 'sheet (papyrus) labels for the geometry head (default: labels/papyrus beside the volume)',
      'fibre-field': 'fibre direction field [3, D, H, W] for the fibre head (default: fields/fibre beside the volume)',
      'normal-field': "sheet normal field [3, D, H, W] for the geometry head's normals (default: fields/normal beside the volume)",
      'ignore-value': 'ink label value meaning unlabelled, never scored (default: none)',
      json: 'print one JSON object { checkpoint, data, labels, region, heads: { ink: { f05, threshold, precision, recall, auc, … }, fiber: { all, horizontal, vertical }, geometry: { dice, surfaceMean, surfaceP95, normal } } } instead of a table',
      backend: `tensor backend: ${BACKENDS}`,
      batch: 'tiles per forward pass (default 4)',
    },
    async run(v) {
      for (const k of ['checkpoint', 'data']) {
        if (typeof v[k] !== 'string') throw new ConfigError(`--${k}`, 'is required');
      }
      const batch = parseIntFlag(v['batch'] as string | undefined, '--batch');
      if (batch !== undefined && batch < 1) throw new ConfigError('--batch', `expected an integer >= 1, got '${batch}'`);
      const r = await evaluate({
        checkpoint: v['checkpoint'] as string,
        data: v['data'] as string,
        region: v['region'] as string | undefined,
        labels: v['labels'] as string | undefined,
        papyrus: v['papyrus'] as string | undefined,
        fibreField: v['fibre-field'] as string | undefined,
        normalField: v['normal-field'] as string | undefined,
        ignoreValue: parseIntFlag(v['ignore-value'] as string | undefined, '--ignore-value'),
        backend: v['backend'] as string | undefined,
        batch,
      });
      console.log(v['json'] ? JSON.stringify(r) : formatEvalTable(r));
      return 0;
    },
  },
  synth: {
    summary: 'write a synthetic scroll (OME-Zarr image pyramid, ink, papyrus and wrap labels, fibre and normal fields)',
    usage: 'goe synth --out DIR [--shape D,H,W] [--seed N] [--preset NAME] [--dtype uint8|uint16] [--threads N] [--fragment] [--preview] [--quiet]',
    options: {
      out: { type: 'string' },
      shape: { type: 'string' },
      seed: { type: 'string' },
      preset: { type: 'string' },
      dtype: { type: 'string' },
      threads: { type: 'string' },
      fragment: { type: 'boolean' },
      preview: { type: 'boolean' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    help: {
      out: 'output folder; the scroll is written to DIR/scroll.zarr',
      fragment: 'also write DIR/fragment/: the middle wrap flattened along the sheet normal as in the Kaggle ink-detection data (surface_volume/00.tif … 64.tif, inklabels.png, mask.png) with mapping.zarr from fragment pixels to scroll voxels',
      shape: 'volume size D,H,W in voxels (default 32,128,128)',
      seed: 'random seed (default 0); the same seed gives byte-identical output',
      preset: `phantom preset: ${Object.keys(PHANTOM_PRESETS).join(', ')} (default: the phantom package default)`,
      dtype: 'image data type: uint8 or uint16 (default uint8)',
      threads: 'worker threads computing chunks (default: all cores; 0 or 1: none); the output is the same for any number',
      preview: 'also write DIR/preview.png: middle z, y and x slices, plain and with ink and wraps drawn over them',
      quiet: 'no progress output',
    },
    async run(v) {
      if (typeof v['out'] !== 'string') throw new ConfigError('--out', 'is required');
      const partial: Record<string, unknown> = { shape: parseShape(v['shape'] as string | undefined, '--shape') ?? [32, 128, 128] };
      const seed = parseIntFlag(v['seed'] as string | undefined, '--seed');
      if (seed !== undefined) partial['seed'] = seed;
      if (typeof v['preset'] === 'string') partial['preset'] = v['preset'];
      const dtype = v['dtype'];
      if (dtype !== undefined && dtype !== 'uint8' && dtype !== 'uint16') throw new ConfigError('--dtype', `expected uint8 or uint16, got '${String(dtype)}'`);
      if (dtype !== undefined) partial['dtype'] = dtype;
      const threads = parseIntFlag(v['threads'] as string | undefined, '--threads');
      if (threads !== undefined && threads < 0) throw new ConfigError('--threads', `expected an integer >= 0, got '${threads}'`);
      let config;
      try {
        config = resolvePhantomConfig(partial);
      } catch (err) {
        // The fields a flag sets are usage errors of that flag.
        if (err instanceof PhantomConfigError && ['shape', 'seed', 'preset', 'dtype'].includes(err.field)) {
          throw new ConfigError(`--${err.field}`, err.message.replace(/^phantom config '[^']*': /, ''), { cause: err });
        }
        throw err;
      }
      let progress: Progress | undefined;
      const written = await writePhantom(v['out'], config, {
        threads,
        preview: Boolean(v['preview']),
        onProgress: v['quiet']
          ? undefined
          : (p) => {
              if (p.stage === 'pyramids') {
                progress?.log('building the pyramids');
                return;
              }
              const voxels = config.shape.reduce((a, b) => a * b, 1);
              progress ??= new Progress({ total: p.chunksTotal, unit: 'voxels', perStep: voxels / p.chunksTotal, label: 'chunk', stream: process.stderr });
              if (p.chunksDone > 0) progress.update(p.chunksDone, {});
            },
      });
      progress?.done();
      const fragment = v['fragment'] ? await writePhantomFragment(v['out'], config) : undefined;
      console.log(JSON.stringify(fragment ? { ...written, fragment: fragment.dir } : written));
      return 0;
    },
  },
  report: {
    summary: 'draw a run\'s pictures into RUN/report/: loss parts, learning rate, gradient norm and validation metrics over steps, with an index.md that also shows the routing pictures and predictions',
    usage: 'goe report RUN   (or --run RUN)',
    positional: 'run',
    options: {
      run: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    help: {
      run: 'a run folder written by goe train (holding metrics.jsonl)',
    },
    async run(v) {
      if (typeof v['run'] !== 'string') throw new ConfigError('RUN', 'is required (goe report RUN)');
      const r = await writeReport(v['run']);
      console.log(JSON.stringify({ report: r.index, charts: r.charts, pictures: r.pictures }));
      return 0;
    },
  },
  inspect: {
    summary: 'print a Zarr array or OME-Zarr group\'s metadata and, for a region, its statistics and SHA-256 as JSON',
    usage: 'goe inspect PATH [--region z0:z1,y0:y1,x0:x1]   (or --path PATH)',
    positional: 'path',
    options: {
      path: { type: 'string' },
      region: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    help: {
      path: 'Zarr v2/v3 array or OME-Zarr group (local path or http(s) URL; a group reports its level 0)',
      region: 'half-open voxel ranges per axis; prints shape, dtype, min, max, mean and the SHA-256 of its bytes (C order, little endian)',
    },
    async run(v) {
      if (typeof v['path'] !== 'string') throw new ConfigError('--path', 'is required');
      let region;
      try {
        region = typeof v['region'] === 'string' ? parseRegion(v['region']) : undefined;
        console.log(JSON.stringify(await inspectVolume(v['path'], region), null, 2));
      } catch (err) {
        // Region syntax and rank problems are usage errors of --region; the rest are failures.
        if (err instanceof ScrollIoOptionError && err.field === 'region') throw new ConfigError('--region', err.message.replace(/^option 'region': /, ''), { cause: err });
        throw err;
      }
      return 0;
    },
  },
};

function commandHelp(name: string, c: Command): string {
  const lines = [`goe ${name}: ${c.summary}`, '', `usage: ${c.usage}`, '', 'options:'];
  for (const [k, o] of Object.entries(c.options)) {
    const flag = `--${k}${o.type === 'string' ? ' VALUE' : ''}${o.short ? `, -${o.short}` : ''}`;
    lines.push(`  ${flag.padEnd(24)} ${k === 'help' ? 'show this help' : (c.help[k] ?? '')}`);
  }
  return lines.join('\n');
}

export function mainHelp(): string {
  const lines = [
    'goe: Graph-of-Experts for scroll volumes',
    '',
    'usage: goe <command> [options]    (goe <command> --help for its options)',
    '',
    'commands:',
  ];
  for (const [k, c] of Object.entries(commands)) lines.push(`  ${k.padEnd(10)} ${c.summary}`);
  lines.push('', 'environment:', `  GOE_BACKEND   force a tensor backend (${BACKENDS})`);
  return lines.join('\n');
}

/** Runs the CLI; returns the process exit code (0 ok, 1 failure, 2 usage error). */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(mainHelp());
    return name === undefined ? 2 : 0;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`goe: unknown command '${name}'\n\n${mainHelp()}`);
    return 2;
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({ args: rest, options: cmd.options, strict: true, allowPositionals: cmd.positional !== undefined });
    values = parsed.values as typeof values;
    if (cmd.positional !== undefined && parsed.positionals.length > 0) {
      if (parsed.positionals.length > 1 || values[cmd.positional] !== undefined) {
        throw new Error(`expected one ${cmd.positional.toUpperCase()}, got ${[...parsed.positionals].join(' ')}`);
      }
      values[cmd.positional] = parsed.positionals[0];
    }
  } catch (err) {
    console.error(`goe ${name}: ${(err as Error).message}\n\n${commandHelp(name, cmd)}`);
    return 2;
  }
  if (values['help']) {
    console.log(commandHelp(name, cmd));
    return 0;
  }
  try {
    return await cmd.run(values);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof BackendUnavailableError) {
      console.error(`goe ${name}: ${err.message}`);
      return 2;
    }
    if (err instanceof NonFiniteLossError || err instanceof CheckpointError) {
      console.error(`goe ${name}: ${err.message}`);
      return 1;
    }
    const e = err as Error;
    console.error(`goe ${name}: ${e?.name ?? 'Error'}: ${e?.message ?? String(err)}`);
    if (process.env['GOE_DEBUG']) console.error(e?.stack);
    return 1;
  }
}
