/**
 * Run-length encoding of ink masks in the format of the Kaggle "Vesuvius Challenge - Ink Detection"
 * competition: the mask `[H, W]` is flattened row by row (C order, x fastest), pixels are numbered
 * from 1, and the encoding is the space-separated pairs `start length` of every run of ink pixels, in
 * order. The competition's starter code found runs by comparing neighbours of the flattened mask, which
 * misses a run that starts at the first pixel or ends at the last; these functions treat the mask as
 * if padded with background at both ends, so every run is kept.
 */
import { InkInputError } from './errors.js';

/**
 * Encodes a mask. A pixel is ink when its value is strictly above `threshold` (default 0.5, so 0/1
 * masks and probabilities both work).
 * @param mask `[H, W]` flattened row-major (length H·W)
 * @returns `"start length start length …"` (1-based starts; `""` for an empty mask)
 */
export function rleEncode(mask: ArrayLike<number>, threshold = 0.5): string {
  if (!Number.isFinite(threshold)) throw new InkInputError('threshold', 'a finite number', String(threshold));
  const parts: string[] = [];
  let start = -1;
  for (let i = 0; i < mask.length; i++) {
    const v = mask[i] as number;
    if (Number.isNaN(v)) throw new InkInputError('mask', 'numbers (no NaN)', `NaN at pixel ${i}`);
    const ink = v > threshold;
    if (ink && start < 0) start = i;
    else if (!ink && start >= 0) {
      parts.push(`${start + 1} ${i - start}`);
      start = -1;
    }
  }
  if (start >= 0) parts.push(`${start + 1} ${mask.length - start}`);
  return parts.join(' ');
}

/**
 * Decodes an encoding made by {@link rleEncode} (or the competition's format) into a 0/1 mask.
 * Runs must be in increasing order, not overlap, and lie inside the image.
 * @returns `[height, width]` flattened row-major, 1 for ink
 * @throws InkInputError naming the bad token or run
 */
export function rleDecode(rle: string, height: number, width: number): Uint8Array {
  for (const [name, v] of [['height', height], ['width', width]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new InkInputError(name, 'a positive integer', String(v));
  }
  const n = height * width;
  const out = new Uint8Array(n);
  const tokens = rle.trim() === '' ? [] : rle.trim().split(/\s+/);
  if (tokens.length % 2 !== 0) throw new InkInputError('rle', 'an even number of integers (start length pairs)', `${tokens.length} numbers`);
  let end = 0; // one past the last pixel of the previous run (0-based)
  for (let t = 0; t < tokens.length; t += 2) {
    const start = Number(tokens[t]);
    const length = Number(tokens[t + 1]);
    if (!/^\d+$/.test(tokens[t]!) || !/^\d+$/.test(tokens[t + 1]!) || start < 1 || length < 1) {
      throw new InkInputError('rle', 'positive integer pairs', `'${tokens[t]} ${tokens[t + 1]}' (pair ${t / 2 + 1})`);
    }
    const s = start - 1;
    if (s < end) throw new InkInputError('rle', 'runs in increasing order without overlap', `run ${t / 2 + 1} starts at ${start}, before pixel ${end + 1}`);
    if (s + length > n) throw new InkInputError('rle', `runs inside the ${height}x${width} image (${n} pixels)`, `run ${t / 2 + 1} ends at pixel ${s + length}`);
    out.fill(1, s, s + length);
    end = s + length;
  }
  return out;
}
