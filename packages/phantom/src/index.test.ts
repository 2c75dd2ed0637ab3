import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('public API', () => {
  it('exports exactly the documented names', () => {
    expect(Object.keys(api).sort()).toMatchInlineSnapshot(`
      [
        "PHANTOM_PRESETS",
        "PhantomConfigError",
        "PhantomWriteError",
        "arcOfTheta",
        "defaultPyramidLevels",
        "inkAt",
        "phantomRegion",
        "phantomVolumes",
        "resolvePhantomConfig",
        "sheetAt",
        "thetaOfArc",
        "writePhantom",
        "writePhantomFragment",
        "writePhantomPreview",
      ]
    `);
  });
});
