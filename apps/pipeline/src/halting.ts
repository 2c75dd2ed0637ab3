/**
 * Halting depth per token class: how many refinement cycles the GoE layer spent on each kind of token
 * (GoE draft §3.1.5: a token halts when its confidence stops changing, so easy tokens should stop
 * early). For scroll patches the classes come from the labels under each token's cell (air, papyrus,
 * ink), so one can see whether the router spends its cycles where the task is hard.
 */
import type { ProvenanceArrays } from '@goe/core';
import type { TokenGrid } from '@goe/volume-stem';
import { writeLineChartPng } from './plot.js';

/** A class label per token of a batch. */
export interface TokenClasses {
  /** Class names, indexed by the values of `classes`. */
  names: string[];
  /** `[B*N]` class index per token. */
  classes: Uint8Array;
}

/** Halting of one class of tokens. */
export interface ClassHalting {
  tokens: number;
  /** Mean cycles run per token (NaN without tokens). */
  meanCycles: number;
  /** `[K]` share of the class's tokens that ran exactly k + 1 cycles. */
  share: number[];
}

/**
 * Token classes of patches from voxel labels: a token is `ink` when at least `inkFraction` of its
 * cell's voxels are ink, else `papyrus` when at least half are papyrus, else `air`. Without papyrus
 * labels the classes are `ink` and `other`.
 * @param ink `[B, D, H, W]` 0/1 (optional) @param papyrus `[B, D, H, W]` 0/1 (optional)
 */
export function tokenClassesFromLabels(grid: TokenGrid, batch: number, labels: { ink?: ArrayLike<number>; papyrus?: ArrayLike<number> }, inkFraction = 0.1): TokenClasses {
  const [gd, gh, gw] = grid.dims;
  const [cz, cy, cx] = grid.cell;
  const [D, H, W] = grid.inputShape;
  const names = labels.papyrus ? ['air', 'papyrus', 'ink'] : ['other', 'ink'];
  const inkClass = names.length - 1;
  const classes = new Uint8Array(batch * gd * gh * gw);
  const cv = cz * cy * cx;
  let t = 0;
  for (let b = 0; b < batch; b++)
    for (let tz = 0; tz < gd; tz++)
      for (let ty = 0; ty < gh; ty++)
        for (let tx = 0; tx < gw; tx++, t++) {
          let ink = 0;
          let pap = 0;
          for (let z = tz * cz; z < (tz + 1) * cz; z++)
            for (let y = ty * cy; y < (ty + 1) * cy; y++)
              for (let x = tx * cx; x < (tx + 1) * cx; x++) {
                const i = ((b * D + z) * H + y) * W + x;
                if (labels.ink && (labels.ink[i] as number) > 0) ink++;
                if (labels.papyrus && (labels.papyrus[i] as number) > 0) pap++;
              }
          classes[t] = ink >= inkFraction * cv ? inkClass : labels.papyrus && pap >= cv / 2 ? 1 : 0;
        }
  return { names, classes };
}

/**
 * Cycles run per token class, from the provenance's `haltedAt` (`[B, N]`, cycles each token ran; 0 =
 * padding, not counted).
 */
export function haltingByClass(arrays: Pick<ProvenanceArrays, 'haltedAt' | 'cycles'>, c: TokenClasses): Record<string, ClassHalting> {
  const K = arrays.cycles;
  if (c.classes.length !== arrays.haltedAt.length) {
    throw new RangeError(`token classes: ${c.classes.length} labels for ${arrays.haltedAt.length} routed tokens`);
  }
  const counts = c.names.map(() => new Array<number>(K).fill(0));
  for (let i = 0; i < c.classes.length; i++) {
    const k = arrays.haltedAt[i] as number;
    if (k < 1) continue;
    (counts[c.classes[i] as number] as number[])[Math.min(k, K) - 1]! += 1;
  }
  const out: Record<string, ClassHalting> = {};
  c.names.forEach((name, j) => {
    const h = counts[j] as number[];
    const tokens = h.reduce((a, b) => a + b, 0);
    const cycles = h.reduce((a, n, k) => a + n * (k + 1), 0);
    out[name] = { tokens, meanCycles: tokens > 0 ? cycles / tokens : NaN, share: h.map((n) => (tokens > 0 ? n / tokens : 0)) };
  });
  return out;
}

/** `routing/halting.png`: per class, the share of its tokens that halted after each cycle. */
export async function writeHaltingPng(path: string, h: Record<string, ClassHalting>): Promise<void> {
  const series = Object.entries(h)
    .filter(([, v]) => v.tokens > 0)
    .map(([name, v]) => ({ name: `${name}: ${v.meanCycles.toFixed(2)} (n=${v.tokens})`, x: v.share.map((_, k) => k + 1), y: v.share }));
  await writeLineChartPng(path, series, { title: 'Halting depth per token class (legend: mean cycles)', xLabel: 'cycles run', yLabel: 'share of the class', logY: false });
}
