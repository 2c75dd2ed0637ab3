import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalStore } from './store.js';

describe('LocalStore', () => {
  const root = mkdtempSync(join(tmpdir(), 'goe-localstore-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('returns every byte of files of any size, in a buffer of its own, and undefined for absent keys', async () => {
    mkdirSync(join(root, 'c', '0'), { recursive: true });
    const sizes = [0, 3, 65_536, 2 * 1024 * 1024 + 1];
    const store = new LocalStore(root);
    for (const size of sizes) {
      // Bytes from a formula, so a misplaced or missing piece shows.
      const bytes = Uint8Array.from({ length: size }, (_, i) => (i * 31 + (i >> 9)) & 255);
      writeFileSync(join(root, 'c', '0', String(size)), bytes);
      const got = await store.get(`/c/0/${size}`);
      expect(got).toBeInstanceOf(Uint8Array);
      expect(got!.byteLength).toBe(size);
      expect(got!.byteOffset).toBe(0); // typed views of any dtype need an aligned start
      expect(Buffer.from(got!).equals(Buffer.from(bytes))).toBe(true);
    }
    expect(await store.get('/c/0/missing')).toBeUndefined();
    expect(await store.get('/nowhere/at/all')).toBeUndefined();
  });

  it('answers range reads like the file bytes', async () => {
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 255);
    writeFileSync(join(root, 'shard'), bytes);
    const store = new LocalStore(root);
    expect(Array.from((await store.getRange('/shard', { offset: 10, length: 5 }))!)).toEqual(Array.from(bytes.subarray(10, 15)));
    expect(Array.from((await store.getRange('/shard', { suffixLength: 4 }))!)).toEqual(Array.from(bytes.subarray(996)));
  });
});
