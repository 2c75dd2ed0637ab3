/**
 * 3-D sinusoidal positional encoding from token-centre coordinates in physical units (µm), the
 * transformer encoding of Vaswani et al. (2017) applied per axis. Using micrometres rather than token
 * indices means a token at pyramid level L (voxels 2^L times wider) gets the encoding of where it
 * physically is, so the same weights see consistent positions across levels and voxel sizes.
 */
import type { TokenGrid } from './grid.js';

export interface PositionalOptions {
  /** Token width d: the encoding fills 6·⌊d/6⌋ channels (sin and cos per frequency per axis), zeros after. */
  d: number;
  /** Level-0 voxel size `[z, y, x]` in µm. */
  voxelSizeUm: readonly [number, number, number];
  /** Pyramid level of the volume (voxel size × 2^level). */
  pyramidLevel: number;
  minWavelengthUm: number;
  maxWavelengthUm: number;
  /**
   * Voxel offset of each patch's first voxel in the level's volume (one triple per batch element, or
   * one for all); patch-relative positions when omitted.
   */
  origin?: ReadonlyArray<readonly [number, number, number]>;
}

/** Wavelengths λ_k, log-spaced from min to max (one per frequency; one frequency -> the minimum). */
export function positionalWavelengths(d: number, minUm: number, maxUm: number): Float64Array {
  const nf = Math.floor(d / 6);
  const out = new Float64Array(nf);
  for (let k = 0; k < nf; k++) out[k] = nf === 1 ? minUm : minUm * Math.pow(maxUm / minUm, k / (nf - 1));
  return out;
}

/**
 * Token-centre coordinates in µm in the level-0 frame, `[B*N*3]` in (z, y, x) order per token. The
 * centre of a cell starting at voxel v with c voxels is v + (c - 1) / 2 (voxel centres sit on integer
 * coordinates). A level-L voxel v covers level-0 voxels 2^L·v … 2^L·(v + 1) − 1, so its centre is the
 * level-0 coordinate (v + ½)·2^L − ½: the same physical point gets the same position at every level.
 */
export function tokenCentresUm(grid: TokenGrid, batch: number, opts: Omit<PositionalOptions, 'd' | 'minWavelengthUm' | 'maxWavelengthUm'>): Float64Array {
  const [gd, gh, gw] = grid.dims;
  const [cz, cy, cx] = grid.cell;
  const scale = Math.pow(2, opts.pyramidLevel);
  const [sz, sy, sx] = opts.voxelSizeUm;
  const toUm = (c: number, size: number): number => ((c + 0.5) * scale - 0.5) * size;
  const N = gd * gh * gw;
  const out = new Float64Array(batch * N * 3);
  for (let b = 0; b < batch; b++) {
    const o = opts.origin ? (opts.origin.length === 1 ? opts.origin[0] : opts.origin[b]) : undefined;
    const [oz, oy, ox] = o ?? [0, 0, 0];
    let i = b * N * 3;
    for (let z = 0; z < gd; z++)
      for (let y = 0; y < gh; y++)
        for (let x = 0; x < gw; x++) {
          out[i++] = toUm(oz + z * cz + (cz - 1) / 2, sz);
          out[i++] = toUm(oy + y * cy + (cy - 1) / 2, sy);
          out[i++] = toUm(ox + x * cx + (cx - 1) / 2, sx);
        }
  }
  return out;
}

/**
 * The encoding, computed on the host in float64 (cheap: B·N·d values) so that it is identical on every
 * backend. Layout per token: for axis a in (z, y, x): [sin(2π u_a / λ_0..nf-1), cos(2π u_a / λ_0..nf-1)].
 *
 * @returns `[B*N*d]` float32, row-major `[B, N, d]`
 */
export function sinusoidalPositions3d(grid: TokenGrid, batch: number, opts: PositionalOptions): Float32Array {
  const { d } = opts;
  const lambdas = positionalWavelengths(d, opts.minWavelengthUm, opts.maxWavelengthUm);
  const nf = lambdas.length;
  const centres = tokenCentresUm(grid, batch, opts);
  const rows = centres.length / 3;
  const out = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    for (let a = 0; a < 3; a++) {
      const u = centres[r * 3 + a] as number;
      const base = r * d + a * 2 * nf;
      for (let k = 0; k < nf; k++) {
        const w = (2 * Math.PI * u) / (lambdas[k] as number);
        out[base + k] = Math.sin(w);
        out[base + nf + k] = Math.cos(w);
      }
    }
  }
  return out;
}
