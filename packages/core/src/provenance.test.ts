import { backendsUnderTest, expectNoLeak, makeRng, tf, useBackend, type BackendName } from '@goe/tf';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { resolveGoeConfig } from './config.js';
import { GoeInputError } from './errors.js';
import { GoeLayer, disposeGoeOutput, readGoeStats } from './layer.js';
import {
  CYCLE_COLOURS,
  EDGE_COLOUR,
  edgeGeometry,
  graphLayout,
  heatmapGeometry,
  loadBarsGeometry,
  viridis,
  writeProvenancePictures,
  writeSvgPng,
} from './plots.js';
import {
  exportProvenance,
  importProvenance,
  readProvenance,
  summarizeProvenance,
  provenanceTransitions,
  writeProvenance,
  type ProvenanceArrays,
  type ProvenanceManifest,
} from './provenance.js';
import { normals } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');

/**
 * K = 3 cycles, one sample of N = 5 tokens, s = 2 slots, M = 4 experts:
 * - t0 runs all 3 cycles: experts {0,1} -> {1,2} -> {2,3};
 * - t1 halts after cycle 0: {3,0};
 * - t2 runs 2 cycles and lost a slot in cycle 0: {1} -> {0,1};
 * - t3 is padding (haltedAt 0);
 * - t4 runs 3 cycles and lost both slots in cycle 0: {} -> {2,0} -> {0,2}.
 */
function handMade(): ProvenanceArrays {
  const [K, N, S, M] = [3, 5, 2, 4];
  const ids = [
    [[0, 1], [3, 0], [1, -1], [-1, -1], [-1, -1]],
    [[1, 2], [-1, -1], [0, 1], [-1, -1], [2, 0]],
    [[2, 3], [-1, -1], [-1, -1], [-1, -1], [0, 2]],
  ];
  const gates = [
    [[0.75, 0.25], [0.9, 0.1], [1, 0], [0, 0], [0, 0]],
    [[0.5, 0.5], [0, 0], [0.8, 0.2], [0, 0], [0.7, 0.3]],
    [[0.6, 0.4], [0, 0], [0, 0], [0, 0], [0.55, 0.45]],
  ];
  const u = [0.25, 0.25, 0.25, 0.25];
  // Rows of tokens not routed in a cycle are uniform: they must not count.
  const probs = [
    [u, [0.5, 0, 0, 0.5], [0, 1, 0, 0], u, [0.7, 0.1, 0.1, 0.1]],
    [[0.5, 0.5, 0, 0], u, u, u, [1, 0, 0, 0]],
    [u, u, u, u, [0.5, 0.5, 0, 0]],
  ];
  return {
    cycles: K,
    batch: 1,
    tokens: N,
    slots: S,
    experts: M,
    ids: Int32Array.from(ids.flat(2)),
    gates: Float32Array.from(gates.flat(2)),
    probs: Float32Array.from(probs.flat(2)),
    haltedAt: Int32Array.from([3, 1, 2, 0, 3]),
    adjacency: Float32Array.from({ length: M * M }, (_, i) => (i % (M + 1) === 0 ? 0.7 : 0.1)),
  };
}

const close = (got: number[], want: number[], tol = 1e-12): void => {
  expect(got).toHaveLength(want.length);
  got.forEach((g, i) => expect(Math.abs(g - (want[i] as number)), `index ${i}: ${g} vs ${want[i]}`).toBeLessThan(tol));
};

describe('provenance summaries', () => {
  it('count load, entropy, drops, halting and savings as a hand count does', () => {
    const s = summarizeProvenance(handMade(), { router: 'topk', k: 2 });
    expect(s.activeTokens).toEqual([4, 3, 2]);
    expect(s.slotCounts).toEqual([
      [2, 2, 0, 1],
      [2, 2, 2, 0],
      [1, 0, 2, 1],
    ]);
    close(s.load.flat(), [0.4, 0.4, 0, 0.2, 1 / 3, 1 / 3, 1 / 3, 0, 0.25, 0, 0.5, 0.25]);
    // Entropies of the active rows only (nats).
    const h7111 = -(0.7 * Math.log(0.7) + 3 * 0.1 * Math.log(0.1));
    close(s.routerEntropy, [(Math.log(4) + Math.log(2) + 0 + h7111) / 4, (Math.log(2) + Math.log(4) + 0) / 3, (Math.log(4) + Math.log(2)) / 2], 1e-7);
    // topk with k = 2: t2 (one valid slot) and t4 (none) were dropped in cycle 0.
    expect(s.droppedTokens).toEqual([2, 0, 0]);
    close(s.droppedRate, [0.5, 0, 0]);
    close([s.droppedRateOverall], [2 / 9]);
    expect(s.haltHistogram).toEqual([1, 1, 1, 2]);
    expect(s.realTokens).toBe(4);
    close([s.meanCycles], [9 / 4]);
    expect(s.expertEvaluations).toBe(15);
    close([s.savedFraction], [1 - 15 / 24]);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s); // plain numbers only
  });

  it('applies each router’s drop rule', () => {
    const a = handMade();
    expect(summarizeProvenance(a, { router: 'goe', k: 2 }).droppedTokens).toEqual([2, 0, 0]);
    // Expert choice: only a token no expert took (t4 in cycle 0) is dropped.
    expect(summarizeProvenance(a, { router: 'expert-choice', k: 2 }).droppedTokens).toEqual([1, 0, 0]);
    // Top-p: −1 slots are experts past the threshold, never drops.
    expect(summarizeProvenance(a, { router: 'top-p' }).droppedTokens).toEqual([0, 0, 0]);
    // k = 1 asks for one expert: only t4 had fewer.
    expect(summarizeProvenance(a, { router: 'topk', k: 1 }).droppedTokens).toEqual([1, 0, 0]);
    // An unregistered router is taken as top-k with min(k, s) slots.
    expect(summarizeProvenance(a, { router: 'mine', k: 5 }).droppedTokens).toEqual([2, 0, 0]);
    expect(summarizeProvenance(a, { dropRule: { kind: 'never' } }).droppedRateOverall).toBe(0);
  });

  it('counts cycle-to-cycle transitions over slot pairs, by count and by gates', () => {
    const a = handMade();
    const s = summarizeProvenance(a);
    // Step 0 -> 1: t0 {0,1} -> {1,2}, t2 {1} -> {0,1}; t4 had no slot in cycle 0.
    // Step 1 -> 2: t0 {1,2} -> {2,3}, t4 {2,0} -> {0,2}; t2 halted.
    expect(s.transitions).toEqual([
      [1, 1, 2, 0],
      [1, 2, 2, 1],
      [1, 0, 2, 1],
      [0, 0, 0, 0],
    ]);
    // Gate products, e.g. T[1][2] = 0.25·0.5 (t0, step 0) + 0.5·0.6 (t0, step 1).
    close(
      s.gateTransitions.flat(),
      [0.165, 0.375, 0.51, 0, 0.8, 0.325, 0.425, 0.2, 0.385, 0, 0.615, 0.2, 0, 0, 0, 0],
      1e-7,
    );
    // Every (token, step) with slots on both sides carries total weight 1 (renormalised gates): 4 of them.
    expect(s.gateTransitions.flat().reduce((x, y) => x + y, 0)).toBeCloseTo(4, 6);
    // One step at a time.
    const step1 = Array.from(provenanceTransitions(a, 'count', 1, 2));
    expect(step1).toEqual([1, 0, 1, 0, 0, 0, 1, 1, 1, 0, 2, 1, 0, 0, 0, 0]);
  });

  it('rejects arrays that do not match their sizes, naming the array', () => {
    const a = handMade();
    expect(() => summarizeProvenance({ ...a, haltedAt: Int32Array.from([3, 1, 2, 0]) })).toThrow(GoeInputError);
    expect(() => summarizeProvenance({ ...a, haltedAt: Int32Array.from([3, 1, 2, 0, 4]) })).toThrow(/haltedAt/);
    expect(() => summarizeProvenance({ ...a, ids: Int32Array.from(a.ids, (e) => (e === 3 ? 4 : e)) })).toThrow(/provenance\.experts/);
  });

  it('exports compactly and reads back exactly, written atomically next to a checkpoint', async () => {
    const a = handMade();
    const s = summarizeProvenance(a, { router: 'topk', k: 2 });
    const dir = mkdtempSync(join(tmpdir(), 'goe-prov-'));
    for (const includeProbs of [false, true]) {
      const ex = exportProvenance(a, s, { includeProbs });
      const types = Object.fromEntries(ex.manifest.arrays.map((e) => [e.name, e.dtype]));
      expect(types).toEqual({ ids: 'int8', gates: 'float32', haltedAt: 'uint8', adjacency: 'float32', ...(includeProbs ? { probs: 'float32' } : {}) });
      // 30 int8 ids (32 with padding to 8 bytes), 30 gates, 5 haltedAt (8), 16 A values, 60 probs.
      expect(ex.bytes.byteLength).toBe(32 + 120 + 8 + 64 + (includeProbs ? 240 : 0));
      const paths = await writeProvenance(dir, ex, includeProbs ? 'with-probs' : 'provenance');
      const manifest = JSON.parse(readFileSync(paths.json, 'utf8')) as ProvenanceManifest;
      expect(manifest.summary).toEqual(s);
      const back = importProvenance(manifest, new Uint8Array(readFileSync(paths.bin)));
      expect(Array.from(back.ids)).toEqual(Array.from(a.ids));
      expect(Array.from(back.gates)).toEqual(Array.from(a.gates));
      expect(Array.from(back.haltedAt)).toEqual(Array.from(a.haltedAt));
      expect(Array.from(back.adjacency)).toEqual(Array.from(a.adjacency));
      expect(back.probs ? Array.from(back.probs) : undefined).toEqual(includeProbs ? Array.from(a.probs as Float32Array) : undefined);
    }
    expect(readdirSync(dir).sort()).toEqual(['provenance.bin', 'provenance.json', 'with-probs.bin', 'with-probs.json']);
    const ex = exportProvenance(a, s);
    expect(() => importProvenance(ex.manifest, ex.bytes.subarray(0, 40))).toThrow(/provenance\.gates/);
  });
});

describe.each(BACKENDS)('provenance of a GoE layer on %s', (backend) => {
  it('summarises to the layer’s own statistics, with padding and halting, without leaking', async () => {
    await useBackend(backend);
    const [B, N, D, DA] = [2, 12, 8, 4];
    const layer = new GoeLayer(
      resolveGoeConfig({ d: D, da: DA, experts: 5, k: 2, cycles: 3, expertDim: 8, expertHidden: 16, haltEps: 0.02 }),
      makeRng(5),
    );
    const tokens = tf.tensor3d(normals(B * N * D, 1), [B, N, D]);
    const aux = tf.tensor3d(normals(B * N * DA, 2), [B, N, DA]);
    const pad = Array.from({ length: B * N }, (_, i) => (i % N >= N - 3 ? 0 : 1)); // last 3 tokens of each sample
    const mask = tf.tensor2d(pad, [B, N]);
    const out = layer.apply({ tokens, aux }, { mask });
    const { a, s } = await expectNoLeak(async () => {
      const arrays = await readProvenance(out.provenance);
      return { a: arrays, s: summarizeProvenance(arrays, { router: 'goe', k: 2 }) };
    }, 'reading provenance');
    const stats = await readGoeStats(out.stats);
    expect([a.cycles, a.batch, a.tokens, a.slots, a.experts]).toEqual([3, B, N, 2, 5]);
    expect(s.haltHistogram[0]).toBe(6);
    expect(s.haltHistogram.reduce((x, y) => x + y, 0)).toBe(B * N);
    close(s.load.flat(), stats.load.flat(), 1e-6);
    close(s.routerEntropy, stats.routerEntropy, 1e-5);
    close(s.activeTokens.map((n) => n / s.realTokens), stats.activeFraction, 1e-6);
    close([s.meanCycles, s.expertEvaluations, s.savedFraction], [stats.meanHaltCycle, stats.expertEvaluations, stats.savedFraction], 1e-5);
    expect(s.droppedTokens).toEqual([0, 0, 0]); // goe has no capacity
    // Transitions: a token active in cycle k + 1 adds k² = 4 slot pairs per step.
    const steps = s.activeTokens.slice(1).reduce((x, y) => x + y, 0);
    expect(s.transitions.flat().reduce((x, y) => x + y, 0)).toBe(4 * steps);
    expect(s.gateTransitions.flat().reduce((x, y) => x + y, 0)).toBeCloseTo(steps, 4);
    disposeGoeOutput(out);
    tf.dispose([tokens, aux, mask]);
    layer.dispose();
  });
});

/** `[r, g, b]` of pixel (x, y) of a decoded RGB image. */
async function pixels(path: string): Promise<{ width: number; height: number; at: (x: number, y: number) => [number, number, number] }> {
  const { data, info } = await sharp(path).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return {
    width: info.width,
    height: info.height,
    at: (x, y) => {
      const o = (Math.round(y) * info.width + Math.round(x)) * 3;
      return [data[o] as number, data[o + 1] as number, data[o + 2] as number];
    },
  };
}

const hex = (h: string): [number, number, number] => [1, 3, 5].map((i) => Number.parseInt(h.slice(i, i + 2), 16)) as [number, number, number];
const near = (got: number[], want: number[], tol: number): boolean => got.every((g, i) => Math.abs(g - (want[i] as number)) <= tol);

describe('provenance pictures', () => {
  it('draw A, its heat map, the transitions and the load as PNGs of the expected size, atomically', async () => {
    // M = 6: one strong edge 0 -> 2, a strong self-loop at 4, everything else weak.
    const M = 6;
    const a = { ...handMade(), experts: M, adjacency: new Float32Array(M * M).fill(0.02), probs: undefined };
    a.adjacency[0 * M + 2] = 0.9;
    a.adjacency[4 * M + 4] = 0.8;
    // ids still name experts 0 … 3 only; M = 6 is fine for them.
    const dir = mkdtempSync(join(tmpdir(), 'goe-pics-'));
    const paths = await writeProvenancePictures(dir, a);
    expect(readdirSync(dir).sort()).toEqual(['adjacency.png', 'graph.png', 'load.png', 'transitions.png']);

    const graph = await pixels(paths.graph);
    expect([graph.width, graph.height]).toEqual([640, 640]);
    const layout = graphLayout(M);
    const strong = graph.at(edgeGeometry(layout, 0, 2).mid.x, edgeGeometry(layout, 0, 2).mid.y);
    expect(near(strong, hex(EDGE_COLOUR), 40), `strong edge pixel ${strong}`).toBe(true);
    const weak = graph.at(edgeGeometry(layout, 3, 5).mid.x, edgeGeometry(layout, 3, 5).mid.y);
    expect(Math.min(...weak), `weak edge pixel ${weak}`).toBeGreaterThan(225);
    // The self-loop's outermost point: the node, out from the centre by the disc and the loop's diameter.
    const node = layout.nodes[4]!;
    const len = Math.hypot(node.x - layout.center.x, node.y - layout.center.y);
    const reach = layout.nodeRadius * (1 + 2 * 0.6) - 1;
    const loop = graph.at(node.x + ((node.x - layout.center.x) / len) * reach, node.y + ((node.y - layout.center.y) / len) * reach);
    expect(Math.max(...loop) - Math.min(...loop), `self-loop pixel ${loop}`).toBeGreaterThan(60);

    const heat = await pixels(paths.adjacency);
    expect([heat.width, heat.height]).toEqual([640, 600]);
    const g = heatmapGeometry(M, M);
    const cell = (n: number, m: number) => heat.at(g.x0 + (m + 0.5) * g.cell, g.y0 + (n + 0.5) * g.cell + g.cell * 0.3);
    expect(near(cell(0, 2), viridis(1), 3), `max cell ${cell(0, 2)}`).toBe(true);
    expect(near(cell(1, 3), viridis(0.02 / 0.9), 3), `weak cell ${cell(1, 3)}`).toBe(true);

    const trans = await pixels(paths.transitions);
    expect([trans.width, trans.height]).toEqual([640, 600]);
    // The hand-made transitions' largest count is 2 (e.g. 1 -> 1); 3 -> 3 is 0.
    const t = (n: number, m: number) => trans.at(g.x0 + (m + 0.5) * g.cell, g.y0 + (n + 0.5) * g.cell + g.cell * 0.3);
    expect(near(t(1, 1), viridis(1), 3), `2-count cell ${t(1, 1)}`).toBe(true);
    expect(near(t(0, 0), viridis(0.5), 3), `1-count cell ${t(0, 0)}`).toBe(true);
    expect(near(t(3, 3), viridis(0), 3), `empty cell ${t(3, 3)}`).toBe(true);

    const load = await pixels(paths.load);
    expect([load.width, load.height]).toEqual([720, 400]);
    const s = summarizeProvenance(a);
    const bars = loadBarsGeometry(s.load);
    // Cycle 2, expert 2: half the slots; the bar's middle is drawn in cycle 2's colour.
    const b = bars.bar(2, 2, s.load[2]![2]!);
    expect(b.h).toBeGreaterThan(100);
    expect(near(load.at(b.x + b.w / 2, b.y + b.h / 2), hex(CYCLE_COLOURS[2]!), 2)).toBe(true);
    // Expert 1 had no slot in cycle 2: nothing drawn above the axis there.
    const empty = bars.bar(2, 1, 0.3);
    expect(Math.min(...load.at(empty.x + empty.w / 2, empty.y + empty.h / 2))).toBeGreaterThan(225);
  });

  it('leave the old file and no temporary file behind when rendering fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'goe-pics-fail-'));
    const path = join(dir, 'graph.png');
    writeFileSync(path, 'old');
    await expect(writeSvgPng(path, '<svg this is not svg')).rejects.toThrow();
    expect(readdirSync(dir)).toEqual(['graph.png']);
    expect(readFileSync(path, 'utf8')).toBe('old');
  });
});
