/**
 * Inverted dropout (Srivastava et al. 2014) with the keep mask drawn on the host from a seeded
 * generator, so that a seed gives the same masks on every backend (tfjs' random ops differ per backend).
 */
import { tf, type Rng } from '@goe/tf';

/**
 * Zeroes each element with probability `rate` and scales the rest by 1 / (1 − rate).
 * @param x any shape @returns same shape
 */
export function dropout(x: tf.Tensor, rate: number, rng: Rng): tf.Tensor {
  if (rate <= 0) return x;
  return tf.tidy(() => {
    const keep = new Float32Array(x.size);
    const scale = 1 / (1 - rate);
    for (let i = 0; i < keep.length; i++) keep[i] = rng.next() >= rate ? scale : 0;
    return tf.mul(x, tf.tensor(keep, x.shape));
  });
}
