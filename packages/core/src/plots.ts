/**
 * Pictures of what a GoE layer learned and did, as PNG: the expert graph A drawn as a weighted directed
 * graph (GoE draft §3.1.3: "a directed graph G = (V, E), |V| = M … learned edge weights A"), A and
 * the cycle-to-cycle transition counts (provenance.ts) as heat maps, and the expert load per cycle as
 * bars. Each picture is laid out as an SVG string (so it can be checked or embedded as text) and
 * rasterised by sharp (librsvg); files are written atomically (temporary file beside it, then rename).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { summarizeProvenance, writeAtomic, type ProvenanceArrays, type ProvenanceSummary } from './provenance.js';

const FONT = 'DejaVu Sans, sans-serif';
/** Bar colours by cycle (matplotlib's tab10). */
export const CYCLE_COLOURS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
/** Edge colour of the graph picture. */
export const EDGE_COLOUR = '#1f4e9a';
/** Viridis at t = 0, 1/8, …, 1 (perceptually uniform, readable in grey): the heat maps' colour scale. */
const VIRIDIS = ['#440154', '#472d7b', '#3b528b', '#2c728e', '#21918c', '#28ae80', '#5ec962', '#addc30', '#fde725'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function hexRgb(hex: string): [number, number, number] {
  const v = Number.parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/** Viridis colour of t in [0, 1] (clamped), linearly between the anchors, as `[r, g, b]` 0–255. */
export function viridis(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = hexRgb(VIRIDIS[i] as string);
  const b = hexRgb(VIRIDIS[i + 1] as string);
  return [0, 1, 2].map((c) => Math.round((a[c] as number) * (1 - f) + (b[c] as number) * f)) as [number, number, number];
}

const rgb = (c: [number, number, number]): string => `rgb(${c[0]},${c[1]},${c[2]})`;

/** Compact number text: 4 significant digits, exponent form for very small or large values. */
function num(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

/** Tick values 0, step, 2·step, … ≤ max, with step 1, 2 or 5 × 10^e giving at most 5 intervals. */
export function zeroBasedTicks(max: number): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0];
  const base = 10 ** Math.floor(Math.log10(max / 5));
  const step = [1, 2, 5, 10].map((f) => f * base).find((st) => max / st <= 5) as number;
  return Array.from({ length: Math.floor(max / step + 1e-9) + 1 }, (_, i) => Number((i * step).toPrecision(12)));
}

/** Rasterises an SVG string to a PNG at `path`, atomically. */
export async function writeSvgPng(path: string, svg: string): Promise<void> {
  await writeAtomic(path, (tmp) => sharp(Buffer.from(svg)).png().toFile(tmp));
}

// ---------------------------------------------------------------------------------------------------
// The expert graph

export interface Point {
  x: number;
  y: number;
}

/** Where the graph picture puts things: experts on a circle, expert 0 at the top, clockwise. */
export interface GraphLayout {
  size: number;
  center: Point;
  radius: number;
  /** Radius of an expert's disc. */
  nodeRadius: number;
  nodes: Point[];
}

/** @param experts M @param size picture width = height in pixels */
export function graphLayout(experts: number, size = 640): GraphLayout {
  const center = { x: size / 2, y: size / 2 + 12 };
  const radius = 0.36 * size;
  const nodeRadius = Math.min(20, Math.max(6, ((Math.PI * radius) / experts) * 0.55));
  const nodes = Array.from({ length: experts }, (_, m) => {
    const a = -Math.PI / 2 + (2 * Math.PI * m) / experts;
    return { x: center.x + radius * Math.cos(a), y: center.y + radius * Math.sin(a) };
  });
  return { size, center, radius, nodeRadius, nodes };
}

const unit = (a: Point, b: Point): Point => {
  const l = Math.hypot(b.x - a.x, b.y - a.y) || 1;
  return { x: (b.x - a.x) / l, y: (b.y - a.y) / l };
};

/**
 * The edge n -> m (n ≠ m) as a quadratic Bézier bowed to one side of the chord, so that n -> m and
 * m -> n are two separate arcs: `start` on n's disc, `end` where the line meets the arrowhead, `tip`
 * on m's disc, `mid` the curve's point at t = 1/2 (on the line, whatever its width).
 */
export function edgeGeometry(layout: GraphLayout, n: number, m: number, headLength = 10): { start: Point; control: Point; end: Point; tip: Point; mid: Point } {
  const a = layout.nodes[n] as Point;
  const b = layout.nodes[m] as Point;
  const len = Math.hypot(b.x - a.x, b.y - a.y);
  const u = unit(a, b);
  const control = { x: (a.x + b.x) / 2 - u.y * 0.12 * len, y: (a.y + b.y) / 2 + u.x * 0.12 * len };
  const r = layout.nodeRadius;
  const s = unit(a, control);
  const start = { x: a.x + r * s.x, y: a.y + r * s.y };
  const t = unit(b, control);
  const tip = { x: b.x + r * t.x, y: b.y + r * t.y };
  const end = { x: tip.x + 0.8 * headLength * t.x, y: tip.y + 0.8 * headLength * t.y };
  const mid = { x: 0.25 * start.x + 0.5 * control.x + 0.25 * end.x, y: 0.25 * start.y + 0.5 * control.y + 0.25 * end.y };
  return { start, control, end, tip, mid };
}

export interface GraphPictureOptions {
  size?: number;
  title?: string;
  /** Widest line, for the strongest edge (px). Default 8. */
  maxWidth?: number;
  /** Edges weaker than this share of the strongest are not drawn. Default 0.01. */
  minShare?: number;
}

/**
 * The expert graph as SVG: experts on a circle, every edge n -> m with width and opacity proportional
 * to `A[n, m] / max(A)` (so the strongest edge is drawn at full strength whatever M is), an arrowhead at
 * m, and self-loops `A[n, n]` as small circles outside n's disc, drawn the same way.
 * @param adjacency A `[M·M]` row-major, `A[n, m]` = strength of the edge n -> m
 */
export function expertGraphSvg(adjacency: ArrayLike<number>, experts: number, options: GraphPictureOptions = {}): string {
  const layout = graphLayout(experts, options.size);
  const { size, nodeRadius: r } = layout;
  const maxWidth = options.maxWidth ?? 8;
  const minShare = options.minShare ?? 0.01;
  let max = 0;
  for (let i = 0; i < experts * experts; i++) max = Math.max(max, (adjacency[i] as number) || 0);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}" font-family="${FONT}">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${size / 2}" y="24" font-size="16" text-anchor="middle">${esc(options.title ?? `expert graph A (M = ${experts})`)}</text>`,
    `<text x="${size / 2}" y="${size - 10}" font-size="11" text-anchor="middle" fill="#555">width and opacity ∝ A[n,m] (strongest ${num(max)}); circles: self-loops A[n,n]</text>`,
  ];
  const style = (w: number): string => {
    const share = w / max;
    return `stroke="${EDGE_COLOUR}" stroke-opacity="${share.toFixed(4)}" stroke-width="${(maxWidth * share).toFixed(3)}"`;
  };
  for (let n = 0; n < experts; n++) {
    for (let m = 0; m < experts; m++) {
      const w = (adjacency[n * experts + m] as number) || 0;
      if (!(max > 0) || w < minShare * max) continue;
      if (n === m) {
        const node = layout.nodes[n] as Point;
        const out = unit(layout.center, node);
        const lr = 0.6 * r;
        parts.push(`<circle cx="${(node.x + out.x * (r + lr)).toFixed(2)}" cy="${(node.y + out.y * (r + lr)).toFixed(2)}" r="${lr.toFixed(2)}" fill="none" ${style(w)}/>`);
        continue;
      }
      const head = 6 + 6 * (w / max);
      const g = edgeGeometry(layout, n, m, head);
      const d = unit(g.control, g.tip);
      const base = { x: g.tip.x - head * d.x, y: g.tip.y - head * d.y };
      const wing = { x: -d.y * head * 0.45, y: d.x * head * 0.45 };
      const f = (p: Point): string => `${p.x.toFixed(2)},${p.y.toFixed(2)}`;
      parts.push(
        `<path d="M ${f(g.start)} Q ${f(g.control)} ${f(g.end)}" fill="none" ${style(w)}/>`,
        `<polygon points="${f(g.tip)} ${f({ x: base.x + wing.x, y: base.y + wing.y })} ${f({ x: base.x - wing.x, y: base.y - wing.y })}" fill="${EDGE_COLOUR}" fill-opacity="${(w / max).toFixed(4)}"/>`,
      );
    }
  }
  const font = Math.min(13, Math.max(7, r * 0.9));
  layout.nodes.forEach((p, m) => {
    parts.push(
      `<circle cx="${p.x.toFixed(2)}" cy="${p.y.toFixed(2)}" r="${r.toFixed(2)}" fill="#f4f4f4" stroke="#333" stroke-width="1.2"/>`,
      `<text x="${p.x.toFixed(2)}" y="${(p.y + font * 0.35).toFixed(2)}" font-size="${font.toFixed(1)}" text-anchor="middle">${m}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------------
// Heat maps

export interface HeatmapOptions {
  title: string;
  /** What the rows are (left axis), e.g. "from expert n". */
  rowLabel: string;
  /** What the columns are (bottom axis), e.g. "to expert m". */
  colLabel: string;
  width?: number;
  height?: number;
  /** Label of the colour bar. */
  valueLabel?: string;
}

/** Where the heat map puts its cells and colour bar. */
export interface HeatmapGeometry {
  width: number;
  height: number;
  /** Top-left corner of cell (0, 0) and the cell side, in pixels. */
  x0: number;
  y0: number;
  cell: number;
  /** The colour bar: left, top, width, height (top = the maximum). */
  bar: { x: number; y: number; w: number; h: number };
}

export function heatmapGeometry(rows: number, cols: number, options: Pick<HeatmapOptions, 'width' | 'height'> = {}): HeatmapGeometry {
  const width = options.width ?? 640;
  const height = options.height ?? 600;
  const [left, top, right, bottom] = [70, 50, 110, 60];
  const cell = Math.max(1, Math.floor(Math.min((width - left - right) / cols, (height - top - bottom) / rows)));
  const bar = { x: left + cols * cell + 24, y: top, w: 16, h: rows * cell };
  return { width, height, x0: left, y0: top, cell, bar };
}

/**
 * A `[rows, cols]` matrix as a heat map: viridis from 0 (dark) to the largest value (yellow), with a
 * colour bar; values are printed in the cells when there are at most 8 columns.
 * @param values `[rows·cols]` row-major, >= 0
 */
export function heatmapSvg(values: ArrayLike<number>, rows: number, cols: number, options: HeatmapOptions): string {
  const g = heatmapGeometry(rows, cols, options);
  let max = 0;
  for (let i = 0; i < rows * cols; i++) max = Math.max(max, (values[i] as number) || 0);
  const scale = max > 0 ? max : 1;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${g.width}" height="${g.height}" font-family="${FONT}">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${g.width / 2}" y="26" font-size="16" text-anchor="middle">${esc(options.title)}</text>`,
  ];
  const every = Math.max(1, Math.ceil(Math.max(rows, cols) / 16));
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const v = (values[i * cols + j] as number) || 0;
      const c = viridis(v / scale);
      const [x, y] = [g.x0 + j * g.cell, g.y0 + i * g.cell];
      parts.push(`<rect x="${x}" y="${y}" width="${g.cell}" height="${g.cell}" fill="${rgb(c)}"/>`);
      if (cols <= 8) {
        const light = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 140;
        parts.push(
          `<text x="${x + g.cell / 2}" y="${y + g.cell / 2 + 4}" font-size="11" text-anchor="middle" fill="${light ? 'black' : 'white'}">${num(v)}</text>`,
        );
      }
    }
  }
  for (let i = 0; i < rows; i += every) parts.push(`<text x="${g.x0 - 6}" y="${g.y0 + (i + 0.5) * g.cell + 4}" font-size="10" text-anchor="end">${i}</text>`);
  for (let j = 0; j < cols; j += every) parts.push(`<text x="${g.x0 + (j + 0.5) * g.cell}" y="${g.y0 + rows * g.cell + 14}" font-size="10" text-anchor="middle">${j}</text>`);
  const midY = g.y0 + (rows * g.cell) / 2;
  parts.push(
    `<rect x="${g.x0}" y="${g.y0}" width="${cols * g.cell}" height="${rows * g.cell}" fill="none" stroke="#333"/>`,
    `<text x="${g.x0 + (cols * g.cell) / 2}" y="${g.y0 + rows * g.cell + 34}" font-size="13" text-anchor="middle">${esc(options.colLabel)}</text>`,
    `<text x="22" y="${midY}" font-size="13" text-anchor="middle" transform="rotate(-90 22 ${midY})">${esc(options.rowLabel)}</text>`,
  );
  // Colour bar: 64 bands from the maximum (top) to 0 (bottom).
  const bands = 64;
  for (let b = 0; b < bands; b++) {
    const y = g.bar.y + (b * g.bar.h) / bands;
    parts.push(`<rect x="${g.bar.x}" y="${y.toFixed(2)}" width="${g.bar.w}" height="${(g.bar.h / bands + 0.5).toFixed(2)}" fill="${rgb(viridis(1 - (b + 0.5) / bands))}"/>`);
  }
  parts.push(`<rect x="${g.bar.x}" y="${g.bar.y}" width="${g.bar.w}" height="${g.bar.h}" fill="none" stroke="#333"/>`);
  for (const t of zeroBasedTicks(max)) {
    const y = g.bar.y + g.bar.h * (1 - t / scale);
    parts.push(
      `<line x1="${g.bar.x + g.bar.w}" y1="${y.toFixed(2)}" x2="${g.bar.x + g.bar.w + 4}" y2="${y.toFixed(2)}" stroke="#333"/>`,
      `<text x="${g.bar.x + g.bar.w + 7}" y="${(y + 4).toFixed(2)}" font-size="10">${num(t)}</text>`,
    );
  }
  if (options.valueLabel) {
    const x = g.bar.x + g.bar.w + 52;
    parts.push(`<text x="${x}" y="${midY}" font-size="11" text-anchor="middle" transform="rotate(-90 ${x} ${midY})">${esc(options.valueLabel)}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------------
// Expert load per cycle

export interface LoadBarsOptions {
  title?: string;
  width?: number;
  height?: number;
}

/** Where the load chart puts its plot area and bars. */
export interface LoadBarsGeometry {
  width: number;
  height: number;
  plot: { x: number; y: number; w: number; h: number };
  /** Top of the y axis (a share of slots). */
  yMax: number;
  /** The bar of cycle k, expert m: left, top, width, height. */
  bar(k: number, m: number, value: number): { x: number; y: number; w: number; h: number };
}

export function loadBarsGeometry(load: readonly (readonly number[])[], options: LoadBarsOptions = {}): LoadBarsGeometry {
  const width = options.width ?? 720;
  const height = options.height ?? 400;
  const K = load.length;
  const M = load[0]?.length ?? 0;
  const plot = { x: 64, y: 62, w: width - 64 - 20, h: height - 62 - 56 };
  const yMax = Math.max(1 / Math.max(M, 1), ...load.flat()) * 1.15;
  const group = plot.w / Math.max(M, 1);
  const w = (group * 0.8) / Math.max(K, 1);
  return {
    width,
    height,
    plot,
    yMax,
    bar: (k, m, value) => {
      const h = (plot.h * Math.max(0, value)) / yMax;
      return { x: plot.x + m * group + group * 0.1 + k * w, y: plot.y + plot.h - h, w, h };
    },
  };
}

/**
 * Expert load per cycle as grouped bars (one group per expert, one colour per cycle), with the uniform
 * share 1/M dashed: the picture of the draft's balance term (§3.1.4) at work.
 * @param load `[K][M]` share of each cycle's dispatched slots (`ProvenanceSummary.load`)
 */
export function loadBarsSvg(load: readonly (readonly number[])[], options: LoadBarsOptions = {}): string {
  const g = loadBarsGeometry(load, options);
  const { plot } = g;
  const K = load.length;
  const M = load[0]?.length ?? 0;
  const y = (v: number): number => plot.y + plot.h - (plot.h * v) / g.yMax;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${g.width}" height="${g.height}" font-family="${FONT}">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${g.width / 2}" y="24" font-size="16" text-anchor="middle">${esc(options.title ?? 'expert load per cycle (share of dispatched slots)')}</text>`,
  ];
  for (const t of zeroBasedTicks(g.yMax)) {
    parts.push(
      `<line x1="${plot.x}" y1="${y(t).toFixed(2)}" x2="${plot.x + plot.w}" y2="${y(t).toFixed(2)}" stroke="#eee"/>`,
      `<text x="${plot.x - 6}" y="${(y(t) + 4).toFixed(2)}" font-size="11" text-anchor="end">${num(t)}</text>`,
    );
  }
  load.forEach((row, k) =>
    row.forEach((v, m) => {
      const b = g.bar(k, m, v);
      parts.push(`<rect x="${b.x.toFixed(2)}" y="${b.y.toFixed(2)}" width="${b.w.toFixed(2)}" height="${b.h.toFixed(2)}" fill="${CYCLE_COLOURS[k % CYCLE_COLOURS.length]}"/>`);
    }),
  );
  const every = Math.max(1, Math.ceil(M / 32));
  for (let m = 0; m < M; m += every) {
    parts.push(`<text x="${(plot.x + ((m + 0.5) * plot.w) / M).toFixed(2)}" y="${plot.y + plot.h + 15}" font-size="10" text-anchor="middle">${m}</text>`);
  }
  const u = y(1 / Math.max(M, 1)).toFixed(2);
  parts.push(
    `<line x1="${plot.x}" y1="${u}" x2="${plot.x + plot.w}" y2="${u}" stroke="#333" stroke-dasharray="6 4"/>`,
    `<text x="${plot.x + plot.w - 4}" y="${Number(u) - 4}" font-size="11" text-anchor="end">uniform 1/M</text>`,
    `<rect x="${plot.x}" y="${plot.y}" width="${plot.w}" height="${plot.h}" fill="none" stroke="#333"/>`,
    `<text x="${plot.x + plot.w / 2}" y="${g.height - 12}" font-size="13" text-anchor="middle">expert</text>`,
    `<text x="16" y="${plot.y + plot.h / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 16 ${plot.y + plot.h / 2})">share of slots</text>`,
  );
  for (let k = 0; k < K; k++) {
    // One row of swatches between the title and the plot.
    const x = plot.x + plot.w - (K - k) * 78;
    parts.push(
      `<rect x="${x}" y="${plot.y - 20}" width="12" height="12" fill="${CYCLE_COLOURS[k % CYCLE_COLOURS.length]}"/>`,
      `<text x="${x + 16}" y="${plot.y - 10}" font-size="11">cycle ${k}</text>`,
    );
  }
  parts.push('</svg>');
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------------

/** The four pictures `writeProvenancePictures` writes, by file path. */
export interface ProvenancePictures {
  graph: string;
  adjacency: string;
  transitions: string;
  load: string;
}

/**
 * Writes `graph.png` (A as a directed graph), `adjacency.png` (A as a heat map), `transitions.png`
 * (cycle-to-cycle transition counts) and `load.png` (expert load per cycle) into `dir`, each atomically.
 * @param summary from `summarizeProvenance(arrays)`; computed here when omitted
 */
export async function writeProvenancePictures(dir: string, arrays: ProvenanceArrays, summary?: ProvenanceSummary): Promise<ProvenancePictures> {
  const s = summary ?? summarizeProvenance(arrays);
  const M = arrays.experts;
  await mkdir(dir, { recursive: true });
  const paths: ProvenancePictures = {
    graph: join(dir, 'graph.png'),
    adjacency: join(dir, 'adjacency.png'),
    transitions: join(dir, 'transitions.png'),
    load: join(dir, 'load.png'),
  };
  await writeSvgPng(paths.graph, expertGraphSvg(arrays.adjacency, M));
  await writeSvgPng(
    paths.adjacency,
    heatmapSvg(arrays.adjacency, M, M, { title: 'expert graph A', rowLabel: 'from expert n', colLabel: 'to expert m', valueLabel: 'A[n, m]' }),
  );
  await writeSvgPng(
    paths.transitions,
    heatmapSvg(s.transitions.flat(), M, M, {
      title: 'transitions, cycle k -> k + 1',
      rowLabel: 'expert at cycle k',
      colLabel: 'expert at cycle k + 1',
      valueLabel: 'slot pairs',
    }),
  );
  await writeSvgPng(paths.load, loadBarsSvg(s.load));
  return paths;
}
