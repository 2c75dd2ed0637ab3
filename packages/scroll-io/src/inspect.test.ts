import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScrollIoOptionError, ZarrNotFoundError } from './errors.js';
import { inspectVolume, parseRegion } from './inspect.js';
import { createVolume } from './volume.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'zarr-python.zarr');
const PYTHON = '/usr/bin/python3';
const hasZarrPython = spawnSync(PYTHON, ['-c', 'import zarr'], { stdio: 'ignore' }).status === 0;

/** The closed form the fixtures hold (fixtures/make_fixtures.py). */
const fixtureValue = (z: number, y: number, x: number, float: boolean) => {
  const v = (z * 131 + y * 17 + x * 3) % 251;
  return float ? Math.fround(v / 7.0 - 10.0) : v;
};

/** min, max and float64 mean of the fixture formula over a region (independent of any reader). */
function formulaStats(offset: number[], shape: number[], float: boolean) {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (let z = 0; z < shape[0]; z++)
    for (let y = 0; y < shape[1]; y++)
      for (let x = 0; x < shape[2]; x++) {
        const v = fixtureValue(offset[0] + z, offset[1] + y, offset[2] + x, float);
        min = Math.min(min, v);
        max = Math.max(max, v);
        sum += v;
      }
  return { min, max, mean: sum / (shape[0] * shape[1] * shape[2]) };
}

/** zarr-python's view of each (array, region): SHA-256 of its little-endian C-order bytes. */
function pythonHashes(cases: { path: string; region: string }[]): { sha256: string; shape: number[]; dtype: string }[] {
  const script = `
import hashlib, json, sys
import numpy as np, zarr
out = []
for c in json.load(sys.stdin):
    a = zarr.open(c['path'], mode='r')
    if isinstance(a, zarr.hierarchy.Group):
        a = a['0']
    sl = tuple(slice(*map(int, r.split(':'))) for r in c['region'].split(','))
    r = np.ascontiguousarray(a[sl])
    b = r.astype(r.dtype.newbyteorder('<')).tobytes()
    out.append({'sha256': hashlib.sha256(b).hexdigest(), 'shape': list(r.shape), 'dtype': r.dtype.name})
print(json.dumps(out))
`;
  const r = spawnSync(PYTHON, ['-c', script], { input: JSON.stringify(cases), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { sha256: string; shape: number[]; dtype: string }[];
}

describe('inspectVolume', () => {
  it.skipIf(!hasZarrPython)('region SHA-256 equals hashlib over zarr-python reads; min/max/mean equal the float64 formula', async () => {
    const cases = [
      { name: 'u1_blosc_lz4', region: '1:5,2:7,0:9', float: false },
      { name: 'u2_blosc_zstd_nested', region: '0:6,0:7,0:9', float: false },
      { name: 'u2_big_endian_raw', region: '2:3,1:6,3:8', float: false },
      { name: 'f4_zstd', region: '1:6,0:3,2:9', float: true },
      { name: 'i2_gzip', region: '0:4,4:7,1:2', float: false },
      { name: 'u1_order_F', region: '3:6,0:7,4:9', float: false },
      { name: 'ome', region: '0:6,1:7,2:9', float: false },
    ];
    const py = pythonHashes(cases.map((c) => ({ path: join(FIXTURES, c.name), region: c.region })));
    for (const [i, c] of cases.entries()) {
      const info = await inspectVolume(join(FIXTURES, c.name), c.region);
      const r = info.region!;
      expect(r.sha256, c.name).toBe(py[i].sha256);
      expect(r.shape).toEqual(py[i].shape);
      expect(r.dtype).toBe(py[i].dtype);
      const f = formulaStats(r.offset, r.shape, c.float);
      expect(r.min).toBe(f.min);
      expect(r.max).toBe(f.max);
      expect(r.mean).toBeCloseTo(f.mean, 10);
    }
  });

  it('reports array metadata and codec as stored, and OME levels, axes and voxel size', async () => {
    const a = await inspectVolume(join(FIXTURES, 'u2_blosc_zstd_nested'));
    expect(a.kind).toBe('array');
    expect(a.zarrFormat).toBe(2);
    expect(a.array).toMatchObject({ shape: [6, 7, 9], chunks: [4, 4, 4], dtype: 'uint16', fillValue: 0 });
    expect(a.array.codec).toEqual({ compressor: { blocksize: 0, clevel: 3, cname: 'zstd', id: 'blosc', shuffle: 2 }, filters: null });
    expect(a.region).toBeUndefined();
    const g = await inspectVolume(join(FIXTURES, 'ome'));
    expect(g.kind).toBe('group');
    expect(g.axes).toEqual(['z', 'y', 'x']);
    expect(g.voxelSize).toEqual([7.91, 7.91, 7.91]);
    expect(g.unit).toBe('micrometer');
    expect(g.multiscales!.levels).toEqual([
      { path: '0', shape: [6, 7, 9], chunks: [4, 4, 4], scale: [7.91, 7.91, 7.91] },
      { path: '1', shape: [3, 4, 5], chunks: [4, 4, 4], scale: [15.82, 15.82, 15.82] },
    ]);
    expect(g.array.path).toBe(join(FIXTURES, 'ome', '0'));
    // JSON round trip: everything printable.
    expect(JSON.parse(JSON.stringify(g))).toEqual(g);
  });

  describe('v3 arrays and fill', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'scroll-io-inspect-'));
    });
    afterAll(() => rm(dir, { recursive: true, force: true }));
    it('summarises a v3 float32 region partly outside the array (fill value counted) by formula', async () => {
      const path = join(dir, 'v3.zarr');
      const v = await createVolume(path, { shape: [3, 4, 5], chunks: [2, 2, 2], dtype: 'float32', zarrFormat: 3, compressor: 'zstd', fillValue: -1, dimensionNames: ['z', 'y', 'x'] });
      const data = Float32Array.from({ length: 60 }, (_, i) => i * 0.5);
      await v.write({ offset: [0, 0, 0], shape: [3, 4, 5] }, data);
      const info = await inspectVolume(path, { offset: [2, 2, 3], shape: [2, 2, 3] });
      expect(info.zarrFormat).toBe(3);
      expect(info.array.dimensionNames).toEqual(['z', 'y', 'x']);
      expect((info.array.codec as { name: string }[]).map((c) => c.name)).toEqual(['bytes', 'zstd']);
      const vals: number[] = [];
      for (let z = 2; z < 4; z++) for (let y = 2; y < 4; y++) for (let x = 3; x < 6; x++) vals.push(z < 3 && x < 5 ? ((z * 4 + y) * 5 + x) * 0.5 : -1);
      expect(info.region!.min).toBe(Math.min(...vals));
      expect(info.region!.max).toBe(Math.max(...vals));
      expect(info.region!.mean).toBeCloseTo(vals.reduce((a, b) => a + b, 0) / vals.length, 10);
      // The hash covers exactly those float32 values, little endian.
      const { createHash } = await import('node:crypto');
      const expectedHash = createHash('sha256').update(new Uint8Array(Float32Array.from(vals).buffer)).digest('hex');
      expect(info.region!.sha256).toBe(expectedHash);
    });
  });

  it('bad region syntax or rank and a missing path are typed errors', async () => {
    for (const bad of ['0:4,0:4', '0-4,0:4,0:4', '4:2,0:1,0:1', 'a:b,0:1,0:1', '']) {
      const e = await inspectVolume(join(FIXTURES, 'u1_blosc_lz4'), bad).catch((err: unknown) => err);
      expect(e, bad).toBeInstanceOf(ScrollIoOptionError);
      expect((e as ScrollIoOptionError).field).toBe('region');
    }
    expect(parseRegion('0:4, 2:10,5:5')).toEqual({ offset: [0, 2, 5], shape: [4, 8, 0] });
    await expect(inspectVolume(join(FIXTURES, 'nope'))).rejects.toThrow(ZarrNotFoundError);
  });
});
