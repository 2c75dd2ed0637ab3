/**
 * The volume stem (GoE draft §3.1.1): x -> φ(x) (eq. 1) -> tokens t_i = W_t ψ(f_0, Ω_i) + b_t (eq. 2)
 * plus positions, and the aux routing features a_i = g_aux(f_0[Ω_i]) (eq. 3).
 *
 * φ is one 3x3x3 convolution (edge-replicated borders) with a few channels and a non-linearity, or the
 * identity; ψ takes each non-overlapping cell's features; W_t is one Linear. g_aux is the fixed
 * descriptor set of `descriptors.ts` followed by a learned Linear to da.
 *
 * Legend: B batch, D/H/W volume (z, y, x), R = B*D*H*W voxel rows, C conv channels, N tokens,
 * cv voxels per token, d token width, da aux width, nd descriptor channels.
 */
import { LayerNorm, Linear, Module, gelu, tf, type Rng } from '@goe/tf';
import type { VolumeStemConfig } from './config.js';
import { cellDescriptors, descriptorCount } from './descriptors.js';
import { VolumeStemInputError } from './errors.js';
import { makeTokenGrid, type TokenGrid } from './grid.js';
import { neighbourhoodColumns, patchifyRows } from './neighbourhood.js';
import { sinusoidalPositions3d } from './positions.js';

export interface VolumeStemApplyOptions {
  /** Training mode (the stem has no dropout yet; accepted so every module takes the same options). */
  training?: boolean;
  /**
   * Voxel offset of each patch's first voxel within the level's volume (one triple per batch element,
   * or one for all), for positions in the scroll's frame; patch-relative when omitted.
   */
  origin?: ReadonlyArray<readonly [number, number, number]>;
  /** Also return the positional encoding that was added (`positions`). */
  withPositions?: boolean;
  /** Also return the raw descriptors before the learned projection (`descriptors`). */
  withDescriptors?: boolean;
}

export interface VolumeStemOutput {
  /** `[B, N, d]` token embeddings, positions already added. */
  tokens: tf.Tensor3D;
  /** `[B, N, da]` aux routing features. */
  aux: tf.Tensor3D;
  /** `[B, N, d]` the positional encoding added to `tokens` (only with `withPositions`). */
  positions?: tf.Tensor3D;
  /** `[B, N, nd]` raw routing descriptors, `DESCRIPTOR_NAMES` order (only with `withDescriptors`). */
  descriptors?: tf.Tensor3D;
  grid: TokenGrid;
}

/** The 3x3x3 stem convolution φ, weights in tf.conv3d's `[kz, ky, kx, 1, C]` layout. */
class StemConv extends Module {
  readonly w: tf.Variable;
  readonly b: tf.Variable;
  constructor(
    readonly channels: number,
    rng: Rng,
  ) {
    super();
    this.w = this.param('w', [3, 3, 3, 1, channels], { kind: 'heNormal' }, rng);
    this.b = this.param('b', [channels], { kind: 'zeros' }, rng);
  }

  /** @param cols `[R, 27]` neighbourhood columns @returns `[R, C]` pre-activation */
  apply(cols: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      // Reorder taps from (dz, dy, dx) to the columns' ((dy, dx), dz) order (see `tapColumn`).
      const w3 = tf.reshape(this.w, [3, 9, this.channels]); // [dz, dy*3+dx, C]
      const w27 = tf.reshape(tf.transpose(w3, [1, 0, 2]), [27, this.channels]); // [27, C]
      return tf.add(tf.matMul(cols, w27), this.b) as tf.Tensor2D; // [R, C]
    });
  }
}

export class VolumeStem extends Module {
  readonly conv: StemConv | undefined;
  /** W_t, b_t of eq. 2: cell features -> d. */
  readonly embed: Linear;
  /** Learned part of g_aux (eq. 3): normalised descriptors -> da. */
  readonly auxNorm: LayerNorm;
  readonly auxProj: Linear;
  readonly descriptorCount: number;

  constructor(
    readonly config: VolumeStemConfig,
    rng: Rng,
  ) {
    super();
    const [cz, cy, cx] = config.cell;
    const cv = cz * cy * cx;
    const C = config.convChannels;
    this.conv = C > 0 ? this.child('conv', new StemConv(C, rng)) : undefined;
    this.embed = this.child('embed', new Linear(cv * Math.max(C, 1), config.d, rng));
    this.descriptorCount = descriptorCount(config.orientationDescriptors);
    // Descriptors mix units (intensity, gradient, ratios in [0, 1]); a LayerNorm puts them on one
    // scale per token before the projection, so no channel dominates the router's input by its units.
    this.auxNorm = this.child('auxNorm', new LayerNorm(this.descriptorCount, rng));
    this.auxProj = this.child('auxProj', new Linear(this.descriptorCount, config.da, rng));
  }

  /**
   * @param x `[B, D, H, W, 1]` intensities (normalised, e.g. to [-1, 1]); D, H, W multiples of the cell
   * @returns tokens `[B, N, d]`, aux `[B, N, da]`, the token grid (N = gd·gh·gw, z-major)
   * @throws VolumeStemInputError on a wrong rank, channel count, cell-indivisible size or origin count
   */
  apply(x: tf.Tensor5D, opts: VolumeStemApplyOptions = {}): VolumeStemOutput {
    if (x.rank !== 5 || x.shape[4] !== 1) {
      throw new VolumeStemInputError('x', '[B, D, H, W, 1]', `[${x.shape.join(', ')}]`);
    }
    const [B, D, H, W] = x.shape;
    const grid = makeTokenGrid([D, H, W], this.config.cell);
    if (opts.origin && opts.origin.length !== 1 && opts.origin.length !== B) {
      throw new VolumeStemInputError('origin', `1 or ${B} triples`, `${opts.origin.length}`);
    }
    const N = grid.dims[0] * grid.dims[1] * grid.dims[2];
    const { d, da } = this.config;
    const out = tf.tidy(() => {
      const cols = neighbourhoodColumns(tf.reshape(x, [B, D, H, W]) as tf.Tensor4D); // [R, 27]
      let feats: tf.Tensor2D; // [R, C] (C = 1 without the convolution)
      if (this.conv) {
        const pre = this.conv.apply(cols); // [R, C]
        const act = this.config.activation;
        feats = (act === 'silu' ? tf.mul(pre, tf.sigmoid(pre)) : act === 'gelu' ? gelu(pre) : tf.relu(pre)) as tf.Tensor2D;
      } else {
        feats = tf.reshape(x, [B * D * H * W, 1]) as tf.Tensor2D; // [R, 1]
      }
      const cells = patchifyRows(feats, B, grid); // [B*N, cv*C]
      let tokens = this.embed.apply(cells); // [B*N, d]
      let positions: tf.Tensor | undefined;
      if (this.config.positional === 'sinusoidal') {
        const pos = sinusoidalPositions3d(grid, B, {
          d,
          voxelSizeUm: this.config.voxelSizeUm,
          pyramidLevel: this.config.pyramidLevel,
          minWavelengthUm: this.config.minWavelengthUm,
          maxWavelengthUm: this.config.maxWavelengthUm,
          origin: opts.origin,
        });
        positions = tf.tensor2d(pos, [B * N, d]); // [B*N, d]
        tokens = tf.add(tokens, positions);
      }
      const desc = cellDescriptors(cols, B, grid, {
        orientation: this.config.orientationDescriptors,
        eps: this.config.descriptorEps,
      }); // [B*N, nd]
      const aux = this.auxProj.apply(this.auxNorm.apply(desc)); // [B*N, da]
      const result: Record<string, tf.Tensor> = {
        tokens: tf.reshape(tokens, [B, N, d]), // [B, N, d]
        aux: tf.reshape(aux, [B, N, da]), // [B, N, da]
      };
      if (opts.withPositions) {
        result['positions'] = positions
          ? tf.reshape(positions, [B, N, d]) // [B, N, d]
          : tf.zeros([B, N, d]);
      }
      if (opts.withDescriptors) result['descriptors'] = tf.reshape(desc, [B, N, this.descriptorCount]); // [B, N, nd]
      return result;
    });
    return {
      tokens: out['tokens'] as tf.Tensor3D,
      aux: out['aux'] as tf.Tensor3D,
      ...(out['positions'] ? { positions: out['positions'] as tf.Tensor3D } : {}),
      ...(out['descriptors'] ? { descriptors: out['descriptors'] as tf.Tensor3D } : {}),
      grid,
    };
  }
}
