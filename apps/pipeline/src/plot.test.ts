import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lineChartSvg, niceTicks, writeLineChartPng } from './plot.js';

describe('niceTicks', () => {
  it('covers the range with 1-2-5 steps', () => {
    expect(niceTicks(0, 100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0.13, 0.91)).toEqual([0.2, 0.4, 0.6, 0.8]);
    const t = niceTicks(-3, 7);
    expect(t[0]).toBeGreaterThanOrEqual(-3);
    expect(t.at(-1)).toBeLessThanOrEqual(7);
  });
});

describe('line chart PNG', () => {
  it('draws each series in its colour and writes the file atomically', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'goe-plot-'));
    const path = join(dir, 'loss.png');
    const x = Array.from({ length: 50 }, (_, i) => i * 10);
    await writeLineChartPng(
      path,
      [
        { name: 'train', x, y: x.map((s) => Math.exp(-s / 200) + 0.05), color: '#ff0000' },
        { name: 'val', x, y: x.map((s) => Math.exp(-s / 150) + 0.1), color: '#0000ff' },
      ],
      { title: 'loss', xLabel: 'step', yLabel: 'loss', width: 400, height: 300, logY: true },
    );
    expect(readdirSync(dir)).toEqual(['loss.png']);
    const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([400, 300]);
    let red = 0;
    let blue = 0;
    for (let i = 0; i < data.length; i += 3) {
      if (data[i]! > 200 && data[i + 1]! < 80 && data[i + 2]! < 80) red++;
      if (data[i]! < 80 && data[i + 1]! < 80 && data[i + 2]! > 200) blue++;
    }
    expect(red).toBeGreaterThan(100);
    expect(blue).toBeGreaterThan(100);
  });

  it('drops non-finite and (on log axes) non-positive points', () => {
    const svg = lineChartSvg([{ name: 's', x: [0, 1, 2, 3], y: [1, NaN, -1, 2] }], { title: 't', xLabel: 'x', yLabel: 'y', logY: true });
    const pts = /<polyline points="([^"]+)"/.exec(svg)?.[1]?.split(' ') ?? [];
    expect(pts).toHaveLength(2);
  });
});
