import { createServer, type Server } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkCache } from './cache.js';
import { ScrollIoOptionError, ZarrMetadataError } from './errors.js';
import { createGroup, createOmeLabel, createOmeZarr, openGroup, openVolume, openWritableOmeLevel, parseMultiscales } from './ome.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-ome-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const json = async (p: string) => JSON.parse(await readFile(p, 'utf8'));

describe('OME-Zarr groups', () => {
  it('writes a v2 (NGFF 0.4) image with two levels and labels in the OME layout', async () => {
    const path = join(dir, 'scroll.zarr');
    const img = await createOmeZarr(path, { shape: [5, 9, 8], chunks: [4, 4, 4], dtype: 'uint8', voxelSize: [7.91, 7.91, 7.91], levels: 2, name: 'phantom' });
    expect(img.levels.map((l) => l.shape)).toEqual([[5, 9, 8], [3, 5, 4]]);
    const attrs = await json(join(path, '.zattrs'));
    expect(await json(join(path, '.zgroup'))).toEqual({ zarr_format: 2 });
    const ms = attrs.multiscales[0];
    expect(ms.version).toBe('0.4');
    expect(ms.axes).toEqual([
      { name: 'z', type: 'space', unit: 'micrometer' },
      { name: 'y', type: 'space', unit: 'micrometer' },
      { name: 'x', type: 'space', unit: 'micrometer' },
    ]);
    expect(ms.datasets).toEqual([
      { path: '0', coordinateTransformations: [{ type: 'scale', scale: [7.91, 7.91, 7.91] }] },
      { path: '1', coordinateTransformations: [{ type: 'scale', scale: [15.82, 15.82, 15.82] }] },
    ]);
    const ink = await createOmeLabel(img.group, 'ink');
    await createOmeLabel(path, 'papyrus', { colors: [{ 'label-value': 1, rgba: [255, 255, 0, 255] }] });
    expect((await json(join(path, 'labels', '.zattrs'))).labels).toEqual(['ink', 'papyrus']);
    const inkAttrs = await json(join(path, 'labels', 'ink', '.zattrs'));
    expect(inkAttrs['image-label']).toEqual({ version: '0.4', source: { image: '../../' } });
    expect(inkAttrs.multiscales[0].datasets[0].coordinateTransformations[0].scale).toEqual([7.91, 7.91, 7.91]);
    expect((await json(join(path, 'labels', 'ink', '0', '.zarray'))).dtype).toBe('|u1');
    // Write through the returned handles, read back through openVolume.
    await ink.levels[0].write({ offset: [1, 2, 3], shape: [1, 1, 2] }, new Uint8Array([1, 1]));
    const back = await openVolume(join(path, 'labels', 'ink'), { cache: new ChunkCache(0) });
    expect(back.voxelSize).toEqual([7.91, 7.91, 7.91]);
    expect(back.axes).toEqual(['z', 'y', 'x']);
    const r = await back.read({ offset: [1, 2, 2], shape: [1, 1, 4] });
    expect(Array.from(r.data)).toEqual([0, 1, 1, 0]);
    const lvl1 = await openWritableOmeLevel(path, { level: 1 });
    expect(lvl1.voxelSize).toEqual([15.82, 15.82, 15.82]);
  });

  it('writes a v3 (NGFF 0.5) image whose metadata lives under attributes.ome', async () => {
    const path = join(dir, 'v3.zarr');
    const img = await createOmeZarr(path, { shape: [4, 4, 4], chunks: [2, 2, 2], dtype: 'uint16', voxelSize: [2, 1, 1], zarrFormat: 3, compressor: 'zstd' });
    await img.levels[0].write({ offset: [0, 0, 0], shape: [4, 4, 4] }, Uint16Array.from({ length: 64 }, (_, i) => i * 1000));
    await createOmeLabel(img.group, 'ink');
    const root = await json(join(path, 'zarr.json'));
    expect(root.node_type).toBe('group');
    expect(root.attributes.ome.version).toBe('0.5');
    expect(root.attributes.ome.multiscales[0].datasets[0].path).toBe('0');
    const arr = await json(join(path, '0', 'zarr.json'));
    expect(arr.dimension_names).toEqual(['z', 'y', 'x']);
    expect((await json(join(path, 'labels', 'zarr.json'))).attributes.ome.labels).toEqual(['ink']);
    expect((await json(join(path, 'labels', 'ink', 'zarr.json'))).attributes.ome['image-label'].source.image).toBe('../../');
    const v = await openVolume(path);
    expect(v.zarrFormat).toBe(3);
    expect(v.voxelSize).toEqual([2, 1, 1]);
    const r = await v.read({ offset: [3, 3, 2], shape: [1, 1, 2] });
    expect(Array.from(r.data)).toEqual([62000, 63000]);
  });

  it('reports a group without multiscales, and a level that does not exist, by name', async () => {
    const g = await createGroup(join(dir, 'plain'), { attributes: { note: 'x' } });
    expect((await openGroup(g.path)).attributes).toEqual({ note: 'x' });
    const e1 = await openVolume(g.path).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(ZarrMetadataError);
    expect((e1 as ZarrMetadataError).field).toBe('multiscales');
    const img = await createOmeZarr(join(dir, 'one-level.zarr'), { shape: [2, 2, 2], chunks: [2, 2, 2], dtype: 'uint8' });
    const e2 = await openVolume(img.group.path, { level: 3 }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(ScrollIoOptionError);
    expect((e2 as ScrollIoOptionError).field).toBe('level');
    expect(() => parseMultiscales({ multiscales: [{ datasets: [] }] }, 'g')).toThrow(ZarrMetadataError);
  });
});

describe('http(s) reads', () => {
  let server: Server;
  let base: string;
  beforeAll(async () => {
    // A static file server over the test directory: what a scroll host looks like to the reader.
    server = createServer(async (req, res) => {
      try {
        const body = await readFile(join(dir, decodeURIComponent(new URL(req.url!, 'http://x').pathname)));
        res.writeHead(200).end(body);
      } catch {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((ok) => server.close(() => ok())));

  it('reads an OME-Zarr level over http exactly as from disk', async () => {
    const path = join(dir, 'served.zarr');
    const img = await createOmeZarr(path, { shape: [6, 6, 6], chunks: [4, 4, 4], dtype: 'uint8', voxelSize: [3, 3, 3] });
    await img.levels[0].write({ offset: [0, 0, 0], shape: [6, 6, 6] }, Uint8Array.from({ length: 216 }, (_, i) => (i * 13) % 256));
    const remote = await openVolume(`${base}/served.zarr/`, { cache: new ChunkCache(0) });
    expect(remote.path).toBe(`${base}/served.zarr/0`);
    expect(remote.voxelSize).toEqual([3, 3, 3]);
    const region = { offset: [1, 2, 3], shape: [5, 5, 5] };
    const a = await remote.read(region);
    const b = await (await openVolume(path)).read(region);
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(a.data[0]).toBe(((1 * 36 + 2 * 6 + 3) * 13) % 256);
  });
});
