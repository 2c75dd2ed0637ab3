/**
 * Path provenance as plain numbers (DESIGN.md §4 step 5; GoE draft §3: the core "performs sparse
 * traversal over a library of lightweight experts … recording path provenance"). A layer's
 * `GoeProvenance` holds tensors; this file reads them to the host once and answers, in float64:
 * where the tokens went (expert load per cycle), how sure the router was (entropy per cycle), who was
 * turned away (dropped tokens, by the rule of each router in `DROP_RULES`), when tokens stopped (the
 * halting histogram, draft §3.1.5), and which paths through the expert graph they took (cycle-to-cycle
 * transition counts, the empirical counterpart of the learned A of draft §3.1.3). `exportProvenance`
 * packs it all compactly for writing next to a checkpoint.
 *
 * Legend: K cycles, B samples, N tokens per sample, R = B·N token rows, s slots per token, M experts.
 * A token ran `haltedAt` cycles: it was active (routed) in cycles 0 … haltedAt − 1, and padding tokens
 * have haltedAt = 0. Every count below is over active tokens only.
 */
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GoeInputError } from './errors.js';
import type { GoeProvenance } from './layer.js';

/** A host copy of `GoeProvenance`: C-order typed arrays and their sizes. */
export interface ProvenanceArrays {
  /** K */
  cycles: number;
  /** B */
  batch: number;
  /** N */
  tokens: number;
  /** s */
  slots: number;
  /** M */
  experts: number;
  /** `[K, B, N, s]` chosen expert ids, −1 = no expert in the slot. */
  ids: Int32Array;
  /** `[K, B, N, s]` gates, 0 where the slot is empty. */
  gates: Float32Array;
  /** `[K, B, N, M]` router probabilities; absent when they were not kept (`exportProvenance`). */
  probs?: Float32Array;
  /** `[B, N]` cycles each token ran (0: padding). */
  haltedAt: Int32Array;
  /** `[M, M]` the expert graph A, `A[n, m]` = strength of the edge n -> m. */
  adjacency: Float32Array;
}

/** Reads a layer's provenance to the host (asynchronously: works on every backend, WebGPU included). */
export async function readProvenance(p: GoeProvenance): Promise<ProvenanceArrays> {
  const [cycles, batch, tokens, slots] = p.experts.shape;
  const experts = p.adjacency.shape[0];
  const arrays: ProvenanceArrays = {
    cycles,
    batch,
    tokens,
    slots,
    experts,
    ids: Int32Array.from(await p.experts.data()),
    gates: Float32Array.from(await p.gates.data()),
    probs: Float32Array.from(await p.probs.data()),
    haltedAt: Int32Array.from(await p.haltedAt.data()),
    adjacency: Float32Array.from(await p.adjacency.data()),
  };
  checkArrays(arrays);
  return arrays;
}

/** Throws `GoeInputError` naming the array whose length does not match the sizes. */
function checkArrays(a: ProvenanceArrays): void {
  const { cycles: K, batch: B, tokens: N, slots: s, experts: M } = a;
  const want: [string, ArrayLike<number> | undefined, number, string][] = [
    ['provenance.experts', a.ids, K * B * N * s, `[${K}, ${B}, ${N}, ${s}]`],
    ['provenance.gates', a.gates, K * B * N * s, `[${K}, ${B}, ${N}, ${s}]`],
    ['provenance.probs', a.probs, K * B * N * M, `[${K}, ${B}, ${N}, ${M}]`],
    ['provenance.haltedAt', a.haltedAt, B * N, `[${B}, ${N}]`],
    ['provenance.adjacency', a.adjacency, M * M, `[${M}, ${M}]`],
  ];
  for (const [name, arr, n, shape] of want) {
    if (arr !== undefined && arr.length !== n) throw new GoeInputError(name, `${n} values ${shape}`, `${arr.length} values`);
  }
  for (let i = 0; i < a.ids.length; i++) {
    const e = a.ids[i] as number;
    if (e < -1 || e >= M) throw new GoeInputError('provenance.experts', `ids in -1 … ${M - 1}`, `${e} at ${i}`);
  }
  for (let i = 0; i < a.haltedAt.length; i++) {
    const h = a.haltedAt[i] as number;
    if (h < 0 || h > K) throw new GoeInputError('provenance.haltedAt', `cycles in 0 … ${K}`, `${h} at ${i}`);
  }
}

/**
 * When an active token counts as dropped, from its number of valid (non −1) slots v:
 * - `fewer-than`: v < `slots` (the router gives every token that many experts unless a capacity
 *   turns it away);
 * - `none`: v = 0 (the router gives tokens a varying number of experts; only a token no expert took
 *   was turned away);
 * - `never`: the router's −1 slots are experts it did not select, never tokens turned away.
 */
export type DropRule = { kind: 'fewer-than'; slots: number } | { kind: 'none' } | { kind: 'never' };

const topKRule = (k: number): DropRule => ({ kind: 'fewer-than', slots: k });

/**
 * The dropped-token rule of every built-in router, in one place (the routers' own account of −1
 * slots is the header of routers.ts; the counts agree with their `RouteOutput.dropped`):
 *
 * | router | slots s | an active token is dropped when |
 * | --- | --- | --- |
 * | `topk` (Switch / GShard capacity) | k | it has fewer than k valid slots |
 * | `goe`, `symphony`, `graphmoe`, `chain` | k | it has fewer than k valid slots (never, without a capacity) |
 * | `dense` | M | it has fewer than M valid slots (never) |
 * | `expert-choice` | M | no expert chose it (0 valid slots) |
 * | `top-p` | M | never: slots past the threshold are not selections |
 *
 * A router not in the table is taken as top-k (fewer than min(k, s) valid slots).
 */
export const DROP_RULES: Readonly<Record<string, (k: number, experts: number) => DropRule>> = Object.freeze({
  topk: topKRule,
  goe: topKRule,
  symphony: topKRule,
  graphmoe: topKRule,
  chain: topKRule,
  dense: (_k: number, experts: number): DropRule => ({ kind: 'fewer-than', slots: experts }),
  'expert-choice': (): DropRule => ({ kind: 'none' }),
  'top-p': (): DropRule => ({ kind: 'never' }),
});

/** The rule for `router` (see `DROP_RULES`), given k and the provenance's s and M. */
export function dropRuleFor(router: string, k: number, slots: number, experts: number): DropRule {
  const rule = DROP_RULES[router];
  return rule ? rule(k, experts) : topKRule(Math.min(k, slots));
}

function isDropped(rule: DropRule, valid: number): boolean {
  if (rule.kind === 'never') return false;
  if (rule.kind === 'none') return valid === 0;
  return valid < rule.slots;
}

/** How transitions are weighted (see `provenanceTransitions`). */
export type TransitionWeight = 'count' | 'gates';

/**
 * Cycle-to-cycle transitions `T[n, m]`: over every token active in cycles k and k + 1 (k from
 * `fromCycle` to `toCycle − 1`), and every pair of a valid slot l at k and a valid slot j at k + 1,
 * where slot l held expert n and slot j expert m:
 * - `count`: T[n, m] += 1, so a top-k token adds k² per step (every path through its k × k slot pairs);
 * - `gates`: T[n, m] += g^k_l · g^{k+1}_j, so a token with renormalised gates adds 1 per step, spread
 *   over the pairs by how much each expert contributed (the flow of draft §3.1.5's refinement).
 * A token that halts at k + 1 has no slots there and adds nothing to that step.
 * @returns `[M·M]` row-major, n the expert at k (row), m the one at k + 1 (column)
 */
export function provenanceTransitions(
  a: ProvenanceArrays,
  weight: TransitionWeight = 'count',
  fromCycle = 0,
  toCycle = a.cycles - 1,
): Float64Array {
  const { slots: s, experts: M } = a;
  const R = a.batch * a.tokens;
  const t = new Float64Array(M * M);
  for (let k = Math.max(0, fromCycle); k < Math.min(toCycle, a.cycles - 1); k++) {
    for (let i = 0; i < R; i++) {
      if ((a.haltedAt[i] as number) <= k + 1) continue; // not active at k + 1
      const at = (k * R + i) * s;
      const next = ((k + 1) * R + i) * s;
      for (let l = 0; l < s; l++) {
        const n = a.ids[at + l] as number;
        if (n < 0) continue;
        for (let j = 0; j < s; j++) {
          const m = a.ids[next + j] as number;
          if (m < 0) continue;
          t[n * M + m] += weight === 'count' ? 1 : (a.gates[at + l] as number) * (a.gates[next + j] as number);
        }
      }
    }
  }
  return t;
}

/** Plain-number summary of one call's provenance (JSON-safe). */
export interface ProvenanceSummary {
  /** K, B·N, M, s. */
  cycles: number;
  tokens: number;
  experts: number;
  slots: number;
  /** Tokens that are not padding (haltedAt >= 1). */
  realTokens: number;
  /** The router the drop rule is for, and the rule. */
  router: string;
  dropRule: DropRule;
  /** `[K]` tokens active (routed) in each cycle. */
  activeTokens: number[];
  /** `[K][M]` dispatched slots per expert (valid ids). */
  slotCounts: number[][];
  /** `[K][M]` share of each cycle's dispatched slots per expert (rows sum to 1; zeros when none). */
  load: number[][];
  /** `[K]` mean router entropy `−Σ_m p_m ln p_m` (nats) over active tokens; 0 for an empty cycle. */
  routerEntropy: number[];
  /** `[K]` active tokens dropped (by `dropRule`). */
  droppedTokens: number[];
  /** `[K]` droppedTokens / activeTokens (0 for an empty cycle). */
  droppedRate: number[];
  /** Σ dropped / Σ active over all cycles. */
  droppedRateOverall: number;
  /** `[K + 1]` tokens by the number of cycles they ran: index h = haltedAt (index 0: padding). */
  haltHistogram: number[];
  /** Mean cycles run by a real token. */
  meanCycles: number;
  /** Dispatched token-slot pairs over all cycles. */
  expertEvaluations: number;
  /** 1 − expertEvaluations / (realTokens·K·s): the share of expert work not done. */
  savedFraction: number;
  /** `[M][M]` transitions weighted `count`, all steps (see `provenanceTransitions`). */
  transitions: number[][];
  /** `[M][M]` transitions weighted `gates`, all steps. */
  gateTransitions: number[][];
}

export interface SummarizeOptions {
  /** Router name, for its drop rule (`DROP_RULES`). Default `goe`. */
  router?: string;
  /** k of the config (the top-k routers' slots per token). Default: s. */
  k?: number;
  /** Overrides the router's rule. */
  dropRule?: DropRule;
}

function rows2d(flat: ArrayLike<number>, rows: number, cols: number): number[][] {
  return Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, c) => flat[r * cols + c] as number));
}

/** Every count of `ProvenanceSummary`, in float64, from a host copy (`readProvenance`). */
export function summarizeProvenance(a: ProvenanceArrays, options: SummarizeOptions = {}): ProvenanceSummary {
  checkArrays(a);
  const { cycles: K, slots: s, experts: M } = a;
  const R = a.batch * a.tokens;
  const router = options.router ?? 'goe';
  const rule = options.dropRule ?? dropRuleFor(router, options.k ?? s, s, M);
  const activeTokens = new Array<number>(K).fill(0);
  const droppedTokens = new Array<number>(K).fill(0);
  const entropySum = new Array<number>(K).fill(0);
  const slotCounts = Array.from({ length: K }, () => new Array<number>(M).fill(0));
  for (let k = 0; k < K; k++) {
    const counts = slotCounts[k] as number[];
    for (let i = 0; i < R; i++) {
      let valid = 0;
      for (let j = 0; j < s; j++) {
        const e = a.ids[(k * R + i) * s + j] as number;
        if (e < 0) continue;
        counts[e] = (counts[e] as number) + 1;
        valid++;
      }
      if ((a.haltedAt[i] as number) <= k) continue; // halted or padding: not routed this cycle
      activeTokens[k] = (activeTokens[k] as number) + 1;
      if (isDropped(rule, valid)) droppedTokens[k] = (droppedTokens[k] as number) + 1;
      if (a.probs) {
        let h = 0;
        for (let m = 0; m < M; m++) {
          const p = a.probs[(k * R + i) * M + m] as number;
          if (p > 0) h -= p * Math.log(p); // 0 ln 0 = 0
        }
        entropySum[k] = (entropySum[k] as number) + h;
      }
    }
  }
  const haltHistogram = new Array<number>(K + 1).fill(0);
  for (let i = 0; i < R; i++) haltHistogram[a.haltedAt[i] as number] = (haltHistogram[a.haltedAt[i] as number] as number) + 1;
  const realTokens = R - (haltHistogram[0] as number);
  const ranCycles = haltHistogram.reduce((acc, n, h) => acc + n * h, 0);
  const evaluations = slotCounts.reduce((acc, row) => acc + row.reduce((x, y) => x + y, 0), 0);
  const totalActive = activeTokens.reduce((x, y) => x + y, 0);
  const totalDropped = droppedTokens.reduce((x, y) => x + y, 0);
  const possible = realTokens * K * s;
  return {
    cycles: K,
    tokens: R,
    experts: M,
    slots: s,
    realTokens,
    router,
    dropRule: rule,
    activeTokens,
    slotCounts,
    load: slotCounts.map((row) => {
      const sum = row.reduce((x, y) => x + y, 0);
      return row.map((c) => (sum > 0 ? c / sum : 0));
    }),
    routerEntropy: entropySum.map((h, k) => ((activeTokens[k] as number) > 0 ? h / (activeTokens[k] as number) : 0)),
    droppedTokens,
    droppedRate: droppedTokens.map((d, k) => ((activeTokens[k] as number) > 0 ? d / (activeTokens[k] as number) : 0)),
    droppedRateOverall: totalActive > 0 ? totalDropped / totalActive : 0,
    haltHistogram,
    meanCycles: realTokens > 0 ? ranCycles / realTokens : 0,
    expertEvaluations: evaluations,
    savedFraction: possible > 0 ? 1 - evaluations / possible : 0,
    transitions: rows2d(provenanceTransitions(a, 'count'), M, M),
    gateTransitions: rows2d(provenanceTransitions(a, 'gates'), M, M),
  };
}

/** Format tag of `exportProvenance`'s JSON. */
export const PROVENANCE_FORMAT = 'goe-provenance/1';

type CompactArray = Int8Array | Int16Array | Int32Array | Uint8Array | Uint16Array | Float32Array;

/** One array of the binary file: its name, element type, shape and byte range. */
export interface ProvenanceArrayEntry {
  name: 'ids' | 'gates' | 'probs' | 'haltedAt' | 'adjacency';
  dtype: 'int8' | 'int16' | 'int32' | 'uint8' | 'uint16' | 'float32';
  shape: number[];
  byteOffset: number;
  byteLength: number;
}

/** The JSON half of an export: format, sizes, where each array lies in the binary half, the summary. */
export interface ProvenanceManifest {
  format: string;
  cycles: number;
  batch: number;
  tokens: number;
  slots: number;
  experts: number;
  arrays: ProvenanceArrayEntry[];
  summary: ProvenanceSummary;
}

export interface ProvenanceExport {
  manifest: ProvenanceManifest;
  /** Every array back to back, each starting at a multiple of 8 bytes (little-endian, as JS writes). */
  bytes: Uint8Array;
}

const CTOR = { int8: Int8Array, int16: Int16Array, int32: Int32Array, uint8: Uint8Array, uint16: Uint16Array, float32: Float32Array };

/**
 * Packs provenance for writing next to a checkpoint: ids in the smallest signed integer type that holds
 * −1 … M − 1 (int8 up to M = 128), haltedAt in uint8 (uint16 past K = 255), gates and A as float32,
 * probs (K·B·N·M floats, the largest part by far) only when `includeProbs`; plus the summary.
 */
export function exportProvenance(
  a: ProvenanceArrays,
  summary: ProvenanceSummary,
  options: { includeProbs?: boolean } = {},
): ProvenanceExport {
  checkArrays(a);
  const { cycles: K, batch: B, tokens: N, slots: s, experts: M } = a;
  const idType = M <= 128 ? 'int8' : M <= 32768 ? 'int16' : 'int32';
  const haltType = K <= 255 ? 'uint8' : 'uint16';
  const parts: [ProvenanceArrayEntry['name'], ProvenanceArrayEntry['dtype'], number[], CompactArray][] = [
    ['ids', idType, [K, B, N, s], CTOR[idType].from(a.ids)],
    ['gates', 'float32', [K, B, N, s], a.gates],
    ['haltedAt', haltType, [B, N], CTOR[haltType].from(a.haltedAt)],
    ['adjacency', 'float32', [M, M], a.adjacency],
  ];
  if (options.includeProbs && a.probs) parts.push(['probs', 'float32', [K, B, N, M], a.probs]);
  const arrays: ProvenanceArrayEntry[] = [];
  let offset = 0;
  for (const [name, dtype, shape, data] of parts) {
    arrays.push({ name, dtype, shape, byteOffset: offset, byteLength: data.byteLength });
    offset += Math.ceil(data.byteLength / 8) * 8;
  }
  const bytes = new Uint8Array(offset);
  parts.forEach(([, , , data], i) => bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), (arrays[i] as ProvenanceArrayEntry).byteOffset));
  return { manifest: { format: PROVENANCE_FORMAT, cycles: K, batch: B, tokens: N, slots: s, experts: M, arrays, summary }, bytes };
}

/** The inverse of `exportProvenance` (probs present only if they were exported). */
export function importProvenance(manifest: ProvenanceManifest, bytes: Uint8Array): ProvenanceArrays {
  if (manifest.format !== PROVENANCE_FORMAT) throw new GoeInputError('provenance.format', PROVENANCE_FORMAT, String(manifest.format));
  const get = (name: ProvenanceArrayEntry['name']): ArrayLike<number> | undefined => {
    const e = manifest.arrays.find((x) => x.name === name);
    if (!e) return undefined;
    if (e.byteOffset + e.byteLength > bytes.byteLength) {
      throw new GoeInputError(`provenance.${name}`, `bytes ${e.byteOffset} … ${e.byteOffset + e.byteLength}`, `${bytes.byteLength} bytes`);
    }
    return new CTOR[e.dtype](bytes.slice(e.byteOffset, e.byteOffset + e.byteLength).buffer); // a copy: aligned
  };
  const need = (name: ProvenanceArrayEntry['name']): ArrayLike<number> => {
    const v = get(name);
    if (!v) throw new GoeInputError(`provenance.${name}`, 'an array in the manifest', 'nothing');
    return v;
  };
  const probs = get('probs');
  const arrays: ProvenanceArrays = {
    cycles: manifest.cycles,
    batch: manifest.batch,
    tokens: manifest.tokens,
    slots: manifest.slots,
    experts: manifest.experts,
    ids: Int32Array.from(need('ids')),
    gates: Float32Array.from(need('gates')),
    ...(probs ? { probs: Float32Array.from(probs) } : {}),
    haltedAt: Int32Array.from(need('haltedAt')),
    adjacency: Float32Array.from(need('adjacency')),
  };
  checkArrays(arrays);
  return arrays;
}

/**
 * Writes `<dir>/<name>.json` (manifest with the summary) and `<dir>/<name>.bin` (the arrays), each
 * atomically: a temporary file in the same directory, then a rename, so a reader never sees half a file.
 * @returns the two paths
 */
export async function writeProvenance(dir: string, exported: ProvenanceExport, name = 'provenance'): Promise<{ json: string; bin: string }> {
  await mkdir(dir, { recursive: true });
  const json = join(dir, `${name}.json`);
  const bin = join(dir, `${name}.bin`);
  await writeAtomic(bin, exported.bytes);
  await writeAtomic(json, `${JSON.stringify(exported.manifest)}\n`);
  return { json, bin };
}

/** Writes `path` through a temporary file beside it and a rename; the temporary file never stays. */
export async function writeAtomic(path: string, data: Uint8Array | string | ((tmp: string) => Promise<unknown>)): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  try {
    if (typeof data === 'function') await data(tmp);
    else await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

