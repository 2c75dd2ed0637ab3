/**
 * The token grid: which voxels each token covers. Tokens are the non-overlapping cells Ω_i of the
 * input (GoE draft eq. 2), numbered z-major: token i = (gz_i * gh + gy_i) * gw + gx_i.
 */
import type { TokenGrid } from '@goe/tf';
import type { Triple } from './config.js';
import { VolumeStemInputError } from './errors.js';

// The grid type is shared with the heads that map tokens back to voxels.
export type { TokenGrid };

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
