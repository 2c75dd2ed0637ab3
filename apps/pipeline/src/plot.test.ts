import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lineChartSvg, logTicks, niceTicks, writeInkPanelsPng, writeLineChartPng } from './plot.js';

describe('niceTicks', () => {
  it('covers the range with 1-2-5 steps', () => {
    expect(niceTicks(0, 100)).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(0.13, 0.91)).toEqual([0.2, 0.4, 0.6, 0.8]);
    const t = niceTicks(-3, 7);
    expect(t[0]).toBeGreaterThanOrEqual(-3);
    expect(t.at(-1)).toBeLessThanOrEqual(7);
  });
});

describe('logTicks', () => {
  it('puts ticks at 1, 2 and 5 times powers of ten', () => {
    const t = logTicks(Math.log10(0.07), Math.log10(3)).map((v) => Number((10 ** v).toPrecision(6)));
    expect(t).toEqual([0.1, 0.2, 0.5, 1, 2]);
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

describe('ink panels PNG', () => {
  it('lays out image, label, probability and overlay for the middle slice of each patch', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'goe-panels-'));
    const path = join(dir, 'pred.png');
    const [B, D, H, W] = [2, 3, 4, 5];
    const n = B * D * H * W;
    const image = new Float32Array(n).fill(-1);
    const label = new Uint8Array(n);
    const prob = new Float32Array(n);
    // Patch 1, middle slice (z = 1), voxel (y=2, x=3): bright, labelled ink, predicted 1.
    const i = ((1 * D + 1) * H + 2) * W + 3;
    image[i] = 1;
    label[i] = 1;
    prob[i] = 1;
    await writeInkPanelsPng(path, { image, label, prob, shape: [B, D, H, W] }, 1);
    const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([4 * W + 3 * 2, B * H + 2]);
    const px = (col: number, y: number, x: number) => {
      const o = (((1 * (H + 2)) + y) * info.width + col * (W + 2) + x) * 3;
      return [data[o], data[o + 1], data[o + 2]];
    };
    expect(px(0, 2, 3)).toEqual([255, 255, 255]);
    expect(px(1, 2, 3)).toEqual([255, 255, 255]);
    expect(px(2, 2, 3)).toEqual([255, 255, 255]);
    expect(px(3, 2, 3)).toEqual([255, 0, 0]);
    expect(px(0, 0, 0)).toEqual([0, 0, 0]);
    expect(px(3, 0, 0)).toEqual([0, 0, 0]);
  });
});
