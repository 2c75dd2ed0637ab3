import { describe, expect, it } from 'vitest';
import { VOLUME_STEM_DEFAULTS, VolumeStemConfigError, resolveVolumeStemConfig } from './index.js';

function errorOf(f: () => unknown): VolumeStemConfigError {
  try {
    f();
  } catch (e) {
    if (e instanceof VolumeStemConfigError) return e;
    throw e;
  }
  throw new Error('expected a VolumeStemConfigError');
}

describe('resolveVolumeStemConfig', () => {
  it('fills every default and expands scalars to triples', () => {
    expect(resolveVolumeStemConfig()).toEqual(VOLUME_STEM_DEFAULTS);
    const c = resolveVolumeStemConfig({ d: 32, cell: 2, voxelSizeUm: [3.24, 7.91, 7.91], convChannels: 0 });
    expect(c.d).toBe(32);
    expect(c.cell).toEqual([2, 2, 2]);
    expect(c.voxelSizeUm).toEqual([3.24, 7.91, 7.91]);
    expect(c.convChannels).toBe(0);
    expect(c.da).toBe(VOLUME_STEM_DEFAULTS.da);
  });

  it('names an unknown key', () => {
    const e = errorOf(() => resolveVolumeStemConfig({ dModel: 32 } as never));
    expect(e.field).toBe('dModel');
    expect(e.message).toContain("'dModel'");
  });

  it('names the field of a bad value, with what was expected and what arrived', () => {
    expect(errorOf(() => resolveVolumeStemConfig({ d: 0 })).field).toBe('d');
    expect(errorOf(() => resolveVolumeStemConfig({ d: 2.5 })).field).toBe('d');
    expect(errorOf(() => resolveVolumeStemConfig({ cell: [4, 0, 4] })).field).toBe('cell[1]');
    expect(errorOf(() => resolveVolumeStemConfig({ cell: [4, 4] })).field).toBe('cell');
    expect(errorOf(() => resolveVolumeStemConfig({ convChannels: -1 })).field).toBe('convChannels');
    expect(errorOf(() => resolveVolumeStemConfig({ activation: 'tanh' as never })).field).toBe('activation');
    expect(errorOf(() => resolveVolumeStemConfig({ voxelSizeUm: -1 })).field).toBe('voxelSizeUm');
    expect(errorOf(() => resolveVolumeStemConfig({ minWavelengthUm: 100, maxWavelengthUm: 10 })).field).toBe(
      'maxWavelengthUm',
    );
    expect(errorOf(() => resolveVolumeStemConfig({ d: 4 })).field).toBe('d'); // too narrow for sin/cos × 3 axes
    expect(resolveVolumeStemConfig({ d: 4, positional: 'none' }).d).toBe(4);
    const e = errorOf(() => resolveVolumeStemConfig({ orientationDescriptors: 'yes' as never }));
    expect(e.expected).toBe('true or false');
    expect(e.received).toBe('yes');
  });
});
