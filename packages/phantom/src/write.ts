import { join } from 'node:path';
import { type Compressor, createOmeLabel, createOmeZarr } from '@goe/scroll-io';
import { PhantomConfigError, type PhantomConfig } from './config.js';
import { phantomRegion } from './phantom.js';

export interface WritePhantomOptions {
  /** Chunk shape `[d, h, w]` (default 64³, clipped to the volume). */
  chunks?: [number, number, number];
  /** Default 2 (read by zarr-python 2.x and the scroll tooling). */
  zarrFormat?: 2 | 3;
  /** Default `'blosc-lz4'`. */
  compressor?: Compressor;
  /** Replace an existing `scroll.zarr` in `outDir`. Default false. */
  overwrite?: boolean;
}

/** Where {@link writePhantom} put things. */
export interface PhantomPaths {
  /** The OME-Zarr image group, `outDir/scroll.zarr`. */
  root: string;
  /** Level-0 image array (uint8), `scroll.zarr/0`. */
  image: string;
  /** Label image groups (uint8 0/1, level `0/` inside each). */
  labels: { ink: string; papyrus: string };
}

/**
 * Streams the phantom chunk by chunk into `outDir/scroll.zarr`, an OME-Zarr group with the image at
 * `0/` and the ground truth as OME labels `labels/ink` and `labels/papyrus`, the voxel size in the
 * multiscales `scale` and the generating configuration in the group attributes. Only one chunk's
 * voxels (plus the blur halo) are held at a time; the same config gives byte-identical files.
 */
export async function writePhantom(outDir: string, config: PhantomConfig, options: WritePhantomOptions = {}): Promise<PhantomPaths> {
  const shape = config.shape;
  const chunks = options.chunks ?? [64, 64, 64];
  if (!Array.isArray(chunks) || chunks.length !== 3 || !chunks.every((c) => Number.isSafeInteger(c) && c >= 1)) {
    throw new PhantomConfigError('chunks', `expected [d, h, w] of integers >= 1, received ${JSON.stringify(chunks)}`);
  }
  const ch = chunks.map((c, i) => Math.min(c, shape[i]));
  const root = join(outDir, 'scroll.zarr');
  const vs = config.voxelSize;
  const common = { chunks: ch, compressor: options.compressor ?? 'blosc-lz4', writeEmptyChunks: false } as const;
  const img = await createOmeZarr(root, {
    ...common,
    shape: [...shape],
    dtype: 'uint8',
    zarrFormat: options.zarrFormat ?? 2,
    voxelSize: [vs, vs, vs],
    unit: 'micrometer',
    name: 'phantom',
    overwrite: options.overwrite,
    attributes: { phantom: config, voxel_size_um: [vs, vs, vs] },
  });
  const ink = await createOmeLabel(img.group, 'ink', { ...common, colors: [{ 'label-value': 1, rgba: [255, 64, 32, 255] }] });
  const papyrus = await createOmeLabel(img.group, 'papyrus', { ...common, colors: [{ 'label-value': 1, rgba: [230, 200, 120, 255] }] });
  for (let z = 0; z < shape[0]; z += ch[0])
    for (let y = 0; y < shape[1]; y += ch[1])
      for (let x = 0; x < shape[2]; x += ch[2]) {
        const region = { offset: [z, y, x], shape: [Math.min(ch[0], shape[0] - z), Math.min(ch[1], shape[1] - y), Math.min(ch[2], shape[2] - x)] };
        const r = phantomRegion(config, region);
        await Promise.all([img.levels[0].write(region, r.image), ink.levels[0].write(region, r.ink), papyrus.levels[0].write(region, r.papyrus)]);
      }
  return { root: img.group.path, image: img.levels[0].path, labels: { ink: ink.group.path, papyrus: papyrus.group.path } };
}
