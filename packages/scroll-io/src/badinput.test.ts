/**
 * Damaged and inconsistent stores: every failure is a typed error naming the path (and the chunk key
 * for chunk data), raised from the read that needs it; nothing escapes as an unhandled rejection and
 * no damaged chunk is returned as data.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkCache } from './cache.js';
import { configureDecoding } from './codecs.js';
import { ZarrChunkError, ZarrError, ZarrMetadataError, ZarrRegionError } from './errors.js';
import type { Compressor } from './metadata.js';
import { openVolume } from './ome.js';
import { PatchSampler } from './sampler.js';
import { Tiler } from './tiler.js';
import { createVolume } from './volume.js';

let dir: string;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'scroll-io-bad-'));
  process.on('unhandledRejection', onUnhandled);
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await rm(dir, { recursive: true, force: true });
});

const CODECS: Compressor[] = ['blosc-lz4', 'blosc-zstd', 'zstd', 'zlib', 'gzip', 'none'];
const values = Uint16Array.from({ length: 512 }, (_, i) => (i * 7) % 65536);

async function makeArray(name: string, compressor: Compressor): Promise<string> {
  const path = join(dir, name);
  const v = await createVolume(path, { shape: [8, 8, 8], chunks: [4, 4, 4], dtype: 'uint16', compressor, dimensionSeparator: '.' });
  await v.write({ offset: [0, 0, 0], shape: [8, 8, 8] }, values);
  return path;
}

/** Reads the chunk at `origin` and returns the error it raised (fails the test if it raised none). */
async function chunkError(path: string, origin: number[]): Promise<ZarrChunkError> {
  const vol = await openVolume(path, { cache: new ChunkCache(0) });
  const err = await vol.read({ offset: origin, shape: [4, 4, 4] }).then(
    (r) => new Error(`no error; read ${Array.from(r.data.slice(0, 4))}`),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ZarrChunkError);
  return err as ZarrChunkError;
}

// Both read paths: the compiled reader (native/reader.c) and zarrita's codec pipeline.
describe.each([true, false])('damaged chunks (compiled reader %s)', (nativeReader) => {
  beforeAll(() => configureDecoding({ nativeReader }));
  afterAll(() => configureDecoding());

  it.each(CODECS)('%s: a truncated chunk is a ZarrChunkError naming the path and chunk key', async (codec) => {
    const path = await makeArray(`trunc-${codec}-${nativeReader}`, codec);
    const file = join(path, '0.1.0');
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const e = await chunkError(path, [0, 4, 0]);
    expect(e.chunkKey).toBe('0.1.0');
    expect(e.path).toBe(path);
    expect(e.message).toContain(path);
    expect(e.message).toContain("'0.1.0'");
    // Undamaged chunks of the same array still read exactly.
    const vol = await openVolume(path, { cache: new ChunkCache(0) });
    const ok = await vol.read({ offset: [4, 4, 4], shape: [4, 4, 4] });
    expect(ok.data[0]).toBe(values[(4 * 8 + 4) * 8 + 4]);
  });

  it.each(['blosc-lz4', 'blosc-zstd', 'zlib', 'gzip'] as Compressor[])('%s: a chunk with flipped bytes is a ZarrChunkError', async (codec) => {
    const path = await makeArray(`flip-${codec}-${nativeReader}`, codec);
    const file = join(path, '1.0.1');
    const bytes = Buffer.from(await readFile(file));
    for (let i = 16; i < bytes.length; i += 3) bytes[i] ^= 0x5a;
    await writeFile(file, bytes);
    expect((await chunkError(path, [4, 0, 4])).chunkKey).toBe('1.0.1');
  });

  it('zstd with a damaged frame header, and raw chunks of the wrong length, are ZarrChunkErrors', async () => {
    const z = await makeArray(`hdr-zstd-${nativeReader}`, 'zstd');
    const zf = join(z, '0.0.0');
    const zb = Buffer.from(await readFile(zf));
    zb[0] ^= 0xff; // frame magic
    await writeFile(zf, zb);
    expect((await chunkError(z, [0, 0, 0])).chunkKey).toBe('0.0.0');
    const raw = await makeArray(`long-none-${nativeReader}`, 'none');
    const rf = join(raw, '0.0.1');
    await writeFile(rf, Buffer.concat([await readFile(rf), Buffer.alloc(6)]));
    const e = await chunkError(raw, [0, 0, 4]);
    // 64 uint16 voxels are 128 bytes; the file has 134.
    expect(e.message).toMatch(nativeReader ? /raw chunk has 134 bytes, expected 128/ : /decoded to uint16\[67\], expected uint16\[64\]/);
  });

  it('a chunk key that is a directory, and an unknown codec, fail on read with the chunk key', async () => {
    const path = await makeArray(`dirchunk-${nativeReader}`, 'zstd');
    await rm(join(path, '1.1.1'));
    await mkdir(join(path, '1.1.1'));
    expect((await chunkError(path, [4, 4, 4])).chunkKey).toBe('1.1.1');
    const unk = await makeArray(`unknown-codec-${nativeReader}`, 'zstd');
    const meta = JSON.parse(await readFile(join(unk, '.zarray'), 'utf8')) as Record<string, unknown>;
    meta.compressor = { id: 'no-such-codec' };
    await writeFile(join(unk, '.zarray'), JSON.stringify(meta));
    const e = await chunkError(unk, [0, 0, 0]);
    expect(e.chunkKey).toBe('0.0.0');
    expect(e.message).toContain('no-such-codec');
  });

  it('the sampler and the tiler surface a damaged chunk as the same typed error, not an unhandled rejection', async () => {
    const path = await makeArray(`stream-${nativeReader}`, 'blosc-lz4');
    await writeFile(join(path, '0.0.0'), Buffer.from('not a blosc chunk'));
    const vol = await openVolume(path, { cache: new ChunkCache(0) });
    const tiler = new Tiler({ volume: vol, tile: [4, 4, 4], prefetch: 4 });
    await expect(tiler.next()).rejects.toBeInstanceOf(ZarrChunkError);
    const t2 = await tiler.next();
    expect(t2!.image[0]).toBe(values[4]);
    await tiler.close();
    const s = new PatchSampler({ volume: vol, patchShape: [8, 8, 8], seed: 3, prefetch: 3 });
    await expect(s.next()).rejects.toBeInstanceOf(ZarrChunkError);
    await s.close();
    await new Promise((r) => setTimeout(r, 20));
    expect(unhandled).toEqual([]);
  });
});

describe('inconsistent metadata and regions', () => {
  async function writeZarray(name: string, patch: Record<string, unknown>): Promise<string> {
    const path = join(dir, name);
    await mkdir(path, { recursive: true });
    const base = { zarr_format: 2, shape: [8, 8, 8], chunks: [4, 4, 4], dtype: '<u2', compressor: null, fill_value: 0, filters: null, order: 'C' };
    await writeFile(join(path, '.zarray'), JSON.stringify({ ...base, ...patch }));
    return path;
  }
  async function metaError(path: string): Promise<ZarrMetadataError> {
    const e = await openVolume(path).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(ZarrMetadataError);
    return e as ZarrMetadataError;
  }

  it('wrong zarr_format, chunk rank != array rank, negative shape, broken JSON: ZarrMetadataError naming the file and field', async () => {
    const cases: [string, Record<string, unknown>, string][] = [
      ['fmt3', { zarr_format: 3 }, 'zarr_format'],
      ['rank', { chunks: [4, 4] }, 'chunks'],
      ['negative', { shape: [8, -1, 8] }, 'shape'],
      ['zerochunk', { chunks: [4, 0, 4] }, 'chunks'],
      ['sep', { dimension_separator: ':' }, 'dimension_separator'],
    ];
    for (const [name, patch, field] of cases) {
      const path = await writeZarray(name, patch);
      const e = await metaError(path);
      expect(e.field, name).toBe(field);
      expect(e.path).toBe(join(path, '.zarray'));
      expect(e.message).toContain(join(path, '.zarray'));
    }
    const v3 = join(dir, 'v3fmt');
    await mkdir(v3, { recursive: true });
    await writeFile(join(v3, 'zarr.json'), JSON.stringify({ zarr_format: 2, node_type: 'array', shape: [4], data_type: 'uint8', chunk_grid: { name: 'regular', configuration: { chunk_shape: [4] } }, codecs: [{ name: 'bytes' }] }));
    expect((await metaError(v3)).field).toBe('zarr_format');
    const broken = join(dir, 'brokenjson');
    await mkdir(broken, { recursive: true });
    await writeFile(join(broken, '.zarray'), '{"zarr_format": 2, "shape": [8,');
    const e = await metaError(broken);
    expect(e.message).toContain('not valid JSON');
  });

  it('a region of the wrong rank or with a negative extent is a ZarrRegionError naming the array', async () => {
    const path = await makeArray('region', 'none');
    const vol = await openVolume(path);
    for (const region of [
      { offset: [0, 0], shape: [1, 1] },
      { offset: [0, 0, 0, 0], shape: [1, 1, 1, 1] },
      { offset: [0, 0, 0], shape: [1, -2, 1] },
      { offset: [0, 0.5, 0], shape: [1, 1, 1] },
    ]) {
      const e = await vol.read(region).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(ZarrRegionError);
      expect((e as ZarrError).path).toBe(path);
      expect((e as Error).message).toContain(path);
    }
    expect(unhandled).toEqual([]);
  });
});
