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
