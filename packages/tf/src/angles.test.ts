import { describe, expect, it } from 'vitest';
import { angleDegrees, angularErrorStats } from './angles.js';
import { InputShapeError } from './errors.js';

const fail = (i: string, e: string, r: string): Error => new InputShapeError('demo', i, e, r);

describe('angularErrorStats', () => {
  it('hand-computed angles: sign-free by default, full range when signed, zero rows and masked rows skipped', () => {
    // rows: 90° (x vs y), 0° / 180° (x vs −x), 45° ((1,1,0) vs x), zero target (skipped), 60° ((1,√3,0) vs x)
    const pred = [1, 0, 0, 1, 0, 0, 1, 1, 0, 1, 2, 3, 1, Math.sqrt(3), 0];
    const target = [0, 1, 0, -1, 0, 0, 2, 0, 0, 0, 0, 0, 5, 0, 0];
    const free = angularErrorStats(pred, target, undefined, { fail });
    expect(free.count).toBe(4);
    // angles 90, 0, 45, 60 -> sorted 0, 45, 60, 90
    expect(free.mean).toBeCloseTo((90 + 0 + 45 + 60) / 4, 10);
    expect(free.median).toBeCloseTo((45 + 60) / 2, 10);
    const signed = angularErrorStats(pred, target, undefined, { signed: true, fail });
    expect(signed.mean).toBeCloseTo((90 + 180 + 45 + 60) / 4, 10);
    expect(signed.median).toBeCloseTo((60 + 90) / 2, 10);
    const masked = angularErrorStats(pred, target, [1, 0, 1, 1, 0], { fail });
    expect([masked.count, masked.median]).toEqual([2, expect.closeTo(67.5, 10)]);
    const none = angularErrorStats([0, 0, 0], [1, 0, 0], undefined, { fail });
    expect(none.count).toBe(0);
    expect(none.mean).toBeNaN();
  });

  it('parallel vectors give ~0°, never NaN (rounding can push |cos| past 1: clamped)', () => {
    const pred: number[] = [];
    const target: number[] = [];
    for (let i = 1; i <= 200; i++) {
      const v = [Math.sin(i), Math.cos(3 * i), 0.1 * i];
      pred.push(...v);
      target.push(...v.map((x) => x * (1 + i / 7)));
    }
    const r = angularErrorStats(pred, target, undefined, { signed: true, fail });
    expect(r.count).toBe(200);
    expect(r.mean).toBeGreaterThanOrEqual(0);
    expect(r.mean).toBeLessThan(1e-5);
  });

  it('throws the caller-built error naming the mis-sized input', () => {
    expect(() => angularErrorStats([1, 0, 0], [1, 0], undefined, { fail })).toThrow("demo input 'target': expected 3 values");
    expect(() => angularErrorStats([1, 0, 0], [1, 0, 0], [1, 1], { fail })).toThrow("demo input 'mask': expected 1 values, got 2");
  });

  it('angleDegrees: one row at any offsets, sign-free or signed, undefined for a zero vector', () => {
    const v = [9, 9, 1, 1, 0];
    const t = [0, -1, -1, 0];
    // (1, 1, 0) against (−1, −1, 0): the same orientation (0°), opposite directions (180° signed).
    expect(angleDegrees(v, 2, t, 1)).toBeCloseTo(0, 4); // acos near 1 loses half the digits
    expect(angleDegrees(v, 2, t, 1, true)).toBeCloseTo(180, 4);
    expect(angleDegrees([1, 0, 0], 0, [1, 1, 0], 0)).toBeCloseTo(45, 12);
    expect(angleDegrees([1, 0, 0], 0, [0, 0, 0], 0)).toBeUndefined();
    expect(angleDegrees([0, 0, 0], 0, [0, 0, 1], 0)).toBeUndefined();
  });
});
