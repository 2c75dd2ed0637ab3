/**
 * A PNG preview of the phantom: its three middle slices computed directly (no volume needed), the CT
 * image in grey on top and the same slices with the ground truth drawn over them below.
 */
import { writePng } from '@goe/scroll-io';
import { PhantomConfigError, type PhantomConfig } from './config.js';
import { phantomRegion } from './phantom.js';

export interface PhantomPreviewOptions {
  /** Index of the z slice (default the middle one, `floor(D / 2)`); likewise `y` and `x`. */
  z?: number;
  y?: number;
  x?: number;
}

/** Where one slice is in the preview: the grey panel at (`left`, `top`), its overlay at (`left`, `overlayTop`). */
export interface PreviewPanel {
  /** The axis the slice is normal to: `z` shows (y, x), `y` shows (z, x), `x` shows (z, y); rows are the first. */
  axis: 'z' | 'y' | 'x';
  /** Slice index along `axis`. */
  index: number;
  left: number;
  top: number;
  overlayTop: number;
  width: number;
  height: number;
}

/** What {@link writePhantomPreview} wrote. */
export interface PhantomPreview {
  path: string;
  width: number;
  height: number;
  panels: PreviewPanel[];
}

/** Pixels between panels (left black). */
const GAP = 4;
/** Overlay colours and their weight over the grey: ink, then odd and even wrap indices. */
const INK: [number, number, number] = [255, 30, 30];
const INK_ALPHA = 0.75;
const WRAP_TINTS: [number, number, number][] = [
  [60, 140, 255],
  [250, 210, 40],
];
const WRAP_ALPHA = 0.4;

function blend(grey: number, colour: readonly number[], alpha: number, out: Uint8Array, at: number): void {
  for (let c = 0; c < 3; c++) out[at + c] = Math.round(grey * (1 - alpha) + colour[c] * alpha);
}

/**
 * Writes an 8-bit RGB PNG (atomically) of the phantom's middle z, y and x slices side by side: the top
 * row the image in grey (uint16 images scaled to 8 bits), the bottom row the same slices with ink in
 * red and papyrus tinted by wrap index, alternating two tints so that neighbouring wraps differ; air
 * is left grey. Panels are top-aligned, `GAP` pixels apart on black.
 */
export async function writePhantomPreview(path: string, config: PhantomConfig, options: PhantomPreviewOptions = {}): Promise<PhantomPreview> {
  const [D, H, W] = config.shape;
  const pick = (axis: 'z' | 'y' | 'x', size: number) => {
    const i = options[axis] ?? Math.floor(size / 2);
    if (!Number.isSafeInteger(i) || i < 0 || i >= size) throw new PhantomConfigError(`preview.${axis}`, `expected an integer in [0, ${size - 1}], received ${JSON.stringify(i)}`);
    return i;
  };
  const [z, y, x] = [pick('z', D), pick('y', H), pick('x', W)];
  const slices = [
    { axis: 'z' as const, index: z, rows: H, cols: W, box: { offset: [z, 0, 0], shape: [1, H, W] } },
    { axis: 'y' as const, index: y, rows: D, cols: W, box: { offset: [0, y, 0], shape: [D, 1, W] } },
    { axis: 'x' as const, index: x, rows: D, cols: H, box: { offset: [0, 0, x], shape: [D, H, 1] } },
  ];
  const rowHeight = Math.max(H, D);
  const width = slices.reduce((a, s) => a + s.cols, 0) + GAP * (slices.length - 1);
  const height = 2 * rowHeight + GAP;
  const rgb = new Uint8Array(width * height * 3);
  const scale = config.dtype === 'uint16' ? 1 / 257 : 1;
  const panels: PreviewPanel[] = [];
  let left = 0;
  for (const s of slices) {
    // A slice box is [1, H, W], [D, 1, W] or [D, H, 1]: in C order its voxels are the panel's rows x cols.
    const r = phantomRegion(config, s.box);
    const overlayTop = rowHeight + GAP;
    for (let row = 0; row < s.rows; row++)
      for (let col = 0; col < s.cols; col++) {
        const i = row * s.cols + col;
        const grey = Math.round(r.image[i] * scale);
        const top = (row * width + left + col) * 3;
        const bottom = ((overlayTop + row) * width + left + col) * 3;
        rgb[top] = rgb[top + 1] = rgb[top + 2] = grey;
        if (r.ink[i]) blend(grey, INK, INK_ALPHA, rgb, bottom);
        else if (r.wrap[i] > 0) blend(grey, WRAP_TINTS[r.wrap[i] % 2], WRAP_ALPHA, rgb, bottom);
        else rgb[bottom] = rgb[bottom + 1] = rgb[bottom + 2] = grey;
      }
    panels.push({ axis: s.axis, index: s.index, left, top: 0, overlayTop, width: s.cols, height: s.rows });
    left += s.cols + GAP;
  }
  await writePng(path, rgb, { width, height, channels: 3 });
  return { path, width, height, panels };
}
