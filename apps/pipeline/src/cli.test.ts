import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { phantomRegion, resolvePhantomConfig } from '@goe/phantom';
import { openFragment, openVolume, readPng } from '@goe/scroll-io';
import { main } from './cli.js';
import { createHash } from 'node:crypto';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.join(' ')));
  return { out, err };
}

afterEach(() => vi.restoreAllMocks());

describe('goe CLI', () => {
  it('--help lists the commands; each command --help lists its options', async () => {
    const c = capture();
    expect(await main(['--help'])).toBe(0);
    for (const cmd of ['train', 'segment', 'eval', 'synth', 'report']) expect(c.out.join('\n')).toContain(cmd);
    const want: Record<string, string[]> = {
      train: ['--stem', '--text', '--steps', '--seed', '--backend', '--out', '--config', '--preset', '--heads', '--resume'],
      report: ['--run'],
      segment: ['--checkpoint', '--volume', '--out', '--backend'],
      eval: ['--checkpoint', '--data', '--region', '--labels', '--json', '--backend', '--batch'],
      synth: ['--out', '--shape', '--seed'],
    };
    for (const [cmd, flags] of Object.entries(want)) {
      c.out.length = 0;
      expect(await main([cmd, '--help'])).toBe(0);
      for (const f of flags) expect(c.out.join('\n')).toContain(f);
    }
  });

  it('usage errors exit with 2 and name the problem', async () => {
    const c = capture();
    expect(await main(['trian'])).toBe(2);
    expect(c.err.join('\n')).toContain("unknown command 'trian'");
    expect(await main(['train', '--stepz', '3'])).toBe(2);
    expect(c.err.join('\n')).toMatch(/stepz/);
    expect(await main(['train', '--steps', 'ten'])).toBe(2);
    expect(c.err.join('\n')).toContain("--steps: expected an integer, got 'ten'");
    expect(await main(['train', '--backend', 'tpu', '--steps', '1'])).toBe(2);
    expect(c.err.join('\n')).toContain("backend 'tpu' is not available");
    expect(await main(['segment', '--volume', 'x'])).toBe(2);
    expect(c.err.join('\n')).toContain('--checkpoint: is required');
    expect(await main(['train', '--router', 'moe', '--steps', '1'])).toBe(2);
    expect(c.err.join('\n')).toMatch(/--router: expected one of goe, dense, topk.*got 'moe'/);
  });

  it('goe train --router swaps the GoE router for a baseline behind the same interface', async () => {
    capture();
    const dir = mkdtempSync(join(tmpdir(), 'goe-cli-'));
    const out = join(dir, 'run');
    const args = ['train', '--router', 'graphmoe', '--steps', '2', '--batch', '1', '--phantom-shape', '48,40,40', '--out', out, '--quiet'];
    expect(await main(args)).toBe(0);
    const saved = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { model: { core: { router: string; regularisers: Record<string, number> } } };
    expect(saved.model.core.router).toBe('graphmoe');
    // GraphMoE's own loss: the Switch balance at 0.01 and nothing else.
    expect(saved.model.core.regularisers).toMatchObject({ switchBalance: 0.01, balance: 0, entropy: 0, zLoss: 0 });
  }, 120_000);

  it('goe train --stem sequence trains the byte model on the project documentation; a sequence checkpoint cannot segment', async () => {
    const c = capture();
    const stderr: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (stderr.push(String(chunk)), true));
    const dir = mkdtempSync(join(tmpdir(), 'goe-cli-'));
    const out = join(dir, 'run');
    const cfg = join(dir, 'c.json');
    writeFileSync(cfg, JSON.stringify({ logEvery: 1, validationPatches: 2, model: { sequenceLength: 32, width: 16 } }));
    expect(await main(['train', '--stem', 'sequence', '--steps', '2', '--batch', '2', '--backend', 'wasm', '--config', cfg, '--out', out])).toBe(0);
    const r = JSON.parse(c.out.at(-1)!) as { stem: string; steps: number; validation: Record<string, number>; predictions: string };
    expect(r).toMatchObject({ stem: 'sequence', steps: 2, predictions: join(out, 'predictions.txt') });
    expect(r.validation['bpb']).toBeGreaterThan(0);
    expect(r.validation['unigramBpb']).toBeGreaterThan(0);
    // The progress line and the validation line speak of bytes and bits per byte.
    const log = stderr.join('');
    expect(log).toMatch(/model: sequence stem, [\d,]+ parameters/);
    expect(log).toMatch(/text: \d+ files, [\d,]+ training and [\d,]+ validation bytes/);
    expect(log).toContain('bytes/s');
    expect(log).toMatch(/validation @ step 2: loss [\d.]+, [\d.]+ bits per byte \(unigram [\d.]+\)/);
    const saved = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { model: { stemKind: string } };
    expect(saved.model.stemKind).toBe('sequence');
    expect(await main(['segment', '--checkpoint', out, '--volume', join(dir, 'v.zarr'), '--out', join(dir, 'p.zarr'), '--quiet'])).toBe(2);
    expect(c.err.at(-1)).toContain('holds a sequence-stem model; segmentation needs a volume-stem model');
    expect(await main(['eval', '--checkpoint', out, '--data', join(dir, 'v.zarr'), '--json'])).toBe(2);
    expect(c.err.at(-1)).toContain('--checkpoint: ');
    expect(c.err.at(-1)).toContain('holds a sequence-stem model; evaluation needs a volume-stem model');
  }, 60_000);

  it('goe train: an unknown --stem, or --text without the sequence stem, is a usage error naming the flag', async () => {
    const c = capture();
    const out = join(mkdtempSync(join(tmpdir(), 'goe-cli-')), 'run');
    expect(await main(['train', '--stem', 'audio', '--steps', '1', '--out', out])).toBe(2);
    expect(c.err.at(-1)).toContain("--stem: expected one of volume, sequence, got 'audio'");
    expect(await main(['train', '--text', 'README.md', '--steps', '1', '--out', out])).toBe(2);
    expect(c.err.at(-1)).toContain('--text: applies to --stem sequence only');
    expect(existsSync(out)).toBe(false);
  });

  it('a config file with an unknown key stops before anything is written', async () => {
    const c = capture();
    const dir = mkdtempSync(join(tmpdir(), 'goe-cli-'));
    const cfg = join(dir, 'c.json');
    writeFileSync(cfg, JSON.stringify({ optim: { lr: 0.01, momentum: 0.9 } }));
    const out = join(dir, 'run');
    expect(await main(['train', '--config', cfg, '--out', out])).toBe(2);
    expect(c.err.join('\n')).toContain('optim.momentum: unknown key');
    expect(existsSync(out)).toBe(false);
    writeFileSync(cfg, '{"steps": 3,');
    expect(await main(['train', '--config', cfg, '--out', out])).toBe(2);
    expect(c.err.join('\n')).toContain('is not valid JSON');
  });

  it('goe train layers a preset, a YAML file and flags (--heads), and names a bad preset or head', async () => {
    const c = capture();
    const dir = mkdtempSync(join(tmpdir(), 'goe-cli-'));
    const cfg = join(dir, 'run.yaml');
    writeFileSync(cfg, ['# a smoke run with the geometry head', 'steps: 5', 'model:', '  lossWeights: { geometry: 2 }', ''].join('\n'));
    const out = join(dir, 'run');
    const args = ['train', '--preset', 'smoke', '--config', cfg, '--heads', 'ink,geometry', '--steps', '2', '--backend', 'wasm', '--quiet', '--out', out];
    expect(await main(args)).toBe(0);
    const saved = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { steps: number; model: { width: number; heads: string[]; lossWeights: Record<string, number> } };
    expect(saved.steps).toBe(2); // the flag over the file's 5
    expect(saved.model.width).toBe(16); // the preset's
    expect(saved.model.heads).toEqual(['ink', 'geometry']); // the flag's
    expect(saved.model.lossWeights).toEqual({ ink: 1, fiber: 1, geometry: 2 }); // the file's
    const summary = JSON.parse(c.out.at(-1)!) as { validation: Record<string, number> };
    expect(Object.keys(summary.validation)).toEqual(expect.arrayContaining(['f05', 'sheetDice']));
    expect(await main(['train', '--preset', 'giant', '--out', join(dir, 'x')])).toBe(2);
    expect(c.err.at(-1)).toMatch(/--preset: unknown preset 'giant'; expected one of default, multitask, hard, smoke, sequence/);
    expect(await main(['train', '--heads', 'ink,colour', '--out', join(dir, 'x')])).toBe(2);
    expect(c.err.at(-1)).toMatch(/--heads: unknown head 'colour'/);
    expect(existsSync(join(dir, 'x'))).toBe(false);
  });

  it('goe synth writes a scroll; a malformed --shape is a usage error', async () => {
    const c = capture();
    const dir = mkdtempSync(join(tmpdir(), 'goe-synth-'));
    expect(await main(['synth', '--out', join(dir, 'a'), '--shape', '8,32,32', '--seed', '5', '--quiet'])).toBe(0);
    const written = JSON.parse(c.out.at(-1)!) as { image: string };
    expect(existsSync(written.image)).toBe(true);
    expect(await main(['synth', '--out', join(dir, 'b'), '--shape', '8,32'])).toBe(2);
    expect(c.err.join('\n')).toContain('--shape: expected D,H,W');
  });

  it('goe synth --fragment also writes the Kaggle fragment layout of the middle wrap, which openFragment reads', async () => {
    const c = capture();
    const dir = mkdtempSync(join(tmpdir(), 'goe-synth-'));
    const out = join(dir, 'f');
    expect(await main(['synth', '--out', out, '--shape', '12,64,64', '--preset', 'easy', '--seed', '2', '--threads', '0', '--fragment', '--quiet'])).toBe(0);
    const written = JSON.parse(c.out.at(-1)!) as { fragment: string };
    expect(written.fragment).toBe(join(out, 'fragment'));
    const frag = await openFragment(written.fragment);
    expect(frag.shape[0]).toBe(65);
    expect(frag.shape[1]).toBe(12);
    const mask = (await frag.mask())!;
    let on = 0;
    for (let i = 0; i < mask.data.length; i++) if (mask.data[i]) on++;
    expect(on).toBeGreaterThan(0.5 * mask.data.length);
  });

  it('goe synth --dtype uint16 --preview writes a uint16 image pyramid, labels, fields and preview.png, with progress on stderr', async () => {
    const c = capture();
    const stderr: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (stderr.push(String(chunk)), true));
    const dir = mkdtempSync(join(tmpdir(), 'goe-synth-'));
    const out = join(dir, 'u16');
    const args = ['synth', '--out', out, '--shape', '32,72,40', '--seed', '3', '--preset', 'easy', '--dtype', 'uint16', '--threads', '2', '--preview'];
    expect(await main(args)).toBe(0);
    const written = JSON.parse(c.out.at(-1)!) as {
      root: string;
      image: string;
      levels: number;
      labels: Record<string, string>;
      fields: Record<string, string>;
      preview: string;
    };
    expect(written.root).toBe(join(out, 'scroll.zarr'));
    expect(written.preview).toBe(join(out, 'preview.png'));
    const image = await openVolume(written.root);
    expect(image.dtype).toBe('uint16');
    expect(image.shape).toEqual([32, 72, 40]);
    expect(written.levels).toBe(2);
    expect((await openVolume(written.root, { level: 1 })).shape).toEqual([16, 36, 20]);
    // The image equals the phantom of the flags' config, computed directly.
    const config = resolvePhantomConfig({ preset: 'easy', shape: [32, 72, 40], seed: 3, dtype: 'uint16' });
    const expected = phantomRegion(config, { offset: [0, 0, 0], shape: config.shape }).image;
    const got = (await image.read({ offset: [0, 0, 0], shape: config.shape })).data;
    expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(expected.buffer))).toBe(true);
    expect(Object.keys(written.labels).sort()).toEqual(['ink', 'papyrus', 'wrap']);
    expect((await openVolume(written.fields.normal)).shape).toEqual([3, 32, 72, 40]);
    const png = await readPng(written.preview);
    expect([png.width, png.height, png.channels]).toEqual([40 + 4 + 40 + 4 + 72, 2 * 72 + 4, 3]);
    // Progress: chunks done of the total, voxels per second and the time left.
    const log = stderr.join('');
    expect(log).toContain('chunk 2/2');
    expect(log).toContain('voxels/s');
    expect(log).toContain('ETA');
  });

  it('goe synth: bad flag values exit 2 naming the flag', async () => {
    const c = capture();
    const dir = mkdtempSync(join(tmpdir(), 'goe-synth-'));
    const cases: [string[], string][] = [
      [['--dtype', 'float32'], "--dtype: expected uint8 or uint16, got 'float32'"],
      [['--threads=-1'], "--threads: expected an integer >= 0, got '-1'"],
      [['--threads', 'all'], "--threads: expected an integer, got 'all'"],
      [['--preset', 'medium'], '--preset: expected one of'],
      [['--previews'], 'previews'],
    ];
    for (const [flags, message] of cases) {
      expect(await main(['synth', '--out', join(dir, 'x'), '--quiet', ...flags])).toBe(2);
      expect(c.err.at(-1)).toContain(message);
    }
    expect(existsSync(join(dir, 'x'))).toBe(false);
  });

  it('goe inspect prints metadata and region statistics as JSON; a bad --region is a usage error naming it', async () => {
    const c = capture();
    const fixture = join(import.meta.dirname, '..', '..', '..', 'packages', 'scroll-io', 'fixtures', 'zarr-python.zarr', 'u1_blosc_lz4');
    expect(await main(['inspect', '--path', fixture, '--region', '1:3,2:5,0:4'])).toBe(0);
    const viaFlag = c.out.at(-1);
    expect(await main(['inspect', fixture, '--region', '1:3,2:5,0:4'])).toBe(0);
    expect(c.out.at(-1)).toBe(viaFlag);
    expect(await main(['inspect', fixture, fixture])).toBe(2);
    const info = JSON.parse(viaFlag!) as { array: { shape: number[]; dtype: string }; region: { shape: number[]; min: number; max: number; mean: number; sha256: string } };
    expect(info.array).toMatchObject({ shape: [6, 7, 9], dtype: 'uint8' });
    // The fixture holds (z*131 + y*17 + x*3) % 251 (fixtures/make_fixtures.py).
    const vals: number[] = [];
    for (let z = 1; z < 3; z++) for (let y = 2; y < 5; y++) for (let x = 0; x < 4; x++) vals.push((z * 131 + y * 17 + x * 3) % 251);
    expect(info.region.shape).toEqual([2, 3, 4]);
    expect(info.region.min).toBe(Math.min(...vals));
    expect(info.region.max).toBe(Math.max(...vals));
    expect(info.region.mean).toBeCloseTo(vals.reduce((a, b) => a + b, 0) / vals.length, 10);
    expect(info.region.sha256).toBe(createHash('sha256').update(Uint8Array.from(vals)).digest('hex'));
    for (const bad of ['1:3,2:5', '1-3,2:5,0:4']) {
      expect(await main(['inspect', '--path', fixture, '--region', bad])).toBe(2);
      expect(c.err.at(-1)).toContain('--region');
    }
    expect(await main(['inspect', '--region', '0:1,0:1,0:1'])).toBe(2);
    expect(c.err.at(-1)).toContain('--path: is required');
    expect(await main(['inspect', '--path', join(fixture, 'missing')])).toBe(1);
    expect(c.err.at(-1)).toContain('not found');
  });
});
