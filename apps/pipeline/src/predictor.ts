/**
 * What the segmentation engine needs from a model, and nothing more: a window size, the named outputs
 * with their channel counts, a batched forward pass on host arrays, and how a blended output is stored.
 * The engine (segment.ts) tiles, blends, masks, shards and writes; it never sees a tensor, so a model
 * with more heads (fibre, geometry) plugs in by implementing this interface.
 *
 * Legend: B windows in a batch, C channels of one output, D, H, W the window's extent (z, y, x),
 * V voxels of a blended block.
 */
import { tf } from '@goe/tf';
import type { InkModel } from './model.js';

/** One named output of a predictor. */
export interface PredictorOutput {
  name: string;
  /** Channels the predictor returns per voxel (before `encode`). */
  channels: number;
}

export interface WindowPredictor {
  /** Model input `[D, H, W]`. */
  readonly window: [number, number, number];
  /** The outputs this model was trained for, e.g. `[{ name: 'ink', channels: 1 }]`. */
  readonly outputs: readonly PredictorOutput[];
  /**
   * @param inputs `[B, D, H, W]` float32, intensities normalised as in training (`normaliseIntensity`)
   * @param count B
   * @returns per output `[B, C, D, H, W]` float32: values that may be blended linearly (probabilities;
   *   for directions, orientation tensors rather than sign-ambiguous vectors)
   */
  predict(inputs: Float32Array, count: number): Promise<Record<string, Float32Array>>;
  /**
   * How a blended output is stored.
   * @param blended `[C, V]` float32
   * @returns `[C', V]` uint8 and C'
   */
  encode(name: string, blended: Float32Array, voxels: number): { data: Uint8Array; channels: number };
  dispose(): void;
}

/** A probability in [0, 1] as the byte round(p * 255) (values outside are clamped). */
export function probabilityByte(p: number): number {
  return p <= 0 ? 0 : p >= 1 ? 255 : Math.round(p * 255);
}

/**
 * The ink head's logits `[B, D, H, W]` for inputs `[B, D, H, W, 1]` (eval mode); call inside `tf.tidy`.
 * @throws RangeError when the model has no ink head
 */
export function inkLogits(model: InkModel, x: tf.Tensor5D): tf.Tensor4D {
  const logits = model.forward(x, { training: false }).logits;
  if (!logits) throw new RangeError('this model has no ink head');
  return logits;
}

/**
 * The ink model behind the {@link WindowPredictor} interface: one output `ink`, the sigmoid of the
 * voxel logits (a probability, so a weighted mean of overlapping windows is again a probability).
 * @param window the model's patch `[D, H, W]` (the input size it was trained on)
 */
export function inkPredictor(model: InkModel, window: readonly [number, number, number]): WindowPredictor {
  const [D, H, W] = window;
  return {
    window: [D, H, W],
    outputs: [{ name: 'ink', channels: 1 }],
    async predict(inputs: Float32Array, count: number): Promise<Record<string, Float32Array>> {
      if (inputs.length !== count * D * H * W) throw new RangeError(`predict: ${inputs.length} inputs for ${count} windows of ${D}x${H}x${W}`);
      const prob = tf.tidy(() => tf.sigmoid(inkLogits(model, tf.tensor5d(inputs, [count, D, H, W, 1]))));
      // [B, D, H, W] is [B, 1, D, H, W] in memory: one channel.
      const ink = (await prob.data()) as Float32Array;
      prob.dispose();
      return { ink };
    },
    encode(name: string, blended: Float32Array, voxels: number) {
      if (name !== 'ink') throw new RangeError(`encode: the ink predictor has no output '${name}'`);
      const data = new Uint8Array(voxels);
      for (let i = 0; i < voxels; i++) data[i] = probabilityByte(blended[i]!);
      return { data, channels: 1 };
    },
    dispose() {
      model.dispose();
    },
  };
}
