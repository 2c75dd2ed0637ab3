import { describe, expect, it } from 'vitest';
import { median, parsePeerBenchOptions, positiveFlag, timeInterleaved, timeSteps } from './benchmark.js';

describe('benchmark helpers', () => {
  it('median of odd and even counts, unsorted input untouched', () => {
    const xs = [5, 1, 3];
    expect(median(xs)).toBe(3);
    expect(xs).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('parses the shared options with quick defaults and the benchmark\'s own; bad numbers name the flag', () => {
    const { common, values } = parsePeerBenchOptions(['--quick', '--no-torch', '--json', 'f.json', '--experts', '4,8'], { experts: { type: 'string' } });
    expect(common).toMatchObject({ quick: true, torch: false, json: 'f.json', minTime: 0.5, maxReps: 5 });
    expect(values['experts']).toBe('4,8');
    expect(parsePeerBenchOptions(['--min-time', '2'], {}).common).toMatchObject({ quick: false, torch: true, minTime: 2, maxReps: 20 });
    expect(() => parsePeerBenchOptions(['--max-reps', '0'], {})).toThrow(/--max-reps must be a positive number, got '0'/);
    expect(() => parsePeerBenchOptions(['--bogus'], {})).toThrow();
    expect(positiveFlag(undefined, 'x', 7)).toBe(7);
  });

  it('times at least minReps and at most maxReps runs of the step', async () => {
    let runs = 0;
    const t = await timeSteps(async () => void runs++, { minTime: 0, maxReps: 20, minReps: 3 });
    expect([t.reps, runs]).toEqual([3, 3]);
    runs = 0;
    const u = await timeSteps(async () => void runs++, { minTime: 60, maxReps: 4 });
    expect([u.reps, runs]).toEqual([4, 4]);
    expect(u.wallMs).toBeGreaterThanOrEqual(0);
    expect(u.cpuMs).toBeGreaterThanOrEqual(0);
  });

  it('interleaves: every round runs each step once untimed, then perRound times timed, in order', async () => {
    const log: string[] = [];
    const steps = ['a', 'b'].map((name) => async () => void log.push(name));
    const t = await timeInterleaved(steps, { rounds: 2, perRound: 2 });
    expect(log.join('')).toBe('aaabbbaaabbb');
    expect(t.map((x) => x.reps)).toEqual([4, 4]);
    expect(t.every((x) => x.cpuMs >= 0 && x.wallMs >= 0)).toBe(true);
  });
});
