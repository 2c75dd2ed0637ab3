/**
 * Named training presets and config files. A run's config is built in layers, each a partial
 * `TrainConfig` merged over the one before: the defaults (`DEFAULT_TRAIN_CONFIG`), a named preset
 * (`--preset NAME`, or `preset: NAME` at the top of the file), the config file (`--config FILE`, JSON
 * or YAML), then the command-line flags. `resolveTrainConfig` validates the result, so an unknown key
 * anywhere is an error naming it.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parseDocument } from 'yaml';
import type { DeepPartial, TrainConfig } from './config.js';
import { ConfigError } from './errors.js';

export interface TrainPreset {
  /** One line for `goe train --help`. */
  summary: string;
  config: DeepPartial<TrainConfig>;
}

/** Every named preset, in one place. */
export const TRAIN_PRESETS: Readonly<Record<string, TrainPreset>> = Object.freeze({
  default: { summary: 'the defaults: ink on a 48x64x64 easy phantom, 300 steps (about 1-2 minutes on 2 cores)', config: {} },
  multitask: {
    summary: 'ink, fibre and geometry heads together on the easy phantom, 300 steps',
    config: { model: { heads: ['ink', 'fiber', 'geometry'] } },
  },
  hard: {
    summary: 'all three heads on a 64x96x96 hard phantom (thin, merging sheets, weak texture, strong noise), 1000 steps',
    config: {
      steps: 1000,
      validateEvery: 250,
      checkpointEvery: 250,
      validationPatches: 16,
      data: { phantomPreset: 'hard', phantomShape: [64, 96, 96] },
      model: { heads: ['ink', 'fiber', 'geometry'] },
    },
  },
  smoke: {
    summary: 'a 20-step run on a 24x64x64 phantom with a width-16 model, to check an installation in seconds',
    config: {
      steps: 20,
      logEvery: 5,
      validationPatches: 4,
      data: { phantomShape: [24, 64, 64] },
      model: { patch: [8, 32, 32], width: 16 },
    },
  },
  sequence: {
    summary: "the sequence stem: masked-byte modelling of the project's documentation, 300 steps",
    config: { model: { stemKind: 'sequence' } },
  },
});

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `over` merged into `base`: objects key by key, anything else (lists included) replaced. */
export function mergePartial(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isPlainObject(v) && isPlainObject(out[k]) ? mergePartial(out[k] as Record<string, unknown>, v) : v;
  return out;
}

/**
 * The partial config of the preset `name`.
 * @throws ConfigError naming `field` for an unknown preset
 */
export function presetConfig(name: string, field = '--preset'): Record<string, unknown> {
  if (!Object.prototype.hasOwnProperty.call(TRAIN_PRESETS, name)) {
    throw new ConfigError(field, `unknown preset '${name}'; expected one of ${Object.keys(TRAIN_PRESETS).join(', ')}`);
  }
  return structuredClone((TRAIN_PRESETS[name] as TrainPreset).config) as Record<string, unknown>;
}

/**
 * Parses a config file's text: YAML for `.yaml` / `.yml`, JSON for anything else. The top level must
 * be a mapping; YAML duplicate keys, tags that are not plain data and syntax errors are errors naming
 * the file, line and column.
 * @throws ConfigError on `--config`
 */
export function parseConfigText(text: string, path: string): Record<string, unknown> {
  const yaml = ['.yaml', '.yml'].includes(extname(path).toLowerCase());
  let v: unknown;
  if (yaml) {
    // YAML 1.2 core schema: plain JSON-like data (no timestamps, no custom tags); duplicate keys fail.
    const doc = parseDocument(text, { schema: 'core', uniqueKeys: true, prettyErrors: true });
    const problem = doc.errors[0] ?? doc.warnings[0];
    if (problem) {
      const at = problem.linePos?.[0];
      throw new ConfigError('--config', `${path}${at ? `:${at.line}:${at.col}` : ''}: ${problem.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`);
    }
    v = doc.toJS({ maxAliasCount: 100 });
  } else {
    try {
      v = JSON.parse(text);
    } catch (err) {
      throw new ConfigError('--config', `${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
  }
  if (!isPlainObject(v)) throw new ConfigError('--config', `${path} must hold a ${yaml ? 'YAML mapping' : 'JSON object'} at the top level`);
  return v;
}

/** Reads and parses a config file (see `parseConfigText`). */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError('--config', `cannot read ${path}`, { cause: err });
  }
  return parseConfigText(text, path);
}

/**
 * Layers a preset under a config file's contents: the preset named by `preset` (the flag) or by the
 * file's own top-level `preset` key (the flag wins), then the file.
 * @returns the partial config, without the `preset` key
 */
export function layerPreset(file: Record<string, unknown>, preset?: string): Record<string, unknown> {
  const { preset: named, ...rest } = file;
  if (named !== undefined && typeof named !== 'string') throw new ConfigError('preset', `expected a preset name, got ${JSON.stringify(named)}`);
  const name = preset ?? named;
  return name === undefined ? rest : mergePartial(presetConfig(name, preset !== undefined ? '--preset' : 'preset'), rest);
}
