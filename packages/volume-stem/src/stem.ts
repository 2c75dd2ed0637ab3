/**
 * The volume stem (GoE draft §3.1.1): x -> φ(x) (eq. 1) -> tokens t_i = W_t ψ(f_0, Ω_i) + b_t (eq. 2)
 * plus positions, and the aux routing features a_i = g_aux(f_0[Ω_i]) (eq. 3).
 *
 * φ is the convolution stack of `conv.ts` (by default one 3x3x3 layer with edge-replicated borders and a
 * non-linearity), or the identity; ψ takes each non-overlapping cell of φ's map; W_t is one Linear. g_aux
 * is the fixed descriptor set of `descriptors.ts` over the same cells in input voxels, followed by a
 * learned Linear to da. With strides, a token covers `cell × strides` input voxels per axis, and the
 * returned grid says so: heads and positions work in input voxels.
 *
 * Legend: B batch, D/H/W volume (z, y, x), R = B*D*H*W voxel rows, Rf feature-map rows, C φ's output
 * channels, S = product of the strides per axis, N tokens, cv feature voxels per token, d token width, da aux width, nd descriptor channels.
 */
import { LayerNorm, Linear, Module, tf, type Rng } from '@goe/tf';
import { tokenCellVoxels, type Triple, type VolumeStemConfig } from './config.js';
import { StemConvLayer, convFeatures, featureShapes } from './conv.js';
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

export class VolumeStem extends Module {
  /** The layers of φ in order: `conv`, `conv1`, `conv2`, … (checkpoint names). */
  readonly convLayers: readonly StemConvLayer[];
  /** φ's first layer (the only one by default). */
  readonly conv: StemConvLayer | undefined;
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
    let inChannels = 1;
    this.convLayers = config.convLayers.map((spec, i) => {
      const layer = this.child(i === 0 ? 'conv' : `conv${i}`, new StemConvLayer(spec, inChannels, rng));
      inChannels = spec.channels;
      return layer;
    });
    this.conv = this.convLayers[0];
    this.embed = this.child('embed', new Linear(cv * Math.max(C, 1), config.d, rng));
    this.descriptorCount = descriptorCount(config.orientationDescriptors);
    // Descriptors mix units (intensity, gradient, ratios in [0, 1]); a LayerNorm puts them on one
    // scale per token before the projection, so no channel dominates the router's input by its units.
    this.auxNorm = this.child('auxNorm', new LayerNorm(this.descriptorCount, rng));
    this.auxProj = this.child('auxProj', new Linear(this.descriptorCount, config.da, rng));
  }

  /**
   * @param x `[B, D, H, W, 1]` intensities (normalised, e.g. to [-1, 1]); D, H, W multiples of cell × S
   * @returns tokens `[B, N, d]`, aux `[B, N, da]`, the token grid in input voxels (cell × S per token,
   * N = gd·gh·gw, z-major)
   * @throws VolumeStemInputError on a wrong rank, channel count, stride- or cell-indivisible size or
   * origin count
   */
  apply(x: tf.Tensor5D, opts: VolumeStemApplyOptions = {}): VolumeStemOutput {
    if (x.rank !== 5 || x.shape[4] !== 1) {
      throw new VolumeStemInputError('x', '[B, D, H, W, 1]', `[${x.shape.join(', ')}]`);
    }
    const [B, D, H, W] = x.shape;
    const shapes = featureShapes([D, H, W], this.config.convLayers); // [Df, Hf, Wf] per layer
    const featShape = shapes.at(-1) ?? ([D, H, W] as Triple);
    const [cz, cy, cx] = this.config.cell;
    if (featShape.some((n, a) => n % this.config.cell[a]! !== 0)) {
      throw new VolumeStemInputError(
        'x',
        `sizes whose feature map [${featShape.join(', ')}] is a multiple of the cell [${this.config.cell.join(', ')}]`,
        `[${D}, ${H}, ${W}]`,
      );
    }
    // Cells in input voxels: what the descriptors, positions and heads use.
    const grid = makeTokenGrid([D, H, W], tokenCellVoxels(this.config));
    // The same tokens as cells of φ's map: what ψ cuts.
    const featGrid: TokenGrid = { dims: grid.dims, cell: [cz, cy, cx], inputShape: featShape };
    if (opts.origin && opts.origin.length !== 1 && opts.origin.length !== B) {
      throw new VolumeStemInputError('origin', `1 or ${B} triples`, `${opts.origin.length}`);
    }
    const N = grid.dims[0] * grid.dims[1] * grid.dims[2];
    const { d, da } = this.config;
    const out = tf.tidy(() => {
      const cols = neighbourhoodColumns(tf.reshape(x, [B, D, H, W]) as tf.Tensor4D); // [R, 27]
      // [Rf, C] (the voxels themselves, C = 1, without a convolution)
      const feats = convFeatures(x, cols, this.convLayers, shapes, this.config.activation);
      const cells = patchifyRows(feats, B, featGrid); // [B*N, cv*C]
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
