import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveTrainConfig, DEFAULT_TRAIN_CONFIG } from './config.js';
import { ConfigError } from './errors.js';
import { layerPreset, mergePartial, parseConfigText, presetConfig, readConfigFile, TRAIN_PRESETS } from './presets.js';

const dir = mkdtempSync(join(tmpdir(), 'goe-presets-'));

function fails(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('config files', () => {
  it('a YAML file and the same config in JSON resolve to the same training config', async () => {
    const yaml = join(dir, 'run.yaml');
    writeFileSync(
      yaml,
      [
        '# multi-task on the hard phantom',
        'steps: 500',
        'seed: 7',
        'data:',
        '  phantomPreset: hard',
        '  phantomShape: [48, 64, 64]',
        'model:',
        '  heads: [ink, fiber, geometry]',
        '  lossWeights: { fiber: 0.5 }',
        '  core:',
        '    experts: 8',
        '    k: 2',
        'optim:',
        '  lr: 1.0e-3',
        '',
      ].join('\n'),
    );
    const json = join(dir, 'run.json');
    writeFileSync(
      json,
      JSON.stringify({
        steps: 500,
        seed: 7,
        data: { phantomPreset: 'hard', phantomShape: [48, 64, 64] },
        model: { heads: ['ink', 'fiber', 'geometry'], lossWeights: { fiber: 0.5 }, core: { experts: 8, k: 2 } },
        optim: { lr: 0.001 },
      }),
    );
    const a = resolveTrainConfig(await readConfigFile(yaml));
    const b = resolveTrainConfig(await readConfigFile(json));
    expect(a).toEqual(b);
    expect(a.steps).toBe(500);
    expect(a.optim.lr).toBe(0.001);
    expect(a.model.lossWeights).toEqual({ ink: 1, fiber: 0.5, geometry: 1 });
    expect(a.model.core).toEqual({ experts: 8, k: 2 });
  });

  it('syntax errors, duplicate keys, a non-mapping top level and unreadable files name the file (and line)', async () => {
    expect(fails(() => parseConfigText('steps: 10\nsteps: 20\n', 'a.yaml')).message).toMatch(/^--config: a\.yaml:2:1: .*unique/i);
    expect(fails(() => parseConfigText('model:\n  heads: [ink\n', 'b.yml')).message).toMatch(/^--config: b\.yml:\d+:\d+: /);
    expect(fails(() => parseConfigText('- 1\n- 2\n', 'c.yaml')).message).toContain('c.yaml must hold a YAML mapping');
    expect(fails(() => parseConfigText('{"steps": 1,}', 'd.json')).message).toContain('d.json is not valid JSON');
    expect(fails(() => parseConfigText('[1]', 'e.json')).message).toContain('e.json must hold a JSON object');
    await expect(readConfigFile(join(dir, 'missing.yaml'))).rejects.toThrow(/cannot read .*missing\.yaml/);
    // An unknown key deep in a YAML file is named by resolveTrainConfig with its full path.
    expect(fails(() => resolveTrainConfig(parseConfigText('optim:\n  lr: 0.1\n  momentum: 0.9\n', 'f.yaml'))).field).toBe('optim.momentum');
  });
});

describe('presets', () => {
  it('every preset resolves to a valid config, and says what it changes', () => {
    for (const [name, p] of Object.entries(TRAIN_PRESETS)) {
      const c = resolveTrainConfig(presetConfig(name));
      expect(p.summary.length, name).toBeGreaterThan(10);
      if (name === 'default') expect(c).toEqual(DEFAULT_TRAIN_CONFIG);
    }
    expect(resolveTrainConfig(presetConfig('multitask')).model.heads).toEqual(['ink', 'fiber', 'geometry']);
    expect(resolveTrainConfig(presetConfig('hard')).data.phantomPreset).toBe('hard');
    expect(resolveTrainConfig(presetConfig('sequence')).model.stemKind).toBe('sequence');
  });

  it('layers go defaults < preset < file: the file overrides the preset key by key; the flag names the preset over the file', () => {
    const file = { preset: 'hard', steps: 50, data: { phantomShape: [48, 80, 80] } };
    const c = resolveTrainConfig(layerPreset(file));
    expect(c.steps).toBe(50); // the file's
    expect(c.data.phantomShape).toEqual([48, 80, 80]); // the file's
    expect(c.data.phantomPreset).toBe('hard'); // the preset's, kept beside the file's data keys
    expect(c.validateEvery).toBe(250); // the preset's
    expect(resolveTrainConfig(layerPreset(file, 'smoke')).model.width).toBe(16);
    expect(fails(() => layerPreset({}, 'huge')).field).toBe('--preset');
    expect(fails(() => layerPreset({ preset: 'huge' })).field).toBe('preset');
    expect(fails(() => layerPreset({ preset: 3 })).field).toBe('preset');
    // Lists replace, never concatenate; presets are never modified by a merge.
    expect(mergePartial({ model: { heads: ['ink', 'fiber'] } }, { model: { heads: ['geometry'] } })).toEqual({ model: { heads: ['geometry'] } });
    const p = presetConfig('multitask') as { model: { heads: string[] } };
    p.model.heads.push('x');
    expect(TRAIN_PRESETS['multitask']!.config.model!.heads).toEqual(['ink', 'fiber', 'geometry']);
  });
});
