/**
 * `goe segment` as a process: killed with `kill -9` mid-run and resumed (only the missing chunks are
 * written, and the output is byte-identical to an uninterrupted run), and peak memory that stays flat
 * when the volume grows 8x.
 */
import { resolvePhantomConfig, writePhantom } from '@goe/phantom';
import { createVolume, openVolume } from '@goe/scroll-io';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesUnder, segment } from './segment.js';
import { smallTrainConfig } from './small-config.js';
import { train } from './train.js';

const GOE = resolve(dirname(fileURLToPath(import.meta.url)), '../bin/goe.js');
const root = mkdtempSync(join(tmpdir(), 'goe-segment-proc-'));
let runDir = '';
let phantom = '';
/** Chunks 8x16x16 and 2 levels: parts (= blocks) of 16x32x32 voxels. */
const flags = ['--chunks', '8,16,16', '--levels', '2', '--overlap', '2,4,4', '--backend', 'wasm', '--quiet'];

/** Every file under `dir` (dot-folders included), relative path -> bytes. */
async function files(dir: string): Promise<Map<string, Buffer>> {
  return new Map((await filesUnder(dir)).map((f) => [relative(dir, f), readFileSync(f)]));
}

function markers(out: string): string[] {
  const d = join(out, '.segment', 'parts');
  return existsSync(d) ? readdirSync(d).filter((f) => !f.startsWith('.')) : [];
}

beforeAll(async () => {
  const r = await train(smallTrainConfig(join(root, 'run'), { steps: 2, validationPatches: 1, model: { patch: [8, 16, 16] } }), { progressStream: null });
  runDir = r.runDir;
  phantom = (await writePhantom(join(root, 'vol'), resolvePhantomConfig({ shape: [32, 48, 64], seed: 5, preset: 'easy' }))).image;
}, 60_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('goe segment as a process', () => {
  it('--resume after kill -9 writes only the missing chunks, and the output is byte-identical to an uninterrupted run', async () => {
    const killed = join(root, 'killed.zarr');
    const child = spawn(process.execPath, [GOE, 'segment', '--checkpoint', runDir, '--volume', phantom, '--out', killed, ...flags], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((done) => child.on('exit', (_code, signal) => done(signal)));
    for (let t = 0; t < 1200 && markers(killed).length < 1; t++) await new Promise((r) => setTimeout(r, 25));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const doneAtKill = markers(killed);
    expect(doneAtKill.length).toBeGreaterThanOrEqual(1);

    const whole = join(root, 'whole.zarr');
    const w = await segment({ checkpoint: runDir, volume: phantom, out: whole, chunks: [8, 16, 16], levels: 2, overlap: [2, 4, 4], backend: 'wasm', progressStream: null });
    const totalParts = markers(whole).length;
    expect(totalParts).toBe(w.parts);
    expect(doneAtKill.length).toBeLessThan(totalParts);

    // No partial chunk file: every chunk present after the kill is byte-identical to the whole run's.
    const ref = await files(whole);
    const atKill = await files(killed);
    const chunkFiles = [...atKill.keys()].filter((k) => /^ink\/\d\/\d+\/\d+\/\d+$/.test(k) && !k.split('/').pop()!.startsWith('.'));
    expect(chunkFiles.length).toBeGreaterThan(0);
    for (const k of chunkFiles) expect(atKill.get(k)!.equals(ref.get(k)!), k).toBe(true);

    // The level-0 chunks of the parts done at the kill must not be written again.
    const ofDoneParts = chunkFiles.filter((k) => {
      const [, level, cz, cy, cx] = k.split('/').map(Number) as number[];
      return level === 0 && doneAtKill.includes([Math.floor(cz! / 2) * 16, Math.floor(cy! / 2) * 32, Math.floor(cx! / 2) * 32].join('.'));
    });
    expect(ofDoneParts.length).toBeGreaterThan(0);
    const mtimes = new Map(ofDoneParts.map((k) => [k, statSync(join(killed, k)).mtimeMs]));

    const r = spawnSync(process.execPath, [GOE, 'segment', '--checkpoint', runDir, '--volume', phantom, '--out', killed, '--resume', ...flags], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as { parts: number; partsAlreadyDone: number; chunksWritten: number };
    expect(res.partsAlreadyDone).toBe(doneAtKill.length);
    expect(res.parts).toBe(totalParts - doneAtKill.length);
    // Exactly the chunks the whole run wrote for the parts that were not done (each marker records its count).
    const missing = markers(whole)
      .filter((m) => !doneAtKill.includes(m))
      .reduce((a, m) => a + (JSON.parse(readFileSync(join(whole, '.segment', 'parts', m), 'utf8')) as { chunks: number }).chunks, 0);
    expect(res.chunksWritten).toBe(missing);
    for (const [k, t] of mtimes) expect(statSync(join(killed, k)).mtimeMs, k).toBe(t);

    // Every file, markers and metadata included, equals the uninterrupted run's (no temporary files left).
    const after = await files(killed);
    expect([...after.keys()].sort()).toEqual([...ref.keys()].sort());
    for (const [k, v] of after) expect(v.equals(ref.get(k)!), k).toBe(true);
  }, 120_000);

  it('a chunk write killed midway leaves no partial chunk file: the chunk is a whole earlier write, the write in flight a hidden temporary file', async () => {
    // A child rewrites one 64 MiB chunk (uncompressed) over and over; it is killed while a rewrite is in flight.
    const arr = join(root, 'atomic.zarr');
    const script = `
      const { createVolume } = await import('@goe/scroll-io');
      const shape = [64, 1024, 1024];
      const v = await createVolume(${JSON.stringify(arr)}, { shape, chunks: shape, dtype: 'uint8', compressor: 'none' });
      const data = new Uint8Array(shape[0] * shape[1] * shape[2]);
      for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
      for (;;) await v.write({ offset: [0, 0, 0], shape }, data);
    `;
    const child = spawn(process.execPath, ['--conditions=@goe/source', '--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'ignore', cwd: dirname(GOE) });
    const exited = new Promise<NodeJS.Signals | null>((done) => child.on('exit', (_code, signal) => done(signal)));
    const dir = join(arr, '0', '0');
    const torn = () => (existsSync(join(dir, '0')) && existsSync(dir) ? readdirSync(dir).filter((f) => f.startsWith('.0.') && f.endsWith('.tmp') && statSync(join(dir, f)).size > 0) : []);
    for (let t = 0; t < 2000 && torn().length === 0; t++) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    // The write in flight is at most one hidden temporary file (none if the kill landed just after a rename).
    const temps = readdirSync(dir).filter((f) => f.endsWith('.tmp'));
    expect(temps.length).toBeLessThanOrEqual(1);
    expect(temps.every((f) => f.startsWith('.'))).toBe(true);
    // The chunk file is whole (a completed earlier write), never the torn one.
    expect(statSync(join(dir, '0')).size).toBe(64 * 1024 * 1024);
    const got = (await (await openVolume(arr)).read({ offset: [0, 0, 0], shape: [64, 1024, 1024] })).data;
    let bad = 0;
    for (let i = 0; i < got.length; i++) if (got[i] !== (i * 7) % 251) bad++;
    expect(bad).toBe(0);
  }, 60_000);

  it('peak memory stays flat: a volume 8x larger (same data, the rest empty) peaks within 1.3x', async () => {
    const src = await openVolume(phantom);
    const data = (await src.read({ offset: [0, 0, 0], shape: [16, 40, 48] })).data;
    const peaks: number[] = [];
    const results: { chunksWritten: number; chunksSkipped: number; tiles: number }[] = [];
    for (const shape of [
      [32, 256, 256],
      [64, 512, 512],
    ]) {
      const path = join(root, `big-${shape.join('x')}.zarr`);
      const v = await createVolume(path, { shape, chunks: [16, 32, 32], dtype: 'uint8' });
      await v.write({ offset: [0, 0, 0], shape: [16, 40, 48] }, data);
      const out = join(root, `big-out-${shape.join('x')}.zarr`);
      const r = spawnSync(process.execPath, [GOE, 'segment', '--checkpoint', runDir, '--volume', path, '--out', out, '--chunks', '16,32,32', '--overlap', '2,4,4', '--backend', 'wasm', '--quiet'], {
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as { peakRssBytes: number; chunksWritten: number; chunksSkipped: number; tiles: number };
      peaks.push(res.peakRssBytes);
      results.push(res);
    }
    // The same work (the non-empty corner) in both; the larger volume only has more empty chunks.
    expect(results[1]!.tiles).toBe(results[0]!.tiles);
    expect(results[1]!.chunksWritten).toBe(results[0]!.chunksWritten);
    expect(results[1]!.chunksSkipped).toBeGreaterThan(results[0]!.chunksSkipped * 7);
    console.log(`peak RSS: ${peaks.map((p) => `${(p / 2 ** 20).toFixed(0)} MiB`).join(' (N voxels), ')} (8N voxels)`);
    expect(peaks[1]! / peaks[0]!).toBeLessThanOrEqual(1.3);
  }, 120_000);
});
