/**
 * Conformance: every op the models use (CONFORMANCE_OPS) computes the same forward values and
 * gradients on every available backend as on the cpu backend, from identical host-drawn inputs. The
 * cpu backend is itself held to independent references: its conv3d and pooling to float64 loops
 * (reference.test.ts), and here every case's gradient to central finite differences.
 *
 * Set GOE_TEST_BACKENDS (e.g. `wasm,webgpu`) to choose backends; GOE_CONFORMANCE_REPORT=path writes
 * the max abs error per backend and op as JSON.
 */
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { useBackend, type BackendName } from './backend.js';
// Registers every gradient (tfjs-core's Node build ships none), as importing @goe/tf does.
import './grads.js';
import {
  CONFORMANCE_OPS,
  finiteDifferenceCheck,
  makeCaseInputs,
  runConformanceCase,
  type CaseResult,
  type ConformanceCase,
  type HostValue,
} from './conformance-ops.js';
import { backendsUnderTest, expectNoLeak } from './testing.js';
import { mergeBroadcastAxes } from './webgpu-kernels.js';

const others = (await backendsUnderTest()).filter((b) => b !== 'cpu');

/** Max abs error of `got` against `want`; asserts shape, dtype and the case's tolerance. */
function compare(got: HostValue, want: HostValue, tol: number, what: string): number {
  expect(got.shape, `${what}: shape`).toEqual(want.shape);
  expect(got.dtype, `${what}: dtype`).toBe(want.dtype);
  expect(got.data.length, `${what}: size`).toBe(want.data.length);
  let err = 0;
  let scale = 1;
  for (let i = 0; i < want.data.length; i++) {
    const d = Math.abs((got.data[i] as number) - (want.data[i] as number));
    if (!(d <= err)) err = d; // NaN-sticky
    scale = Math.max(scale, Math.abs(want.data[i] as number));
  }
  const exact = want.dtype !== 'float32';
  expect(err, `${what}: max abs error (tolerance ${exact ? 0 : tol * scale})`).toBeLessThanOrEqual(exact ? 0 : tol * scale);
  return err;
}

const cpuResults = new Map<string, Promise<CaseResult>>();

/** The cpu backend's result for a case (forward only, or with gradients), computed once each. */
async function cpuResult(c: ConformanceCase, gradients: boolean, back: BackendName): Promise<CaseResult> {
  const key = `${c.name}/${gradients}`;
  let p = cpuResults.get(key);
  if (!p) {
    p = (async () => {
      await useBackend('cpu');
      try {
        return await runConformanceCase(c, makeCaseInputs(c), { gradients });
      } finally {
        await useBackend(back);
      }
    })();
    cpuResults.set(key, p);
  }
  return p;
}

interface ErrorRow {
  forward?: number;
  gradient?: number;
}
const report: Record<string, Record<string, ErrorRow>> = {};

afterAll(() => {
  const path = process.env['GOE_CONFORMANCE_REPORT'];
  if (path) writeFileSync(path, `${JSON.stringify(report, null, 2)}\n`);
  for (const [backend, rows] of Object.entries(report)) {
    const lines = Object.entries(rows).map(
      ([name, r]) => `  ${name.padEnd(72)} fwd ${r.forward?.toExponential(2) ?? '   -    '}  grad ${r.gradient?.toExponential(2) ?? '-'}`,
    );
    console.log(`max abs error vs cpu on ${backend}:\n${lines.join('\n')}`);
  }
});

describe.each(others)('%s matches the cpu backend', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
    report[backend] = {};
  });

  it.each(CONFORMANCE_OPS)('$name', async (c) => {
    const row: ErrorRow = {};
    (report[backend] as Record<string, ErrorRow>)[c.name] = row;
    // Forward first, on its own, so its error is known even when a gradient fails.
    const want = await cpuResult(c, false, backend);
    expect(tf.getBackend()).toBe(backend === 'node' || backend === 'node-gpu' ? 'tensorflow' : backend);
    const got = await expectNoLeak(() => runConformanceCase(c, makeCaseInputs(c), { gradients: false }), c.name);
    expect(got.outputs.length).toBe(want.outputs.length);
    row.forward = 0;
    got.outputs.forEach((o, k) => {
      row.forward = Math.max(row.forward as number, compare(o, want.outputs[k] as HostValue, c.tol, `output ${k}`));
    });
    if (!c.grad) return;
    const wantG = await cpuResult(c, true, backend);
    const gotG = await expectNoLeak(() => runConformanceCase(c, makeCaseInputs(c), { gradients: true }), c.name);
    expect(gotG.gradNames).toEqual(wantG.gradNames);
    row.gradient = 0;
    (gotG.grads as HostValue[]).forEach((g, k) => {
      const name = (gotG.gradNames as string[])[k] as string;
      row.gradient = Math.max(row.gradient as number, compare(g, (wantG.grads as HostValue[])[k] as HostValue, (c.grad as { tol: number }).tol, `d/d${name}`));
    });
  });
});

describe('cpu gradients match central finite differences', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it.each(CONFORMANCE_OPS.filter((c) => c.grad && c.grad.fdStep !== 0))('$name', async (c) => {
    const fd = await expectNoLeak(() => finiteDifferenceCheck(c, makeCaseInputs(c), c.grad?.fdStep ?? 1e-2), c.name);
    // A gradient that is zero or not finite would pass any relative test: rule it out first.
    expect(Number.isFinite(fd.analytic) && fd.scale > 0).toBe(true);
    expect(Math.abs(fd.numeric - fd.analytic)).toBeLessThanOrEqual(2e-3 * fd.scale);
  });
});

/**
 * Gradients that tfjs-core 4.22 gets wrong on every backend and @goe/tf re-registers (grads.ts),
 * checked on small hand-worked values so a regression names the defect.
 */
describe('gradients tfjs-core 4.22 gets wrong, as @goe/tf registers them', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('maximum/minimum gradients sum over broadcast axes', () => {
    tf.tidy(() => {
      const a = tf.tensor([1, 5, 3, 2, 0, 7], [2, 3]);
      const b = tf.tensor([2, 2, 2]);
      // d/db Σ max(a, b) counts, per column, the rows where b is the larger (a wins ties): [1, 1, 0].
      const [, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.maximum(x, y)))([a, b]);
      expect([...(gb as tf.Tensor).dataSync()]).toEqual([1, 1, 0]);
    });
  });

  it('squaredDifference gradient sums over broadcast axes', () => {
    tf.tidy(() => {
      const a = tf.tensor([1, 2, 3, 4], [2, 2]);
      const b = tf.tensor([1, 1]);
      // d/db Σ (a - b)² = Σ_rows -2 (a - b) = [-2 (0 + 2), -2 (1 + 3)].
      const [, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.squaredDifference(x, y)))([a, b]);
      expect([...(gb as tf.Tensor).dataSync()]).toEqual([-4, -8]);
    });
  });

  it('mirrorPad gradient includes the reflected copies (tfjs-core: the gradient of a zero pad)', () => {
    tf.tidy(() => {
      const x = tf.tensor([1, 2, 3]);
      // reflect by 1: [2, 1, 2, 3, 2]; d/dx Σ = [1, 3, 1].
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mirrorPad(t, [[1, 1]], 'reflect')))(x);
      expect([...g.dataSync()]).toEqual([1, 3, 1]);
    });
  });

  it('cumsum gradient on an axis other than the last (tfjs-core: shape error)', () => {
    tf.tidy(() => {
      const x = tf.tensor([1, 2, 3, 4, 5, 6], [1, 3, 2]);
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.cumsum(t, 1)))(x);
      // d/dx_i Σ_j cumsum_j = number of prefixes containing i: [3, 2, 1] along axis 1.
      expect([...g.dataSync()]).toEqual([3, 3, 2, 2, 1, 1]);
    });
  });
});

describe('mergeBroadcastAxes (how the WebGPU fixes lower the rank of a broadcast)', () => {
  it('merges runs of axes that broadcast alike and drops size-1 output axes', () => {
    // [B, D, H, W, C] + [C]: the four leading axes broadcast the bias alike -> [B·D·H·W, C] + [1, C].
    expect(mergeBroadcastAxes([[2, 3, 4, 4, 5], [5]], [2, 3, 4, 4, 5])).toEqual({
      inShapes: [
        [96, 5],
        [1, 5],
      ],
      outShape: [96, 5],
    });
    // Alternating patterns cannot merge; a size-1 output axis disappears.
    expect(mergeBroadcastAxes([[2, 1, 4, 3], [1, 1, 4, 1]], [2, 1, 4, 3])).toEqual({
      inShapes: [
        [2, 4, 3],
        [1, 4, 1],
      ],
      outShape: [2, 4, 3],
    });
    // Equal shapes collapse to one axis; all-ones to [1].
    expect(mergeBroadcastAxes([[2, 3, 4, 5, 6], [2, 3, 4, 5, 6]], [2, 3, 4, 5, 6]).outShape).toEqual([720]);
    expect(mergeBroadcastAxes([[1, 1], [1]], [1, 1])).toEqual({ inShapes: [[1], [1]], outShape: [1] });
  });
});
