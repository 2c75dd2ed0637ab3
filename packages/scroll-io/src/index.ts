export { atomicWriteFile, type AtomicWriteOptions, replaceDirectory } from './atomic.js';
export { ChunkCache, type ChunkCacheStats, defaultChunkCache } from './cache.js';
export {
  configureDecoding,
  type DecodingConfig,
  decodingConfig,
  type DecodingStats,
  decodingStats,
  registerNativeCodecs,
  resolveDecodingConfig,
} from './codecs.js';
export { DecodePool, DecodeWorkerError } from './pool.js';
export { NATIVE_CODEC, type NativeReaderBinding, nativeReaderBinding, nativeReaderLoadError } from './native.js';
export { allocate, bytesPerElement, DTYPES, type Dtype, type DtypeArrayMap, dtypeOf, isDtype, type VolumeArray } from './dtype.js';
export {
  PngError,
  ScrollIoOptionError,
  ZarrChunkError,
  ZarrDtypeError,
  ZarrError,
  ZarrExistsError,
  ZarrMetadataError,
  ZarrNotFoundError,
  ZarrRegionError,
  ZarrShapeMismatchError,
  ZarrUnsupportedError,
} from './errors.js';
export {
  Fragment,
  FRAGMENT_LAYOUTS,
  FragmentError,
  FragmentExistsError,
  type FragmentImage,
  type FragmentImageInput,
  FragmentLayerMissingError,
  type FragmentLayout,
  FragmentLayoutError,
  FragmentShapeError,
  openFragment,
  type OpenFragmentOptions,
  writeFragment,
  type WriteFragmentInput,
  type WriteFragmentOptions,
  writeTiffStack,
  type WriteTiffStackOptions,
} from './fragment.js';
export { COMPRESSORS, type Compressor } from './metadata.js';
export {
  createGroup,
  type CreateGroupOptions,
  createOmeLabel,
  type CreateOmeLabelOptions,
  createOmeZarr,
  type CreateOmeZarrOptions,
  type Multiscales,
  type MultiscaleLevel,
  omeMultiscalesAttributes,
  type OmeImage,
  openGroup,
  openVolume,
  type OpenVolumeOptions,
  openWritableOmeLevel,
  parseMultiscales,
  setGroupAttributes,
  type ZarrGroup,
} from './ome.js';
export { type PngImage, type PngShape, readPng, writePng } from './png.js';
export { checkRegion, copyBox, product, type Region } from './region.js';
export {
  encodeTiff16,
  type PixelRect,
  readTiffInfo,
  readTiffWindow,
  TIFF_COMPRESSIONS,
  type TiffCompression,
  TiffError,
  type TiffInfo,
  writeTiff16,
  type WriteTiffOptions,
} from './tiff.js';
export { configureHttp, DEFAULT_HTTP_OPTIONS, type HttpOptions, httpOptions, HttpStore, resolveHttpOptions, ZarrHttpError } from './http.js';
export { type ArraySummary, inspectVolume, parseRegion, type RegionSummary, summarizeRegion, type VolumeInspection } from './inspect.js';
export { gaussianWeights, type Tile, Tiler, type TilerOptions, tileRegion } from './tiler.js';
export { type Patch, PatchSampler, type PatchSamplerOptions, type PatchSamplerState } from './sampler.js';
export {
  createVolume,
  type CreateVolumeOptions,
  type OpenArrayOptions,
  openWritableVolume,
  type RegionData,
  type Volume,
  type WritableOptions,
  type WritableVolume,
  ZarrVolume,
} from './volume.js';
export { buildPyramid, type BuildPyramidOptions, PYRAMID_METHODS, type PyramidMethod, type PyramidResult, reduceBlocks } from './pyramid.js';
