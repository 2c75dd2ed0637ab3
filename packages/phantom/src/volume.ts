import { checkRegion, copyBox, type Region, type RegionData, type Volume } from '@goe/scroll-io';
import type { PhantomConfig } from './config.js';
import { type PhantomRegion, phantomRegion } from './phantom.js';

/** The phantom as three read-only volumes computed on demand (no files). */
export interface PhantomVolumes {
  image: Volume;
  ink: Volume;
  papyrus: Volume;
}

export interface PhantomVolumesOptions {
  /** Nominal chunk shape reported by the volumes (default 64³, clipped to the volume). */
  chunks?: [number, number, number];
  /** Regions remembered so that image and labels of one box are computed once (default 8). */
  memo?: number;
}

/**
 * The phantom behind the {@link Volume} interface of @goe/scroll-io, computed per read: a patch
 * sampler can train on it directly, with no volume written to disk. Reads of the image and of the
 * labels at the same box (as a sampler issues them) share one computation. Voxels outside
 * `config.shape` read as 0, as for any volume.
 */
export function phantomVolumes(config: PhantomConfig, options: PhantomVolumesOptions = {}): PhantomVolumes {
  const shape = [...config.shape];
  const chunks = (options.chunks ?? [64, 64, 64]).map((c, i) => Math.min(c, shape[i]));
  const memoSize = options.memo ?? 8;
  const memo = new Map<string, PhantomRegion>();
  const base = `phantom://seed/${config.seed}`;
  const vs = config.voxelSize;

  const compute = (region: Region, which: 'image' | 'ink' | 'papyrus', path: string): RegionData => {
    checkRegion(path, 3, region);
    const out = new Uint8Array(region.shape[0] * region.shape[1] * region.shape[2]);
    const lo = region.offset.map((o) => Math.max(o, 0));
    const hi = region.offset.map((o, i) => Math.min(o + region.shape[i], shape[i]));
    if (lo.some((l, i) => l >= hi[i])) return { data: out, shape: region.shape.slice() };
    const box = { offset: lo, shape: hi.map((h, i) => h - lo[i]) };
    const key = `${box.offset.join(',')}|${box.shape.join(',')}`;
    let r = memo.get(key);
    if (!r) {
      r = phantomRegion(config, box);
      memo.set(key, r);
      if (memo.size > memoSize) memo.delete(memo.keys().next().value!);
    }
    copyBox(r[which], box.shape, [0, 0, 0], out, region.shape, lo.map((l, i) => l - region.offset[i]), box.shape);
    return { data: out, shape: region.shape.slice() };
  };

  const make = (which: 'image' | 'ink' | 'papyrus'): Volume => {
    const path = `${base}/${which}`;
    return {
      path,
      shape: shape.slice(),
      chunks: chunks.slice(),
      dtype: 'uint8',
      fillValue: 0,
      voxelSize: [vs, vs, vs],
      axes: ['z', 'y', 'x'],
      unit: 'micrometer',
      attributes: { phantom: config },
      read: async (region: Region) => compute(region, which, path),
    };
  };
  return { image: make('image'), ink: make('ink'), papyrus: make('papyrus') };
}
