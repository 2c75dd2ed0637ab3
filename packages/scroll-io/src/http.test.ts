import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AbsolutePath } from '@zarrita/storage';
import { ChunkCache } from './cache.js';
import { ScrollIoOptionError, ZarrChunkError, ZarrMetadataError, ZarrNotFoundError } from './errors.js';
import { configureHttp, DEFAULT_HTTP_OPTIONS, HttpStore, httpOptions, ZarrHttpError } from './http.js';
import { createOmeZarr, openVolume } from './ome.js';

/**
 * A static file server over `dir` that misbehaves on request: the first `fail[path]` requests of a
 * path get `failWith` (an HTTP status, or 'reset' to drop the connection), and every request is logged.
 */
let dir: string;
let server: Server;
let base: string;
const log: string[] = [];
let fail: Record<string, number> = {};
let failWith: number | 'reset' = 503;
let forbid = new Set<string>();

const value = (i: number) => (i * 13 + 5) % 256;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-http-'));
  server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    log.push(path);
    if (forbid.has(path)) return void res.writeHead(403).end();
    if ((fail[path] ?? 0) > 0) {
      fail[path]--;
      if (failWith === 'reset') return void req.socket.destroy();
      return void res.writeHead(failWith).end();
    }
    let body: Buffer;
    try {
      body = await readFile(join(dir, path));
    } catch {
      return void res.writeHead(404).end();
    }
    res.writeHead(200).end(body);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const img = await createOmeZarr(join(dir, 'vol.zarr'), { shape: [6, 8, 8], chunks: [3, 4, 4], dtype: 'uint8' });
  await img.levels[0].write({ offset: [0, 0, 0], shape: [6, 8, 8] }, Uint8Array.from({ length: 384 }, (_, i) => value(i)));
});
afterAll(async () => {
  configureHttp({});
  await new Promise<void>((ok) => server.close(() => ok()));
  await rm(dir, { recursive: true, force: true });
});
afterEach(() => {
  log.length = 0;
  fail = {};
  failWith = 503;
  forbid = new Set();
});

const chunkRequests = () => log.filter((p) => /\/0\/\d+\.\d+\.\d+$/.test(p) || /\/0\/\d+\/\d+\/\d+$/.test(p));

describe('HttpStore', () => {
  it('retries 5xx with exponential backoff and returns the exact bytes', async () => {
    configureHttp({ baseDelayMs: 20, maxAttempts: 5 });
    const chunk = '/vol.zarr/0/0/0/0';
    fail[chunk] = 3;
    const t0 = performance.now();
    const vol = await openVolume(`${base}/vol.zarr`, { cache: new ChunkCache(0) });
    const r = await vol.read({ offset: [0, 0, 0], shape: [3, 4, 4] });
    const waited = performance.now() - t0;
    let k = 0;
    for (let z = 0; z < 3; z++) for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) expect(r.data[k++]).toBe(value((z * 8 + y) * 8 + x));
    expect(log.filter((p) => p === chunk)).toHaveLength(4);
    // Backoff waits 20 + 40 + 80 ms before attempts 2, 3, 4.
    expect(waited).toBeGreaterThanOrEqual(135);
  });

  it('retries dropped connections (ECONNRESET)', async () => {
    configureHttp({ baseDelayMs: 1 });
    failWith = 'reset';
    fail['/vol.zarr/0/1/1/1'] = 2;
    const vol = await openVolume(`${base}/vol.zarr`, { cache: new ChunkCache(0) });
    const r = await vol.read({ offset: [3, 4, 4], shape: [1, 1, 1] });
    expect(r.data[0]).toBe(value((3 * 8 + 4) * 8 + 4));
    expect(log.filter((p) => p === '/vol.zarr/0/1/1/1')).toHaveLength(3);
  });

  it('gives up after maxAttempts with a typed error naming the chunk, the URL and the status', async () => {
    configureHttp({ baseDelayMs: 1, maxAttempts: 3 });
    fail['/vol.zarr/0/1/0/0'] = 10;
    const vol = await openVolume(`${base}/vol.zarr`, { cache: new ChunkCache(0) });
    const e = await vol.read({ offset: [3, 0, 0], shape: [1, 1, 1] }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(ZarrChunkError);
    expect((e as ZarrChunkError).chunkKey).toBe('1/0/0');
    const cause = (e as Error).cause as ZarrHttpError;
    expect(cause).toBeInstanceOf(ZarrHttpError);
    expect(cause.status).toBe(503);
    expect(cause.attempts).toBe(3);
    expect(cause.url).toBe(`${base}/vol.zarr/0/1/0/0`);
    expect(log.filter((p) => p === '/vol.zarr/0/1/0/0')).toHaveLength(3);
    // A 403 is not transient: one request, then the error.
    forbid.add('/vol.zarr/0/0/1/0');
    const f = await vol.read({ offset: [0, 4, 0], shape: [1, 1, 1] }).catch((err: unknown) => err);
    expect(((f as Error).cause as ZarrHttpError).status).toBe(403);
    expect(log.filter((p) => p === '/vol.zarr/0/0/1/0')).toHaveLength(1);
  });

  it('a 404 on metadata is ZarrNotFoundError naming the URLs; a 5xx on metadata names the file', async () => {
    configureHttp({ baseDelayMs: 1, maxAttempts: 2 });
    const e = await openVolume(`${base}/missing.zarr`).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(ZarrNotFoundError);
    expect((e as Error).message).toContain(`${base}/missing.zarr`);
    expect((e as ZarrNotFoundError).tried).toContain(`${base}/missing.zarr/.zarray`);
    fail['/vol.zarr/.zattrs'] = 5;
    fail['/vol.zarr/zarr.json'] = 5;
    const m = await openVolume(`${base}/vol.zarr`).catch((err: unknown) => err);
    expect(m).toBeInstanceOf(ZarrMetadataError);
    expect((m as Error).message).toContain(`${base}/vol.zarr/zarr.json`);
  });

  it('keeps chunk bytes in an on-disk cache (atomically) so a second read downloads no chunks', async () => {
    const cacheDir = join(dir, 'http-cache');
    configureHttp({ cacheDir });
    const region = { offset: [1, 1, 1], shape: [5, 7, 7] };
    const a = await (await openVolume(`${base}/vol.zarr`, { cache: new ChunkCache(0) })).read(region);
    const first = chunkRequests().length;
    expect(first).toBe(8);
    const files = await readdir(cacheDir);
    expect(files).toHaveLength(8);
    expect(files.every((f) => /^[0-9a-f]{64}$/.test(f))).toBe(true); // no temporary files left
    const b = await (await openVolume(`${base}/vol.zarr`, { cache: new ChunkCache(0) })).read(region);
    expect(chunkRequests().length).toBe(first);
    expect(Array.from(b.data)).toEqual(Array.from(a.data));
    // The cached bytes are the chunk files themselves.
    const store = new HttpStore(`${base}/vol.zarr/0`, { ...DEFAULT_HTTP_OPTIONS, cacheDir });
    const bytes = await store.get('/0/0/0' as AbsolutePath);
    expect(Buffer.from(bytes!).equals(await readFile(join(dir, 'vol.zarr', '0', '0', '0', '0')))).toBe(true);
    expect(store.requests).toBe(0);
  });

  it('validates its options by name', () => {
    const field = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(ScrollIoOptionError);
        return (e as ScrollIoOptionError).field;
      }
      return undefined;
    };
    expect(field(() => configureHttp({ maxAttempts: 0 }))).toBe('http.maxAttempts');
    expect(field(() => configureHttp({ baseDelayMs: -1 }))).toBe('http.baseDelayMs');
    expect(field(() => configureHttp({ retries: 3 } as never))).toBe('http.retries');
    expect(httpOptions().maxAttempts).toBeGreaterThanOrEqual(1);
  });
});
