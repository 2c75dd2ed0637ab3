/**
 * The native decoders (decode-worker.js) against independent references: zarrita's WASM codecs
 * (numcodecs.js, built from c-blosc/zstd), buffers written by zarr-python's numcodecs (C blosc), Node's
 * zlib and zstd-napi's encoders, and the committed zarr-python fixtures, byte for byte.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync, gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { afterAll, describe, expect, it } from 'vitest';
import { ChunkCache } from './cache.js';
import { configureDecoding, decodingStats, referenceCodec, resolveDecodingConfig } from './codecs.js';
import { CorruptChunkError, decodeBlosc, decodeNative } from './decode-worker.js';
import { ScrollIoOptionError, ZarrChunkError } from './errors.js';
import { openVolume } from './ome.js';
import { DecodePool } from './pool.js';
import { createVolume } from './volume.js';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';

const HERE = dirname(fileURLToPath(import.meta.url));
const FIXTURES = join(HERE, '..', 'fixtures', 'zarr-python.zarr');
const PYTHON = '/usr/bin/python3';
const hasNumcodecs = spawnSync(PYTHON, ['-c', 'import numcodecs'], { stdio: 'ignore' }).status === 0;

/** CT-like bytes: smooth structure plus noise, so every codec finds something to compress. */
function ctLike(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const base = 100 + 60 * Math.sin(i / 97) * Math.cos(i / 1231);
    out[i] = Math.max(0, Math.min(255, Math.round(base + ((s >>> 24) & 31) - 16)));
  }
  return out;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

afterAll(async () => {
  await configureDecoding();
});

describe('native blosc', () => {
  // 100003 bytes: not a multiple of any block size or type size, so leftover blocks and trailing bytes occur.
  const data = ctLike(100003);
  const cases: Array<{ cname: string; shuffle: number; blocksize: number }> = [];
  for (const cname of ['lz4', 'zstd', 'zlib', 'blosclz'])
    for (const shuffle of [0, 1, 2]) for (const blocksize of [0, 4096]) cases.push({ cname, shuffle, blocksize });

  it.each(cases)('decodes what the WASM blosc encoder wrote: %o', async (cfg) => {
    const ref = await referenceCodec('numcodecs.blosc', { ...cfg, clevel: 5 });
    // Bit shuffle natively needs whole groups of 8 elements in every block: 65536 bytes have them.
    const input = cfg.shuffle === 2 ? data.subarray(0, 65536) : data;
    const encoded = await ref.encode(input);
    const native = decodeBlosc(encoded);
    const expected = await ref.decode(encoded);
    expect(bytesEqual(expected, input)).toBe(true);
    if ((encoded[2] & 0x2) === 0 && encoded[2] >> 5 === 0) {
      // blosclz (format 0) is left to the reference codec (stored buffers are copied).
      expect(native).toBeNull();
    } else {
      expect(native).not.toBeNull();
      expect(bytesEqual(native as Uint8Array, expected)).toBe(true);
    }
  });

  it('leaves bit-shuffled blocks with a partial group of 8 elements to the reference codec', async () => {
    const ref = await referenceCodec('numcodecs.blosc', { cname: 'lz4', clevel: 5, shuffle: 2, blocksize: 0 });
    const encoded = await ref.encode(data);
    expect(encoded[2] & 0x4).toBe(0x4);
    expect(decodeBlosc(encoded)).toBeNull();
  });

  it.skipIf(!hasNumcodecs)('decodes what zarr-python (C blosc) wrote, for every type size and shuffle', () => {
    // numcodecs takes the type size from the array's dtype: 1, 2, 4 and 8 bytes, no/byte/bit shuffle,
    // default and small forced block sizes, lz4/zstd/zlib inside.
    const script = `
import sys, json, base64, numpy as np, numcodecs
rng = np.random.default_rng(3)
n = 60001
base = (100 + 60*np.sin(np.arange(n*8)/97.0)).astype(np.int64) + rng.integers(-16, 16, n*8)
out = []
for dt in ['u1', '<u2', '<f4', '<f8']:
    m = (n*8)//np.dtype(dt).itemsize
    for cname in ['lz4', 'zstd', 'zlib']:
        for shuffle in [0, 1, 2]:
            # Byte shuffle: an odd length (trailing bytes); bit shuffle: whole groups of 8 elements.
            a = base[: m - 3 if shuffle < 2 else m - m % 8 - 8].astype(dt)
            for bs in [0, 2048]:
                c = numcodecs.Blosc(cname=cname, clevel=5, shuffle=shuffle, blocksize=bs).encode(a)
                out.append(dict(cfg='%s/%s/%d/%d' % (dt, cname, shuffle, bs), raw=base64.b64encode(a.tobytes()).decode(), enc=base64.b64encode(bytes(c)).decode()))
json.dump(out, sys.stdout)
`;
    const res = spawnSync(PYTHON, ['-c', script], { maxBuffer: 1 << 28, encoding: 'utf8' });
    expect(res.status, res.stderr).toBe(0);
    const cases = JSON.parse(res.stdout) as Array<{ cfg: string; raw: string; enc: string }>;
    expect(cases.length).toBe(72);
    for (const c of cases) {
      const raw = new Uint8Array(Buffer.from(c.raw, 'base64'));
      const enc = new Uint8Array(Buffer.from(c.enc, 'base64'));
      const got = decodeBlosc(enc);
      expect(got, c.cfg).not.toBeNull();
      expect(bytesEqual(got as Uint8Array, raw), c.cfg).toBe(true);
    }
  });

  it('copies memcpyed (incompressible) buffers and rejects truncated or corrupt ones', async () => {
    const ref = await referenceCodec('numcodecs.blosc', { cname: 'lz4', clevel: 0, shuffle: 0, blocksize: 0 });
    const small = ctLike(5000, 9);
    const memcpyed = await ref.encode(small);
    expect(memcpyed[2] & 0x2).toBe(0x2); // clevel 0: stored, not compressed
    expect(bytesEqual(decodeBlosc(memcpyed) as Uint8Array, small)).toBe(true);

    const plain = new Uint8Array(70000);
    for (let i = 0; i < plain.length; i++) plain[i] = ((i * 7) % 13) + ((i >> 5) & 3);
    const good = await (await referenceCodec('numcodecs.blosc', { cname: 'lz4', clevel: 5, shuffle: 1, blocksize: 0 })).encode(plain);
    expect(good[2] & 0x2).toBe(0); // compressed, not stored
    expect(bytesEqual(decodeBlosc(good) as Uint8Array, plain)).toBe(true);
    expect(() => decodeBlosc(good.subarray(0, 10))).toThrow(CorruptChunkError);
    expect(() => decodeBlosc(good.subarray(0, good.length - 100))).toThrow(CorruptChunkError);
    // A block offset past the end, and a stream length past the end.
    const badStart = good.slice();
    new DataView(badStart.buffer).setUint32(16, good.length + 10, true);
    expect(() => decodeBlosc(badStart)).toThrow(CorruptChunkError);
    const badStream = good.slice();
    const first = new DataView(badStream.buffer).getUint32(16, true);
    new DataView(badStream.buffer).setInt32(first, 1 << 30, true);
    expect(() => decodeBlosc(badStream)).toThrow(CorruptChunkError);
    // An LZ4 stream cut short inside a valid container.
    const cut = good.slice();
    const len = new DataView(cut.buffer).getInt32(first, true);
    new DataView(cut.buffer).setInt32(first, len - 20, true);
    expect(() => decodeBlosc(cut)).toThrow(CorruptChunkError);
  });
});

describe('native zstd, gzip, zlib', () => {
  const data = ctLike(300001, 5);

  it('decodes zstd from the WASM encoder, zstd-napi, and a stream of two frames', async () => {
    const ref = await referenceCodec('numcodecs.zstd', { level: 3 });
    const wasm = await ref.encode(data);
    expect(bytesEqual(decodeNative('zstd', wasm) as Uint8Array, await ref.decode(wasm))).toBe(true);
    expect(bytesEqual(decodeNative('zstd', zstdCompress(data)) as Uint8Array, data)).toBe(true);
    const two = Buffer.concat([zstdCompress(data.subarray(0, 1000)), zstdCompress(data.subarray(1000))]);
    expect(bytesEqual(decodeNative('zstd', two) as Uint8Array, data)).toBe(true);
    expect(() => decodeNative('zstd', wasm.subarray(0, wasm.length - 9))).toThrow(CorruptChunkError);
  });

  it('decodes gzip and zlib like the reference codecs', async () => {
    const gz = new Uint8Array(gzipSync(data, { level: 1 }));
    const zl = new Uint8Array(deflateSync(data, { level: 6 }));
    expect(bytesEqual(decodeNative('gzip', gz) as Uint8Array, await (await referenceCodec('numcodecs.gzip')).decode(gz))).toBe(true);
    expect(bytesEqual(decodeNative('zlib', zl) as Uint8Array, await (await referenceCodec('numcodecs.zlib')).decode(zl))).toBe(true);
    expect(bytesEqual(decodeNative('gzip', gz) as Uint8Array, data)).toBe(true);
    expect(() => decodeNative('zlib', gz)).toThrow(CorruptChunkError);
    // Results own their buffer from offset 0, so any typed view of them is aligned.
    const out = decodeNative('gzip', gz) as Uint8Array;
    expect(out.byteOffset).toBe(0);
    expect(out.buffer.byteLength).toBe(out.length);
  });

  it('matches the reference on every chunk of the committed zarr-python fixtures', async () => {
    let checked = 0;
    for (const name of readdirSync(FIXTURES)) {
      const dir = join(FIXTURES, name);
      if (!statSync(dir).isDirectory() || !statSync(join(dir, '.zarray'), { throwIfNoEntry: false })) continue;
      const meta = JSON.parse(readFileSync(join(dir, '.zarray'), 'utf8')) as { compressor: { id: string } | null };
      if (!meta.compressor) continue;
      const { id, ...cfg } = meta.compressor;
      const ref = await referenceCodec(`numcodecs.${id}`, cfg);
      const files = (readdirSync(dir, { recursive: true }) as string[]).filter((f) => /^[0-9]+([./][0-9]+)*$/.test(f.replaceAll('\\', '/')) && statSync(join(dir, f)).isFile());
      for (const f of files) {
        const bytes = new Uint8Array(readFileSync(join(dir, f)));
        const native = decodeNative(id as 'blosc', bytes);
        const expected = await ref.decode(bytes);
        // Every fixture chunk, the bit-shuffled uint16 blosc-zstd one included, decodes natively.
        expect(native, `${name}/${f}`).not.toBeNull();
        expect(bytesEqual(native as Uint8Array, expected), `${name}/${f}`).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(40);
  });
});

describe('decode pool', () => {
  it('decodes many chunks across worker threads exactly as in-thread', async () => {
    const pool = new DecodePool(2);
    try {
      const ref = await referenceCodec('numcodecs.blosc', { cname: 'zstd', clevel: 3, shuffle: 1, blocksize: 0 });
      const chunks = await Promise.all(Array.from({ length: 8 }, (_, i) => ref.encode(ctLike(200000 + i, i + 1))));
      const got = await Promise.all(chunks.map((c) => pool.decode('blosc', c)));
      expect(pool.started).toBe(2);
      got.forEach((g, i) => expect(bytesEqual(g as Uint8Array, ctLike(200000 + i, i + 1))).toBe(true));
      await expect(pool.decode('blosc', chunks[0].subarray(0, 100))).rejects.toMatchObject({ corrupt: true });
      // The pool keeps working after a corrupt chunk.
      expect(bytesEqual((await pool.decode('blosc', chunks[1])) as Uint8Array, ctLike(200001, 2))).toBe(true);
      // Input buffers are reused between jobs of different sizes without mixing their bytes up.
      for (const i of [7, 0, 5, 2, 7, 1]) {
        expect(bytesEqual((await pool.decode('blosc', chunks[i])) as Uint8Array, ctLike(200000 + i, i + 1))).toBe(true);
      }
      const gz = new Uint8Array(gzipSync(ctLike(1000, 3)));
      expect(bytesEqual((await pool.decode('gzip', gz)) as Uint8Array, ctLike(1000, 3))).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it('lets the process exit when idle (workers are unreferenced)', () => {
    const tsx = join(HERE, '..', '..', '..', 'node_modules', '.bin', 'tsx');
    const script = `import { DecodePool } from ${JSON.stringify(join(HERE, 'pool.ts'))};
const p = new DecodePool(2);
const { gzipSync } = await import('node:zlib');
const out = await p.decode('gzip', new Uint8Array(gzipSync(Buffer.alloc(100000, 7))));
console.log('decoded ' + String(out.length));`;
    const t0 = Date.now();
    const res = spawnSync(tsx, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20000 });
    expect(res.stdout + res.stderr).toContain('decoded 100000');
    expect(res.status).toBe(0);
    expect(Date.now() - t0).toBeLessThan(20000);
  });

  it('routes zarrita volume reads through the pool or the calling thread, with identical results', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'codecs-'));
    try {
      const shape = [40, 64, 64];
      const data = ctLike(40 * 64 * 64, 4);
      for (const compressor of ['blosc-lz4', 'blosc-zstd', 'zstd', 'gzip', 'zlib'] as const) {
        const path = join(dir, compressor);
        const v = await createVolume(path, { shape, chunks: [16, 32, 32], dtype: 'uint8', compressor });
        await v.write({ offset: [0, 0, 0], shape }, data);
        const region = { offset: [3, -5, 7], shape: [30, 60, 70] };
        const results: Uint8Array[] = [];
        for (const threads of [0, 2]) {
          await configureDecoding({ threads, minPooledBytes: 0, nativeReader: false });
          const before = decodingStats();
          const r = await (await openVolume(path, { cache: new ChunkCache(0) })).read(region);
          const after = decodingStats();
          if (threads === 0) expect(after.inThread - before.inThread, compressor).toBeGreaterThan(0);
          else expect(after.pooled - before.pooled, compressor).toBeGreaterThan(0);
          expect(after.reference - before.reference).toBe(0);
          results.push(r.data as Uint8Array);
        }
        expect(bytesEqual(results[0], results[1])).toBe(true);
        // Independent check: every voxel against the written array (outside: fill 0).
        const r0 = results[0];
        let bad = 0;
        for (let z = 0; z < 30; z++)
          for (let y = 0; y < 60; y++)
            for (let x = 0; x < 70; x++) {
              const Z = z + 3, Y = y - 5, X = x + 7;
              const want = Y >= 0 && X < 64 ? data[(Z * 64 + Y) * 64 + X] : 0;
              if (r0[(z * 60 + y) * 70 + x] !== want) bad++;
            }
        expect(bad, compressor).toBe(0);
      }
    } finally {
      await configureDecoding();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the chunk when a pooled decode finds corrupt bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'codecs-'));
    try {
      const path = join(dir, 'a');
      const v = await createVolume(path, { shape: [64, 64, 64], chunks: [64, 64, 64], dtype: 'uint8', compressor: 'blosc-lz4' });
      await v.write({ offset: [0, 0, 0], shape: [64, 64, 64] }, ctLike(64 ** 3));
      const file = join(path, '0', '0', '0');
      // Truncated (an interrupted copy): blosc has no checksum, so flipped bytes could decode silently.
      const bytes = await readFile(file);
      await writeFile(file, bytes.subarray(0, bytes.length - 50));
      await configureDecoding({ threads: 2, minPooledBytes: 0, nativeReader: false });
      const vol = await openVolume(path, { cache: new ChunkCache(0) });
      await expect(vol.read({ offset: [0, 0, 0], shape: [2, 2, 2] })).rejects.toThrow(ZarrChunkError);
      await expect(vol.read({ offset: [0, 0, 0], shape: [2, 2, 2] })).rejects.toThrow(/0\/0\/0/);
    } finally {
      await configureDecoding();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('resolveDecodingConfig', () => {
  it('fills defaults and names the bad field', () => {
    const c = resolveDecodingConfig({});
    expect(c.native).toBe(true);
    expect(c.threads).toBeGreaterThanOrEqual(1);
    expect(() => resolveDecodingConfig({ threads: -1 })).toThrow(ScrollIoOptionError);
    expect(() => resolveDecodingConfig({ threads: 1.5 })).toThrow(/threads/);
    expect(() => resolveDecodingConfig({ minPooledBytes: -3 })).toThrow(/minPooledBytes/);
    expect(() => resolveDecodingConfig({ native: 'yes' as never })).toThrow(/native/);
    expect(c.idleLoopReads).toBe(true);
    expect(() => resolveDecodingConfig({ idleLoopReads: 1 as never })).toThrow(/idleLoopReads/);
    expect(() => resolveDecodingConfig({ thread: 2 } as never)).toThrow(/thread/);
  });
});
