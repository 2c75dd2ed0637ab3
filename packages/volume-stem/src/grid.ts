/**
 * The token grid: which voxels each token covers. Tokens are the non-overlapping cells Ω_i of the
 * input (GoE draft eq. 2), numbered z-major: token i = (gz_i * gh + gy_i) * gw + gx_i.
 */
import type { Triple } from './config.js';
import { VolumeStemInputError } from './errors.js';

/** How a `[B, D, H, W]` volume is cut into `N = gd * gh * gw` tokens. */
export interface TokenGrid {
  /** Tokens per axis `[gd, gh, gw]`. */
  dims: [number, number, number];
  /** Voxels per token `[cz, cy, cx]`. */
  cell: [number, number, number];
  /** The volume the grid tiles, `[D, H, W]` voxels. */
  inputShape: [number, number, number];
}

/**
 * The grid that `cell` cuts a `[D, H, W]` volume into.
 * @throws VolumeStemInputError when a size is not a multiple of the cell.
 */
export function makeTokenGrid(inputShape: readonly number[], cell: Triple): TokenGrid {
  const [D, H, W] = inputShape as [number, number, number];
  const [cz, cy, cx] = cell;
  if (inputShape.length !== 3 || D % cz || H % cy || W % cx || D < cz || H < cy || W < cx) {
    throw new VolumeStemInputError(
      'x',
      `spatial size a positive multiple of the cell [${cell.join(', ')}]`,
      `[${inputShape.join(', ')}]`,
    );
  }
  return { dims: [D / cz, H / cy, W / cx], cell: [cz, cy, cx], inputShape: [D, H, W] };
}

/** Number of tokens N of a grid. */
export function tokenCount(grid: TokenGrid): number {
  return grid.dims[0] * grid.dims[1] * grid.dims[2];
}
