/**
 * Small tensor helpers of the core: values computed on the forward pass that must carry no gradient
 * (top-k ids, halting masks), and selection masks. tfjs has no gradient for TopK, Less, Equal, …
 * (FACTS.md), and a node without one anywhere between the variables and the loss makes backprop
 * throw; wrapping such a computation in `detached` records one node whose gradient is zero instead.
 */
import { tf } from '@goe/tf';

/**
 * Runs `fn(...xs)` as one tape node whose gradient is zero for every input (a stop-gradient).
 * @returns `fn`'s result (any dtype)
 */
export function detached<T extends tf.Tensor>(fn: (...xs: tf.Tensor[]) => T, ...xs: tf.Tensor[]): T {
  const g = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const inputs = args.slice(0, xs.length) as tf.Tensor[];
    return {
      value: fn(...inputs),
      // The engine requires float32 gradients even for int inputs.
      gradFunc: () => inputs.map((x) => tf.zeros(x.shape, 'float32')),
    };
  });
  return g(...xs) as T;
}

/**
 * Indices of the k largest scores per row, without a gradient (ties: the lower index first).
 * @param scores `[R, M]` @returns `[R, k]` int32
 */
export function topKIds(scores: tf.Tensor2D, k: number): tf.Tensor2D {
  return detached((s) => {
    if (canReadSync() && k <= 8) return hostTopKIds(s as tf.Tensor2D, k);
    const { values, indices } = tf.topk(s, k);
    values.dispose();
    return indices as tf.Tensor2D;
  }, scores);
}

/**
 * `topKIds` on the host, for small k: one pass per row keeping the k best, O(R·M·k). The wasm TopK
 * kernel takes ~0.55 ms for [1024, 32] with k = 2 (it sorts), this ~0.1 ms with the read-back.
 * Ties keep the lower index first, as tf.topk does.
 */
function hostTopKIds(scores: tf.Tensor2D, k: number): tf.Tensor2D {
  const [rows, m] = scores.shape;
  const s = scores.dataSync() as Float32Array;
  const ids = new Int32Array(rows * k);
  const best = new Float64Array(k);
  const at = new Int32Array(k);
  for (let r = 0; r < rows; r++) {
    const o = r * m;
    let filled = 0;
    for (let j = 0; j < m; j++) {
      const x = s[o + j] as number;
      const v = Number.isNaN(x) ? -Infinity : x; // a NaN score ranks last
      // Strictly better than the current k-th (or a free place): an equal score arrives later, so
      // it ranks after the one kept.
      if (filled === k && !(v > (best[k - 1] as number))) continue;
      let p = filled < k ? filled++ : k - 1;
      while (p > 0 && v > (best[p - 1] as number)) {
        best[p] = best[p - 1] as number;
        at[p] = at[p - 1] as number;
        p--;
      }
      best[p] = v;
      at[p] = j;
    }
    ids.set(at.subarray(0, k), r * k);
  }
  return tf.tensor2d(ids, [rows, k], 'int32');
}

/**
 * One-hot of each slot's expert id as float, −1 giving an all-zero row. One `[R, M]` tensor per slot:
 * the layer keeps per-slot tensors at rank 2 because reductions over a middle axis are slow to
 * differentiate (their gradient broadcasts back with Tile, ~25 ms for `[1024, 2, 64]` on wasm).
 * @param ids `[R, s]` int32 @returns s tensors `[R, M]` float32
 */
export function slotOneHots(ids: tf.Tensor2D, experts: number): tf.Tensor2D[] {
  return tf.tidy(() => {
    const [rows, slots] = ids.shape;
    // tf.oneHot needs depth >= 2; a one-expert layer takes column 0 of a depth-2 one-hot. It is built
    // as int32 and converted: the wasm backend's oneHot with dtype float32 writes the int bit
    // patterns (1 -> 1.4e-45), silently.
    const depth = Math.max(experts, 2);
    const out: tf.Tensor2D[] = [];
    for (let j = 0; j < slots; j++) {
      const col = tf.reshape(tf.slice(ids, [0, j], [rows, 1]), [rows]) as tf.Tensor1D; // [R]
      let oh = toFloat32(tf.oneHot(col, depth)) as tf.Tensor2D; // [R, depth]
      if (depth !== experts) oh = tf.slice(oh, [0, 0], [rows, experts]); // [R, M]
      out.push(oh);
    }
    return out;
  });
}

/**
 * Which experts each row was sent to.
 * @param ids `[R, s]` int32 (−1 = none) @returns `[R, M]` float32 0/1 (or counts if an id repeats)
 */
export function selectionMask(ids: tf.Tensor2D, experts: number): tf.Tensor2D {
  return tf.tidy(() => {
    const ohs = slotOneHots(ids, experts);
    return (ohs.length === 1 ? ohs[0] : tf.addN(ohs)) as tf.Tensor2D; // [R, M]
  });
}

/**
 * `x` as a float32 tensor whose buffer really holds floats. On WebGPU, tfjs' Cast from int32/bool to
 * float32 only relabels the buffer (no precision is lost, so it skips the conversion); kernels that
 * read the buffer by its stored type (Transpose, inside reductions over a non-last axis) then fail
 * shader validation. A multiply by 1 writes a converted buffer.
 */
export function toFloat32(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const f = tf.cast(x, 'float32');
    return x.dtype !== 'float32' && tf.getBackend() === 'webgpu' ? tf.mul(f, tf.scalar(1)) : f;
  });
}

/** Whether the active backend can read tensors back synchronously (`dataSync`): not WebGPU in Node. */
export function canReadSync(): boolean {
  return tf.getBackend() !== 'webgpu';
}
