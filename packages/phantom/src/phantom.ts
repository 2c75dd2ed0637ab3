/**
 * The synthetic scroll (DESIGN.md section 6): an Archimedean spiral sheet in (y, x) extended along z,
 * with smooth waviness, local compression (wraps pushed against their neighbours until they touch or
 * merge), varying thickness and tears; recto fibres around the spiral and verso fibres along z drawn
 * as oriented texture; letter-like ink strokes on the recto (outer) surface; then blur, noise and
 * windowing. Every voxel is a pure function of (config, voxel coordinates): regions can be computed
 * independently, in any order, on any thread, and equal the same voxels of any larger region.
 *
 * Geometry. Wrap k's centre surface is r = R0(θ) + D(s, z), θ = φ + 2πk ∈ [0, 2π·wraps] the unwrapped
 * polar angle, R0(θ) = r0 + bθ with b = pitch / 2π, and s(θ) the arc length of R0 from θ = 0:
 *   s = F(R0(θ)) − F(r0),   F(r) = (r √(r² + b²) + b² asinh(r / b)) / (2b)
 * (∫ √(r² + (dr/dθ)²) dθ with dr/dθ = b). The displacement D = waviness · W(s, z) + C(s, z) adds a
 * smooth wave W (|W| ≤ 1) and compression bumps C ≥ 0 (compact, C¹) that push the wrap outward
 * against the next. A voxel at polar (r, φ) belongs to wrap k when the signed radial distance
 * d = r − R0 − D is within the local half thickness h(s, z), it is not in a tear, and no other wrap
 * claims it more centrally (|d| / h smallest: where compression merges wraps, the nearer centre
 * wins). d > 0 is the recto (outer) face, where ink lies; d < 0 the verso.
 *
 * Texture and ground truth. Recto intensity is a function of u = z + m_r(s) (stripes running around
 * the spiral, meandering by m_r), verso intensity a function of v = s + m_v(z) (stripes along z).
 * Within the surface of constant d through a voxel, with e_s = ∂P/∂s and e_z = ∂P/∂z its tangents,
 * the texture is constant along the fibre direction
 *   recto: e_s − m_r'(s) e_z,     verso: −m_v'(z) e_s + e_z,
 * which is the fibre label; the normal label is e_s × e_z, pointing outward. Both are unit vectors,
 * exactly perpendicular, computed analytically from the same tangents.
 */
import { type PhantomConfig } from './config.js';
import { gaussian, hash, SALT, uniform } from './random.js';

/** A box of voxels `[z, y, x]`. */
export interface PhantomBox {
  offset: number[];
  shape: number[];
}

/** Voxels of one region: scalar fields `[d, h, w]`, vector fields `[3, d, h, w]` (components z, y, x), C order. */
export interface PhantomRegion {
  /** Imaged intensity, windowed to the configured dtype. */
  image: Uint8Array | Uint16Array;
  /** 1 where ink is (always on papyrus, at the recto surface), else 0. */
  ink: Uint8Array;
  /** 1 where the papyrus sheet is, else 0. */
  papyrus: Uint8Array;
  /** Which turn of the spiral the voxel's sheet is: 1 for the innermost wrap, 0 for air. */
  wrap: Uint16Array;
  /** Unit fibre direction `[3, d, h, w]` (z, y, x components); 0 outside papyrus. */
  fibre: Float32Array;
  /** Unit sheet normal `[3, d, h, w]` (z, y, x components), pointing outward (recto side); 0 outside papyrus. */
  normal: Float32Array;
  shape: number[];
}

const WAVE_TERMS = 4;
const FIBRE_TERMS = 3;
const THICK_TERMS = 3;
const MEANDER_TERMS = 2;
const TWO_PI = 2 * Math.PI;

/** The seed-dependent constants of the phantom (wave vectors, phases), drawn once per config. */
interface Params {
  // Waviness: W = Σ a_j sin(α_j s + β_j z + φ_j), Σ a_j = 1, so |W| ≤ 1.
  waveA: Float64Array;
  waveAlpha: Float64Array;
  waveBeta: Float64Array;
  wavePhase: Float64Array;
  // Thickness: h = thickness / 2 · (1 + tv Σ t_j sin(γ_j s + δ_j z + ε_j)), Σ t_j = 1.
  thickA: Float64Array;
  thickGamma: Float64Array;
  thickDelta: Float64Array;
  thickPhase: Float64Array;
  // Fibre meanders m(x) = Σ μ_j sin(κ_j x + ν_j), Σ μ_j = fibreMeander: recto over s, verso over z.
  rectoMu: Float64Array;
  rectoKappa: Float64Array;
  rectoNu: Float64Array;
  versoMu: Float64Array;
  versoKappa: Float64Array;
  versoNu: Float64Array;
  // Texture: (1/3) Σ sin(K_j u + ψ_j + wrap phase) on the recto, same with v on the verso.
  rectoK: Float64Array;
  rectoPhase: Float64Array;
  versoK: Float64Array;
  versoPhase: Float64Array;
}

function params(c: PhantomConfig): Params {
  const f = (n: number) => new Float64Array(n);
  const p: Params = {
    waveA: f(WAVE_TERMS),
    waveAlpha: f(WAVE_TERMS),
    waveBeta: f(WAVE_TERMS),
    wavePhase: f(WAVE_TERMS),
    thickA: f(THICK_TERMS),
    thickGamma: f(THICK_TERMS),
    thickDelta: f(THICK_TERMS),
    thickPhase: f(THICK_TERMS),
    rectoMu: f(MEANDER_TERMS),
    rectoKappa: f(MEANDER_TERMS),
    rectoNu: f(MEANDER_TERMS),
    versoMu: f(MEANDER_TERMS),
    versoKappa: f(MEANDER_TERMS),
    versoNu: f(MEANDER_TERMS),
    rectoK: f(FIBRE_TERMS),
    rectoPhase: f(FIBRE_TERMS),
    versoK: f(FIBRE_TERMS),
    versoPhase: f(FIBRE_TERMS),
  };
  // Smooth fields over the unrolled sheet: wave vectors of random direction in the (s, z) plane.
  const waves = (salt: number, amp: Float64Array, alpha: Float64Array, beta: Float64Array, phase: Float64Array, scale: number) => {
    let sum = 0;
    for (let j = 0; j < amp.length; j++) {
      const u = (i: number) => uniform(c.seed ^ salt, j, i);
      const lambda = scale * (0.75 + 0.75 * u(0));
      const dir = Math.PI * u(1);
      alpha[j] = (TWO_PI / lambda) * Math.cos(dir);
      beta[j] = (TWO_PI / lambda) * Math.sin(dir);
      phase[j] = TWO_PI * u(2);
      amp[j] = 0.5 + 0.5 * u(3);
      sum += amp[j];
    }
    for (let j = 0; j < amp.length; j++) amp[j] /= sum;
  };
  waves(SALT.waviness, p.waveA, p.waveAlpha, p.waveBeta, p.wavePhase, c.wavelength);
  waves(SALT.thickness, p.thickA, p.thickGamma, p.thickDelta, p.thickPhase, 1.5 * c.wavelength);
  const meander = (salt: number, mu: Float64Array, kappa: Float64Array, nu: Float64Array) => {
    let sum = 0;
    for (let j = 0; j < mu.length; j++) {
      const u = (i: number) => uniform(c.seed ^ salt, j, i);
      kappa[j] = TWO_PI / (c.wavelength * (1 + u(0)));
      nu[j] = TWO_PI * u(1);
      mu[j] = 0.5 + 0.5 * u(2);
      sum += mu[j];
    }
    for (let j = 0; j < mu.length; j++) mu[j] *= c.fibreMeander / sum;
  };
  meander(SALT.meander, p.rectoMu, p.rectoKappa, p.rectoNu);
  meander(SALT.meander ^ 0x5555, p.versoMu, p.versoKappa, p.versoNu);
  for (let j = 0; j < FIBRE_TERMS; j++) {
    const r = (i: number) => uniform(c.seed ^ SALT.fibreRecto, j, i);
    const v = (i: number) => uniform(c.seed ^ SALT.fibreVerso, j, i);
    p.rectoK[j] = TWO_PI / (c.fibreWavelength * (0.8 + 0.6 * r(0)));
    p.rectoPhase[j] = TWO_PI * r(1);
    p.versoK[j] = TWO_PI / (c.fibreWavelength * (0.8 + 0.6 * v(0)));
    p.versoPhase[j] = TWO_PI * v(1);
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

/** A compression bump: C = h (1 − ρ²/ρmax²)² for ρ < ρmax around (s, z), zero beyond (compact, C¹). */
interface Bump {
  s: number;
  z: number;
  h: number;
  /** 1 / ρmax² */
  inv: number;
}

/**
 * The bump of compression cell (a, q) (a along s, q along z), or null. Cells are `compressionScale`
 * square and a bump's reach ρmax is at most the cell size, so a point sees only bumps of its own and
 * the eight neighbouring cells.
 */
function bumpOf(c: PhantomConfig, a: number, q: number): Bump | null {
  const seed = c.seed ^ SALT.compression;
  if (c.compression <= 0 || uniform(seed, a, q, 0) >= c.compressionRate) return null;
  const L = c.compressionScale;
  const rmax = L * (0.6 + 0.4 * uniform(seed, a, q, 3));
  return {
    s: (a + uniform(seed, a, q, 1)) * L,
    z: (q + uniform(seed, a, q, 2)) * L,
    h: c.compression * c.gap * (0.6 + 0.4 * uniform(seed, a, q, 4)),
    inv: 1 / (rmax * rmax),
  };
}

/**
 * Whether (s, z) of the unrolled sheet lies in a tear. Tear cell a (`tearSpacing` long along s) holds
 * a tear with probability `tearRate`: a crack of width `tearWidth` along z from z0 to z1, at
 * s = s_t + (L / 4) sin(2π z / Λ + ψ), which stays inside cells a − 1 … a + 1.
 */
function tornAt(c: PhantomConfig, s: number, z: number): boolean {
  if (c.tearRate <= 0) return false;
  const L = c.tearSpacing;
  const seed = c.seed ^ SALT.tear;
  const a0 = Math.floor(s / L);
  for (let a = a0 - 1; a <= a0 + 1; a++) {
    if (uniform(seed, a, 0) >= c.tearRate) continue;
    const depth = c.shape[0];
    const z0 = (uniform(seed, a, 1) - 0.3) * depth;
    const z1 = z0 + depth * (0.3 + 0.7 * uniform(seed, a, 2));
    if (z < z0 || z > z1) continue;
    const st = (a + 0.25 + 0.5 * uniform(seed, a, 3)) * L;
    const sc = st + (L / 4) * Math.sin((TWO_PI * z) / (3 * L) + TWO_PI * uniform(seed, a, 4));
    const w = c.tearWidth * (0.7 + 0.6 * uniform(seed, a, 5));
    if (Math.abs(s - sc) < w / 2) return true;
  }
  return false;
}

/** The sheet of one wrap at one point of the unrolled sheet (see {@link sheetAt}). */
export interface SheetPoint {
  /** Arc length along the undisturbed spiral from θ = 0 (the unrolled sheet's horizontal coordinate). */
  s: number;
  /** Unwrapped polar angle θ = φ + 2πk. */
  theta: number;
  /** Centre-surface point `[z, y, x]` in voxels. */
  point: [number, number, number];
  /** Unit outward normal `[z, y, x]` of the centre surface. */
  normal: [number, number, number];
  /** Unit recto fibre direction `[z, y, x]` (along the spiral) on the centre surface. */
  rectoFibre: [number, number, number];
  /** Unit verso fibre direction `[z, y, x]` (along z) on the centre surface. */
  versoFibre: [number, number, number];
  /** Local half thickness h(s, z). */
  halfThickness: number;
  /** Radial displacement D(s, z) of the centre surface from the undisturbed spiral. */
  displacement: number;
  /** False where a tear removes the sheet. */
  present: boolean;
  /** True where the recto surface carries ink at this (s, z). */
  ink: boolean;
}

const paramCache = new WeakMap<PhantomConfig, Params>();

/** Arc length s(θ) of the undisturbed spiral r = r0 + bθ from θ = 0 (the inverse of {@link thetaOfArc}). */
export function arcOfTheta(config: PhantomConfig, theta: number): number {
  const b = (config.thickness + config.gap) / TWO_PI;
  return arcF(config.innerRadius + b * theta, b) - arcF(config.innerRadius, b);
}

/** θ of arc length s on the spiral r = r0 + bθ (Newton on s(θ) = F(r0 + bθ) − F(r0), ds/dθ = √(R0² + b²)). */
export function thetaOfArc(config: PhantomConfig, s: number): number {
  const b = (config.thickness + config.gap) / TWO_PI;
  const r0 = config.innerRadius;
  const F0 = arcF(r0, b);
  // Start from the large-radius approximation s ≈ r0 θ + b θ² / 2.
  let theta = r0 > 0 ? (-r0 + Math.sqrt(r0 * r0 + 2 * b * Math.max(s, 0))) / b : Math.sqrt((2 * Math.max(s, 0)) / b);
  for (let i = 0; i < 30; i++) {
    const R0 = r0 + b * theta;
    const step = (arcF(R0, b) - F0 - s) / Math.sqrt(R0 * R0 + b * b);
    theta -= step;
    if (Math.abs(step) < 1e-12 * (1 + Math.abs(theta))) break;
  }
  return theta;
}

/**
 * The sheet of the wrap that passes through the unrolled-sheet point (s, z): its centre-surface
 * point, frame and local properties, by the same formulas as {@link phantomRegion} (slow path: for
 * flattening fragments and for checks, not for filling volumes).
 * @param s arc length along the undisturbed spiral (its wrap is the turn that θ(s) falls in)
 */
export function sheetAt(config: PhantomConfig, s: number, z: number): SheetPoint {
  const c = config;
  let p = paramCache.get(c);
  if (!p) {
    p = params(c);
    paramCache.set(c, p);
  }
  const b = (c.thickness + c.gap) / TWO_PI;
  const theta = thetaOfArc(c, s);
  const R0 = c.innerRadius + b * theta;
  const dsdt = Math.sqrt(R0 * R0 + b * b);
  let w = 0;
  let ws = 0;
  let wz = 0;
  for (let j = 0; j < WAVE_TERMS; j++) {
    const a = p.waveAlpha[j] * s + p.waveBeta[j] * z + p.wavePhase[j];
    w += p.waveA[j] * Math.sin(a);
    ws += p.waveA[j] * p.waveAlpha[j] * Math.cos(a);
    wz += p.waveA[j] * p.waveBeta[j] * Math.cos(a);
  }
  let D = c.waviness * w;
  let Ds = c.waviness * ws;
  let Dz = c.waviness * wz;
  const L = c.compressionScale;
  const qs = Math.floor(s / L);
  const qz = Math.floor(z / L);
  for (let a = qs - 1; a <= qs + 1; a++)
    for (let t = qz - 1; t <= qz + 1; t++) {
      const bump = bumpOf(c, a, t);
      if (!bump) continue;
      const es = s - bump.s;
      const ezz = z - bump.z;
      const u = (es * es + ezz * ezz) * bump.inv;
      if (u >= 1) continue;
      D += bump.h * (1 - u) * (1 - u);
      Ds -= 4 * bump.h * (1 - u) * es * bump.inv;
      Dz -= 4 * bump.h * (1 - u) * ezz * bump.inv;
    }
  let tsum = 0;
  for (let j = 0; j < THICK_TERMS; j++) tsum += p.thickA[j] * Math.sin(p.thickGamma[j] * s + p.thickDelta[j] * z + p.thickPhase[j]);
  const h = (c.thickness / 2) * (1 + c.thicknessVariation * tsum);
  const cy = c.center ? c.center[0] : (c.shape[1] - 1) / 2;
  const cx = c.center ? c.center[1] : (c.shape[2] - 1) / 2;
  const r = R0 + D;
  const sinP = Math.sin(theta);
  const cosP = Math.cos(theta);
  const rs = b / dsdt + Ds;
  const es: [number, number, number] = [0, rs * sinP + (r * cosP) / dsdt, rs * cosP - (r * sinP) / dsdt];
  const ez: [number, number, number] = [1, Dz * sinP, Dz * cosP];
  let mr = 0;
  for (let j = 0; j < MEANDER_TERMS; j++) mr += p.rectoMu[j] * p.rectoKappa[j] * Math.cos(p.rectoKappa[j] * s + p.rectoNu[j]);
  let mv = 0;
  for (let j = 0; j < MEANDER_TERMS; j++) mv += p.versoMu[j] * p.versoKappa[j] * Math.cos(p.versoKappa[j] * z + p.versoNu[j]);
  const unit = (v: number[]): [number, number, number] => {
    const l = Math.hypot(v[0], v[1], v[2]);
    return [v[0] / l, v[1] / l, v[2] / l];
  };
  let n = [es[1] * ez[2] - es[2] * ez[1], es[2], -es[1]];
  if (n[1] * sinP + n[2] * cosP < 0) n = n.map((x) => -x);
  return {
    s,
    theta,
    point: [z, cy + r * sinP, cx + r * cosP],
    normal: unit(n),
    rectoFibre: unit([es[0] - mr * ez[0], es[1] - mr * ez[1], es[2] - mr * ez[2]]),
    versoFibre: unit([-mv * es[0] + ez[0], -mv * es[1] + ez[1], -mv * es[2] + ez[2]]),
    halfThickness: h,
    displacement: D,
    present: !tornAt(c, s, z),
    ink: inkAt(c, z, s),
  };
}

/** The most candidate wraps a column can have (k0 − 2 … k0 + 2). */
const MAX_CAND = 5;

/**
 * Computes the phantom over any box (inside the volume or not: the phantom is defined everywhere).
 * The result equals the same voxels cut from any larger box, bit for bit.
 * @param config a resolved configuration ({@link resolvePhantomConfig})
 * @param region `{ offset: [z, y, x], shape: [d, h, w] }`
 * @returns image, ink, papyrus and wrap `[d, h, w]`, fibre and normal `[3, d, h, w]`, C order
 */
export function phantomRegion(config: PhantomConfig, region: PhantomBox): PhantomRegion {
  const c = config;
  const [oz, oy, ox] = region.offset;
  const [nd, nh, nw] = region.shape;
  const n = nd * nh * nw;
  const p = params(c);
  const kernel = gaussianKernel(c.blur);
  const R = (kernel.length - 1) / 2;
  // The sharp (un-blurred) field is computed on the region plus a halo of R voxels per side.
  const ez = nd + 2 * R;
  const ey = nh + 2 * R;
  const ex = nw + 2 * R;
  const sharp = new Float64Array(ez * ey * ex);
  const ink = new Uint8Array(n);
  const papyrus = new Uint8Array(n);
  const wrap = new Uint16Array(n);
  const fibre = new Float32Array(3 * n);
  const normal = new Float32Array(3 * n);

  const cy = c.center ? c.center[0] : (c.shape[1] - 1) / 2;
  const cx = c.center ? c.center[1] : (c.shape[2] - 1) / 2;
  const pitch = c.thickness + c.gap;
  const b = pitch / TWO_PI;
  const r0 = c.innerRadius;
  const thetaMax = TWO_PI * c.wraps;
  const F0 = arcF(r0, b);
  const h0 = c.thickness / 2;
  const tv = c.thicknessVariation;
  // Bounds of the displacement and thickness, to skip wraps that cannot reach a voxel.
  const dLo = -c.waviness;
  const dHi = c.waviness + c.compression * c.gap;
  const hMax = h0 * (1 + tv);
  const Lc = c.compressionScale;

  // Per-z terms: the z-only parts of the wave and thickness phases, the verso meander and its slope.
  const cosBz = new Float64Array(ez * WAVE_TERMS);
  const sinBz = new Float64Array(ez * WAVE_TERMS);
  const cosDz = new Float64Array(ez * THICK_TERMS);
  const sinDz = new Float64Array(ez * THICK_TERMS);
  const versoM = new Float64Array(ez);
  const versoDM = new Float64Array(ez);
  for (let iz = 0; iz < ez; iz++) {
    const z = oz - R + iz;
    for (let j = 0; j < WAVE_TERMS; j++) {
      cosBz[iz * WAVE_TERMS + j] = Math.cos(p.waveBeta[j] * z);
      sinBz[iz * WAVE_TERMS + j] = Math.sin(p.waveBeta[j] * z);
    }
    for (let j = 0; j < THICK_TERMS; j++) {
      cosDz[iz * THICK_TERMS + j] = Math.cos(p.thickDelta[j] * z);
      sinDz[iz * THICK_TERMS + j] = Math.sin(p.thickDelta[j] * z);
    }
    for (let j = 0; j < MEANDER_TERMS; j++) {
      versoM[iz] += p.versoMu[j] * Math.sin(p.versoKappa[j] * z + p.versoNu[j]);
      versoDM[iz] += p.versoMu[j] * p.versoKappa[j] * Math.cos(p.versoKappa[j] * z + p.versoNu[j]);
    }
  }

  // Per-column candidate wraps: base radius, arc length, ds/dθ and the s-only parts of every phase.
  const cK = new Int32Array(MAX_CAND);
  const cR0 = new Float64Array(MAX_CAND);
  const cS = new Float64Array(MAX_CAND);
  const cDsDt = new Float64Array(MAX_CAND);
  const cSinA = new Float64Array(MAX_CAND * WAVE_TERMS);
  const cCosA = new Float64Array(MAX_CAND * WAVE_TERMS);
  const cSinG = new Float64Array(MAX_CAND * THICK_TERMS);
  const cCosG = new Float64Array(MAX_CAND * THICK_TERMS);
  const cRectoM = new Float64Array(MAX_CAND);
  const cRectoDM = new Float64Array(MAX_CAND);
  const cWrapPhase = new Float64Array(MAX_CAND * FIBRE_TERMS);
  // Compression bumps near each candidate's s, for the current z cell (refreshed when it changes).
  const cBumps: Bump[][] = Array.from({ length: MAX_CAND }, () => []);
  // Per-voxel results of each candidate.
  const qD = new Float64Array(MAX_CAND);
  const qH = new Float64Array(MAX_CAND);
  const qDs = new Float64Array(MAX_CAND);
  const qDz = new Float64Array(MAX_CAND);

  const [lo, hi] = c.window;
  for (let iy = 0; iy < ey; iy++) {
    const y = oy - R + iy;
    for (let ix = 0; ix < ex; ix++) {
      const x = ox - R + ix;
      const dy = y - cy;
      const dx = x - cx;
      const r = Math.sqrt(dy * dy + dx * dx);
      let phi = Math.atan2(dy, dx);
      if (phi < 0) phi += TWO_PI;
      const sinP = r > 0 ? dy / r : 0;
      const cosP = r > 0 ? dx / r : 1;
      const k0 = Math.round((r - r0 - b * phi) / pitch);
      let nc = 0;
      for (let k = k0 - 2; k <= k0 + 2; k++) {
        const theta = phi + TWO_PI * k;
        if (theta < 0 || theta > thetaMax) continue;
        const R0 = r0 + b * theta;
        if (r - R0 <= dLo - hMax || r - R0 >= dHi + hMax) continue;
        const s = arcF(R0, b) - F0;
        cK[nc] = k;
        cR0[nc] = R0;
        cS[nc] = s;
        cDsDt[nc] = Math.sqrt(R0 * R0 + b * b);
        for (let j = 0; j < WAVE_TERMS; j++) {
          const a = p.waveAlpha[j] * s + p.wavePhase[j];
          cSinA[nc * WAVE_TERMS + j] = Math.sin(a);
          cCosA[nc * WAVE_TERMS + j] = Math.cos(a);
        }
        for (let j = 0; j < THICK_TERMS; j++) {
          const g = p.thickGamma[j] * s + p.thickPhase[j];
          cSinG[nc * THICK_TERMS + j] = Math.sin(g);
          cCosG[nc * THICK_TERMS + j] = Math.cos(g);
        }
        let m = 0;
        let dm = 0;
        for (let j = 0; j < MEANDER_TERMS; j++) {
          m += p.rectoMu[j] * Math.sin(p.rectoKappa[j] * s + p.rectoNu[j]);
          dm += p.rectoMu[j] * p.rectoKappa[j] * Math.cos(p.rectoKappa[j] * s + p.rectoNu[j]);
        }
        cRectoM[nc] = m;
        cRectoDM[nc] = dm;
        // A phase offset per wrap, so that wraps do not repeat each other's texture.
        for (let j = 0; j < FIBRE_TERMS; j++) cWrapPhase[nc * FIBRE_TERMS + j] = TWO_PI * uniform(c.seed ^ SALT.wrapPhase, k, j);
        nc++;
      }
      if (nc === 0) {
        for (let iz = 0; iz < ez; iz++) sharp[(iz * ey + iy) * ex + ix] = c.airIntensity;
        continue;
      }
      const inCore = iy >= R && iy < R + nh && ix >= R && ix < R + nw;
      let bumpCell = Number.NaN;
      for (let iz = 0; iz < ez; iz++) {
        const z = oz - R + iz;
        const qz = Math.floor(z / Lc);
        if (c.compression > 0 && qz !== bumpCell) {
          bumpCell = qz;
          for (let q = 0; q < nc; q++) {
            const list = cBumps[q];
            list.length = 0;
            const qs = Math.floor(cS[q] / Lc);
            for (let a = qs - 1; a <= qs + 1; a++)
              for (let t = qz - 1; t <= qz + 1; t++) {
                const bump = bumpOf(c, a, t);
                if (bump) list.push(bump);
              }
          }
        }
        // Find the wrap whose sheet holds this voxel most centrally (|d| / h smallest), outside tears.
        let hit = -1;
        let best = 1;
        for (let q = 0; q < nc; q++) {
          let w = 0;
          let ws = 0;
          let wz = 0;
          for (let j = 0; j < WAVE_TERMS; j++) {
            // sin(αs + φ + βz) and its cosine by the angle-addition formula, from per-column and per-z parts.
            const sa = cSinA[q * WAVE_TERMS + j];
            const ca = cCosA[q * WAVE_TERMS + j];
            const cb = cosBz[iz * WAVE_TERMS + j];
            const sb = sinBz[iz * WAVE_TERMS + j];
            const sn = sa * cb + ca * sb;
            const cs = ca * cb - sa * sb;
            w += p.waveA[j] * sn;
            ws += p.waveA[j] * p.waveAlpha[j] * cs;
            wz += p.waveA[j] * p.waveBeta[j] * cs;
          }
          let D = c.waviness * w;
          let Ds = c.waviness * ws;
          let Dz = c.waviness * wz;
          const s = cS[q];
          for (const bump of cBumps[q]) {
            const es = s - bump.s;
            const ezz = z - bump.z;
            const u = (es * es + ezz * ezz) * bump.inv;
            if (u >= 1) continue;
            const one = 1 - u;
            D += bump.h * one * one;
            Ds -= 4 * bump.h * one * es * bump.inv;
            Dz -= 4 * bump.h * one * ezz * bump.inv;
          }
          let t = 0;
          for (let j = 0; j < THICK_TERMS; j++) {
            t += p.thickA[j] * (cSinG[q * THICK_TERMS + j] * cosDz[iz * THICK_TERMS + j] + cCosG[q * THICK_TERMS + j] * sinDz[iz * THICK_TERMS + j]);
          }
          const h = h0 * (1 + tv * t);
          const d = r - cR0[q] - D;
          qD[q] = d;
          qH[q] = h;
          qDs[q] = Ds;
          qDz[q] = Dz;
          const ratio = Math.abs(d) / h;
          if (ratio < best && !tornAt(c, s, z)) {
            best = ratio;
            hit = q;
          }
        }
        const e = (iz * ey + iy) * ex + ix;
        if (hit < 0) {
          sharp[e] = c.airIntensity;
          continue;
        }
        const d = qD[hit];
        const s = cS[hit];
        let fib = 0;
        if (d >= 0) {
          const u = z + cRectoM[hit];
          for (let j = 0; j < FIBRE_TERMS; j++) fib += Math.sin(p.rectoK[j] * u + p.rectoPhase[j] + cWrapPhase[hit * FIBRE_TERMS + j]);
        } else {
          const v = s + versoM[iz];
          for (let j = 0; j < FIBRE_TERMS; j++) fib += Math.sin(p.versoK[j] * v + p.versoPhase[j] + cWrapPhase[hit * FIBRE_TERMS + j]);
        }
        let val = c.papyrusIntensity * (1 + (c.fibreContrast * fib) / FIBRE_TERMS);
        const inked = d > qH[hit] - c.inkDepth && inkAt(c, z, s);
        if (inked) val += c.inkContrast;
        sharp[e] = val;
        if (inCore && iz >= R && iz < R + nd) {
          const o = ((iz - R) * nh + (iy - R)) * nw + (ix - R);
          papyrus[o] = 1;
          wrap[o] = cK[hit] + 1;
          if (inked) ink[o] = 1;
          // Tangents of the surface of constant d through the voxel (radius r), components (z, y, x):
          // e_s = (0, r_s sinφ + r cosφ / (ds/dθ), r_s cosφ − r sinφ / (ds/dθ)), r_s = dR0/ds + ∂D/∂s;
          // e_z = (1, ∂D/∂z sinφ, ∂D/∂z cosφ).
          const dsdt = cDsDt[hit];
          const rs = b / dsdt + qDs[hit];
          const esy = rs * sinP + (r * cosP) / dsdt;
          const esx = rs * cosP - (r * sinP) / dsdt;
          const dz = qDz[hit];
          const ezy = dz * sinP;
          const ezx = dz * cosP;
          // Fibre: along the texture's level curves (see the file comment).
          let fz: number;
          let fy: number;
          let fx: number;
          if (d >= 0) {
            const m = -cRectoDM[hit];
            fz = m;
            fy = esy + m * ezy;
            fx = esx + m * ezx;
          } else {
            const m = -versoDM[iz];
            fz = 1;
            fy = m * esy + ezy;
            fx = m * esx + ezx;
          }
          const fl = Math.sqrt(fz * fz + fy * fy + fx * fx);
          fibre[o] = fz / fl;
          fibre[n + o] = fy / fl;
          fibre[2 * n + o] = fx / fl;
          // Normal: e_s × e_z with e_s = (0, esy, esx), e_z = (1, ezy, ezx), turned outward.
          let nz = esy * ezx - esx * ezy;
          let ny = esx;
          let nx = -esy;
          if (ny * sinP + nx * cosP < 0) {
            nz = -nz;
            ny = -ny;
            nx = -nx;
          }
          const nl = Math.sqrt(nz * nz + ny * ny + nx * nx);
          normal[o] = nz / nl;
          normal[n + o] = ny / nl;
          normal[2 * n + o] = nx / nl;
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
  const top = c.dtype === 'uint16' ? 65535 : 255;
  const image = c.dtype === 'uint16' ? new Uint16Array(n) : new Uint8Array(n);
  const scale = top / (hi - lo);
  for (let iz = 0; iz < nd; iz++)
    for (let iy = 0; iy < nh; iy++)
      for (let ix = 0; ix < nw; ix++) {
        let acc = 0;
        for (let t = 0; t < kernel.length; t++) acc += kernel[t] * by[((iz + t) * nh + iy) * nw + ix];
        if (c.noise > 0) acc += c.noise * gaussian(c.seed ^ SALT.noise, oz + iz, oy + iy, ox + ix);
        const u = Math.round((acc - lo) * scale);
        image[(iz * nh + iy) * nw + ix] = u < 0 ? 0 : u > top ? top : u;
      }
  return { image, ink, papyrus, wrap, fibre, normal, shape: [nd, nh, nw] };
}
