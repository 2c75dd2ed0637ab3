import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('@goe/core public API', () => {
  it('exports exactly these values', () => {
    expect(Object.keys(api).sort()).toEqual(
      [
        'DenseRouter',
        'Expert',
        'ExpertGraph',
        'GOE_DEFAULTS',
        'GoeConfigError',
        'GoeInputError',
        'GoeLayer',
        'GoeRouter',
        'Registry',
        'RegistryError',
        'Router',
        'StaticExpertGraph',
        'SwiGluExpert',
        'TopKRouter',
        'canReadSync',
        'cycleRegularisers',
        'detached',
        'dispatchDense',
        'dispatchExact',
        'disposeGoeOutput',
        'expertRegistry',
        'gatesFromSelection',
        'graphRegistry',
        'readGoeStats',
        'resolveGoeConfig',
        'routerRegistry',
        'selectionMask',
        'slotOneHots',
        'toFloat32',
        'topKIds',
      ].sort(),
    );
  });
});
