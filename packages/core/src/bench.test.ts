/**
 * Timing of one GoE layer's forward and forward+backward at the pipeline's working size. Runs only
 * with GOE_BENCH=1 (it is a measurement, not a check): `npx nx run core:bench`.
 */
import { backendsUnderTest, makeRng, tf, useBackend, type BackendName } from '@goe/tf';
import { describe, expect, it } from 'vitest';
import { resolveGoeConfig, type DispatchMode } from './config.js';
import { GoeLayer, disposeGoeOutput, readGoeStats } from './layer.js';
import { normals } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');
const [B, N, D, DA] = [4, 256, 64, 16];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

describe.runIf(process.env['GOE_BENCH'] === '1').each(BACKENDS)('GoE layer timing on %s', (backend) => {
  it.each([
    ['exact', 0],
    ['dense', 0],
    ['exact', 0.01],
  ] as [DispatchMode, number][])('[4,256,64], M=8, k=2, K=3, %s dispatch, haltEps %s', async (dispatch, haltEps) => {
    // Dense dispatch on the plain-JS cpu backend takes ~15 s a step: not worth measuring.
    if (backend === 'cpu' && dispatch === 'dense') return;
    await useBackend(backend);
    const layer = new GoeLayer(
      resolveGoeConfig({ d: D, da: DA, experts: 8, k: 2, cycles: 3, haltEps, dispatch }),
      makeRng(1),
    );
    const tokens = tf.tensor3d(normals(B * N * D, 2), [B, N, D]);
    const aux = tf.tensor3d(normals(B * N * DA, 3), [B, N, DA]);
    const vars = layer.trainableVariables();
    const fwd: number[] = [];
    const fb: number[] = [];
    const fbCpu: number[] = [];
    for (let rep = 0; rep < 6; rep++) {
      let t0 = performance.now();
      const y = tf.tidy(() => tf.sum(layer.apply({ tokens, aux }).tokens));
      await y.data();
      y.dispose();
      fwd.push(performance.now() - t0);
      t0 = performance.now();
      const c0 = process.cpuUsage();
      const { value, grads } = tf.variableGrads(() => {
        const out = layer.apply({ tokens, aux }, { training: true });
        return tf.add(tf.mean(tf.square(out.tokens)), out.losses.total) as tf.Scalar;
      }, vars);
      await Promise.all(Object.values(grads).map((g) => g.data()));
      tf.dispose([value, ...Object.values(grads)]);
      fb.push(performance.now() - t0);
      const c1 = process.cpuUsage(c0);
      fbCpu.push((c1.user + c1.system) / 1000);
    }
    // Drop the first (warm-up) repetition.
    const f = median(fwd.slice(1));
    const g = median(fb.slice(1));
    // CPU time of this process: the cpu and wasm backends run on one thread, so it is what the wall
    // time would be on an otherwise idle machine (wall time grows when other work shares the cores).
    const gc = median(fbCpu.slice(1));
    const out = layer.apply({ tokens, aux });
    const stats = await readGoeStats(out.stats);
    disposeGoeOutput(out);
    console.log(
      `${backend} ${dispatch} haltEps ${haltEps}: forward ${f.toFixed(1)} ms, forward+backward ${g.toFixed(1)} ms wall, ${gc.toFixed(1)} ms CPU (medians of 5); ` +
        `saved ${(100 * stats.savedFraction).toFixed(1)}% of expert evaluations, mean halt cycle ${stats.meanHaltCycle.toFixed(2)}`,
    );
    expect(g).toBeGreaterThan(0);
    tf.dispose([tokens, aux]);
    layer.dispose();
  });
});
