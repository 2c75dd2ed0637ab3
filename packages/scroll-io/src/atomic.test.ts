import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { atomicWriteFile } from './atomic.js';

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
