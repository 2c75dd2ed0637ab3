/**
 * Interoperability with zarr-python 2.13, the reference implementation: committed fixtures written by
 * it (fixtures/make_fixtures.py) are read back exactly, and arrays written here are read exactly by it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkCache } from './cache.js';
import { nativeReaderBinding } from './native.js';
import { createOmeLabel, createOmeZarr, openVolume } from './ome.js';
import { createVolume } from './volume.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'zarr-python.zarr');
const PYTHON = '/usr/bin/python3';
const hasZarrPython = spawnSync(PYTHON, ['-c', 'import zarr'], { stdio: 'ignore' }).status === 0;
if (!hasZarrPython) {
  console.warn(`SKIPPED: writing-for-zarr-python tests need ${PYTHON} with zarr 2.x (Debian: apt-get install python3-zarr)`);
}

/** The closed form every fixture holds (mirrors `value` in fixtures/make_fixtures.py). */
function fixtureValue(z: number, y: number, x: number, float: boolean): number {
  const v = (z * 131 + y * 17 + x * 3) % 251;
  return float ? Math.fround(v / 7.0 - 10.0) : v;
}

function expected(shape: number[], offset: number[], region: number[], float: boolean, fill = 0, written?: (z: number, y: number, x: number) => boolean): number[] {
  const out: number[] = [];
  for (let z = 0; z < region[0]; z++)
    for (let y = 0; y < region[1]; y++)
      for (let x = 0; x < region[2]; x++) {
        const [Z, Y, X] = [offset[0] + z, offset[1] + y, offset[2] + x];
        const inside = Z >= 0 && Y >= 0 && X >= 0 && Z < shape[0] && Y < shape[1] && X < shape[2];
        out.push(inside && (!written || written(Z, Y, X)) ? fixtureValue(Z, Y, X, float) : fill);
      }
  return out;
}

describe('reads arrays written by zarr-python 2.13 (committed fixtures)', () => {
  const shape = [6, 7, 9];
  const arrays: [string, boolean][] = [
    ['u1_blosc_lz4', false],
    ['u2_blosc_zstd_nested', false],
    ['f4_zlib', true],
    ['f4_zstd', true],
    ['i2_gzip', false],
    ['u2_big_endian_raw', false],
    ['u1_order_F', false],
  ];
  for (const [name, float] of arrays) {
    it(`reads ${name} exactly, whole and by unaligned regions`, async () => {
      const vol = await openVolume(join(FIXTURES, name), { cache: new ChunkCache(0) });
      expect(vol.shape).toEqual(shape);
      expect(vol.chunks).toEqual([4, 4, 4]);
      expect(vol.zarrFormat).toBe(2);
      for (const [offset, region] of [
        [[0, 0, 0], shape],
        [[1, 3, 2], [4, 3, 6]],
        [[-1, 5, 7], [3, 4, 4]],
      ]) {
        const got = await vol.read({ offset, shape: region });
        expect(Array.from(got.data)).toEqual(expected(shape, offset, region, float));
      }
    });
  }

  // Chunks of several blosc blocks (make_fixtures.py forces the blocksize): a box from part of a chunk
  // is decoded block range by block range (blosc_getitem), with the skipped bytes accounted for.
  for (const [name, shape, chunks, dtype] of [
    ['u1_blosc_lz4_blocks', [40, 70, 70], [32, 64, 64], 'uint8'],
    ['u2_blosc_zstd_blocks', [20, 37, 70], [8, 16, 32], 'uint16'],
  ] as const) {
    it(`reads ${name} exactly, decoding only the blosc blocks a box needs`, async () => {
      const vol = await openVolume(join(FIXTURES, name), { cache: new ChunkCache(0) });
      expect([vol.shape, vol.chunks, vol.dtype]).toEqual([shape, chunks, dtype]);
      const b = nativeReaderBinding();
      const before = b?.codecs().boxBlockDecodes ?? 0;
      const regions: [number[], number[]][] = [
        [[0, 0, 0], [...shape]],
        [[2, 3, 5], [5, 20, 30]], // inside the first z-blocks of its chunks
        [[17, 9, 33], [9, 31, 36]], // across chunks, the end of one chunk's blocks and the start of the next's
        [[30, 60, 60], [12, 14, 14]], // partly outside
        [[5, 0, 0], [1, 1, 1]], // one voxel
      ];
      for (const [offset, region] of regions) {
        const got = await vol.read({ offset, shape: region });
        expect(Array.from(got.data), `${offset} ${region}`).toEqual(expected([...shape], offset, region, false));
      }
      if (b?.codecs().bloscBlocks) expect(b.codecs().boxBlockDecodes).toBeGreaterThan(before);
    });
  }

  it('reads absent chunks of a zarr-python array as its fill value', async () => {
    const vol = await openVolume(join(FIXTURES, 'u1_sparse_fill9'));
    expect(vol.fillValue).toBe(9);
    const got = await vol.read({ offset: [0, 0, 0], shape });
    expect(Array.from(got.data)).toEqual(expected(shape, [0, 0, 0], shape, false, 9, (z, y, x) => z < 4 && y < 4 && x < 4));
  });

  it('opens an OME-Zarr 0.4 group by level with axes and voxel size', async () => {
    const l0 = await openVolume(join(FIXTURES, 'ome'));
    expect(l0.shape).toEqual(shape);
    expect(l0.axes).toEqual(['z', 'y', 'x']);
    expect(l0.voxelSize).toEqual([7.91, 7.91, 7.91]);
    expect(l0.unit).toBe('micrometer');
    expect(l0.path).toBe(join(FIXTURES, 'ome', '0'));
    const l1 = await openVolume(join(FIXTURES, 'ome'), { level: 1 });
    expect(l1.shape).toEqual([3, 4, 5]);
    expect(l1.voxelSize).toEqual([15.82, 15.82, 15.82]);
    const got = await l1.read({ offset: [0, 0, 0], shape: [3, 4, 5] });
    const want: number[] = [];
    for (let z = 0; z < 3; z++) for (let y = 0; y < 4; y++) for (let x = 0; x < 5; x++) want.push(fixtureValue(2 * z, 2 * y, 2 * x, false));
    expect(Array.from(got.data)).toEqual(want);
  });
});

describe.skipIf(!hasZarrPython)('zarr-python 2.13 reads arrays written here', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'scroll-io-interop-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Full array as zarr-python reads it, little-endian raw bytes. */
  function pythonRead(path: string, dtype: string): Buffer {
    const out = join(dir, `py-${Math.random().toString(36).slice(2)}.bin`);
    execFileSync(PYTHON, ['-c', `import zarr, numpy as np, sys\na = zarr.open_array(sys.argv[1], mode='r')\nassert a.dtype == np.dtype(sys.argv[3]), a.dtype\nopen(sys.argv[2], 'wb').write(np.ascontiguousarray(a[...]).astype(sys.argv[3]).tobytes())`, path, out, dtype]);
    return readFileSync(out);
  }

  for (const [dtype, npType, compressor] of [
    ['uint8', '<u1', 'blosc-lz4'],
    ['float32', '<f4', 'blosc-lz4'],
    ['float32', '<f4', 'zlib'],
    ['uint16', '<u2', 'zstd'],
    ['uint8', '<u1', 'none'],
  ] as const) {
    it(`writes a v2 ${dtype} array (${compressor}, unaligned regions) that zarr-python reads exactly`, async () => {
      const shape = [9, 10, 11];
      const path = join(dir, `${dtype}-${compressor}`);
      const vol = await createVolume(path, { shape, chunks: [4, 3, 5], dtype, compressor, fillValue: dtype === 'float32' ? 0.5 : 1 });
      const ref = dtype === 'float32' ? new Float32Array(9 * 10 * 11).fill(0.5) : dtype === 'uint16' ? new Uint16Array(990).fill(1) : new Uint8Array(990).fill(1);
      let k = 0;
      for (const [off, sh] of [
        [[1, 2, 3], [5, 6, 7]],
        [[0, 7, 0], [9, 3, 4]],
        [[6, 0, 9], [3, 5, 2]],
      ]) {
        const n = sh[0] * sh[1] * sh[2];
        const data = new (ref.constructor as Float32ArrayConstructor)(n);
        for (let i = 0; i < n; i++) data[i] = dtype === 'float32' ? (k++ % 97) * 0.37 - 11 : (k++ * 7) % (dtype === 'uint16' ? 65521 : 251);
        await vol.write({ offset: off, shape: sh }, data as never);
        let i = 0;
        for (let z = 0; z < sh[0]; z++)
          for (let y = 0; y < sh[1]; y++)
            for (let x = 0; x < sh[2]; x++) ref[((off[0] + z) * 10 + off[1] + y) * 11 + off[2] + x] = data[i++];
      }
      const bytes = pythonRead(path, npType);
      expect(bytes.equals(Buffer.from(ref.buffer))).toBe(true);
      const meta = JSON.parse(await readFile(join(path, '.zarray'), 'utf8'));
      expect(meta.zarr_format).toBe(2);
    });
  }

  it('writes an OME-Zarr image with labels that zarr-python opens as a group hierarchy', async () => {
    const path = join(dir, 'ome.zarr');
    const img = await createOmeZarr(path, { shape: [3, 4, 5], chunks: [2, 2, 2], dtype: 'uint8', voxelSize: [7.91, 7.91, 7.91] });
    await img.levels[0].write({ offset: [0, 0, 0], shape: [3, 4, 5] }, Uint8Array.from({ length: 60 }, (_, i) => i));
    const ink = await createOmeLabel(img.group, 'ink');
    await ink.levels[0].write({ offset: [1, 1, 1], shape: [1, 2, 3] }, new Uint8Array(6).fill(1));
    const script = [
      'import zarr, sys, json',
      "g = zarr.open_group(sys.argv[1], mode='r')",
      "print(json.dumps({'sum0': int(g['0'][...].sum()), 'ink': int(g['labels/ink/0'][...].sum()),",
      "  'labels': g['labels'].attrs['labels'], 'scale': g.attrs['multiscales'][0]['datasets'][0]['coordinateTransformations'][0]['scale'],",
      "  'src': g['labels/ink'].attrs['image-label']['source']['image']}))",
    ].join('\n');
    const out = JSON.parse(execFileSync(PYTHON, ['-c', script, path]).toString());
    expect(out).toEqual({ sum0: (59 * 60) / 2, ink: 6, labels: ['ink'], scale: [7.91, 7.91, 7.91], src: '../../' });
  });
});
