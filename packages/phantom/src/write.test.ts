import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChunkCache, openVolume } from '@goe/scroll-io';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvePhantomConfig } from './config.js';
import { phantomRegion } from './phantom.js';
import { writePhantom } from './write.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'phantom-write-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function listFiles(root: string): Promise<string[]> {
  return ((await readdir(root, { recursive: true, withFileTypes: true })) as { isFile(): boolean; parentPath: string; name: string }[])
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(root.length))
    .sort();
}

describe('writePhantom', () => {
  const config = resolvePhantomConfig({ preset: 'easy', shape: [20, 48, 40], seed: 9 });

  it('streams an OME-Zarr image with ink and papyrus labels equal to the whole-volume phantom', async () => {
    const paths = await writePhantom(join(dir, 'a'), config, { chunks: [8, 16, 16] });
    expect(paths.root).toBe(join(dir, 'a', 'scroll.zarr'));
    expect(paths.image).toBe(join(paths.root, '0'));
    const whole = phantomRegion(config, { offset: [0, 0, 0], shape: config.shape });
    const box = { offset: [0, 0, 0], shape: config.shape };
    const image = await openVolume(paths.root, { cache: new ChunkCache(0) });
    expect(image.shape).toEqual(config.shape);
    expect(image.chunks).toEqual([8, 16, 16]);
    expect(image.dtype).toBe('uint8');
    expect(image.voxelSize).toEqual([7.91, 7.91, 7.91]);
    expect(image.axes).toEqual(['z', 'y', 'x']);
    expect(Buffer.from((await image.read(box)).data.buffer).equals(Buffer.from(whole.image))).toBe(true);
    const ink = await openVolume(paths.labels.ink);
    const papyrus = await openVolume(paths.labels.papyrus);
    expect(Buffer.from((await ink.read(box)).data.buffer).equals(Buffer.from(whole.ink))).toBe(true);
    expect(Buffer.from((await papyrus.read(box)).data.buffer).equals(Buffer.from(whole.papyrus))).toBe(true);
    const attrs = JSON.parse(await readFile(join(paths.root, '.zattrs'), 'utf8'));
    expect(attrs.phantom).toEqual(config);
    expect(attrs.voxel_size_um).toEqual([7.91, 7.91, 7.91]);
    expect(JSON.parse(await readFile(join(paths.root, 'labels', '.zattrs'), 'utf8')).labels).toEqual(['ink', 'papyrus']);
  });

  it('writes byte-identical files for the same config, different ones for another seed', async () => {
    const a = await writePhantom(join(dir, 'b1'), config, { chunks: [8, 16, 16] });
    const b = await writePhantom(join(dir, 'b2'), config, { chunks: [8, 16, 16] });
    const c = await writePhantom(join(dir, 'b3'), { ...config, seed: 10 }, { chunks: [8, 16, 16] });
    const fa = await listFiles(a.root);
    expect(fa.length).toBeGreaterThan(10);
    expect(await listFiles(b.root)).toEqual(fa);
    for (const f of fa) expect((await readFile(a.root + f)).equals(await readFile(b.root + f))).toBe(true);
    const chunk = '/0/1/1/1';
    expect(fa).toContain(chunk);
    expect((await readFile(a.root + chunk)).equals(await readFile(c.root + chunk))).toBe(false);
  });
});
