import { Adam, backendsUnderTest, makeRng, tf, useBackend, type BackendName, type Rng } from '@goe/tf';
import { describe, expect, it } from 'vitest';
import { resolveGoeConfig } from './config.js';
import { GoeLayer, disposeGoeOutput } from './layer.js';
import { adamStep } from './test-utils.js';

const BACKENDS = (await backendsUnderTest()).filter((b): b is BackendName => b === 'cpu' || b === 'wasm');

const D = 16;
const CLUSTERS = 4;

/**
 * A routing task: tokens come from 4 well-separated clusters and each cluster needs its own linear
 * map, `y = x + W_c x`. One expert cannot serve all four; routed experts can.
 */
function makeTask(seed: number): (rng: Rng, b: number, n: number) => { x: tf.Tensor3D; y: tf.Tensor3D; cluster: Int32Array } {
  const rng = makeRng(seed);
  const centres = Array.from({ length: CLUSTERS }, () => Float64Array.from({ length: D }, () => rng.normal() * 2));
  const maps = Array.from({ length: CLUSTERS }, () => Float64Array.from({ length: D * D }, () => rng.normal() / Math.sqrt(D)));
  return (r, b, n) => {
    const x = new Float32Array(b * n * D);
    const y = new Float32Array(b * n * D);
    const cluster = new Int32Array(b * n);
    for (let i = 0; i < b * n; i++) {
      const c = r.int(CLUSTERS);
      cluster[i] = c;
      for (let j = 0; j < D; j++) x[i * D + j] = centres[c]![j]! + 0.5 * r.normal();
      for (let o = 0; o < D; o++) {
        let s = x[i * D + o]!;
        for (let j = 0; j < D; j++) s += maps[c]![o * D + j]! * x[i * D + j]!;
        y[i * D + o] = s;
      }
    }
    return { x: tf.tensor3d(x, [b, n, D]), y: tf.tensor3d(y, [b, n, D]), cluster };
  };
}

describe.each(BACKENDS)('GoE training on %s', (backend) => {
  it('lowers the loss on a synthetic routing task and routes clusters apart', async () => {
    await useBackend(backend);
    const sample = makeTask(5);
    const layer = new GoeLayer(
      resolveGoeConfig({ d: D, da: 0, experts: 4, k: 2, cycles: 2, expertHidden: 32, haltEps: 0 }),
      makeRng(11),
    );
    const held = sample(makeRng(99), 4, 64);
    const evalLoss = async (): Promise<number> => {
      const v = tf.tidy(() => tf.mean(tf.square(tf.sub(layer.apply({ tokens: held.x }).tokens, held.y))));
      const out = (await v.data())[0]!;
      v.dispose();
      return out;
    };
    const before = await evalLoss();
    const adam = new Adam();
    const rng = makeRng(1);
    for (let step = 0; step < 100; step++) {
      const { x, y } = sample(rng, 4, 32);
      adamStep(
        layer,
        adam,
        () => {
          const out = layer.apply({ tokens: x }, { training: true });
          return tf.add(tf.mean(tf.square(tf.sub(out.tokens, y))), out.losses.total) as tf.Scalar;
        },
        1e-2,
      );
      tf.dispose([x, y]);
    }
    const after = await evalLoss();
    expect(after).toBeLessThan(0.15 * before);

    // Routing reflects the clusters: each cluster's tokens mostly share their first-cycle expert pair.
    const out = layer.apply({ tokens: held.x });
    const ids = await out.provenance.experts.data(); // [K, B, N, k]: cycle 0 first
    let agree = 0;
    for (let c = 0; c < CLUSTERS; c++) {
      const counts = new Map<string, number>();
      let total = 0;
      held.cluster.forEach((cl, i) => {
        if (cl !== c) return;
        const pair = [ids[i * 2]!, ids[i * 2 + 1]!].sort().join(',');
        counts.set(pair, (counts.get(pair) ?? 0) + 1);
        total++;
      });
      agree += Math.max(...counts.values()) / total;
    }
    expect(agree / CLUSTERS).toBeGreaterThan(0.8);
    disposeGoeOutput(out);
    adam.dispose();
    tf.dispose([held.x, held.y]);
    layer.dispose();
    console.log(`${backend}: held-out loss ${before.toFixed(3)} -> ${after.toFixed(4)}, cluster routing agreement ${(agree / CLUSTERS).toFixed(3)}`);
  });
});
