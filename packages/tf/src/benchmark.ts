/**
 * What the packages' benchmarks (`nx run <pkg>:bench`) share: the options every PyTorch-peer benchmark
 * takes, and timing a step until enough time or repetitions have passed (medians of wall and CPU time).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** Median wall and CPU time of the timed repetitions, in milliseconds. */
export interface StepTiming {
  wallMs: number;
  cpuMs: number;
  reps: number;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/**
 * Times `step` (already warmed up by the caller) until `minTime` seconds have passed and at least
 * `minReps` runs were done, or `maxReps` runs; CPU time is this process's (user + system).
 */
export async function timeSteps(step: () => Promise<void>, o: { minTime: number; maxReps: number; minReps?: number }): Promise<StepTiming> {
  const minReps = o.minReps ?? 5;
  const wall: number[] = [];
  const cpu: number[] = [];
  const start = performance.now();
  while (wall.length < o.maxReps && (wall.length < minReps || performance.now() - start < o.minTime * 1000)) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    await step();
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
    wall.push(performance.now() - t0);
  }
  return { wallMs: median(wall), cpuMs: median(cpu), reps: wall.length };
}

/**
 * Times several steps that are to be compared with each other, interleaved: `rounds` rounds, each
 * running every step once untimed (so that it comes back warm after the others ran) and then
 * `perRound` times timed. On a shared machine whose speed drifts over seconds, measuring one step
 * after the other puts the drift into their ratio; interleaving spreads it over all of them alike.
 * @returns per step, the medians over all its timed runs (`reps` = rounds × perRound)
 */
export async function timeInterleaved(steps: ReadonlyArray<() => Promise<void>>, o: { rounds: number; perRound: number }): Promise<StepTiming[]> {
  const wall = steps.map((): number[] => []);
  const cpu = steps.map((): number[] => []);
  for (let r = 0; r < o.rounds; r++) {
    for (const [i, step] of steps.entries()) {
      await step();
      for (let k = 0; k < o.perRound; k++) {
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        await step();
        const c = process.cpuUsage(c0);
        (cpu[i] as number[]).push((c.user + c.system) / 1000);
        (wall[i] as number[]).push(performance.now() - t0);
      }
    }
  }
  return steps.map((_, i) => ({ wallMs: median(wall[i] as number[]), cpuMs: median(cpu[i] as number[]), reps: (wall[i] as number[]).length }));
}

/** The options of every benchmark that runs a PyTorch peer. */
export interface PeerBenchOptions {
  backend?: string;
  quick: boolean;
  json?: string;
  torch: boolean;
  python: string;
  minTime: number;
  maxReps: number;
}

/**
 * Parses `--backend --quick --json FILE --no-torch --python PATH --min-time S --max-reps N` plus the
 * benchmark's own `extra` options (returned raw in `values`).
 * @throws Error naming the flag of a value that is not a positive number
 */
export function parsePeerBenchOptions<E extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  extra: E,
): { common: PeerBenchOptions; values: Record<string, string | boolean | undefined> } {
  const { values } = parseArgs({
    args: argv,
    options: {
      backend: { type: 'string' },
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
      'no-torch': { type: 'boolean', default: false },
      python: { type: 'string' },
      'min-time': { type: 'string' },
      'max-reps': { type: 'string' },
      ...extra,
    },
  });
  const v = values as Record<string, string | boolean | undefined>;
  const quick = v['quick'] === true;
  return {
    common: {
      ...(typeof v['backend'] === 'string' ? { backend: v['backend'] } : {}),
      quick,
      ...(typeof v['json'] === 'string' ? { json: v['json'] } : {}),
      torch: v['no-torch'] !== true,
      python: (v['python'] as string | undefined) ?? process.env['GOE_PYTHON'] ?? '/usr/bin/python3',
      minTime: positiveFlag(v['min-time'] as string | undefined, 'min-time', quick ? 0.5 : 3),
      maxReps: positiveFlag(v['max-reps'] as string | undefined, 'max-reps', quick ? 5 : 20),
    },
    values: v,
  };
}

/** A flag's value as a positive number (`fallback` when absent). */
export function positiveFlag(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!(n > 0)) throw new Error(`--${name} must be a positive number, got '${v}'`);
  return n;
}
