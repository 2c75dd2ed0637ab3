/**
 * Configuration of the synthetic scroll phantom (DESIGN.md section 6): every default in one place,
 * validated with messages that name the field, the expected value and what arrived.
 */

export class PhantomConfigError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`phantom config '${field}': ${message}`);
    this.name = new.target.name;
    this.field = field;
  }
}

/** A fully resolved phantom configuration. Lengths are in voxels, intensities in [0, 1] before windowing. */
export interface PhantomConfig {
  /** Volume shape `[D, H, W]` (z is the scroll axis). */
  shape: [number, number, number];
  seed: number;
  /** Turns of the Archimedean spiral. */
  wraps: number;
  /** Radius where the sheet's centre line starts. */
  innerRadius: number;
  /** Sheet thickness. */
  thickness: number;
  /** Free space between consecutive wraps; the spiral pitch is `thickness + gap`. */
  gap: number;
  /** Scroll axis position `[y, x]`; null puts it at the centre of the (y, x) plane. */
  center: [number, number] | null;
  /** Largest radial displacement of the sheet by its smooth waviness (at most gap / 2: waviness alone never makes wraps touch; compression does). */
  waviness: number;
  /** Typical wavelength of the waviness along the sheet and along z. */
  wavelength: number;
  /** Intensity of air. */
  airIntensity: number;
  /** Mean intensity of papyrus. */
  papyrusIntensity: number;
  /** Relative amplitude of the fibre texture (recto fibres run around the spiral, verso fibres along z). */
  fibreContrast: number;
  /** Spacing of neighbouring fibres. */
  fibreWavelength: number;
  /** Intensity added by ink (ink is slightly denser than papyrus: low contrast). */
  inkContrast: number;
  /** How deep below the recto (outer) surface ink reaches. */
  inkDepth: number;
  /** Letter box height (along z). */
  letterHeight: number;
  /** Letter box width (along the sheet). */
  letterWidth: number;
  /** Space between lines of text. */
  lineSpacing: number;
  /** Space between letters. */
  letterSpacing: number;
  /** Letters per column of text; columns are separated by `columnGap`. */
  columnLetters: number;
  columnGap: number;
  /** Width of a pen stroke. */
  strokeWidth: number;
  /** Fraction of letter positions that hold a letter. */
  inkCoverage: number;
  /** Gaussian blur sigma of the imaging (0: none). */
  blur: number;
  /** Standard deviation of additive Gaussian noise, in intensity units (0: noiseless). */
  noise: number;
  /** Intensity window `[low, high]` mapped to uint8 `[0, 255]`. */
  window: [number, number];
  /** Physical voxel size in micrometres (Scroll 1 was scanned at 7.91 um). */
  voxelSize: number;
  /** Relative variation of the sheet thickness along the sheet, in [0, 0.5): thickness x (1 ± this). */
  thicknessVariation: number;
  /**
   * Height of local compression bumps as a fraction of `gap`, in [0, 1.5]: a bump pushes a wrap
   * outward against the next one, so that at 1 the wraps touch and above 1 they merge.
   */
  compression: number;
  /** Fraction of compression cells (`compressionScale` square along the sheet and z) holding a bump. */
  compressionRate: number;
  /** Size of a compression cell; a bump's radius is a fifth to a third of it. */
  compressionScale: number;
  /** Fraction of tear cells (`tearSpacing` long along the sheet) holding a tear. */
  tearRate: number;
  /** Length of a tear cell along the sheet. */
  tearSpacing: number;
  /** Width of a tear (a crack running roughly along z, where the sheet is missing). */
  tearWidth: number;
  /** Amplitude of the fibres' meander: how far a fibre wanders from a straight line. */
  fibreMeander: number;
  /** Image data type: `uint8` (window to 0..255) or `uint16` (window to 0..65535). */
  dtype: 'uint8' | 'uint16';
}

export type PhantomPreset = 'easy' | 'default' | 'hard';

const DEFAULT: PhantomConfig = {
  shape: [64, 128, 128],
  seed: 0,
  wraps: 8,
  innerRadius: 8,
  thickness: 3,
  gap: 3,
  center: null,
  waviness: 1.2,
  wavelength: 24,
  airIntensity: 0.12,
  papyrusIntensity: 0.55,
  fibreContrast: 0.12,
  fibreWavelength: 3,
  inkContrast: 0.15,
  inkDepth: 1,
  letterHeight: 7,
  letterWidth: 6,
  lineSpacing: 4,
  letterSpacing: 2,
  columnLetters: 10,
  columnGap: 12,
  strokeWidth: 1.5,
  inkCoverage: 0.8,
  blur: 0.7,
  noise: 0.05,
  window: [0, 1],
  voxelSize: 7.91,
  thicknessVariation: 0.2,
  compression: 0.9,
  compressionRate: 0.3,
  compressionScale: 40,
  tearRate: 0.15,
  tearSpacing: 80,
  tearWidth: 1.5,
  fibreMeander: 1,
  dtype: 'uint8',
};

/**
 * Presets from easy to hard. `easy` is small, thick-sheeted, high-contrast and nearly noiseless, with
 * no tears and mild compression (quick tests, smoke runs); `default` has wraps that touch in places,
 * tears and CT-like noise; `hard` has thin, tightly packed, often merging wraps, faint ink and more
 * noise, as in the hardest regions of the real scrolls.
 */
export const PHANTOM_PRESETS: Record<PhantomPreset, PhantomConfig> = {
  default: DEFAULT,
  easy: {
    ...DEFAULT,
    shape: [32, 64, 64],
    wraps: 3,
    innerRadius: 6,
    thickness: 4,
    gap: 4,
    waviness: 0.5,
    wavelength: 20,
    inkContrast: 0.2,
    inkDepth: 1.5,
    strokeWidth: 2,
    blur: 0.5,
    noise: 0.02,
    thicknessVariation: 0.1,
    compression: 0.4,
    compressionRate: 0.2,
    tearRate: 0,
  },
  hard: {
    ...DEFAULT,
    shape: [64, 160, 160],
    wraps: 12,
    thickness: 2.5,
    gap: 2,
    waviness: 0.8,
    inkContrast: 0.07,
    inkDepth: 0.8,
    blur: 0.9,
    noise: 0.09,
    thicknessVariation: 0.3,
    compression: 1.2,
    compressionRate: 0.45,
    tearRate: 0.3,
    fibreMeander: 1.5,
  },
};

export type PhantomConfigInput = Partial<PhantomConfig> & { preset?: PhantomPreset };

function fail(field: string, expected: string, got: unknown): never {
  throw new PhantomConfigError(field, `expected ${expected}, received ${JSON.stringify(got)}`);
}

/**
 * Fills a partial configuration from a preset (`preset`, default `'default'`) and validates it.
 * Unknown keys and bad values throw {@link PhantomConfigError} naming the field.
 */
export function resolvePhantomConfig(partial: PhantomConfigInput = {}): PhantomConfig {
  const { preset = 'default', ...rest } = partial;
  if (!Object.prototype.hasOwnProperty.call(PHANTOM_PRESETS, preset)) fail('preset', `one of ${Object.keys(PHANTOM_PRESETS).join(', ')}`, preset);
  const base = PHANTOM_PRESETS[preset];
  for (const key of Object.keys(rest)) {
    if (!Object.prototype.hasOwnProperty.call(base, key)) {
      throw new PhantomConfigError(key, `unknown key (known: preset, ${Object.keys(base).join(', ')})`);
    }
  }
  const c = { ...base, ...(rest as Partial<PhantomConfig>) } as PhantomConfig;
  const num = (field: keyof PhantomConfig, min: number, strict: boolean) => {
    const v = c[field] as unknown;
    if (typeof v !== 'number' || !Number.isFinite(v) || (strict ? v <= min : v < min)) fail(field, `a finite number ${strict ? '>' : '>='} ${min}`, v);
  };
  const frac = (field: keyof PhantomConfig) => {
    const v = c[field] as unknown;
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) fail(field, 'a number in [0, 1]', v);
  };
  if (!Array.isArray(c.shape) || c.shape.length !== 3 || !c.shape.every((s) => Number.isSafeInteger(s) && s >= 1)) fail('shape', '[D, H, W] of integers >= 1', c.shape);
  if (!Number.isSafeInteger(c.seed)) fail('seed', 'an integer', c.seed);
  for (const f of ['wraps', 'innerRadius', 'thickness', 'gap', 'wavelength', 'fibreWavelength', 'letterHeight', 'letterWidth', 'strokeWidth', 'voxelSize'] as const) num(f, 0, true);
  for (const f of ['waviness', 'lineSpacing', 'letterSpacing', 'columnGap', 'inkContrast', 'inkDepth', 'blur', 'noise', 'fibreContrast', 'fibreMeander'] as const) num(f, 0, false);
  for (const f of ['airIntensity', 'papyrusIntensity', 'inkCoverage', 'compressionRate', 'tearRate'] as const) frac(f);
  for (const f of ['compressionScale', 'tearSpacing', 'tearWidth'] as const) num(f, 0, true);
  if (typeof c.thicknessVariation !== 'number' || !(c.thicknessVariation >= 0 && c.thicknessVariation < 0.5)) fail('thicknessVariation', 'a number in [0, 0.5)', c.thicknessVariation);
  if (typeof c.compression !== 'number' || !(c.compression >= 0 && c.compression <= 1.5)) fail('compression', 'a number in [0, 1.5]', c.compression);
  if (c.dtype !== 'uint8' && c.dtype !== 'uint16') fail('dtype', "'uint8' or 'uint16'", c.dtype);
  if (c.wraps > 65534) fail('wraps', 'at most 65534 (the wrap label is uint16)', c.wraps);
  if (!Number.isSafeInteger(c.columnLetters) || c.columnLetters < 1) fail('columnLetters', 'an integer >= 1', c.columnLetters);
  if (c.waviness > c.gap / 2) fail('waviness', `at most gap / 2 = ${c.gap / 2} (so that wraps never overlap)`, c.waviness);
  if (c.inkDepth > c.thickness * (1 - c.thicknessVariation)) fail('inkDepth', `at most the thinnest sheet, thickness x (1 - thicknessVariation) = ${c.thickness * (1 - c.thicknessVariation)}`, c.inkDepth);
  if (c.center !== null && !(Array.isArray(c.center) && c.center.length === 2 && c.center.every((v) => typeof v === 'number' && Number.isFinite(v)))) {
    fail('center', 'null or [y, x]', c.center);
  }
  if (!Array.isArray(c.window) || c.window.length !== 2 || !c.window.every((v) => typeof v === 'number' && Number.isFinite(v)) || !(c.window[0] < c.window[1])) {
    fail('window', '[low, high] with low < high', c.window);
  }
  return {
    ...c,
    shape: [...c.shape] as [number, number, number],
    center: c.center ? ([...c.center] as [number, number]) : null,
    window: [...c.window] as [number, number],
  };
}
