/**
 * The synthetic scroll (DESIGN.md section 6, first version): an Archimedean spiral sheet in (y, x)
 * extended along z, with smooth waviness, oriented fibre texture, letter-like ink strokes on the
 * recto (outer) surface, then blur, noise and uint8 windowing. Every voxel is a pure function of
 * (config, voxel coordinates): regions can be computed independently, in any order.
 *
 * Geometry. The sheet's centre line is r = R0(θ) + w(s, z) with R0(θ) = r0 + b θ, b = pitch / 2π,
 * θ ∈ [0, 2π·wraps] the unwrapped polar angle, and s(θ) the arc length of R0 from θ = 0:
 *   s = F(R0(θ)) − F(r0),   F(r) = (r √(r² + b²) + b² asinh(r / b)) / (2b)
 * (∫ √(r² + (dr/dθ)²) dθ with dr/dθ = b). A voxel at polar (r, φ) lies on wrap k when
 * |r − R0(φ + 2πk) − w| < thickness / 2; with |w| ≤ gap / 2 at most one wrap can claim it and it is one
 * of the three nearest to the undisturbed estimate. The signed distance d = r − R0 − w is > 0 on the
 * recto (outer) face, where ink lies, and < 0 on the verso.
 */
import { type PhantomConfig } from './config.js';
import { gaussian, hash, SALT, uniform } from './random.js';

/** A box of voxels `[z, y, x]`. */
export interface PhantomBox {
  offset: number[];
  shape: number[];
}

/** Voxels of one region, each `[D, H, W]` in C order. */
export interface PhantomRegion {
  /** Imaged intensity, windowed to uint8. */
  image: Uint8Array;
  /** 1 where ink is (always on papyrus, at the recto surface), else 0. */
  ink: Uint8Array;
  /** 1 where the papyrus sheet is, else 0. */
  papyrus: Uint8Array;
  shape: number[];
}

const WAVE_TERMS = 4;
const FIBRE_TERMS = 3;
const TWO_PI = 2 * Math.PI;

/** The seed-dependent constants of the phantom (wave vectors, phases), drawn once per config. */
interface Params {
  // Waviness: w = A Σ a_j sin(α_j s + β_j z + φ_j), Σ a_j = 1, so |w| ≤ A.
  waveA: Float64Array;
  waveAlpha: Float64Array;
  waveBeta: Float64Array;
  wavePhase: Float64Array;
  // Recto fibres run around the spiral: intensity varies along z, slowly meandering with s.
  rectoK: Float64Array; // 2π / fibre spacing, along z
  rectoPhase: Float64Array;
  rectoMeanderK: Float64Array; // along s
  rectoMeanderPhase: Float64Array;
  // Verso fibres run along z: intensity varies along s, slowly meandering with z.
  versoK: Float64Array;
  versoPhase: Float64Array;
  versoMeanderK: Float64Array;
  versoMeanderPhase: Float64Array;
}

function params(c: PhantomConfig): Params {
  const n = WAVE_TERMS;
  const p: Params = {
    waveA: new Float64Array(n),
    waveAlpha: new Float64Array(n),
    waveBeta: new Float64Array(n),
    wavePhase: new Float64Array(n),
    rectoK: new Float64Array(FIBRE_TERMS),
    rectoPhase: new Float64Array(FIBRE_TERMS),
    rectoMeanderK: new Float64Array(FIBRE_TERMS),
    rectoMeanderPhase: new Float64Array(FIBRE_TERMS),
    versoK: new Float64Array(FIBRE_TERMS),
    versoPhase: new Float64Array(FIBRE_TERMS),
    versoMeanderK: new Float64Array(FIBRE_TERMS),
    versoMeanderPhase: new Float64Array(FIBRE_TERMS),
  };
  let sum = 0;
  for (let j = 0; j < n; j++) {
    const u = (i: number) => uniform(c.seed ^ SALT.waviness, j, i);
    const lambda = c.wavelength * (0.75 + 0.75 * u(0));
    // Wave directions in the (s, z) plane of the unrolled sheet.
    const dir = Math.PI * u(1);
    p.waveAlpha[j] = (TWO_PI / lambda) * Math.cos(dir);
    p.waveBeta[j] = (TWO_PI / lambda) * Math.sin(dir);
    p.wavePhase[j] = TWO_PI * u(2);
    p.waveA[j] = 0.5 + 0.5 * u(3);
    sum += p.waveA[j];
  }
  for (let j = 0; j < n; j++) p.waveA[j] /= sum;
  for (let j = 0; j < FIBRE_TERMS; j++) {
    const r = (i: number) => uniform(c.seed ^ SALT.fibreRecto, j, i);
    const v = (i: number) => uniform(c.seed ^ SALT.fibreVerso, j, i);
    p.rectoK[j] = TWO_PI / (c.fibreWavelength * (0.8 + 0.6 * r(0)));
    p.rectoPhase[j] = TWO_PI * r(1);
    p.rectoMeanderK[j] = TWO_PI / (c.wavelength * (1 + r(2)));
    p.rectoMeanderPhase[j] = TWO_PI * r(3);
    p.versoK[j] = TWO_PI / (c.fibreWavelength * (0.8 + 0.6 * v(0)));
    p.versoPhase[j] = TWO_PI * v(1);
    p.versoMeanderK[j] = TWO_PI / (c.wavelength * (1 + v(2)));
    p.versoMeanderPhase[j] = TWO_PI * v(3);
  }
  return p;
}

/** Arc length antiderivative of the spiral r = r0 + bθ (see the file comment). */
function arcF(r: number, b: number): number {
  return (r * Math.sqrt(r * r + b * b) + b * b * Math.asinh(r / b)) / (2 * b);
}

/** Distance from (px, py) to the segment (ax, ay)-(bx, by). */
function segmentDistance(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const vx = bx - ax;
  const vy = by - ay;
  const len2 = vx * vx + vy * vy;
  let t = len2 > 0 ? ((px - ax) * vx + (py - ay) * vy) / len2 : 0;
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  const dx = px - (ax + t * vx);
  const dy = py - (ay + t * vy);
  return Math.sqrt(dx * dx + dy * dy);
}

/**
 * Whether the unrolled sheet carries ink at (z, s). Text is laid out in columns of `columnLetters`
 * letter boxes along s and lines along z; a box holds a letter with probability `inkCoverage`, drawn
 * as 2-4 pen strokes between points of a 3 x 3 lattice spanning the box (letter-like glyphs).
 */
export function inkAt(c: PhantomConfig, z: number, s: number): boolean {
  if (s < 0) return false;
  const cellW = c.letterWidth + c.letterSpacing;
  const cellH = c.letterHeight + c.lineSpacing;
  const colPeriod = c.columnLetters * cellW + c.columnGap;
  const col = Math.floor(s / colPeriod);
  const u = s - col * colPeriod;
  if (u >= c.columnLetters * cellW) return false; // between columns
  const li = Math.floor(u / cellW);
  const ls = u - li * cellW;
  const row = Math.floor(z / cellH);
  const lz = z - row * cellH;
  const half = c.strokeWidth / 2;
  if (ls > c.letterWidth + half || lz > c.letterHeight + half) return false;
  const letter = col * c.columnLetters + li;
  const seed = c.seed ^ SALT.ink;
  if (uniform(seed, letter, row, 0) >= c.inkCoverage) return false;
  const strokes = 2 + (hash(seed, letter, row, 1) % 3);
  for (let m = 0; m < strokes; m++) {
    const a = hash(seed, letter, row, 10 + m) % 9;
    let b = hash(seed, letter, row, 20 + m) % 8;
    if (b >= a) b++;
    const as = (a % 3) * (c.letterWidth / 2);
    const az = Math.floor(a / 3) * (c.letterHeight / 2);
    const bs = (b % 3) * (c.letterWidth / 2);
    const bz = Math.floor(b / 3) * (c.letterHeight / 2);
    if (segmentDistance(ls, lz, as, az, bs, bz) <= half) return true;
  }
  return false;
}

/** Gaussian kernel of standard deviation `sigma`, truncated at 3 sigma and normalised to sum 1. */
function gaussianKernel(sigma: number): Float64Array {
  if (sigma <= 0) return Float64Array.of(1);
  const r = Math.ceil(3 * sigma);
  const k = new Float64Array(2 * r + 1);
  let sum = 0;
  for (let i = -r; i <= r; i++) sum += k[i + r] = Math.exp(-(i * i) / (2 * sigma * sigma));
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  return k;
}

/**
 * Computes the phantom over any box (inside the volume or not: the phantom is defined everywhere).
 * The result equals the same voxels cut from any larger box, bit for bit.
 * @param config a resolved configuration ({@link resolvePhantomConfig})
 * @param region `{ offset: [z, y, x], shape: [d, h, w] }`
 * @returns image, ink and papyrus, each `[d, h, w]` uint8 in C order
 */
export function phantomRegion(config: PhantomConfig, region: PhantomBox): PhantomRegion {
  const c = config;
  const [oz, oy, ox] = region.offset;
  const [nd, nh, nw] = region.shape;
  const p = params(c);
  const kernel = gaussianKernel(c.blur);
  const R = (kernel.length - 1) / 2;
  // The sharp (un-blurred) field is computed on the region plus a halo of R voxels per side.
  const ez = nd + 2 * R;
  const ey = nh + 2 * R;
  const ex = nw + 2 * R;
  const sharp = new Float64Array(ez * ey * ex);
  const ink = new Uint8Array(nd * nh * nw);
  const papyrus = new Uint8Array(nd * nh * nw);

  const cy = c.center ? c.center[0] : (c.shape[1] - 1) / 2;
  const cx = c.center ? c.center[1] : (c.shape[2] - 1) / 2;
  const pitch = c.thickness + c.gap;
  const b = pitch / TWO_PI;
  const r0 = c.innerRadius;
  const thetaMax = TWO_PI * c.wraps;
  const halfT = c.thickness / 2;
  const inkFrom = halfT - c.inkDepth;
  const F0 = arcF(r0, b);

  // Per-z terms (z-only parts of the wave and meander phases), shared by every column.
  const cosBz = new Float64Array(ez * WAVE_TERMS);
  const sinBz = new Float64Array(ez * WAVE_TERMS);
  const versoMeander = new Float64Array(ez * FIBRE_TERMS);
  for (let iz = 0; iz < ez; iz++) {
    const z = oz - R + iz;
    for (let j = 0; j < WAVE_TERMS; j++) {
      cosBz[iz * WAVE_TERMS + j] = Math.cos(p.waveBeta[j] * z);
      sinBz[iz * WAVE_TERMS + j] = Math.sin(p.waveBeta[j] * z);
    }
    for (let j = 0; j < FIBRE_TERMS; j++) versoMeander[iz * FIBRE_TERMS + j] = 0.6 * Math.sin(p.versoMeanderK[j] * z + p.versoMeanderPhase[j]);
  }

  // Per-column candidate wraps (up to 3): base radius, arc length and the s-only parts of the phases.
  const candR0 = new Float64Array(3);
  const candS = new Float64Array(3);
  const candK = new Int32Array(3);
  const candSinA = new Float64Array(3 * WAVE_TERMS);
  const candCosA = new Float64Array(3 * WAVE_TERMS);
  const candRecto = new Float64Array(3 * FIBRE_TERMS);
  const candVerso = new Float64Array(3 * FIBRE_TERMS);

  for (let iy = 0; iy < ey; iy++) {
    const y = oy - R + iy;
    for (let ix = 0; ix < ex; ix++) {
      const x = ox - R + ix;
      const dy = y - cy;
      const dx = x - cx;
      const r = Math.sqrt(dy * dy + dx * dx);
      let phi = Math.atan2(dy, dx);
      if (phi < 0) phi += TWO_PI;
      const k0 = Math.round((r - r0 - b * phi) / pitch);
      let nc = 0;
      for (let k = k0 - 1; k <= k0 + 1; k++) {
        const theta = phi + TWO_PI * k;
        if (theta < 0 || theta > thetaMax) continue;
        const R0 = r0 + b * theta;
        const s = arcF(R0, b) - F0;
        candR0[nc] = R0;
        candS[nc] = s;
        candK[nc] = k;
        for (let j = 0; j < WAVE_TERMS; j++) {
          const a = p.waveAlpha[j] * s + p.wavePhase[j];
          candSinA[nc * WAVE_TERMS + j] = Math.sin(a);
          candCosA[nc * WAVE_TERMS + j] = Math.cos(a);
        }
        for (let j = 0; j < FIBRE_TERMS; j++) {
          // A phase offset per wrap, so that wraps do not repeat each other's texture.
          const wrapPhase = TWO_PI * uniform(c.seed ^ SALT.wrapPhase, k, j);
          candRecto[nc * FIBRE_TERMS + j] = p.rectoPhase[j] + wrapPhase + 0.6 * Math.sin(p.rectoMeanderK[j] * s + p.rectoMeanderPhase[j]);
          candVerso[nc * FIBRE_TERMS + j] = p.versoK[j] * s + p.versoPhase[j] + wrapPhase;
        }
        nc++;
      }
      const inCore = iy >= R && iy < R + nh && ix >= R && ix < R + nw;
      for (let iz = 0; iz < ez; iz++) {
        const z = oz - R + iz;
        // Find the wrap (if any) whose sheet contains this voxel.
        let hit = -1;
        let d = 0;
        for (let q = 0; q < nc; q++) {
          let w = 0;
          for (let j = 0; j < WAVE_TERMS; j++) {
            // sin(αs + φ + βz) by the angle-addition formula, from per-column and per-z parts.
            w += p.waveA[j] * (candSinA[q * WAVE_TERMS + j] * cosBz[iz * WAVE_TERMS + j] + candCosA[q * WAVE_TERMS + j] * sinBz[iz * WAVE_TERMS + j]);
          }
          const dq = r - candR0[q] - c.waviness * w;
          if (dq > -halfT && dq < halfT) {
            hit = q;
            d = dq;
            break;
          }
        }
        const e = (iz * ey + iy) * ex + ix;
        if (hit < 0) {
          sharp[e] = c.airIntensity;
          continue;
        }
        let fib = 0;
        if (d >= 0) {
          for (let j = 0; j < FIBRE_TERMS; j++) fib += Math.sin(p.rectoK[j] * z + candRecto[hit * FIBRE_TERMS + j]);
        } else {
          for (let j = 0; j < FIBRE_TERMS; j++) fib += Math.sin(candVerso[hit * FIBRE_TERMS + j] + versoMeander[iz * FIBRE_TERMS + j]);
        }
        let v = c.papyrusIntensity * (1 + (c.fibreContrast * fib) / FIBRE_TERMS);
        const inked = d > inkFrom && inkAt(c, z, candS[hit]);
        if (inked) v += c.inkContrast;
        sharp[e] = v;
        if (inCore && iz >= R && iz < R + nd) {
          const o = ((iz - R) * nh + (iy - R)) * nw + (ix - R);
          papyrus[o] = 1;
          if (inked) ink[o] = 1;
        }
      }
    }
  }

  // Separable blur, each pass shrinking the halo of its axis: x, then y, then z.
  const bx = new Float64Array(ez * ey * nw);
  for (let iz = 0; iz < ez; iz++)
    for (let iy = 0; iy < ey; iy++) {
      const src = (iz * ey + iy) * ex;
      const dst = (iz * ey + iy) * nw;
      for (let ix = 0; ix < nw; ix++) {
        let acc = 0;
        for (let t = 0; t < kernel.length; t++) acc += kernel[t] * sharp[src + ix + t];
        bx[dst + ix] = acc;
      }
    }
  const by = new Float64Array(ez * nh * nw);
  for (let iz = 0; iz < ez; iz++)
    for (let iy = 0; iy < nh; iy++) {
      const dst = (iz * nh + iy) * nw;
      for (let ix = 0; ix < nw; ix++) {
        let acc = 0;
        for (let t = 0; t < kernel.length; t++) acc += kernel[t] * bx[(iz * ey + iy + t) * nw + ix];
        by[dst + ix] = acc;
      }
    }
  const image = new Uint8Array(nd * nh * nw);
  const [lo, hi] = c.window;
  const scale = 255 / (hi - lo);
  for (let iz = 0; iz < nd; iz++)
    for (let iy = 0; iy < nh; iy++)
      for (let ix = 0; ix < nw; ix++) {
        let acc = 0;
        for (let t = 0; t < kernel.length; t++) acc += kernel[t] * by[((iz + t) * nh + iy) * nw + ix];
        if (c.noise > 0) acc += c.noise * gaussian(c.seed ^ SALT.noise, oz + iz, oy + iy, ox + ix);
        const u = Math.round((acc - lo) * scale);
        image[(iz * nh + iy) * nw + ix] = u < 0 ? 0 : u > 255 ? 255 : u;
      }
  return { image, ink, papyrus, shape: [nd, nh, nw] };
}
