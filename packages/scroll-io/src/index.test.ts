import { describe, expect, it } from 'vitest';
import * as api from './index.js';

describe('public API', () => {
  it('exports exactly the documented names', () => {
    expect(Object.keys(api).sort()).toMatchInlineSnapshot(`
      [
        "COMPRESSORS",
        "ChunkCache",
        "DTYPES",
        "PatchSampler",
        "PngError",
        "ScrollIoOptionError",
        "Tiler",
        "ZarrChunkError",
        "ZarrDtypeError",
        "ZarrError",
        "ZarrExistsError",
        "ZarrMetadataError",
        "ZarrNotFoundError",
        "ZarrRegionError",
        "ZarrShapeMismatchError",
        "ZarrUnsupportedError",
        "ZarrVolume",
        "allocate",
        "atomicWriteFile",
        "bytesPerElement",
        "checkRegion",
        "copyBox",
        "createGroup",
        "createOmeLabel",
        "createOmeZarr",
        "createVolume",
        "defaultChunkCache",
        "dtypeOf",
        "gaussianWeights",
        "isDtype",
        "omeMultiscalesAttributes",
        "openGroup",
        "openVolume",
        "openWritableOmeLevel",
        "openWritableVolume",
        "parseMultiscales",
        "product",
        "readPng",
        "setGroupAttributes",
        "tileRegion",
        "writePng",
      ]
    `);
  });
});
