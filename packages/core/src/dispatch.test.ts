import { backendsUnderTest, makeRng, maxAbsDiff, tf, useBackend, type BackendName } from '@goe/tf';
import { describe, expect, it } from 'vitest';
import { dispatchDense, dispatchExact, expertUnits } from './dispatch.js';
import { AttentionExpert, LinearExpert, SwiGluExpert, type Expert } from './experts.js';
import { normals } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');

/** Loss Σ_j out_j ⊙ probe_j and its gradients for every expert variable, by exact and by dense dispatch. */
function bothDispatches(experts: readonly Expert[], x: tf.Tensor2D, ids: tf.Tensor2D, probes: tf.Tensor2D[]) {
  const vars = experts.flatMap((e) => e.trainableVariables());
  const run = (mode: 'exact' | 'dense') =>
    tf.variableGrads(() => {
      const outs = mode === 'exact' ? dispatchExact(experts, x, ids).out : dispatchDense(experts, x, ids);
      return tf.addN(outs.map((o, j) => tf.sum(tf.mul(o, probes[j]!)))) as tf.Scalar;
    }, vars);
  return { vars, ex: run('exact'), de: run('dense') };
}

describe.each(BACKENDS)('sparse dispatch on %s', (backend) => {
  it('exact (gathers) equals dense (masks) in values and gradients, and runs each expert on its rows only', async () => {
    await useBackend(backend);
    const [R, DE, M, S] = [40, 6, 5, 2];
    const rng = makeRng(3);
    const experts = Array.from({ length: M }, () => new SwiGluExpert(DE, 12, rng));
    // Two distinct experts per row; about a fifth of the rows halted (−1 in both slots).
    const ids = new Int32Array(R * S);
    const expected = new Array<number>(M).fill(0);
    for (let i = 0; i < R; i++) {
      const halted = rng.next() < 0.2;
      const first = rng.int(M);
      const second = (first + 1 + rng.int(M - 1)) % M;
      ids[i * S] = halted ? -1 : first;
      ids[i * S + 1] = halted ? -1 : second;
      if (!halted) {
        expected[first] = expected[first]! + 1;
        expected[second] = expected[second]! + 1;
      }
    }
    const idsT = tf.tensor2d(ids, [R, S], 'int32');
    const x = tf.tensor2d(normals(R * DE, 4), [R, DE]);
    const probes = Array.from({ length: S }, (_, j) => tf.tensor2d(normals(R * DE, 10 + j), [R, DE]));
    const { vars, ex, de } = bothDispatches(experts, x, idsT, probes);
    expect(Math.abs((await ex.value.data())[0]! - (await de.value.data())[0]!)).toBeLessThan(1e-4);
    for (const v of vars) expect(maxAbsDiff(await ex.grads[v.name]!.data(), await de.grads[v.name]!.data()), v.name).toBeLessThan(1e-5);
    // Gradient with respect to the inputs too (the gathers' own gradients).
    const gx = (mode: 'exact' | 'dense') =>
      tf.grad((xx: tf.Tensor) => {
        const outs = mode === 'exact' ? dispatchExact(experts, xx as tf.Tensor2D, idsT).out : dispatchDense(experts, xx as tf.Tensor2D, idsT);
        return tf.addN(outs.map((o, j) => tf.sum(tf.mul(o, probes[j]!))));
      })(x);
    const [gxe, gxd] = [gx('exact'), gx('dense')];
    expect(maxAbsDiff(await gxe.data(), await gxd.data())).toBeLessThan(1e-5);
    const gxh = await gxe.data();
    for (let i = 0; i < R; i++) if (ids[i * S]! < 0) expect(maxAbsDiff(gxh.subarray(i * DE, (i + 1) * DE), new Float32Array(DE))).toBe(0);
    const { out, count } = dispatchExact(experts, x, idsT);
    expect(count.rowsPerExpert).toEqual(expected);
    // Halted rows get zero outputs in every slot.
    const o0 = await out[0]!.data();
    for (let i = 0; i < R; i++) if (ids[i * S]! < 0) expect(maxAbsDiff(o0.subarray(i * DE, (i + 1) * DE), new Float32Array(DE))).toBe(0);
    tf.dispose([idsT, x, ...probes, ex.value, de.value, ...Object.values(ex.grads), ...Object.values(de.grads), gxe, gxd, ...out]);
    experts.forEach((e) => e.dispose());
  });

  it('runs experts of one kind and size as one unit: same values and gradients as dense, ops independent of M', async () => {
    await useBackend(backend);
    const [R, DE, S] = [48, 8, 2];
    const rng = makeRng(5);
    // A mixed library: SwiGLU of two sizes, linear, attention (runs alone).
    const experts: Expert[] = [
      new SwiGluExpert(DE, 12, rng),
      new LinearExpert(DE, rng),
      new SwiGluExpert(DE, 12, rng),
      new AttentionExpert(DE, 12, rng),
      new SwiGluExpert(DE, 16, rng),
      new LinearExpert(DE, rng),
      new SwiGluExpert(DE, 12, rng),
    ];
    const M = experts.length;
    expect(expertUnits(experts, [3, 1, 2, 4, 5, 1, 0])).toEqual([[0, 2], [1, 5], [3], [4]]);
    expect(expertUnits(experts, [0, 0, 1, 0, 0, 0, 1])).toEqual([[2, 6]]);
    const ids = new Int32Array(R * S);
    for (let i = 0; i < R; i++) {
      const first = rng.int(M);
      ids[i * S] = first;
      ids[i * S + 1] = i % 7 === 0 ? -1 : (first + 1 + rng.int(M - 1)) % M;
    }
    const idsT = tf.tensor2d(ids, [R, S], 'int32');
    const x = tf.tensor2d(normals(R * DE, 6), [R, DE]);
    const probes = Array.from({ length: S }, (_, j) => tf.tensor2d(normals(R * DE, 20 + j), [R, DE]));
    const { vars, ex, de } = bothDispatches(experts, x, idsT, probes);
    expect(Math.abs((await ex.value.data())[0]! - (await de.value.data())[0]!)).toBeLessThan(1e-4);
    for (const v of vars) {
      const g = await ex.grads[v.name]!.data();
      expect(maxAbsDiff(g, await de.grads[v.name]!.data()), v.name).toBeLessThan(1e-5);
      expect(g.some((q) => q !== 0), `${v.name} gets a gradient`).toBe(true);
    }
    tf.dispose([idsT, x, ...probes, ex.value, de.value, ...Object.values(ex.grads), ...Object.values(de.grads)]);
    experts.forEach((e) => e.dispose());

    // Forward ops of a layer of m SwiGLU experts over the same rows: the same count for m = 2 and 16.
    const opsFor = async (m: number): Promise<number> => {
      const lib = Array.from({ length: m }, () => new SwiGluExpert(DE, 12, rng));
      const xs = tf.tensor2d(normals(R * DE, 7), [R, DE]);
      const choice = tf.tensor2d(Int32Array.from({ length: R * S }, (_, q) => (Math.floor(q / S) * S + (q % S)) % m), [R, S], 'int32');
      const prof = await tf.profile(() => tf.dispose(dispatchExact(lib, xs, choice).out));
      tf.dispose([xs, choice]);
      lib.forEach((e) => e.dispose());
      return prof.kernels.length;
    };
    expect(await opsFor(16)).toBe(await opsFor(2));
  });
});
