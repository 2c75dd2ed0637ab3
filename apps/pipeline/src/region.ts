/**
 * Voxel boxes given as text (`z0:z1,y0:y1,x0:x1`, half-open): `--region` of `goe segment` and
 * `goe eval`, `data.trainRegion` / `data.valRegion` of a training config. One parser and one set of
 * checks, so every command words its errors the same way.
 */
import { parseRegion, ScrollIoOptionError, type Region } from '@goe/scroll-io';
import { ConfigError } from './errors.js';

const AXES = ['z', 'y', 'x'] as const;

/**
 * Parses and checks a box: three non-empty ranges and, when `shape` is given, inside it.
 * @param spec the text (or an already parsed box); undefined is the whole of `shape`
 * @param shape the volume's `[D, H, W]`; without it only the syntax is checked
 * @param o.field the flag or config key errors name; o.source the volume named in errors
 * @throws ConfigError naming `o.field`
 */
export function resolveRegionSpec(spec: string | Region | undefined, shape: readonly number[] | undefined, o: { field: string; source?: string }): Region {
  if (spec === undefined) {
    if (!shape) throw new ConfigError(o.field, 'is required');
    return { offset: [0, 0, 0], shape: [...shape] };
  }
  let r: Region;
  try {
    r = typeof spec === 'string' ? parseRegion(spec, 3) : spec;
  } catch (err) {
    if (err instanceof ScrollIoOptionError) throw new ConfigError(o.field, err.message.replace(/^option 'region': /, ''), { cause: err });
    throw err;
  }
  const text = typeof spec === 'string' ? spec : JSON.stringify(spec);
  if (r.offset.length !== 3 || r.shape.length !== 3) throw new ConfigError(o.field, `'${text}' needs three ranges (z, y, x)`);
  for (let a = 0; a < 3; a++) {
    if (!(r.shape[a]! > 0)) throw new ConfigError(o.field, `'${text}' is empty along ${AXES[a]}`);
    if (shape && (r.offset[a]! < 0 || r.offset[a]! + r.shape[a]! > shape[a]!)) {
      throw new ConfigError(o.field, `'${text}' reaches ${AXES[a]} = ${r.offset[a]! + r.shape[a]!}, outside ${o.source ?? 'the volume'} of shape [${shape.join(', ')}]`);
    }
  }
  return r;
}
