import { describe, expect, it } from 'vitest';
import { ChunkCache } from './cache.js';
import { ScrollIoOptionError } from './errors.js';

const chunk = (bytes: number, v = 0) => new Uint8Array(bytes).fill(v);

describe('ChunkCache', () => {
  it('evicts least-recently-used chunks to stay within the byte budget', async () => {
    const c = new ChunkCache(300);
    await c.getOrLoad('a', async () => chunk(100));
    await c.getOrLoad('b', async () => chunk(100));
    await c.getOrLoad('c', async () => chunk(100));
    await c.getOrLoad('a', async () => chunk(100, 9)); // hit: a becomes most recent
    await c.getOrLoad('d', async () => chunk(100)); // evicts b, the least recent
    expect(c.stats()).toMatchObject({ bytes: 300, entries: 3, evictions: 1, hits: 1, misses: 4 });
    let loadedB = false;
    await c.getOrLoad('b', async () => ((loadedB = true), chunk(100)));
    expect(loadedB).toBe(true);
    const a = await c.getOrLoad('a', async () => chunk(100, 7));
    expect(a![0]).toBe(0); // the cached a survived (c was evicted for b instead)
    c.setBudget(150);
    expect(c.stats()).toMatchObject({ bytes: 100, entries: 1 });
    expect(() => c.setBudget(-1)).toThrow(ScrollIoOptionError);
  });

  it('shares one load between concurrent requests, caches absent chunks cheaply, and skips chunks over budget', async () => {
    const c = new ChunkCache(1000);
    let loads = 0;
    const load = async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 5));
      return chunk(10);
    };
    const [x, y] = await Promise.all([c.getOrLoad('k', load), c.getOrLoad('k', load)]);
    expect(loads).toBe(1);
    expect(x).toBe(y);
    expect(await c.getOrLoad('absent', async () => null)).toBeNull();
    expect(c.stats().bytes).toBe(10 + 64);
    await c.getOrLoad('huge', async () => chunk(5000));
    expect(c.stats().entries).toBe(2);
  });

  it('does not cache a load that was invalidated while in flight (a write replaced the chunk)', async () => {
    const c = new ChunkCache(1000);
    let release!: () => void;
    const slow = c.getOrLoad('k', () => new Promise((r) => (release = () => r(chunk(4, 1)))));
    c.invalidate('k');
    release();
    expect((await slow)![0]).toBe(1);
    const fresh = await c.getOrLoad('k', async () => chunk(4, 2));
    expect(fresh![0]).toBe(2);
    c.invalidatePrefix('k');
    expect(c.stats().entries).toBe(0);
  });
});
