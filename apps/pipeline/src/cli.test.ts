import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from './cli.js';

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
    for (const cmd of ['train', 'segment', 'synth']) expect(c.out.join('\n')).toContain(cmd);
    const want: Record<string, string[]> = {
      train: ['--steps', '--seed', '--backend', '--out', '--config'],
      segment: ['--checkpoint', '--volume', '--out', '--backend'],
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
    expect(c.err.join('\n')).toContain('is not a JSON object');
  });

  it('goe synth writes a scroll; a malformed --shape is a usage error', async () => {
    const c = capture();
    const dir = mkdtempSync(join(tmpdir(), 'goe-synth-'));
    expect(await main(['synth', '--out', join(dir, 'a'), '--shape', '8,32,32', '--seed', '5'])).toBe(0);
    const written = JSON.parse(c.out.at(-1)!) as { image: string };
    expect(existsSync(written.image)).toBe(true);
    expect(await main(['synth', '--out', join(dir, 'b'), '--shape', '8,32'])).toBe(2);
    expect(c.err.join('\n')).toContain('--shape: expected D,H,W');
  });
});
