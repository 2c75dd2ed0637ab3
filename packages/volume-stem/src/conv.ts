/**
 * φ of the volume stem (GoE draft §3.1.1, eq. 1): a stack of 3-D convolutions, each followed by an
 * optional LayerNorm over channels and the stem's activation.
 *
 * The first layer, when 3x3x3, stays on the stem's fast path: the neighbourhood columns that the
 * descriptors need anyway (`neighbourhoodColumns`, edge-replicated borders) times one `[27, C]` matMul,
 * its stride taken by keeping every s-th voxel's row (voxels 0, s, 2s, … per axis). Any other layer runs
 * through `conv3dFast` with TensorFlow's 'same' padding (zeros; verified against tf.conv3d on every
 * backend in @goe/tf).
 *
 * Legend: B batch, [D, H, W] a map's size (z, y, x), R rows of a map (B*D*H*W, z-major), Cin / C
 * channels in / out, [kz, ky, kx] kernel, [sz, sy, sx] stride.
 */
import { LayerNorm, Module, conv3dFast, gelu, tf, type Rng } from '@goe/tf';
import type { ConvLayerConfig, StemActivation, Triple } from './config.js';
import { VolumeStemInputError } from './errors.js';
import { strideRows } from './neighbourhood.js';

/** One layer of φ, weights in tf.conv3d's `[kz, ky, kx, Cin, C]` layout. */
export class StemConvLayer extends Module {
  readonly w: tf.Variable;
  readonly b: tf.Variable;
  /** LayerNorm over the channels (only with `norm: 'layer'`). */
  readonly norm: LayerNorm | undefined;

  constructor(
    readonly spec: ConvLayerConfig,
    readonly inChannels: number,
    rng: Rng,
  ) {
    super();
    const { channels, kernel } = spec;
    this.w = this.param('w', [...kernel, inChannels, channels], { kind: 'heNormal' }, rng);
    this.b = this.param('b', [channels], { kind: 'zeros' }, rng);
    this.norm = spec.norm === 'layer' ? this.child('norm', new LayerNorm(channels, rng)) : undefined;
  }

  /** Whether this layer can run on neighbourhood columns (a 3x3x3 kernel over one channel). */
  get onColumns(): boolean {
    return this.inChannels === 1 && this.spec.kernel.every((k) => k === 3);
  }

  /**
   * @param cols `[R, 27]` neighbourhood columns of the layer's output voxels (see `tapColumn`)
   * @returns `[R, C]` pre-normalisation
   */
  applyColumns(cols: tf.Tensor2D): tf.Tensor2D {
    const C = this.spec.channels;
    return tf.tidy(() => {
      // Reorder taps from (dz, dy, dx) to the columns' ((dy, dx), dz) order (see `tapColumn`).
      const w3 = tf.reshape(this.w, [3, 9, C]); // [dz, dy*3+dx, C]
      const w27 = tf.reshape(tf.transpose(w3, [1, 0, 2]), [27, C]); // [27, C]
      return tf.add(tf.matMul(cols, w27), this.b) as tf.Tensor2D; // [R, C]
    });
  }

  /**
   * @param x `[B, D, H, W, Cin]`
   * @returns `[B*Do*Ho*Wo, C]` pre-normalisation, Do = D / sz etc.
   */
  applyVolume(x: tf.Tensor5D): tf.Tensor2D {
    const C = this.spec.channels;
    return tf.tidy(() => {
      const y = conv3dFast(x, this.w, this.spec.stride, 'same'); // [B, Do, Ho, Wo, C]
      // Bias on a rank-2 view: rank-5 broadcasting is slow on wasm and wrong on WebGPU (FACTS.md).
      return tf.add(tf.reshape(y, [-1, C]), this.b) as tf.Tensor2D; // [B*Do*Ho*Wo, C]
    });
  }
}

/** The stem's non-linearity on `[R, C]` rows. */
export function activate(pre: tf.Tensor2D, act: StemActivation): tf.Tensor2D {
  return tf.tidy(() => (act === 'silu' ? tf.mul(pre, tf.sigmoid(pre)) : act === 'gelu' ? gelu(pre) : tf.relu(pre)) as tf.Tensor2D);
}

/**
 * The feature-map size after each layer.
 * @param inputShape `[D, H, W]` of the patch
 * @returns one `[D, H, W]` per layer
 * @throws VolumeStemInputError naming `convLayers[i].stride` when a stride does not divide its input
 */
export function featureShapes(inputShape: Triple, layers: readonly ConvLayerConfig[]): Triple[] {
  const out: Triple[] = [];
  let shape = inputShape;
  layers.forEach((l, i) => {
    if (shape.some((n, a) => n % l.stride[a]! !== 0)) {
      throw new VolumeStemInputError(
        'x',
        `sizes whose feature map [${shape.join(', ')}] before layer ${i} is a multiple of convLayers[${i}].stride [${l.stride.join(', ')}]`,
        `[${inputShape.join(', ')}]`,
      );
    }
    shape = shape.map((n, a) => n / l.stride[a]!) as Triple;
    out.push(shape);
  });
  return out;
}

/**
 * φ(x): the feature map after every layer.
 * @param x `[B, D, H, W, 1]`
 * @param cols `[B*D*H*W, 27]` neighbourhood columns of x (used by a 3x3x3 first layer)
 * @param shapes the layers' output sizes (`featureShapes`)
 * @returns `[B*Df*Hf*Wf, C]` rows of the last map, z-major
 */
export function convFeatures(
  x: tf.Tensor5D,
  cols: tf.Tensor2D,
  layers: readonly StemConvLayer[],
  shapes: readonly Triple[],
  act: StemActivation,
): tf.Tensor2D {
  const [B, D, H, W] = x.shape;
  return tf.tidy(() => {
    let rows = tf.reshape(x, [B * D * H * W, 1]) as tf.Tensor2D; // [R, 1]
    layers.forEach((layer, i) => {
      let pre: tf.Tensor2D;
      if (i === 0 && layer.onColumns) {
        const s = layer.spec.stride;
        const strided = s.every((v) => v === 1) ? cols : strideRows(cols, B, [D, H, W], s); // [Ro, 27]
        pre = layer.applyColumns(strided); // [Ro, C]
      } else {
        const [d, h, w] = i === 0 ? [D, H, W] : shapes[i - 1]!;
        pre = layer.applyVolume(tf.reshape(rows, [B, d, h, w, layer.inChannels]) as tf.Tensor5D); // [Ro, C]
      }
      const normed = layer.norm ? (layer.norm.apply(pre) as tf.Tensor2D) : pre; // [Ro, C]
      rows = activate(normed, act);
    });
    return rows;
  });
}
