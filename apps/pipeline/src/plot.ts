/**
 * Line charts as PNG: the chart is laid out as SVG (axes, ticks, labels, one polyline per series) and
 * rasterised by sharp (libvips + librsvg), so no plotting library is needed.
 */
import sharp from 'sharp';
import { atomicWriteFile } from '@goe/scroll-io';

export interface Series {
  name: string;
  /** x values (e.g. steps), increasing. */
  x: number[];
  y: number[];
  color?: string;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  /** Plot y on a log10 axis (values <= 0 are dropped). */
  logY?: boolean;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** "Nice" tick values covering [lo, hi] (Heckbert's loose labelling). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const nice = (x: number, round: boolean): number => {
    const e = Math.floor(Math.log10(x));
    const f = x / 10 ** e;
    const nf = round ? (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) : f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * 10 ** e;
  };
  const step = nice(nice(hi - lo, false) / (count - 1), true);
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(1);
  return Number(v.toPrecision(4)).toString();
}

/** Ticks for a log10 axis spanning [lo, hi] (in log10 units): 1-2-5 multiples of each decade. */
export function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
    for (const m of [1, 2, 5]) {
      const t = e + Math.log10(m);
      if (t >= lo && t <= hi) out.push(t);
    }
  }
  return out.length >= 2 ? out : niceTicks(lo, hi);
}

/** Builds the SVG text of a line chart. */
export function lineChartSvg(series: Series[], o: LineChartOptions): string {
  const W = o.width ?? 800;
  const H = o.height ?? 450;
  const m = { l: 70, r: 20, t: 40, b: 50 };
  const tf = (y: number): number => (o.logY ? Math.log10(y) : y);
  const pts = series.map((s) =>
    s.x.map((x, i) => [x, s.y[i] as number] as const).filter(([, y]) => Number.isFinite(y) && (!o.logY || y > 0)),
  );
  const all = pts.flat();
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => tf(p[1]));
  let x0 = Math.min(...xs, 0);
  let x1 = Math.max(...xs, 1);
  let y0 = Math.min(...ys);
  let y1 = Math.max(...ys);
  if (!Number.isFinite(y0)) [y0, y1] = [0, 1];
  if (y1 - y0 < 1e-12) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  if (x1 <= x0) x1 = x0 + 1;
  const px = (x: number): number => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (y: number): number => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W / 2}" y="24" font-size="16" text-anchor="middle">${esc(o.title)}</text>`,
  ];
  for (const t of niceTicks(x0, x1)) {
    parts.push(
      `<line x1="${px(t)}" y1="${m.t}" x2="${px(t)}" y2="${H - m.b}" stroke="#eee"/>`,
      `<text x="${px(t)}" y="${H - m.b + 16}" font-size="11" text-anchor="middle">${fmt(t)}</text>`,
    );
  }
  for (const t of o.logY ? logTicks(y0, y1) : niceTicks(y0, y1)) {
    const label = o.logY ? fmt(Number((10 ** t).toPrecision(6))) : fmt(t);
    parts.push(
      `<line x1="${m.l}" y1="${py(t)}" x2="${W - m.r}" y2="${py(t)}" stroke="#eee"/>`,
      `<text x="${m.l - 6}" y="${py(t) + 4}" font-size="11" text-anchor="end">${label}</text>`,
    );
  }
  parts.push(
    `<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#333"/>`,
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" font-size="13" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text x="16" y="${(m.t + H - m.b) / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 16 ${(m.t + H - m.b) / 2})">${esc(o.yLabel)}${o.logY ? ' (log)' : ''}</text>`,
  );
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const p = pts[i] ?? [];
    if (p.length > 0) {
      const d = p.map(([x, y]) => `${px(x).toFixed(1)},${py(tf(y)).toFixed(1)}`).join(' ');
      parts.push(`<polyline points="${d}" fill="none" stroke="${color}" stroke-width="1.8"/>`);
    }
    const ly = m.t + 16 + i * 18;
    parts.push(
      `<line x1="${W - m.r - 150}" y1="${ly - 4}" x2="${W - m.r - 128}" y2="${ly - 4}" stroke="${color}" stroke-width="3"/>`,
      `<text x="${W - m.r - 122}" y="${ly}" font-size="12">${esc(s.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Renders a line chart to a PNG file, atomically (temporary file, then rename). */
export async function writeLineChartPng(path: string, series: Series[], o: LineChartOptions): Promise<void> {
  await atomicWriteFile(path, await sharp(Buffer.from(lineChartSvg(series, o))).png().toBuffer());
}

/** An RGB colour, 0–255 per channel. */
export type Rgb = [number, number, number];

/**
 * Columns of slice pictures, one row per patch: column `c` paints voxel (row `b`, `y`, `x`) with
 * `columns[c](b, y, x)`. Scaled up by `zoom` with nearest-neighbour so single voxels stay visible.
 * Written atomically.
 */
export async function writePanelsPng(path: string, dims: { rows: number; H: number; W: number }, columns: ((b: number, y: number, x: number) => Rgb)[], zoom = 4): Promise<void> {
  const { rows: B, H, W } = dims;
  const gap = 2;
  const cols = columns.length;
  const width = (cols * W + (cols - 1) * gap) * zoom;
  const height = (B * H + (B - 1) * gap) * zoom;
  const rgb = new Uint8Array(width * height * 3).fill(255);
  for (let b = 0; b < B; b++)
    for (let col = 0; col < cols; col++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < W; x++) {
          const c = (columns[col] as (b: number, y: number, x: number) => Rgb)(b, y, x);
          const y0 = (b * (H + gap) + y) * zoom;
          const x0 = (col * (W + gap) + x) * zoom;
          for (let dy = 0; dy < zoom; dy++)
            for (let dx = 0; dx < zoom; dx++) {
              const o = ((y0 + dy) * width + x0 + dx) * 3;
              rgb[o] = c[0];
              rgb[o + 1] = c[1];
              rgb[o + 2] = c[2];
            }
        }
  await atomicWriteFile(path, await sharp(rgb, { raw: { width, height, channels: 3 } }).png().toBuffer());
}

/** Grey level of a value in [0, 1] (clamped). */
export function grey(v: number): Rgb {
  const g = Math.round(Math.min(1, Math.max(0, v)) * 255);
  return [g, g, g];
}

/** Grey image `g` with red blended in by `a` in [0, 1] (ink over the surface image). */
export function redOver(g: number, a: number): Rgb {
  const k = Math.min(1, Math.max(0, a));
  const v = Math.round(Math.min(1, Math.max(0, g)) * 255);
  return [Math.round(v * (1 - k) + 255 * k), Math.round(v * (1 - k)), Math.round(v * (1 - k))];
}

/**
 * A sign-free direction (z, y, x) as a colour: red |x|, green |y|, blue |z| (the usual DTI-style
 * colouring), so v and −v look the same and horizontal fibres are red/green, vertical ones blue.
 */
export function directionColour(z: number, y: number, x: number): Rgb {
  const n = Math.hypot(z, y, x) || 1;
  return [Math.round((Math.abs(x) / n) * 255), Math.round((Math.abs(y) / n) * 255), Math.round((Math.abs(z) / n) * 255)];
}

export interface InkPanelInput {
  /** `[B, D, H, W]` intensities in [-1, 1]. */
  image: Float32Array;
  /** `[B, D, H, W]` 0/1 labels. */
  label: Uint8Array;
  /** `[B, D, H, W]` probabilities. */
  prob: Float32Array;
  /** `[B, D, H, W]`. */
  shape: [number, number, number, number];
}

/**
 * A picture of ink predictions: one row per patch, showing the middle z slice of the CT intensities,
 * the ink label, the predicted probability, and the prediction over the image (red = ink). Scaled up by
 * `zoom` with nearest-neighbour so single voxels stay visible. Written atomically.
 */
export async function writeInkPanelsPng(path: string, p: InkPanelInput, zoom = 4): Promise<void> {
  const [B, D, H, W] = p.shape;
  const z = Math.floor(D / 2);
  const at = (b: number, y: number, x: number): number => ((b * D + z) * H + y) * W + x;
  const image = (b: number, y: number, x: number): number => ((p.image[at(b, y, x)] ?? -1) + 1) / 2;
  await writePanelsPng(
    path,
    { rows: B, H, W },
    [
      (b, y, x) => grey(image(b, y, x)),
      (b, y, x) => grey((p.label[at(b, y, x)] ?? 0) > 0 ? 1 : 0),
      (b, y, x) => grey(p.prob[at(b, y, x)] ?? 0),
      // Overlay: the image in grey, the predicted probability blended in as red.
      (b, y, x) => redOver(image(b, y, x), p.prob[at(b, y, x)] ?? 0),
    ],
    zoom,
  );
}
