import { appendFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from './cli.js';
import { ConfigError } from './errors.js';
import { writeReport } from './report.js';
import { smallTrainConfig } from './small-config.js';
import { train } from './train.js';

const root = mkdtempSync(join(tmpdir(), 'goe-report-'));
const run = join(root, 'run');

beforeAll(async () => {
  await train(smallTrainConfig(run, { steps: 6, validateEvery: 3, model: { heads: ['ink', 'fiber', 'geometry'] } }), { progressStream: null });
}, 60_000);

/** Pixels whose channels differ by more than 40: the coloured series, not the grey frame and text. */
async function colouredPixels(path: string): Promise<{ width: number; height: number; coloured: number }> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  let coloured = 0;
  for (let i = 0; i < data.length; i += info.channels) {
    const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
    if (Math.max(r, g, b) - Math.min(r, g, b) > 40) coloured++;
  }
  return { width: info.width, height: info.height, coloured };
}

describe('goe report', () => {
  it('draws every chart from metrics.jsonl, with curves in them, and an index showing them and the run pictures', async () => {
    const r = await writeReport(run);
    expect(r.charts.map((p) => p.slice(r.dir.length + 1))).toEqual([
      'loss-parts.png',
      'learning-rate.png',
      'grad-norm.png',
      'router-health.png',
      'validation-metrics.png',
      'validation-angles.png',
      'validation-surface.png',
      'validation-halting.png',
      'validation-loss.png',
    ]);
    for (const c of r.charts) {
      const px = await colouredPixels(c);
      expect([px.width, px.height]).toEqual([800, 450]);
      expect(px.coloured, c).toBeGreaterThan(200);
    }
    expect(r.pictures.map((p) => p.slice(run.length + 1))).toEqual(
      expect.arrayContaining(['loss.png', 'predictions.png', 'routing/graph.png', 'routing/load.png', 'routing/halting.png']),
    );
    const index = readFileSync(r.index, 'utf8');
    for (const c of r.charts) expect(index).toContain(`](${c.slice(r.dir.length + 1)})`);
    for (const p of r.pictures) expect(index).toContain(`](../${p.slice(run.length + 1)})`);
    expect(index).toMatch(/6 logged training steps up to step 6; 2 validations/);
  });

  it('the CLI writes it; a folder without metrics and a corrupt line are errors naming the file', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    const err = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    expect(await main(['report', run])).toBe(0);
    expect(JSON.parse(log.mock.calls.at(-1)![0] as string)).toMatchObject({ report: join(run, 'report', 'index.md') });
    expect(await main(['report'])).toBe(2);
    expect(await main(['report', join(root, 'nothing')])).toBe(2);
    expect(err.mock.calls.flat().join('\n')).toMatch(/nothing.*metrics\.jsonl not found/);
    log.mockRestore();
    err.mockRestore();
    appendFileSync(join(run, 'metrics.jsonl'), '{"step": 7, "spl\n');
    await expect(writeReport(run)).rejects.toThrow(ConfigError);
    await expect(writeReport(run)).rejects.toThrow(/metrics\.jsonl line \d+ is not JSON/);
    expect(existsSync(join(run, 'report', 'index.md'))).toBe(true); // the earlier report stays whole
  });
});
