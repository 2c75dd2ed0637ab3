import { tf } from '@goe/tf';

/**
 * One-hot rows as real float32 on every backend: built in int32 and converted, because wasm's float32
 * oneHot writes int bit patterns, and WebGPU's int32 -> float32 Cast only relabels the buffer (a
 * transpose of it in a gradient then fails), so there a multiply makes real floats.
 * @param indices `[R]` int32 in [0, depth) @returns `[R, depth]` float32
 */
export function oneHotFloat(indices: tf.Tensor1D, depth: number): tf.Tensor2D {
  return tf.tidy(() => {
    const oh = tf.cast(tf.oneHot(indices, depth), 'float32') as tf.Tensor2D; // [R, depth]
    return tf.getBackend() === 'webgpu' ? (tf.mul(oh, tf.scalar(1)) as tf.Tensor2D) : oh;
  });
}
