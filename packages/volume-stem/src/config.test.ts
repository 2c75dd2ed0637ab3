import { describe, expect, it } from 'vitest';
import { VOLUME_STEM_DEFAULTS, VolumeStemConfigError, resolveVolumeStemConfig, tokenCellVoxels } from './index.js';

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

  it('derives convLayers from convChannels when absent, so older configs keep their meaning', () => {
    expect(resolveVolumeStemConfig().convLayers).toEqual([{ channels: 4, kernel: [3, 3, 3], stride: [1, 1, 1], norm: 'none' }]);
    expect(resolveVolumeStemConfig({ convChannels: 8 }).convLayers).toEqual([
      { channels: 8, kernel: [3, 3, 3], stride: [1, 1, 1], norm: 'none' },
    ]);
    expect(resolveVolumeStemConfig({ convChannels: 0 }).convLayers).toEqual([]);
    // The defaults' arrays are not handed out: editing a resolved config leaves them alone.
    resolveVolumeStemConfig().convLayers[0]!.kernel[0] = 5;
    expect(VOLUME_STEM_DEFAULTS.convLayers[0]!.kernel).toEqual([3, 3, 3]);
  });

  it('resolves convLayers with per-layer defaults; convChannels becomes the last layer width; a resolved config resolves to itself', () => {
    const c = resolveVolumeStemConfig({
      convLayers: [{ channels: 8, stride: 2 }, { channels: 16, kernel: [1, 3, 3], stride: [1, 2, 2], norm: 'layer' }],
    });
    expect(c.convLayers).toEqual([
      { channels: 8, kernel: [3, 3, 3], stride: [2, 2, 2], norm: 'none' },
      { channels: 16, kernel: [1, 3, 3], stride: [1, 2, 2], norm: 'layer' },
    ]);
    expect(c.convChannels).toBe(16);
    expect(resolveVolumeStemConfig(c as never)).toEqual(c); // a checkpoint's saved config restores exactly
    expect(resolveVolumeStemConfig({ convLayers: [] }).convChannels).toBe(0);
    expect(tokenCellVoxels(resolveVolumeStemConfig({ cell: [1, 2, 3] }))).toEqual([1, 2, 3]);
    expect(tokenCellVoxels({ ...c, cell: [1, 2, 3] })).toEqual([2, 8, 12]); // cell × (2·1, 2·2, 2·2)
  });

  it('names the convLayers field at fault', () => {
    const field = (cfg: unknown): string => errorOf(() => resolveVolumeStemConfig(cfg as never)).field;
    expect(field({ convLayers: 3 })).toBe('convLayers');
    expect(field({ convLayers: [{ channels: 2 }, 'wide'] })).toBe('convLayers[1]');
    expect(field({ convLayers: [{ kernel: 3 }] })).toBe('convLayers[0].channels');
    expect(field({ convLayers: [{ channels: 0 }] })).toBe('convLayers[0].channels');
    expect(field({ convLayers: [{ channels: 2 }, { channels: 2, stride: 0 }] })).toBe('convLayers[1].stride');
    expect(field({ convLayers: [{ channels: 2 }, { channels: 2, stride: [2, 1.5, 2] }] })).toBe('convLayers[1].stride[1]');
    expect(field({ convLayers: [{ channels: 2, kernel: [3, 3] }] })).toBe('convLayers[0].kernel');
    expect(field({ convLayers: [{ channels: 2, norm: 'batch' }] })).toBe('convLayers[0].norm');
    expect(field({ convLayers: [{ channels: 2, padding: 'valid' }] })).toBe('convLayers[0].padding');
    expect(field({ convChannels: 3, convLayers: [{ channels: 2 }] })).toBe('convChannels');
  });
});
