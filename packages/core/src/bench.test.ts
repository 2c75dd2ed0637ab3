/**
 * Timing of one GoE layer's forward and forward+backward at the pipeline's working size. Runs only
 * with GOE_BENCH=1 (it is a measurement, not a check): `GOE_BENCH=1 npx vitest run src/bench.test.ts`.
 */
import { backendsUnderTest, makeRng, tf, useBackend, type BackendName } from '@goe/tf';
import { describe, expect, it } from 'vitest';
import { resolveGoeConfig, type DispatchMode } from './config.js';
import { GoeLayer } from './layer.js';
import { normals } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');
const [B, N, D, DA] = [4, 256, 64, 16];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

describe.runIf(process.env['GOE_BENCH'] === '1').each(BACKENDS)('GoE layer timing on %s', (backend) => {
  it.each(['exact', 'dense'] as DispatchMode[])('[4,256,64], M=8, k=2, K=3, %s dispatch', async (dispatch) => {
    // Dense dispatch on the plain-JS cpu backend takes ~15 s a step: not worth measuring.
    if (backend === 'cpu' && dispatch === 'dense') return;
    await useBackend(backend);
    const layer = new GoeLayer(
      resolveGoeConfig({ d: D, da: DA, experts: 8, k: 2, cycles: 3, haltEps: 0, dispatch }),
      makeRng(1),
    );
    const tokens = tf.tensor3d(normals(B * N * D, 2), [B, N, D]);
    const aux = tf.tensor3d(normals(B * N * DA, 3), [B, N, DA]);
    const vars = layer.trainableVariables();
    const fwd: number[] = [];
    const fb: number[] = [];
    for (let rep = 0; rep < 6; rep++) {
      let t0 = performance.now();
      const y = tf.tidy(() => tf.sum(layer.apply({ tokens, aux }).tokens));
      await y.data();
      y.dispose();
      fwd.push(performance.now() - t0);
      t0 = performance.now();
      const { value, grads } = tf.variableGrads(() => {
        const out = layer.apply({ tokens, aux }, { training: true });
        return tf.add(tf.mean(tf.square(out.tokens)), out.losses.total) as tf.Scalar;
      }, vars);
      await Promise.all(Object.values(grads).map((g) => g.data()));
      tf.dispose([value, ...Object.values(grads)]);
      fb.push(performance.now() - t0);
    }
    // Drop the first (warm-up) repetition.
    const f = median(fwd.slice(1));
    const g = median(fb.slice(1));
    console.log(`${backend} ${dispatch}: forward ${f.toFixed(1)} ms, forward+backward ${g.toFixed(1)} ms (median of 5)`);
    expect(g).toBeGreaterThan(0);
    tf.dispose([tokens, aux]);
    layer.dispose();
  });
});
