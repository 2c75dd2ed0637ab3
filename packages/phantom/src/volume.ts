import { allocate, checkRegion, copyBox, type Dtype, type Region, type RegionData, type Volume } from '@goe/scroll-io';
import type { PhantomConfig } from './config.js';
import { type PhantomRegion, phantomRegion } from './phantom.js';

/**
 * The phantom as read-only volumes computed on demand (no files): the image, the scalar labels
 * `[D, H, W]`, and the fibre direction and sheet normal as `[3, D, H, W]` volumes (components z, y, x
 * on the first axis).
 */
export interface PhantomVolumes {
  image: Volume;
  ink: Volume;
  papyrus: Volume;
  wrap: Volume;
  fibre: Volume;
  normal: Volume;
}

export interface PhantomVolumesOptions {
  /** Nominal chunk shape `[d, h, w]` reported by the volumes (default 64³, clipped to the volume). */
  chunks?: [number, number, number];
  /** Regions remembered so that image and labels of one box are computed once (default 8). */
  memo?: number;
}

type Field = 'image' | 'ink' | 'papyrus' | 'wrap' | 'fibre' | 'normal';

/**
 * The phantom behind the {@link Volume} interface of @goe/scroll-io, computed per read: a patch
 * sampler can train on it directly, with no volume written to disk. Reads of several fields at the
 * same box (as a sampler issues them) share one computation. Voxels outside `config.shape` read as 0,
 * as for any volume.
 */
export function phantomVolumes(config: PhantomConfig, options: PhantomVolumesOptions = {}): PhantomVolumes {
  const shape = [...config.shape];
  const chunks = (options.chunks ?? [64, 64, 64]).map((c, i) => Math.min(c, shape[i]));
  const memoSize = options.memo ?? 8;
  const memo = new Map<string, PhantomRegion>();
  const base = `phantom://seed/${config.seed}`;
  const vs = config.voxelSize;
  const dtypes: Record<Field, Dtype> = { image: config.dtype, ink: 'uint8', papyrus: 'uint8', wrap: 'uint16', fibre: 'float32', normal: 'float32' };

  const computed = (box: Region): PhantomRegion => {
    const key = `${box.offset.join(',')}|${box.shape.join(',')}`;
    let r = memo.get(key);
    if (!r) {
      r = phantomRegion(config, box);
      memo.set(key, r);
      if (memo.size > memoSize) memo.delete(memo.keys().next().value!);
    }
    return r;
  };

  const compute = (region: Region, which: Field, path: string): RegionData => {
    const vector = which === 'fibre' || which === 'normal';
    checkRegion(path, vector ? 4 : 3, region);
    const out = allocate(dtypes[which], region.shape.reduce((a, b) => a * b, 1));
    // Spatial part of the region, and for vector fields the component range.
    const sp = vector ? { offset: region.offset.slice(1), shape: region.shape.slice(1) } : region;
    const lo = sp.offset.map((o) => Math.max(o, 0));
    const hi = sp.offset.map((o, i) => Math.min(o + sp.shape[i], shape[i]));
    if (lo.some((l, i) => l >= hi[i])) return { data: out, shape: region.shape.slice() };
    const box = { offset: lo, shape: hi.map((h, i) => h - lo[i]) };
    const r = computed(box);
    const dst = lo.map((l, i) => l - sp.offset[i]);
    if (!vector) {
      copyBox(r[which as 'image'], box.shape, [0, 0, 0], out, region.shape, dst, box.shape);
    } else {
      const c0 = Math.max(region.offset[0], 0);
      const c1 = Math.min(region.offset[0] + region.shape[0], 3);
      if (c0 < c1) copyBox(r[which as 'fibre'], [3, ...box.shape], [c0, 0, 0, 0], out, region.shape, [c0 - region.offset[0], ...dst], [c1 - c0, ...box.shape]);
    }
    return { data: out, shape: region.shape.slice() };
  };

  const make = (which: Field): Volume => {
    const path = `${base}/${which}`;
    const vector = which === 'fibre' || which === 'normal';
    return {
      path,
      shape: vector ? [3, ...shape] : shape.slice(),
      chunks: vector ? [3, ...chunks] : chunks.slice(),
      dtype: dtypes[which],
      fillValue: 0,
      voxelSize: vector ? [1, vs, vs, vs] : [vs, vs, vs],
      axes: vector ? ['c', 'z', 'y', 'x'] : ['z', 'y', 'x'],
      unit: 'micrometer',
      attributes: { phantom: config },
      read: async (region: Region) => compute(region, which, path),
    };
  };
  return { image: make('image'), ink: make('ink'), papyrus: make('papyrus'), wrap: make('wrap'), fibre: make('fibre'), normal: make('normal') };
}
