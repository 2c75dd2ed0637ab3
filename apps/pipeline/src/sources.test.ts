/**
 * Training from a Zarr volume with its labels beside it (`data.source: zarr`), from a local path and
 * over http(s): the same patches, so the same loss curve.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvePhantomConfig, writePhantom, type PhantomPaths } from '@goe/phantom';
import { createServer, type Server } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { AddressInfo } from 'node:net';
import { resolveTrainConfig } from './config.js';
import { ConfigError } from './errors.js';
import { smallTrainConfig } from './small-config.js';
import { train } from './train.js';

const root = mkdtempSync(join(tmpdir(), 'goe-sources-'));
let scroll: PhantomPaths;
let server: Server;
let base: string;

beforeAll(async () => {
  scroll = await writePhantom(join(root, 'vol'), resolvePhantomConfig({ shape: [24, 64, 64], seed: 5, preset: 'easy' }));
  // A static file server over the folder: what a scroll published over https looks like to the reader.
  server = createServer(async (req, res) => {
    try {
      const body = await readFile(join(root, decodeURIComponent((req.url ?? '/').split('?')[0]!)));
      res.writeHead(200, { 'content-length': body.length }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 60_000);

afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('goe train on a Zarr volume', () => {
  it('reads the volume and every head\'s labels from paths or URLs, with the same loss curve either way', async () => {
    const data = (at: (p: string) => string) => ({
      source: 'zarr' as const,
      volume: at(scroll.image),
      inkLabels: at(scroll.labels.ink),
      papyrusLabels: at(scroll.labels.papyrus),
      fibreField: at(scroll.fields.fibre),
      normalField: at(scroll.fields.normal),
    });
    const model = { heads: ['ink', 'fiber', 'geometry'] as ('ink' | 'fiber' | 'geometry')[] };
    const local = await train(smallTrainConfig(join(root, 'local'), { steps: 4, data: data((p) => p), model }), { progressStream: null });
    const url = (p: string) => `${base}/${relative(root, p)}`;
    const remote = await train(smallTrainConfig(join(root, 'remote'), { steps: 4, data: data(url), model }), { progressStream: null });
    expect(remote.history.map((h) => h['total'])).toEqual(local.history.map((h) => h['total']));
    for (const k of ['bce', 'fiber', 'sheetBce', 'normal']) expect(Number.isFinite(local.history[0]![k] as number), k).toBe(true);
    expect(Object.keys(remote.validation.at(-1)!)).toEqual(expect.arrayContaining(['f05', 'fiberError', 'sheetDice', 'normalError']));
  }, 120_000);
});

describe('explicit training and validation regions', () => {
  it('train inside data.trainRegion and validate inside data.valRegion; both or neither, disjoint, inside the volume', async () => {
    const data = { source: 'zarr' as const, volume: scroll.image, inkLabels: scroll.labels.ink };
    // x split instead of z: train on the left 32 columns, validate on the right 32.
    const ok = await train(smallTrainConfig(join(root, 'regions'), { steps: 2, data: { ...data, trainRegion: '0:24,0:64,0:32', valRegion: '0:24,0:64,32:64' } }), { progressStream: null });
    expect(Number.isFinite(ok.validation.at(-1)!['f05'] as number)).toBe(true);
    const field = async (d: Record<string, string>): Promise<string> => {
      try {
        await train(smallTrainConfig(join(root, `bad-${Object.values(d).join('-').replace(/[^0-9]/g, '')}`), { steps: 1, data: { ...data, ...d } }), { progressStream: null });
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        expect((e as ConfigError).message.startsWith(`${(e as ConfigError).field}: `)).toBe(true);
        return (e as ConfigError).message;
      }
      throw new Error('expected a ConfigError');
    };
    expect(await field({ trainRegion: '0:24,0:64,0:32', valRegion: '0:24,0:64,24:64' })).toMatch(/^data\.valRegion: .*overlaps data\.trainRegion/);
    expect(await field({ trainRegion: '0:24,0:64,0:32', valRegion: '0:24,0:64,32:80' })).toMatch(/^data\.valRegion: '0:24,0:64,32:80' reaches x = 80, outside .* of shape \[24, 64, 64\]/);
    expect(await field({ trainRegion: '0:24,0:64,0:32', valRegion: '0:4,0:64,32:64' })).toMatch(/^data\.valRegion: .*smaller than the patch 8x32x32/);
    expect(() => resolveTrainConfig({ data: { trainRegion: '0:8,0:32,0:32' } })).toThrow(/data\.valRegion: give both/);
    expect(() => resolveTrainConfig({ data: { trainRegion: '0:8,0:32', valRegion: '8:16,0:32,0:32' } })).toThrow(/^data\.trainRegion: /);
  }, 60_000);
});
