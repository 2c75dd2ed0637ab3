import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.js';
import { DEFAULT_TRAIN_CONFIG, learningRate, resolveTrainConfig } from './config.js';

describe('resolveTrainConfig', () => {
  it('fills every default and keeps overrides', () => {
    const c = resolveTrainConfig({ steps: 7, optim: { lr: 0.01 }, model: { core: { experts: 4 } } });
    expect(c.steps).toBe(7);
    expect(c.optim.lr).toBe(0.01);
    expect(c.optim.warmupSteps).toBe(DEFAULT_TRAIN_CONFIG.optim.warmupSteps);
    expect(c.model.core).toEqual({ experts: 4 });
    expect(c.batch).toBe(DEFAULT_TRAIN_CONFIG.batch);
  });

  it('names an unknown key, nested or not', () => {
    expect(() => resolveTrainConfig({ stepz: 3 } as never)).toThrow(ConfigError);
    expect(() => resolveTrainConfig({ stepz: 3 } as never)).toThrow(/^stepz: unknown key/);
    expect(() => resolveTrainConfig({ optim: { learningRate: 1 } } as never)).toThrow(/^optim\.learningRate: unknown key/);
  });

  it('names a value of the wrong type or range', () => {
    expect(() => resolveTrainConfig({ steps: '5' } as never)).toThrow(/^steps: expected a number, got '5'/);
    expect(() => resolveTrainConfig({ steps: 0 })).toThrow(/^steps: expected a positive integer/);
    expect(() => resolveTrainConfig({ optim: { lr: -1 } })).toThrow(/^optim\.lr/);
    expect(() => resolveTrainConfig({ model: { patch: [16, 32] as never } })).toThrow(/^model\.patch: expected 3 positive integers/);
    expect(() => resolveTrainConfig({ data: { source: 'tiff' as never } })).toThrow(/^data\.source/);
    expect(() => resolveTrainConfig({ data: { validationFraction: 1.5 } })).toThrow(/^data\.validationFraction/);
    expect(() => resolveTrainConfig({ data: { phantomShape: [8, 8, 8] } })).toThrow(/^model\.patch: patch 16x32x32 does not fit the phantom 8x8x8/);
  });
});

describe('the stem kind and the sequence settings', () => {
  it('default to the volume stem; the sequence stem is chosen by model.stemKind', () => {
    const c = resolveTrainConfig({});
    expect(c.model.stemKind).toBe('volume');
    expect(c.data.text).toEqual({ files: [], maskFraction: 0.15 });
    const s = resolveTrainConfig({ model: { stemKind: 'sequence', sequenceLength: 64 }, data: { text: { files: ['a.md', 'b.md'] } } });
    expect(s.model.stemKind).toBe('sequence');
    expect(s.model.sequenceLength).toBe(64);
    expect(s.data.text.files).toEqual(['a.md', 'b.md']);
  });

  it('names an unknown stem kind, a bad sequence setting or a bad field of either stem', () => {
    expect(() => resolveTrainConfig({ model: { stemKind: 'audio' as never } })).toThrow(/^model\.stemKind: expected one of volume, sequence, got 'audio'/);
    expect(() => resolveTrainConfig({ model: { stemKind: 'sequence', sequenceLength: 0 } })).toThrow(/^model\.sequenceLength: expected a positive integer/);
    expect(() => resolveTrainConfig({ data: { text: { maskFraction: 0 } } })).toThrow(/^data\.text\.maskFraction/);
    expect(() => resolveTrainConfig({ data: { text: { files: 'README.md' as never } } })).toThrow(/^data\.text\.files: expected a list of file paths/);
    expect(() => resolveTrainConfig({ data: { text: { file: [] } as never } })).toThrow(/^data\.text\.file: unknown key/);
    // Each stem's own fields are checked by its package, named under model.stem, before anything runs.
    expect(() => resolveTrainConfig({ model: { stemKind: 'sequence', stem: { kernel: 0 } } })).toThrow(ConfigError);
    expect(() => resolveTrainConfig({ model: { stemKind: 'sequence', stem: { kernel: 0 } } })).toThrow(/^model\.stem\.kernel: must be an integer >= 1; got 0/);
    expect(() => resolveTrainConfig({ model: { stemKind: 'sequence', stem: { cell: 4 } } })).toThrow(/^model\.stem\.cell: must be a known key/);
    expect(() => resolveTrainConfig({ model: { stem: { kernel: 3 } } })).toThrow(/^model\.stem\.kernel/);
    expect(() => resolveTrainConfig({ model: { encoder: { heads: 5 } } })).toThrow(/^model\.encoder\.heads/);
    expect(() => resolveTrainConfig({ model: { stemKind: 'sequence', byteHead: { norm: 1 } } })).toThrow(/^model\.byteHead\.norm/);
  });

  it('checks the patch against the phantom only for the volume stem', () => {
    const phantomShape: [number, number, number] = [8, 8, 8];
    expect(() => resolveTrainConfig({ data: { phantomShape } })).toThrow(/^model\.patch/);
    expect(resolveTrainConfig({ data: { phantomShape }, model: { stemKind: 'sequence' } }).model.stemKind).toBe('sequence');
  });
});

describe('learningRate', () => {
  const o = { ...DEFAULT_TRAIN_CONFIG.optim, lr: 1, warmupSteps: 10, minLrFraction: 0.1 };
  it('warms up linearly, then follows a cosine to the floor', () => {
    expect(learningRate(o, 0, 110)).toBeCloseTo(0.1, 12);
    expect(learningRate(o, 9, 110)).toBeCloseTo(1, 12);
    expect(learningRate(o, 10, 110)).toBeCloseTo(1, 12);
    // halfway through the cosine: floor + (1 - floor) / 2
    expect(learningRate(o, 60, 110)).toBeCloseTo(0.1 + 0.9 * 0.5, 12);
    expect(learningRate(o, 110, 110)).toBeCloseTo(0.1, 12);
    const t = 0.3;
    expect(learningRate(o, 10 + 30, 110)).toBeCloseTo(0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * t)), 12);
  });
});
