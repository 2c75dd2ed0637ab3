import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('@goe/core public API', () => {
  it('exports exactly these values', () => {
    expect(Object.keys(api).sort()).toEqual(
      [
        'ChainRouter',
        'DenseRouter',
        'DynamicExpertGraph',
        'EmaExpertGraph',
        'Expert',
        'ExpertChoiceRouter',
        'ExpertGraph',
        'GOE_DEFAULTS',
        'GRAPHMOE_BASELINE',
        'GoeConfigError',
        'GoeInputError',
        'GoeLayer',
        'GoeRouter',
        'GraphMoeRouter',
        'LinearRouter',
        'Registry',
        'RegistryError',
        'Router',
        'StaticExpertGraph',
        'SwiGluExpert',
        'SymphonyRouter',
        'TopKRouter',
        'TopPRouter',
        'canReadSync',
        'cycleRegularisers',
        'detached',
        'dispatchDense',
        'dispatchExact',
        'disposeGoeOutput',
        'expertRegistry',
        'gatesFromSelection',
        'graphRegistry',
        'maskedRowSoftmax',
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
