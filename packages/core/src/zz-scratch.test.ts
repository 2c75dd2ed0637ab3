import { it } from 'vitest';
import { tf, useBackend, checkWebGpuErrors } from '@goe/tf';
it('g', async () => {
  await useBackend('webgpu');
  const ids = tf.tensor1d([0, 2, 1, 1, 3, 0], 'int32');
  const tries: [string, () => tf.Tensor][] = [
    ['sum1 of cast onehot *1', () => tf.sum(tf.reshape(tf.mul(tf.cast(tf.oneHot(ids, 4), 'float32'), 1), [3, 2, 4]), 1)],
    ['sum0 of cast ge *1', () => tf.sum(tf.mul(tf.cast(tf.greaterEqual(tf.reshape(ids, [3, 2]), tf.scalar(1, 'int32')), 'float32'), 1), 0)],
    ['matmul cast onehot', () => tf.matMul(tf.cast(tf.oneHot(ids, 4), 'float32'), tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8], [4, 2]))],
  ];
  for (const [name, f] of tries) {
    try { const y = f(); const d = await y.data(); checkWebGpuErrors(); console.log('OK', name, JSON.stringify(Array.from(d))); } catch (e) { console.log('FAIL', name, String(e).slice(0, 120)); }
  }
});
