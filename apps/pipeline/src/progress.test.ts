import { describe, expect, it } from 'vitest';
import { Progress, formatDuration } from './progress.js';

describe('progress line', () => {
  it('formats durations', () => {
    expect(formatDuration(5)).toBe('5s');
    expect(formatDuration(65)).toBe('1m05s');
    expect(formatDuration(3700)).toBe('1h01m');
    expect(formatDuration(NaN)).toBe('?');
  });

  it('shows step, values, throughput and ETA; prints every N steps off a terminal', () => {
    const out: string[] = [];
    const stream = { isTTY: false, write: (s: string) => out.push(s) } as unknown as NodeJS.WriteStream;
    const p = new Progress({ total: 20, unit: 'patches', perStep: 4, every: 10, stream });
    for (let i = 1; i <= 20; i++) p.update(i, { loss: 1 / i });
    expect(out).toHaveLength(2);
    expect(out[0]).toMatch(/step 10\/20 \| loss 0\.1000 \| [\d.]+ M?patches\/s \| .* ETA /);
    expect(out[1]).toMatch(/^\[#{20}\] step 20\/20/);
  });

  it('names the step and scales large rates', () => {
    const out: string[] = [];
    const stream = { isTTY: false, write: (s: string) => out.push(s) } as unknown as NodeJS.WriteStream;
    const p = new Progress({ total: 2, unit: 'voxels', perStep: 1e9, every: 1, stream, label: 'tile' });
    p.update(1, {});
    expect(out[0]).toMatch(/^\[#{10}\.{10}\] tile 1\/2 \| [\d.]+ Mvoxels\/s \| /);
  });
});
