/**
 * The ink head: token grid -> voxel logits by a learned per-token decoder (each token predicts the
 * logits of every voxel of its cell: a learned "unpatchify" upsampling, the transposed counterpart of the
 * stem's cell embedding), then an optional learned separable smoothing across cell faces.
 *
 * Legend: B batch, N tokens, d width, cv voxels per cell, D/H/W volume.
 */
import { LayerNorm, Linear, Module, SeparableSmoothing, gelu, tf, unpatchifyCells, type Rng, type TokenGrid } from '@goe/tf';
import type { InkHeadConfig } from './config.js';
import { InkInputError } from './errors.js';

export class InkHead extends Module {
  readonly norm: LayerNorm | undefined;
  readonly hidden: Linear | undefined;
  /** Token -> the logits of its cv voxels. */
  readonly toCell: Linear;
  readonly smoothing: SeparableSmoothing | undefined;

  constructor(
    readonly config: InkHeadConfig,
    rng: Rng,
  ) {
    super();
    const { d, cell, hidden } = config;
    const cv = cell[0] * cell[1] * cell[2];
    this.norm = config.norm ? this.child('norm', new LayerNorm(d, rng)) : undefined;
    this.hidden = hidden > 0 ? this.child('hidden', new Linear(d, hidden, rng)) : undefined;
    this.toCell = this.child('toCell', new Linear(hidden > 0 ? hidden : d, cv, rng));
    this.smoothing = config.smoothing ? this.child('smoothing', new SeparableSmoothing(rng)) : undefined;
  }

  /**
   * @param tokens `[B, N, d]`, z-major over `grid`
   * @param grid the stem's token grid (its `cell` must equal the config's)
   * @returns logits `[B, D, H, W]` at voxel resolution
   * @throws InkInputError when tokens, grid and config do not fit together
   */
  apply(tokens: tf.Tensor3D, grid: TokenGrid): tf.Tensor4D {
    const { d, cell } = this.config;
    if (grid.cell.some((c, i) => c !== cell[i])) {
      throw new InkInputError('grid.cell', `[${cell.join(', ')}] (the head's cell)`, `[${grid.cell.join(', ')}]`);
    }
    const N = grid.dims[0] * grid.dims[1] * grid.dims[2];
    if (tokens.rank !== 3 || tokens.shape[1] !== N || tokens.shape[2] !== d) {
      throw new InkInputError('tokens', `[B, ${N}, ${d}]`, `[${tokens.shape.join(', ')}]`);
    }
    const B = tokens.shape[0];
    return tf.tidy(() => {
      let x = tf.reshape(tokens, [B * N, d]); // [B*N, d]
      if (this.norm) x = this.norm.apply(x);
      if (this.hidden) x = gelu(this.hidden.apply(x));
      const cells = this.toCell.apply(x) as tf.Tensor2D; // [B*N, cv]
      const logits = unpatchifyCells(cells, B, grid); // [B, D, H, W]
      return this.smoothing ? this.smoothing.apply(logits) : logits;
    });
  }
}
