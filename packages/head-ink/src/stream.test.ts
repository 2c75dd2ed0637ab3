import { describe, expect, it } from 'vitest';
import { makeRng } from '@goe/tf';
import { inkMetrics, rankAuc } from './metrics.js';
import { AUC_BINS, InkMetricAccumulator, type StreamedInkMetrics } from './stream.js';

/** The streamed metrics equal `inkMetrics` exactly on the sweep, and within the reported bound on AUC. */
function expectMatches(got: StreamedInkMetrics, prob: ArrayLike<number>, label: ArrayLike<number>): void {
  const want = inkMetrics(prob, label);
  expect(got.count).toBe(want.count);
  expect(got.positives).toBe(want.positives);
  expect(got.sweep).toEqual(want.sweep);
  expect([got.f05, got.threshold, got.precision, got.recall]).toEqual([want.f05, want.threshold, want.precision, want.recall]);
  expect(Math.abs(got.auc - want.auc)).toBeLessThanOrEqual(got.aucResolution + 1e-12);
}

describe('InkMetricAccumulator', () => {
  const rng = makeRng(11);
  const n = 5000;
  const prob = Float64Array.from({ length: n }, () => rng.next());
  const label = Uint8Array.from(prob, (p) => (rng.next() < 0.2 + 0.6 * p ? 1 : 0));

  it('fed in chunks, gives inkMetrics: the threshold sweep exactly, the AUC within the histogram bound of the rank AUC', () => {
    const acc = new InkMetricAccumulator();
    for (let i = 0; i < n; i += 777) acc.add(prob.subarray(i, i + 777), label.subarray(i, i + 777));
    const got = acc.result();
    expectMatches(got, prob, label);
    // 5000 uniform probabilities in 4001 bins: the tie bound is small but not zero.
    expect(got.aucResolution).toBeGreaterThan(0);
    expect(got.aucResolution).toBeLessThan(1e-3);
  });

  it('is exact for the AUC when no two different probabilities share a bin, ties and 0 and 1 included', () => {
    const q = Float64Array.from(prob, (p) => Math.round(p * 40) / 40);
    const acc = new InkMetricAccumulator();
    acc.add(q, label);
    const pos = [...q].filter((_, i) => label[i]);
    const neg = [...q].filter((_, i) => !label[i]);
    expect(acc.result().auc).toBeCloseTo(rankAuc(pos, neg), 12);
    expect(AUC_BINS).toBe(4001);
    // The bins are uniform in the logit: probabilities near 0 (where a trained model's crowd) stay apart.
    const tails = new InkMetricAccumulator();
    tails.add([1e-6, 2e-6, 3e-6, 4e-6], [0, 1, 0, 1]);
    expect(tails.result().auc).toBe(rankAuc([2e-6, 4e-6], [1e-6, 3e-6]));
    expect(tails.result().aucResolution).toBe(0);
  });

  it("skips the labels' unlabelled value as inkMetrics does; one labelled class gives AUC NaN", () => {
    const l = Uint8Array.from(label, (v, i) => (i % 7 === 0 ? 255 : v));
    const acc = new InkMetricAccumulator({ ignoreValue: 255 });
    acc.add(prob, l);
    const want = inkMetrics(prob, l, undefined, { ignoreValue: 255 });
    expect(acc.result().sweep).toEqual(want.sweep);
    expect(acc.result().count).toBe(want.count);
    const one = new InkMetricAccumulator();
    one.add([0.2, 0.7], [0, 0]);
    expect(Number.isNaN(one.result().auc)).toBe(true);
    expect(() => one.add([0.5], [])).toThrow(/label/);
  });
});

