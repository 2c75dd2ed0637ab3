/**
 * `goe train --resume` after `kill -9`: the real command in a child process, killed without warning
 * once a checkpoint is on disk, then resumed; the continued run must log exactly what an uninterrupted
 * run logs, step for step.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { smallTrainConfig } from './small-config.js';
import { train } from './train.js';

const GOE = resolve(dirname(fileURLToPath(import.meta.url)), '../bin/goe.js');
const root = mkdtempSync(join(tmpdir(), 'goe-resume-'));

function records(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .map(({ seconds: _s, ...rest }) => rest);
}

function checkpointStep(dir: string): number {
  const m = join(dir, 'checkpoint', 'manifest.json');
  if (!existsSync(m)) return 0;
  try {
    return (JSON.parse(readFileSync(m, 'utf8')) as { step: number }).step;
  } catch {
    return 0; // being replaced this instant
  }
}

describe('goe train --resume', () => {
  it('after kill -9 mid-run, the resumed run logs exactly what an uninterrupted run logs', async () => {
    const { out: _out, ...config } = smallTrainConfig(join(root, 'unused'), { steps: 24, checkpointEvery: 4, validateEvery: 0 });
    const file = join(root, 'config.json');
    writeFileSync(file, JSON.stringify(config));
    const killed = join(root, 'killed');

    const child = spawn(process.execPath, [GOE, 'train', '--config', file, '--out', killed, '--quiet'], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((done) => child.on('exit', (_code, signal) => done(signal)));
    // Kill as soon as a checkpoint past the first is on disk: mid-run, at no particular point of a step.
    for (let t = 0; t < 600 && checkpointStep(killed) < 8; t++) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const at = checkpointStep(killed);
    expect(at).toBeGreaterThanOrEqual(8);
    expect(at).toBeLessThan(24);

    const r = spawnSync(process.execPath, [GOE, 'train', '--resume', '--out', killed, '--quiet'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toMatchObject({ run: killed, steps: 24 });
    expect(checkpointStep(killed)).toBe(24);

    await train({ ...config, out: join(root, 'whole') }, { progressStream: null });
    expect(records(join(killed, 'metrics.jsonl'))).toEqual(records(join(root, 'whole', 'metrics.jsonl')));

    // Other settings cannot ride along with --resume: the config is the checkpoint's.
    const bad = spawnSync(process.execPath, [GOE, 'train', '--resume', '--out', killed, '--steps', '50'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--resume.*drop --steps/);
  }, 120_000);
});
