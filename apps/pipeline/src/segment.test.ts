/**
 * `goe segment` over a real phantom volume with a real (briefly trained) ink model: blending against
 * a float64 reference, region and shard exactness byte for byte, masks, fragments (PNG + RLE), and the
 * errors that name their flag.
 */
import { rleDecode } from '@goe/head-ink';
import { resolvePhantomConfig, writePhantomFragment } from '@goe/phantom';
import { buildPyramid, createOmeZarr, createVolume, gaussianWeights, openFragment, openVolume, readPng, tileRegion } from '@goe/scroll-io';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from './cli.js';
import { normaliseIntensity } from './model.js';
import { probabilityByte, type WindowPredictor } from './predictor.js';
import { filesUnder, regionBlocks, segment, segmentGrid, segmentVolume, shardBlocks, type SegmentVolumeOptions } from './segment.js';
import { referenceBlend, trainedSegmentFixture } from './segment-test-utils.js';

const root = mkdtempSync(join(tmpdir(), 'goe-segment-'));
let runDir = '';
let image = '';
let predictor: WindowPredictor;
/** Small geometry: window 8x16x16, chunks 8x16x16, 2 levels (blocks 16x32x32), parts of one chunk column. */
const settings = { chunks: [8, 16, 16], levels: 2, overlap: [2, 4, 4], partVoxels: 4096, progressStream: null, modelId: 'test' } as const;
const shape: [number, number, number] = [16, 40, 48];

function opts(out: string, more: Partial<SegmentVolumeOptions> = {}): SegmentVolumeOptions {
  return { ...settings, chunks: [...settings.chunks], overlap: [...settings.overlap], volume: image, out, ...more };
}

/** Every file under `dir` (dot-folders included), relative path -> bytes. */
async function tree(dir: string): Promise<Map<string, Buffer>> {
  return new Map((await filesUnder(dir)).map((f) => [relative(dir, f), readFileSync(f)]));
}

async function expectSameTree(a: string, b: string): Promise<void> {
  const ta = await tree(a);
  const tb = await tree(b);
  expect([...ta.keys()].sort()).toEqual([...tb.keys()].sort());
  for (const [k, v] of ta) expect(v.equals(tb.get(k)!), k).toBe(true);
}

beforeAll(async () => {
  ({ runDir, image, predictor } = await trainedSegmentFixture(root, { shape, seed: 9 }));
}, 60_000);

afterAll(() => {
  predictor?.dispose();
  rmSync(root, { recursive: true, force: true });
});

describe('goe segment: the engine', () => {
  let whole = '';
  beforeAll(async () => {
    whole = join(root, 'whole.zarr');
    const r = await segmentVolume(predictor, opts(whole));
    expect(r.parts).toBeGreaterThan(4);
    expect(r.chunksWritten).toBeGreaterThan(0);
  }, 60_000);

  it('blends windows without seams: equal to a float64 Gaussian blend of every window run alone', async () => {
    const V = product(shape);
    const want = (await referenceBlend(predictor, image, shape, settings.overlap))['ink']!;
    const got = (await (await ink(whole)).read({ offset: [0, 0, 0], shape })).data;
    let maxDiff = 0;
    for (let v = 0; v < V; v++) maxDiff = Math.max(maxDiff, Math.abs((got[v] as number) - Math.round(want[v]! * 255)));
    expect(maxDiff).toBeLessThanOrEqual(1);
    // Not a constant image, and smooth across part borders (every 16 voxels along y and x): the largest
    // step between neighbours at a border is no larger than the largest step inside parts.
    expect(Math.max(...got) - Math.min(...got)).toBeGreaterThan(10);
    const stepAt = (atBorder: boolean) => {
      let m = 0;
      for (let z = 0; z < shape[0]!; z++)
        for (let y = 0; y < shape[1]!; y++)
          for (let x = 1; x < shape[2]!; x++) {
            if ((x % 16 === 0) !== atBorder) continue;
            const i = (z * shape[1]! + y) * shape[2]! + x;
            m = Math.max(m, Math.abs((got[i] as number) - (got[i - 1] as number)));
          }
      return m;
    };
    expect(stepAt(true)).toBeLessThanOrEqual(stepAt(false));
  }, 60_000);

  it('reads the volume over http as from disk: the same chunks', async () => {
    const dir = join(root, 'vol');
    const server = createServer(async (req, res) => {
      const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
      const body = await readFile(join(dir, path)).catch(() => undefined);
      if (body) res.writeHead(200).end(body);
      else res.writeHead(404).end();
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${relative(dir, image)}`;
      const out = join(root, 'http.zarr');
      await segmentVolume(predictor, opts(out, { volume: url }));
      // Everything but the root attributes (which name the source) is the local run's, byte for byte.
      await expectSameTree(join(out, 'ink'), join(whole, 'ink'));
      expect(JSON.parse(readFileSync(join(out, '.zattrs'), 'utf8')).goe.source.volume).toBe(url);
    } finally {
      server.close();
    }
  }, 60_000);

  it('a region equals the same region cut from the whole run; outside it stays 0', async () => {
    const out = join(root, 'region.zarr');
    const r = await segmentVolume(predictor, opts(out, { region: '3:13,5:37,7:41' }));
    expect(r.region).toEqual({ offset: [3, 5, 7], shape: [10, 32, 34] });
    const box = { offset: [3, 5, 7], shape: [10, 32, 34] };
    const a = (await (await ink(out)).read(box)).data;
    const b = (await (await ink(whole)).read(box)).data;
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const all = (await (await ink(out)).read({ offset: [0, 0, 0], shape })).data;
    const inside = (z: number, y: number, x: number) => z >= 3 && z < 13 && y >= 5 && y < 37 && x >= 7 && x < 41;
    let outsideNonZero = 0;
    for (let i = 0; i < all.length; i++) {
      const z = Math.floor(i / (shape[1]! * shape[2]!));
      const y = Math.floor(i / shape[2]!) % shape[1]!;
      if (!inside(z, y, i % shape[2]!) && all[i] !== 0) outsideNonZero++;
    }
    expect(outsideNonZero).toBe(0);
  }, 60_000);

  it('shards 0/3, 1/3, 2/3, run at once into one output, write every file byte-identical to one run', async () => {
    const out = join(root, 'shards.zarr');
    const rs = await Promise.all([0, 1, 2].map((i) => segmentVolume(predictor, opts(out, { shard: `${i}/3` }))));
    expect(rs.map((r) => r.parts).every((p) => p > 0)).toBe(true);
    await expectSameTree(out, whole);
    // The pyramid level is there too, and a reader sees the OME-Zarr image.
    const l1 = await openVolume(join(out, 'ink'), { level: 1 });
    expect(l1.shape).toEqual([8, 20, 24]);
    // A shard started with other settings on the same output is refused, naming --out.
    await expect(segmentVolume(predictor, opts(out, { shard: '0/3', overlap: [1, 4, 4] }))).rejects.toThrow(/--out: .*other settings/);
    // A shard started again without --resume would redo its parts: refused.
    await expect(segmentVolume(predictor, opts(out, { shard: '1/3' }))).rejects.toThrow(/--out: shard 1\/3 has already written/);
    // With --resume it finds every part done and writes nothing.
    const again = await segmentVolume(predictor, opts(out, { shard: '1/3', resume: true }));
    expect(again).toMatchObject({ parts: 0, chunksWritten: 0, tiles: 0 });
    expect(again.partsAlreadyDone).toBe(rs[1]!.parts);
    await expectSameTree(out, whole);
  }, 60_000);

  it('a mask skips chunks where it is all 0 (not written) and zeroes voxels where it is 0', async () => {
    const maskPath = join(root, 'mask.zarr');
    const mask = await createVolume(maskPath, { shape, chunks: [8, 16, 16], dtype: 'uint8' });
    const m = new Uint8Array(product(shape));
    // z >= 8 and x < 24: a disc; z < 8: all zero (those chunks are skipped).
    for (let z = 8; z < 16; z++) for (let y = 0; y < 40; y++) for (let x = 0; x < 24; x++) if ((y - 20) ** 2 + (x - 12) ** 2 < 100) m[(z * 40 + y) * 48 + x] = 1;
    await mask.write({ offset: [0, 0, 0], shape }, m);
    const out = join(root, 'masked.zarr');
    const r = await segmentVolume(predictor, opts(out, { mask: maskPath }));
    // 3x3 chunks per z-layer of chunks; the disc touches 2x2 of them in the second layer.
    expect(r.chunksWritten + r.chunksSkipped).toBe(2 * 3 * 3);
    expect(r.chunksSkipped).toBe(2 * 3 * 3 - 4);
    expect(existsSync(join(out, 'ink', '0', '0'))).toBe(false);
    const got = (await (await ink(out)).read({ offset: [0, 0, 0], shape })).data;
    const ref = (await (await ink(whole)).read({ offset: [0, 0, 0], shape })).data;
    let bad = 0;
    for (let i = 0; i < got.length; i++) if (got[i] !== (m[i] ? ref[i] : 0)) bad++;
    expect(bad).toBe(0);
    expect(got.some((v) => v > 0)).toBe(true);
  }, 60_000);

  it('is generic over named outputs: a three-channel output is stored c, z, y, x with its own pyramid, blended like ink', async () => {
    const out = join(root, 'multi.zarr');
    const r = await segmentVolume(withTriple(predictor), opts(out, { heads: ['triple', 'ink'] }));
    expect(r.heads).toEqual(['ink', 'triple']);
    const t = await openVolume(join(out, 'triple'));
    expect(t.shape).toEqual([3, ...shape]);
    expect(t.chunks).toEqual([3, 8, 16, 16]);
    expect(t.axes).toEqual(['c', 'z', 'y', 'x']);
    const V = product(shape);
    const tri = (await t.read({ offset: [0, 0, 0, 0], shape: [3, ...shape] })).data;
    const inkBytes = (await (await ink(whole)).read({ offset: [0, 0, 0], shape })).data;
    let diff0 = 0;
    let diff1 = 0;
    for (let i = 0; i < V; i++) {
      diff0 = Math.max(diff0, Math.abs(tri[i]! - inkBytes[i]!));
      diff1 = Math.max(diff1, Math.abs(tri[V + i]! - (255 - inkBytes[i]!)), Math.abs(tri[2 * V + i]! - inkBytes[i]! / 2));
    }
    expect(diff0).toBe(0);
    expect(diff1).toBeLessThanOrEqual(1);
    // Its pyramid: channel 0 of level 1 is the ink head's level 1.
    const t1 = await openVolume(join(out, 'triple'), { level: 1 });
    const i1 = await openVolume(join(whole, 'ink'), { level: 1 });
    const a = (await t1.read({ offset: [0, 0, 0, 0], shape: [1, ...i1.shape] })).data;
    const b = (await i1.read({ offset: [0, 0, 0], shape: i1.shape })).data;
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  }, 60_000);

  it('--png writes overlays of a few z-slices, red where ink is likely', async () => {
    const out = join(root, 'png.zarr');
    const dir = join(root, 'png');
    const r = await segmentVolume(predictor, opts(out, { png: dir, region: '0:16,0:40,0:48' }));
    expect(r.previews.map((f) => relative(dir, f))).toEqual(['ink-z00004.png', 'ink-z00008.png', 'ink-z00012.png']);
    const img = await readPng(r.previews[1]!);
    expect([img.width, img.height, img.channels]).toEqual([48, 40, 3]);
    const pred = (await (await ink(whole)).read({ offset: [8, 0, 0], shape: [1, 40, 48] })).data;
    const i = pred.indexOf(Math.max(...pred));
    // Red minus green is the probability times 255 (the overlay's alpha times full red).
    expect(Math.abs((img.data[i * 3]! as number) - (img.data[i * 3 + 1]! as number) - pred[i]!)).toBeLessThanOrEqual(1);
  }, 60_000);
});

describe('goe segment: levels and progress', () => {
  it('--level segments a coarser level of an OME-Zarr pyramid, with its voxel size; progress is in voxels per second with an ETA', async () => {
    const src = await openVolume(image);
    const pyr = join(root, 'pyramid.zarr');
    const img = await createOmeZarr(pyr, { shape, chunks: [8, 16, 16], dtype: 'uint8', voxelSize: [2, 2, 2] });
    await img.levels[0]!.write({ offset: [0, 0, 0], shape }, (await src.read({ offset: [0, 0, 0], shape })).data);
    await buildPyramid(pyr, { levels: 2 });
    const lines: string[] = [];
    const stream = { isTTY: false, write: (t: string) => lines.push(t) } as unknown as NodeJS.WriteStream;
    const out = join(root, 'level1.zarr');
    const r = await segmentVolume(predictor, opts(out, { volume: pyr, level: 1, progressStream: stream }));
    expect(r.shape).toEqual([8, 20, 24]);
    const level0 = await ink(out);
    expect(level0.shape).toEqual([8, 20, 24]);
    expect(level0.voxelSize).toEqual([4, 4, 4]);
    expect(lines[0]).toMatch(/^segmenting .*pyramid\.zarr level 1 \[8, 20, 24\]/);
    expect(lines.at(-1)).toMatch(/\] voxels 3840\/3840 \| [\d.]+ M?voxels\/s \| \d+s elapsed, ETA 0s\n$/);
    await expect(segmentVolume(predictor, opts(join(root, 'level9.zarr'), { volume: pyr, level: 9 }))).rejects.toThrow(/--level: .*levels 0\.\.1, received 9/);
  }, 60_000);
});

describe('goe segment: shards, grid and metadata', () => {
  it('every block is in exactly one shard, and shards are balanced within one block', () => {
    const g = segmentGrid({ shape: [300, 517, 389], window: [16, 64, 64], overlap: [4, 16, 16], chunks: [32, 64, 64], levels: 3, partVoxels: 2 ** 18 });
    const blocks = regionBlocks(g, { lo: [10, 0, 33], hi: [290, 517, 389] });
    const weights = blocks.map((b) => b.chunks);
    const total = weights.reduce((a, b) => a + b, 0);
    // Every level-0 chunk of the region is counted once.
    const chunksIn = (lo: number, hi: number, c: number) => Math.ceil(hi / c) - Math.floor(lo / c);
    expect(total).toBe(chunksIn(10, 290, 32) * chunksIn(0, 517, 64) * chunksIn(33, 389, 64));
    for (const n of [1, 3, 7, 40]) {
      const seen = new Array<number>(blocks.length).fill(0);
      const loads: number[] = [];
      for (let i = 0; i < n; i++) {
        const mine = shardBlocks(weights, i, n);
        mine.forEach((j) => seen[j]!++);
        loads.push(mine.reduce((a, j) => a + weights[j]!, 0));
      }
      expect(seen.every((s) => s === 1)).toBe(true);
      const maxBlock = Math.max(...weights);
      for (const l of loads) expect(Math.abs(l - total / n)).toBeLessThanOrEqual(maxBlock);
    }
  });

  it('parts tile blocks within the voxel budget', () => {
    const g = segmentGrid({ shape: [100, 100, 100], window: [8, 8, 8], overlap: [2, 2, 2], chunks: [16, 16, 16], levels: 3, partVoxels: 5000 });
    expect(g.block).toEqual([64, 64, 64]);
    expect(g.part).toEqual([16, 16, 16]);
    expect(g.block.every((b, k) => b % g.part[k]! === 0)).toBe(true);
  });
});

describe('goe segment: fragments', () => {
  it('--fragment writes the max-over-layers ink PNG and an RLE that decodes to the map above the validation threshold', async () => {
    const frag = await writePhantomFragment(join(root, 'frag'), resolvePhantomConfig({ shape: [16, 48, 48], seed: 4, preset: 'easy' }), { layers: 10 });
    const r = await segment({ checkpoint: runDir, fragment: frag.dir, backend: 'wasm', progressStream: null, overlap: [2, 4, 4], chunks: [10, 16, 16] });
    const f = r.fragment!;
    const metrics = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const val = metrics.filter((m) => m['split'] === 'val').at(-1)!;
    expect(f.threshold).toBe(val['threshold']);
    expect(f.thresholdSource).toMatch(/validation F0\.5 threshold at step 2/);
    const [, H, W] = (await openFragment(frag.dir)).shape as [number, number, number];
    const png = await readPng(f.png);
    expect([png.width, png.height, png.channels]).toEqual([W, H, 1]);
    // Float64 reference: every window alone, blended, max over layers, masked.
    const ref = await fragmentReference(frag.dir, [2, 4, 4]);
    let pngDiff = 0;
    for (let i = 0; i < H * W; i++) pngDiff = Math.max(pngDiff, Math.abs((png.data[i] as number) - Math.round(ref[i]! * 255)));
    expect(pngDiff).toBeLessThanOrEqual(1);
    const csv = readFileSync(f.csv, 'utf8').trim().split('\n');
    expect(csv[0]).toBe('Id,Predicted');
    expect(csv[1]!.split(',')[0]).toBe('fragment');
    expectRleMatches(csv[1]!.split(',')[1]!, ref, H, W, f.threshold, f.inkPixels);

    // A validation threshold inside the map's range (a run whose log kept the median): some pixels
    // are ink and some are not, and the RLE says which.
    const sorted = Float64Array.from(ref).sort();
    const median = Number(sorted[Math.floor(sorted.length / 2)]!.toFixed(4));
    const run2 = join(root, 'run-median');
    cpSync(runDir, run2, { recursive: true });
    const lines = readFileSync(join(run2, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const edited = lines.map((m) => (m['split'] === 'val' ? { ...m, threshold: median } : m));
    writeFileSync(join(run2, 'metrics.jsonl'), `${edited.map((m) => JSON.stringify(m)).join('\n')}\n`);
    const m = await segment({ checkpoint: run2, fragment: frag.dir, out: join(root, 'frag-median'), backend: 'wasm', progressStream: null, overlap: [2, 4, 4], chunks: [10, 16, 16] });
    expect(m.fragment!.threshold).toBe(median);
    const positives = expectRleMatches(readFileSync(m.fragment!.csv, 'utf8').trim().split('\n')[1]!.split(',')[1]!, ref, H, W, median, m.fragment!.inkPixels);
    expect(positives).toBeGreaterThan(H * W * 0.2);
    expect(positives).toBeLessThan(H * W * 0.8);

    // A checkpoint folder with no validation log: 0.5, and the output says so.
    const bare = join(root, 'bare-ckpt');
    cpSync(join(runDir, 'checkpoint'), bare, { recursive: true });
    const b = await segment({ checkpoint: bare, fragment: frag.dir, out: join(root, 'frag-out'), backend: 'wasm', progressStream: null, overlap: [2, 4, 4], chunks: [10, 16, 16] });
    expect(b.fragment).toMatchObject({ threshold: 0.5, thresholdSource: expect.stringMatching(/default 0\.5: the checkpoint records no validation threshold/) });
    expect(readFileSync(b.fragment!.png).equals(readFileSync(f.png))).toBe(true);
  }, 60_000);
});

describe('goe segment: errors name the flag', () => {
  it('bad --region, --shard 5/3, unknown or untrained --heads, a mask of the wrong shape, an existing --out', async () => {
    const base = { checkpoint: runDir, volume: image, backend: 'wasm', progressStream: null } as const;
    const out = join(root, 'err.zarr');
    await expect(segment({ ...base, out, region: '0:8,0:8' })).rejects.toThrow(/--region: .*3 dimensions/);
    await expect(segment({ ...base, out, region: '0:8,0:80,0:8' })).rejects.toThrow(/--region: '0:8,0:80,0:8' reaches y = 80, outside/);
    await expect(segment({ ...base, out, region: '4:4,0:8,0:8' })).rejects.toThrow(/--region: .*empty along z/);
    await expect(segment({ ...base, out, shard: '5/3' })).rejects.toThrow(/--shard: index 5 is not below the count 3/);
    await expect(segment({ ...base, out, shard: 'half' })).rejects.toThrow(/--shard: expected i\/n/);
    await expect(segment({ ...base, out, heads: ['ink', 'sheen'] })).rejects.toThrow(/--heads: unknown head 'sheen'/);
    await expect(segment({ ...base, out, heads: ['fiber'] })).rejects.toThrow(/--heads: 'fiber' is not trained in this checkpoint \(it has ink\)/);
    const badMask = join(root, 'bad-mask.zarr');
    await createVolume(badMask, { shape: [16, 40, 40], chunks: [8, 16, 16], dtype: 'uint8' });
    await expect(segment({ ...base, out, mask: badMask })).rejects.toThrow(/--mask: .*has shape \[16, 40, 40\] but .* has \[16, 40, 48\]/);
    await expect(segment({ ...base, out, shard: '1/2', overwrite: true })).rejects.toThrow(/--overwrite: cannot be used with --shard/);
    expect(existsSync(out)).toBe(false);
    // An existing output is refused without --resume / --overwrite, and left as it was.
    const done = join(root, 'whole-again.zarr');
    await segment({ ...base, out: done, region: '0:8,0:16,0:16', chunks: [8, 16, 16] });
    const before = statSync(join(done, '.zattrs')).mtimeMs;
    await expect(segment({ ...base, out: done, region: '0:8,0:16,0:16', chunks: [8, 16, 16] })).rejects.toThrow(/--out: .* exists \(pass --resume/);
    expect(statSync(join(done, '.zattrs')).mtimeMs).toBe(before);
    await expect(segment({ ...base, out: join(root, 'x.zarr'), fragment: root })).rejects.toThrow(/--fragment: give exactly one of --volume/);
    // Through the command: exit code 2 and the flag named on stderr.
    const errors: string[] = [];
    const spy = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void errors.push(a.join(' ')));
    try {
      const cli = ['segment', '--checkpoint', runDir, '--volume', image, '--out', out, '--backend', 'wasm', '--quiet'];
      expect(await main([...cli, '--shard', '5/3'])).toBe(2);
      expect(errors.at(-1)).toContain('--shard: index 5 is not below the count 3');
      expect(await main([...cli, '--heads', 'ink,fiber'])).toBe(2);
      expect(errors.at(-1)).toContain("--heads: 'fiber' is not trained in this checkpoint");
      expect(await main([...cli, '--level', 'one'])).toBe(2);
      expect(errors.at(-1)).toContain("--level: expected an integer, got 'one'");
      expect(await main([...cli, '--overlap', '2,4'])).toBe(2);
      expect(errors.at(-1)).toContain("--overlap: expected one integer >= 0 or D,H,W, got '2,4'");
      expect(await main([...cli, '--overlap', '8'])).toBe(2);
      expect(errors.at(-1)).toContain('--overlap: expected integers 0 <= overlap < window [8, 16, 16]');
    } finally {
      spy.mockRestore();
    }
    expect(existsSync(out)).toBe(false);
    // A missing volume fails with its path named and leaves no output behind.
    await expect(segment({ ...base, volume: join(root, 'nope.zarr'), out: join(root, 'never.zarr') })).rejects.toThrow(/nope\.zarr/);
    expect(readdirSync(root).filter((f) => f.startsWith('never'))).toEqual([]);
  }, 60_000);
});

/**
 * The ink predictor with a second output of three channels derived from it, (p, 1 - p, p / 2): a
 * multi-channel head as the engine sees one, linear in p so that its blend follows from the ink blend.
 */
function withTriple(p: WindowPredictor): WindowPredictor {
  return {
    window: p.window,
    outputs: [...p.outputs, { name: 'triple', channels: 3 }],
    async predict(x, n) {
      const r = await p.predict(x, n);
      const inkP = r['ink']!;
      const V = inkP.length / n;
      const t = new Float32Array(3 * inkP.length); // [B, 3, D, H, W]
      for (let b = 0; b < n; b++)
        for (let i = 0; i < V; i++) {
          const v = inkP[b * V + i]!;
          t[(b * 3) * V + i] = v;
          t[(b * 3 + 1) * V + i] = 1 - v;
          t[(b * 3 + 2) * V + i] = v / 2;
        }
      return { ...r, triple: t };
    },
    encode(name, blended, voxels) {
      if (name !== 'triple') return p.encode(name, blended, voxels);
      return { data: Uint8Array.from(blended.subarray(0, 3 * voxels), probabilityByte), channels: 3 };
    },
    dispose() {},
  };
}

/** The ink image (level 0) of a segmentation output. */
function ink(out: string) {
  return openVolume(join(out, 'ink'));
}

/** Decodes `rle` and checks it against `ref > threshold`; returns the ink pixel count. */
function expectRleMatches(rle: string, ref: Float64Array, H: number, W: number, threshold: number, inkPixels: number): number {
  const decoded = rleDecode(rle, H, W);
  let mismatch = 0;
  let positives = 0;
  for (let i = 0; i < H * W; i++) {
    const want = ref[i]! > threshold ? 1 : 0;
    positives += want;
    // float32 blending against float64: only pixels within 1e-5 of the threshold may differ.
    if (decoded[i] !== want && Math.abs(ref[i]! - threshold) > 1e-5) mismatch++;
  }
  expect(mismatch).toBe(0);
  expect(inkPixels).toBe(decoded.reduce((a, b) => a + b, 0));
  return positives;
}

function product(xs: readonly number[]): number {
  return xs.reduce((a, b) => a * b, 1);
}

/** The fragment map by float64 blending of every window run alone; 0 outside mask.png. */
async function fragmentReference(dir: string, overlap: number[]): Promise<Float64Array> {
  const frag = await openFragment(dir);
  const [L, H, W] = frag.shape as [number, number, number];
  const window = predictor.window;
  const per = [L, H, W].map((s, k) => tileRegion([s], [window[k]!], overlap[k]!).map((o) => o[0]!));
  const w = gaussianWeights([...window]);
  const acc = new Float64Array(L * H * W);
  const wsum = new Float64Array(L * H * W);
  for (const z of per[0]!)
    for (const y of per[1]!)
      for (const x of per[2]!) {
        const tile = await frag.read({ offset: [z, y, x], shape: [...window] });
        const p = (await predictor.predict(Float32Array.from(tile.data as Uint16Array, (v) => normaliseIntensity(v, 65535)), 1))['ink']!;
        let i = 0;
        for (let dz = 0; dz < window[0]; dz++)
          for (let dy = 0; dy < window[1]; dy++)
            for (let dx = 0; dx < window[2]; dx++, i++) {
              if (z + dz >= L || y + dy >= H || x + dx >= W) continue;
              const v = ((z + dz) * H + y + dy) * W + x + dx;
              acc[v] += w[i]! * p[i]!;
              wsum[v] += w[i]!;
            }
      }
  const mask = await readPng(frag.maskPath!);
  const map = new Float64Array(H * W);
  for (let z = 0; z < L; z++)
    for (let i = 0; i < H * W; i++) {
      if (!((mask.data[i * mask.channels] as number) > 0)) continue;
      map[i] = Math.max(map[i]!, acc[z * H * W + i]! / wsum[z * H * W + i]!);
    }
  return map;
}
