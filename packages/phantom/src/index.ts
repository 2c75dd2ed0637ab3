export {
  PHANTOM_PRESETS,
  type PhantomConfig,
  type PhantomConfigInput,
  PhantomConfigError,
  type PhantomPreset,
  resolvePhantomConfig,
} from './config.js';
export { arcOfTheta, inkAt, type PhantomBox, type PhantomRegion, phantomRegion, type SheetPoint, sheetAt, thetaOfArc } from './phantom.js';
export { type PhantomFragment, type PhantomFragmentOptions, writePhantomFragment } from './fragment.js';
export { defaultPyramidLevels, type PhantomPaths, type PhantomProgress, PhantomWriteError, writePhantom, type WritePhantomOptions } from './write.js';
export { type PhantomPreview, type PhantomPreviewOptions, type PreviewPanel, writePhantomPreview } from './preview.js';
export { type PhantomVolumes, type PhantomVolumesOptions, phantomVolumes } from './volume.js';
