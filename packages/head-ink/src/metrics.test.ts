import { describe, expect, it } from 'vitest';
import { makeRng } from '@goe/tf';
import { INK_THRESHOLDS, InkInputError, inkMetrics, rankAuc } from './index.js';

/** Brute force: confusion counts at one threshold over labelled voxels. */
function bruteAt(prob: ArrayLike<number>, label: ArrayLike<number>, mask: ArrayLike<number> | undefined, t: number) {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  for (let i = 0; i < prob.length; i++) {
    if (mask && !mask[i]) continue;
    const pred = (prob[i] as number) >= t;
    const pos = (label[i] as number) >= 0.5;
    if (pred && pos) tp++;
    else if (pred) fp++;
    else if (pos) fn++;
  }
  const precision = tp + fp ? tp / (tp + fp) : 0;
  const recall = tp + fn ? tp / (tp + fn) : 0;
  const f05 = precision + recall ? (1.25 * precision * recall) / (0.25 * precision + recall) : 0;
  return { precision, recall, f05 };
}

/** Brute force AUC: every (positive, negative) pair. */
function bruteAuc(prob: ArrayLike<number>, label: ArrayLike<number>, mask?: ArrayLike<number>): number {
  let u = 0;
  let pairs = 0;
  for (let i = 0; i < prob.length; i++) {
    if ((mask && !mask[i]) || (label[i] as number) < 0.5) continue;
    for (let j = 0; j < prob.length; j++) {
      if ((mask && !mask[j]) || (label[j] as number) >= 0.5) continue;
      pairs++;
      u += prob[i]! > prob[j]! ? 1 : prob[i] === prob[j] ? 0.5 : 0;
    }
  }
  return u / pairs;
}

describe('inkMetrics', () => {
  it('hand-computed case: best F0.5, its threshold, precision, recall and AUC', () => {
    const prob = Float32Array.from([0.9, 0.8, 0.3, 0.6, 0.1]);
    const label = Uint8Array.from([1, 1, 1, 0, 0]);
    const m = inkMetrics(prob, label);
    // Thresholds in (0.6, 0.8]: predicted ink {0.9, 0.8}: TP 2, FP 0, FN 1 -> P 1, R 2/3,
    // F0.5 = 1.25·(2/3) / (0.25 + 2/3) = 10/11; the lowest such threshold is 0.65.
    expect(m.f05).toBeCloseTo(10 / 11, 12);
    expect(m.precision).toBe(1);
    expect(m.recall).toBeCloseTo(2 / 3, 12);
    expect(m.threshold).toBeCloseTo(0.65, 12);
    // At 0.5: {0.9, 0.8, 0.6}: P = R = 2/3, F = 2/3.
    const at05 = m.sweep.find((s) => Math.abs(s.threshold - 0.5) < 1e-9)!;
    expect(at05.f05).toBeCloseTo(2 / 3, 12);
    // Pairs (pos > neg): 0.9 beats both, 0.8 beats both, 0.3 beats 0.1 -> 5 of 6.
    expect(m.auc).toBeCloseTo(5 / 6, 12);
    expect(m.count).toBe(5);
    expect(m.positives).toBe(3);
    expect(m.sweep.map((s) => s.threshold)).toEqual([...INK_THRESHOLDS]);
  });

  it('masked voxels and ignore values are never counted; 0/255 labels work', () => {
    const prob = Float32Array.from([0.9, 0.8, 0.3, 0.6, 0.1, 0.99, 0.99]);
    const label = Uint8Array.from([255, 255, 255, 0, 0, 0, 7]);
    const mask = Uint8Array.from([1, 1, 1, 1, 1, 0, 1]);
    const m = inkMetrics(prob, label, mask, { ignoreValue: 7 });
    expect(m.f05).toBeCloseTo(10 / 11, 12);
    expect(m.auc).toBeCloseTo(5 / 6, 12);
    expect(m.count).toBe(5);
  });

  it('ties give AUC 1/2; one class gives NaN; perfect separation gives 1', () => {
    expect(rankAuc([0.5, 0.5], [0.5, 0.5, 0.5])).toBe(0.5);
    expect(rankAuc([0.2, 0.9], [0.1, 0.2])).toBeCloseTo(0.875, 12); // (1 + 0.5 + 1 + 1) / 4
    expect(Number.isNaN(inkMetrics([0.1, 0.2], [0, 0]).auc)).toBe(true);
    expect(inkMetrics([0.9, 0.1], [1, 0]).auc).toBe(1);
    expect(inkMetrics([0.9, 0.1], [1, 0]).f05).toBe(1);
  });

  it('equals brute force on random data at every swept threshold', () => {
    const rng = makeRng(3);
    const n = 3000;
    const label = Uint8Array.from({ length: n }, () => (rng.next() < 0.2 ? 1 : 0));
    // Informative but noisy, quantised to 1/40 so that ties and exact threshold hits occur.
    const prob = Float32Array.from(label, (l) => Math.min(1, Math.max(0, Math.round((0.35 * l + 0.65 * rng.next()) * 40) / 40)));
    const mask = Uint8Array.from({ length: n }, () => (rng.next() < 0.9 ? 1 : 0));
    const m = inkMetrics(prob, label, mask);
    let bestF = -1;
    for (const s of m.sweep) {
      const b = bruteAt(prob, label, mask, s.threshold);
      expect(s.precision).toBeCloseTo(b.precision, 12);
      expect(s.recall).toBeCloseTo(b.recall, 12);
      expect(s.f05).toBeCloseTo(b.f05, 12);
      bestF = Math.max(bestF, b.f05);
    }
    expect(m.f05).toBeCloseTo(bestF, 12);
    expect(m.auc).toBeCloseTo(bruteAuc(prob, label, mask), 12);
  });

  it('rejects mismatched lengths', () => {
    expect(() => inkMetrics([0.1, 0.2], [1])).toThrow(InkInputError);
    expect(() => inkMetrics([0.1, 0.2], [1, 0], [1])).toThrow(/mask/);
  });
});
