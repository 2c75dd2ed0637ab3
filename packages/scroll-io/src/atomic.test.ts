import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { atomicWriteFile, replaceDirectory } from './atomic.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-atomic-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('atomicWriteFile', () => {
  it('creates parent directories, replaces the old content, and leaves only the target file', async () => {
    const p = join(dir, 'a', 'b', 'state.json');
    await atomicWriteFile(p, '{"step":1}');
    await atomicWriteFile(p, new Uint8Array([123, 125]), { fsync: true });
    expect(await readFile(p, 'utf8')).toBe('{}');
    expect(await readdir(join(dir, 'a', 'b'))).toEqual(['state.json']);
  });

  it('fails without touching the target or leaving a temporary file when the rename cannot happen', async () => {
    const target = join(dir, 'blocked');
    await writeFile(join(dir, 'keep'), 'old');
    await rm(target, { recursive: true, force: true });
    // A directory in the way of the target: rename(file, dir) fails.
    await atomicWriteFile(join(target, 'x'), 'inside');
    await expect(atomicWriteFile(target, 'new')).rejects.toThrow();
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(await readFile(join(target, 'x'), 'utf8')).toBe('inside');
  });
});

describe('replaceDirectory', () => {
  it('puts a new directory in place, replaces an old one whole, and leaves nothing else behind', async () => {
    const root = await mkdtemp(join(dir, 'replace-'));
    const target = join(root, 'out');
    const make = async (name: string, files: Record<string, string>) => {
      const d = join(root, name);
      await mkdir(d);
      for (const [f, v] of Object.entries(files)) await writeFile(join(d, f), v);
      return d;
    };
    await replaceDirectory(await make('t1', { a: '1', b: '1' }), target);
    expect((await readdir(target)).sort()).toEqual(['a', 'b']);
    await replaceDirectory(await make('t2', { c: '2' }), target);
    // The old directory's files are gone (not merged), and no aside copy is left.
    expect(await readdir(target)).toEqual(['c']);
    expect(await readdir(root)).toEqual(['out']);
  });

  it('keeps the old directory when the new one cannot be moved in', async () => {
    const root = await mkdtemp(join(dir, 'replace-fail-'));
    const target = join(root, 'out');
    await mkdir(target);
    await writeFile(join(target, 'old'), 'x');
    await expect(replaceDirectory(join(root, 'missing'), target)).rejects.toThrow(/ENOENT/);
    expect(await readdir(target)).toEqual(['old']);
    expect(await readdir(root)).toEqual(['out']);
  });
});
