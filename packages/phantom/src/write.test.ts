import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChunkCache, openVolume } from '@goe/scroll-io';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PhantomConfigError, resolvePhantomConfig } from './config.js';
import { phantomRegion } from './phantom.js';
import { defaultPyramidLevels, type PhantomProgress, PhantomWriteError, writePhantom } from './write.js';

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

const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** The whole array (or one pyramid level of a group) as written. */
async function readAll(path: string, level = 0) {
  const v = await openVolume(path, { level, cache: new ChunkCache(0) });
  return { volume: v, ...(await v.read({ offset: v.shape.map(() => 0), shape: v.shape })) };
}

/** 2x2x2 reduction of a [D, H, W] array, edge blocks cut to the voxels that exist (the reference for level 1). */
function reduce2(data: ArrayLike<number>, shape: number[], method: 'mean' | 'max' | 'mode'): number[] {
  const [D, H, W] = shape;
  const out: number[] = [];
  for (let z = 0; z < Math.ceil(D / 2); z++)
    for (let y = 0; y < Math.ceil(H / 2); y++)
      for (let x = 0; x < Math.ceil(W / 2); x++) {
        const vals: number[] = [];
        for (let dz = 0; dz < 2; dz++)
          for (let dy = 0; dy < 2; dy++)
            for (let dx = 0; dx < 2; dx++) {
              const [zz, yy, xx] = [2 * z + dz, 2 * y + dy, 2 * x + dx];
              if (zz < D && yy < H && xx < W) vals.push(data[(zz * H + yy) * W + xx]);
            }
        if (method === 'mean') out.push(Math.round(vals.reduce((a, b) => a + b, 0) / vals.length));
        else if (method === 'max') out.push(Math.max(...vals));
        else {
          const counts = new Map<number, number>();
          for (const v of vals) counts.set(v, (counts.get(v) ?? 0) + 1);
          // Most frequent; among equally frequent values the smallest.
          out.push([...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0]);
        }
      }
  return out;
}

describe('writePhantom', () => {
  const config = resolvePhantomConfig({ preset: 'easy', shape: [32, 48, 40], seed: 9 });
  const whole = phantomRegion(config, { offset: [0, 0, 0], shape: config.shape });
  const chunks: [number, number, number] = [8, 16, 16];

  it('streams image, labels and vector fields equal to the whole-volume phantom, with a 2-level pyramid', async () => {
    const progress: PhantomProgress[] = [];
    const paths = await writePhantom(join(dir, 'a'), config, { chunks, threads: 2, onProgress: (p) => progress.push(p) });
    expect(paths.root).toBe(join(dir, 'a', 'scroll.zarr'));
    expect(paths.image).toBe(join(paths.root, '0'));
    expect(paths.labels.wrap).toBe(join(paths.root, 'labels', 'wrap'));
    expect(paths.fields.fibre).toBe(join(paths.root, 'fields', 'fibre'));
    // [32, 48, 40] -> [16, 24, 20] (smallest side 16) -> [8, 12, 10] (8 < 16): two levels.
    expect(paths.levels).toBe(2);

    const image = await readAll(paths.root);
    expect(image.volume.shape).toEqual(config.shape);
    expect(image.volume.chunks).toEqual(chunks);
    expect(image.volume.dtype).toBe('uint8');
    expect(image.volume.voxelSize).toEqual([7.91, 7.91, 7.91]);
    expect(image.volume.axes).toEqual(['z', 'y', 'x']);
    expect(bytes(image.data).equals(bytes(whole.image))).toBe(true);
    const level1 = await openVolume(paths.root, { level: 1 });
    expect(level1.shape).toEqual([16, 24, 20]);
    expect(level1.voxelSize).toEqual([15.82, 15.82, 15.82]);
    await expect(openVolume(paths.root, { level: 2 })).rejects.toThrow(/levels 0..1/);

    for (const [name, dtype] of [['ink', 'uint8'], ['papyrus', 'uint8'], ['wrap', 'uint16']] as const) {
      const l0 = await readAll(paths.labels[name]);
      expect(l0.volume.dtype).toBe(dtype);
      expect(bytes(l0.data).equals(bytes(whole[name]))).toBe(true);
      expect((await openVolume(paths.labels[name], { level: 1 })).shape).toEqual([16, 24, 20]);
    }
    for (const name of ['fibre', 'normal'] as const) {
      const f = await readAll(paths.fields[name]);
      expect(f.volume.shape).toEqual([3, ...config.shape]);
      expect(f.volume.chunks).toEqual([3, ...chunks]);
      expect(f.volume.dtype).toBe('float32');
      expect(f.volume.axes).toEqual(['c', 'z', 'y', 'x']);
      expect(f.volume.voxelSize).toEqual([1, 7.91, 7.91, 7.91]);
      expect(bytes(f.data).equals(bytes(whole[name]))).toBe(true);
      await expect(openVolume(paths.fields[name], { level: 1 })).rejects.toThrow(/levels 0..0/);
    }

    const attrs = JSON.parse(await readFile(join(paths.root, '.zattrs'), 'utf8'));
    expect(attrs.phantom).toEqual(config);
    expect(attrs.voxel_size_um).toEqual([7.91, 7.91, 7.91]);
    expect(JSON.parse(await readFile(join(paths.root, 'labels', '.zattrs'), 'utf8')).labels).toEqual(['ink', 'papyrus', 'wrap']);

    // 4 x 3 x 3 chunk boxes: one report before the first, one per chunk, one when the pyramids start.
    expect(progress.map((p) => p.chunksDone)).toEqual([...Array.from({ length: 37 }, (_, i) => i), 36]);
    expect(progress.every((p) => p.chunksTotal === 36)).toBe(true);
    expect(progress.at(-1)?.stage).toBe('pyramids');
    expect(progress[0].voxelsPerSecond).toBe(0);
    expect(progress[0].etaSeconds).toBeNaN();
    expect(progress[36].etaSeconds).toBe(0);
    expect(progress.slice(1).every((p) => p.voxelsPerSecond > 0)).toBe(true);
  });

  it('level 1 is the 2x2x2 mean of the image, max of papyrus and ink, mode of the wrap index (ink stays on papyrus)', async () => {
    const paths = await writePhantom(join(dir, 'p'), config, { chunks, threads: 1 });
    const shape1 = [16, 24, 20];
    const refs = {
      image: { path: paths.root, data: whole.image, method: 'mean' },
      papyrus: { path: paths.labels.papyrus, data: whole.papyrus, method: 'max' },
      ink: { path: paths.labels.ink, data: whole.ink, method: 'max' },
      wrap: { path: paths.labels.wrap, data: whole.wrap, method: 'mode' },
    } as const;
    const level1: Record<string, ArrayLike<number>> = {};
    for (const [name, r] of Object.entries(refs)) {
      const got = await readAll(r.path, 1);
      expect(got.shape).toEqual(shape1);
      expect(Array.from(got.data)).toEqual(reduce2(r.data, config.shape, r.method));
      level1[name] = got.data;
    }
    let inked = 0;
    for (let i = 0; i < level1.ink.length; i++) {
      if (level1.ink[i]) expect(level1.papyrus[i]).toBe(1);
      inked += level1.ink[i];
    }
    expect(inked).toBeGreaterThan(0);
  });

  it('writes byte-identical files with 1 and 2 threads (uint16 image), different ones for another seed', async () => {
    const c16 = { ...config, dtype: 'uint16' as const };
    const a = await writePhantom(join(dir, 'b1'), c16, { chunks, threads: 1 });
    const b = await writePhantom(join(dir, 'b2'), c16, { chunks, threads: 2 });
    const c = await writePhantom(join(dir, 'b3'), { ...c16, seed: 10 }, { chunks, threads: 2 });
    const image = await readAll(b.root);
    expect(image.volume.dtype).toBe('uint16');
    expect(bytes(image.data).equals(bytes(phantomRegion(c16, { offset: [0, 0, 0], shape: c16.shape }).image))).toBe(true);
    const fa = await listFiles(a.root);
    expect(fa.length).toBeGreaterThan(100);
    expect(await listFiles(b.root)).toEqual(fa);
    for (const f of fa) expect((await readFile(a.root + f)).equals(await readFile(b.root + f)), f).toBe(true);
    const chunk = '/0/1/1/1';
    expect(fa).toContain(chunk);
    expect((await readFile(a.root + chunk)).equals(await readFile(c.root + chunk))).toBe(false);
  });

  it('zarr-python reads the image and the fibre field exactly', async (ctx) => {
    const python = '/usr/bin/python3';
    try {
      execFileSync(python, ['-c', 'import zarr'], { stdio: 'ignore' });
    } catch {
      ctx.skip();
    }
    const paths = await writePhantom(join(dir, 'zp'), config, { chunks, threads: 2 });
    const out = join(dir, 'zp-bytes');
    const script = [
      'import sys, zarr, numpy as np',
      'g = zarr.open_group(sys.argv[1], mode="r")',
      'assert g["0"].dtype == np.uint8 and g["fields/fibre/0"].dtype == np.float32',
      'open(sys.argv[2] + ".image", "wb").write(np.ascontiguousarray(g["0"][...]).tobytes())',
      'open(sys.argv[2] + ".fibre", "wb").write(np.ascontiguousarray(g["fields/fibre/0"][...]).astype("<f4").tobytes())',
    ].join('\n');
    execFileSync(python, ['-c', script, paths.root, out]);
    expect((await readFile(`${out}.image`)).equals(bytes(whole.image))).toBe(true);
    expect((await readFile(`${out}.fibre`)).equals(bytes(whole.fibre))).toBe(true);
  });

  it('a failing chunk rejects with PhantomWriteError naming it, stops the workers and leaves no unhandled rejection', async () => {
    // A blur this wide needs a halo no typed array can hold: phantomRegion throws a RangeError.
    const bad = resolvePhantomConfig({ preset: 'easy', shape: [16, 32, 32], blur: 2000 });
    expect(() => phantomRegion(bad, { offset: [0, 0, 0], shape: [8, 16, 16] })).toThrow(RangeError);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    const osThreads = () => readdirSync('/proc/self/task').length;
    const before = process.platform === 'linux' ? osThreads() : 0;
    try {
      for (const threads of [2, 0]) {
        const err = await writePhantom(join(dir, `bad${threads}`), bad, { chunks, threads }).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(PhantomWriteError);
        const e = err as PhantomWriteError;
        expect(e.path).toBe(join(dir, `bad${threads}`, 'scroll.zarr'));
        expect(e.chunk).toHaveLength(3);
        expect(e.region?.offset).toEqual(e.chunk!.map((c, i) => c * chunks[i]));
        expect(e.message).toContain(`chunk [${e.chunk!.join(', ')}]`);
        expect(e.message).toContain('RangeError');
        expect((e.cause as Error).name).toBe('RangeError');
      }
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
      // The worker threads are gone once the promise has settled.
      if (process.platform === 'linux') expect(osThreads()).toBeLessThanOrEqual(before);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('checks its options by name; the default pyramid halves while the next level is at least 16 voxels, up to 6 levels', async () => {
    await expect(writePhantom(join(dir, 'o1'), config, { threads: -1 })).rejects.toMatchObject({ field: 'threads' });
    await expect(writePhantom(join(dir, 'o2'), config, { levels: 0 })).rejects.toBeInstanceOf(PhantomConfigError);
    await expect(writePhantom(join(dir, 'o3'), config, { chunks: [8, 0, 8] })).rejects.toMatchObject({ field: 'chunks' });
    expect(defaultPyramidLevels([20, 48, 40])).toBe(1);
    expect(defaultPyramidLevels([32, 48, 40])).toBe(2);
    expect(defaultPyramidLevels([128, 512, 512])).toBe(4); // 64, 32, 16 on the short axis; 8 would be too small
    expect(defaultPyramidLevels([31, 512, 512])).toBe(2); // ceil(31 / 2) = 16, ceil(31 / 4) = 8
    expect(defaultPyramidLevels([4096, 4096, 4096])).toBe(6); // 128 at level 5, and no more levels
  });
});
