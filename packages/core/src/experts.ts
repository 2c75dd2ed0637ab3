/**
 * The expert library (GoE draft §3.1.4: f_m "can be a small transformer block, an MLP, a
 * convolutional unit, or any lightweight operator suited to the representation space").
 *
 * An expert maps the rows the dispatcher gathered for it, `[n, dim] -> [n, dim]`. An MLP needs nothing
 * else; a structured expert (attention among the tokens of one sample, a convolution over the token
 * grid) needs to know where its rows came from, which the dispatcher passes as an `ExpertContext`.
 *
 * One `expertHidden` (h) sizes every kind:
 * - `mlp`: SwiGLU with hidden width h;
 * - `attention`: a pre-norm transformer block whose feed-forward is dim -> h -> dim (GELU);
 * - `conv`: a depthwise 3x3x3 convolution followed by the pointwise expansion dim -> h -> dim (GELU);
 * - `linear`: one matrix, `f(x) = x W` (h unused).
 *
 * Legend: R = B·N token rows (batch-major), n rows given to one expert, C = dim,
 * grid `[gz, gy, gx]` with N = gz·gy·gx (z-major, C order).
 */
import { LayerNorm, Linear, Module, attention, gelu, segmentMatMul, tf, type Rng } from '@goe/tf';
import { gatherRows, inverse } from './dispatch.js';
import { GoeConfigError, GoeInputError } from './errors.js';
import { canReadSync } from './ops.js';
import { Registry } from './registry.js';

/** How the R = B·N rows of a layer call are laid out. */
export interface TokenLayout {
  /** B: samples. */
  batch: number;
  /** N: tokens per sample (rows are batch-major: row = b·N + token). */
  tokens: number;
  /** `[gz, gy, gx]` token grid of each sample (N = gz·gy·gx, z-major), when the tokens tile a volume. */
  grid?: readonly [number, number, number];
}

/** Where an expert's rows came from (dispatch.ts fills it in). */
export interface ExpertContext extends TokenLayout {
  /** `[n]` row index in R = B·N of each row handed to the expert. */
  rows: Int32Array;
  /**
   * `[n, 1]` 1 for rows really routed to this expert, 0 otherwise. Dense dispatch runs every expert on
   * every row and masks afterwards; an expert that mixes rows (attention, conv) must then ignore the
   * rows that were not routed to it, so that dense and sparse dispatch compute the same thing.
   * Absent: every row was routed here.
   */
  routed?: tf.Tensor2D;
}

/** One node of the expert graph. */
export abstract class Expert extends Module {
  /** Input and output width (the expert state width d_e). */
  abstract readonly dim: number;
  /**
   * @param x `[n, dim]` rows routed to this expert
   * @param ctx where the rows came from; experts that treat rows independently ignore it
   * @returns `[n, dim]`
   */
  abstract apply(x: tf.Tensor2D, ctx?: ExpertContext): tf.Tensor2D;
  /** Multiply-adds per row, for compute accounting. */
  abstract flopsPerRow(): number;
  /** Whether `apply` needs `ctx.grid` (the layer then requires a grid with its input). */
  get needsGrid(): boolean {
    return false;
  }
  /**
   * Experts with the same defined key compute the same function of their own weights, row by row, so
   * that `applyGroup` can run several of them as one (dispatch.ts). Undefined: run alone.
   */
  get groupKey(): string | undefined {
    return undefined;
  }
  /**
   * Runs `members` (all with this expert's `groupKey`) at once, each on its own consecutive rows of x:
   * what `members[g].apply` gives on rows `[o_g, o_g + counts[g])`, for the same cost in ops as one
   * expert. Only called when `groupKey` is defined.
   * @param x `[Σ counts, dim]` @returns `[Σ counts, dim]`
   */
  applyGroup(members: readonly Expert[], x: tf.Tensor2D, counts: readonly number[]): tf.Tensor2D {
    void members;
    void counts;
    void x;
    throw new GoeConfigError('expert', 'an expert kind with a groupKey', `${this.constructor.name}, which runs alone`);
  }
}

/** The weights `pick(e)` of each member, checked to be the given class (a group shares one class). */
function groupWeights<E extends Expert>(cls: abstract new (...args: never[]) => E, members: readonly Expert[], pick: (e: E) => tf.Variable): tf.Tensor2D[] {
  return members.map((e) => {
    if (!(e instanceof cls)) throw new GoeConfigError('expert', `a group of ${cls.name} experts`, e.constructor.name);
    return pick(e) as tf.Tensor2D;
  });
}

/** What an expert factory is told. */
export interface ExpertSpec {
  /** Row width d_e. */
  dim: number;
  /** Hidden width (`expertHidden`; see the file header for what it sizes in each kind). */
  hidden: number;
  /** Which expert of the layer (0-based), for factories that vary by node. */
  index: number;
}

export type ExpertFactory = (spec: ExpertSpec, rng: Rng) => Expert;

/**
 * SwiGLU MLP (Shazeer, 2020): `f(x) = (silu(x W1) ⊙ x W3) W2`, no biases, as in current MoE FFN
 * experts. W2 starts at std 1/sqrt(2·hidden), so that the first refinement cycles make moderate updates.
 */
export class SwiGluExpert extends Expert {
  readonly w1: tf.Variable;
  readonly w3: tf.Variable;
  readonly w2: tf.Variable;
  constructor(
    readonly dim: number,
    readonly hidden: number,
    rng: Rng,
  ) {
    super();
    this.w1 = this.param('w1', [dim, hidden], { kind: 'glorot' }, rng);
    this.w3 = this.param('w3', [dim, hidden], { kind: 'glorot' }, rng);
    this.w2 = this.param('w2', [hidden, dim], { kind: 'normal', std: 1 / Math.sqrt(2 * hidden) }, rng);
  }

  /** @param x `[n, dim]` @returns `[n, dim]` */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const a = tf.matMul(x, this.w1); // [n, hidden]
      const b = tf.matMul(x, this.w3); // [n, hidden]
      const h = tf.mul(tf.mul(a, tf.sigmoid(a)), b); // silu(a) ⊙ b
      return tf.matMul(h, this.w2) as tf.Tensor2D; // [n, dim]
    });
  }

  override get groupKey(): string {
    return `mlp:${this.dim}:${this.hidden}`;
  }

  /** The same SwiGLU for every member on its rows: three segment products, one gate for all rows. */
  override applyGroup(members: readonly Expert[], x: tf.Tensor2D, counts: readonly number[]): tf.Tensor2D {
    return tf.tidy(() => {
      const a = segmentMatMul(x, groupWeights(SwiGluExpert, members, (e) => e.w1), counts); // [Σn, hidden]
      const b = segmentMatMul(x, groupWeights(SwiGluExpert, members, (e) => e.w3), counts); // [Σn, hidden]
      const h = tf.mul(tf.mul(a, tf.sigmoid(a)), b) as tf.Tensor2D; // silu(a) ⊙ b
      return segmentMatMul(h, groupWeights(SwiGluExpert, members, (e) => e.w2), counts); // [Σn, dim]
    });
  }

  flopsPerRow(): number {
    return 3 * this.dim * this.hidden;
  }
}

/**
 * A linear expert `f(x) = x W`, W `[dim, dim]`, no bias. The simplest operator of the library: it can
 * represent exactly a linear map of the token (a rotation, for the structure-recovery task of
 * `routing-task.ts`), which SwiGLU, degree-2 homogeneous far from the origin, can only approximate.
 */
export class LinearExpert extends Expert {
  readonly w: tf.Variable;
  constructor(
    readonly dim: number,
    rng: Rng,
  ) {
    super();
    this.w = this.param('w', [dim, dim], { kind: 'glorot' }, rng);
  }

  /** @param x `[n, dim]` @returns `[n, dim]` */
  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(x, this.w);
  }

  override get groupKey(): string {
    return `linear:${this.dim}`;
  }

  override applyGroup(members: readonly Expert[], x: tf.Tensor2D, counts: readonly number[]): tf.Tensor2D {
    return segmentMatMul(x, groupWeights(LinearExpert, members, (e) => e.w), counts);
  }

  flopsPerRow(): number {
    return this.dim * this.dim;
  }
}

/** Whether `rows` is 0, 1, …, total−1 (dense dispatch: the rows are already the whole grid). */
function isAllRows(rows: Int32Array, total: number): boolean {
  if (rows.length !== total) return false;
  for (let i = 0; i < total; i++) if (rows[i] !== i) return false;
  return true;
}

/**
 * `out[p] = x[idx[p]]`, an index >= n giving a zero row; `inv` is idx's inverse (see `gatherRows`).
 * Host row copies where the backend reads back synchronously; a device gather (whose gradient,
 * a scatter, WebGPU has) elsewhere.
 * @param x `[n, w]` @param idx `[p]` @param inv `[n]` @returns `[p, w]`
 */
function takeRows(x: tf.Tensor2D, idx: Int32Array, inv: Int32Array): tf.Tensor2D {
  if (canReadSync()) return gatherRows(x, idx, inv);
  return tf.tidy(() => {
    const [n, w] = x.shape;
    const padded = tf.concat([x, tf.zeros([1, w])], 0); // [n + 1, w]: row n is the zero row
    const clamped = Int32Array.from(idx, (r) => Math.min(r, n));
    return tf.gather(padded, tf.tensor1d(clamped, 'int32')) as tf.Tensor2D; // [p, w]
  });
}

/** Largest of 4, 2, 1 heads that divides dim with heads of width >= 8. */
function defaultHeads(dim: number): number {
  for (const h of [4, 2]) if (dim % h === 0 && dim / h >= 8) return h;
  return 1;
}

/**
 * A small pre-norm transformer block (GoE draft eq. 5: LayerNorm -> multi-head attention -> residual
 * -> feed-forward -> residual) among the rows routed to this expert:
 *
 *   y = x + Attn(LN1(x)) W_o,   Attn = softmax(q kᵀ / sqrt(dh) + mask) v  (draft eq. 6),
 *   f(x) = y + gelu(LN2(y) W1 + b1) W2 + b2.
 *
 * A row attends only to rows of its own sample: the mask adds −1e9 (exp underflows to exactly 0, yet
 * the scores stay finite) where the samples differ, computed on the gathered rows, so the cost is n²
 * for the n rows this expert got rather than B·N². Under dense dispatch, keys not routed here are
 * masked too.
 */
export class AttentionExpert extends Expert {
  readonly heads: number;
  readonly norm1: LayerNorm;
  readonly wq: Linear;
  readonly wk: Linear;
  readonly wv: Linear;
  readonly wo: Linear;
  readonly norm2: LayerNorm;
  readonly ff1: Linear;
  readonly ff2: Linear;
  constructor(
    readonly dim: number,
    readonly hidden: number,
    rng: Rng,
    heads = defaultHeads(dim),
  ) {
    super();
    if (!Number.isInteger(heads) || heads < 1 || dim % heads !== 0) {
      throw new GoeConfigError('heads', `a positive divisor of dim ${dim}`, heads);
    }
    this.heads = heads;
    this.norm1 = this.child('norm1', new LayerNorm(dim, rng));
    this.wq = this.child('wq', new Linear(dim, dim, rng, { bias: false }));
    this.wk = this.child('wk', new Linear(dim, dim, rng, { bias: false }));
    this.wv = this.child('wv', new Linear(dim, dim, rng, { bias: false }));
    this.wo = this.child('wo', new Linear(dim, dim, rng, { bias: false }));
    this.norm2 = this.child('norm2', new LayerNorm(dim, rng));
    this.ff1 = this.child('ff1', new Linear(dim, hidden, rng));
    this.ff2 = this.child('ff2', new Linear(hidden, dim, rng, { init: { kind: 'normal', std: 1 / Math.sqrt(2 * hidden) } }));
  }

  /**
   * Which keys each query may see, `[1, 1, n, n]` (1 = attend), or undefined when every row may see
   * every other (one sample, all rows routed).
   */
  private keyMask(n: number, ctx: ExpertContext | undefined): tf.Tensor4D | undefined {
    if (!ctx) return undefined;
    const sample = Int32Array.from(ctx.rows, (r) => Math.floor(r / ctx.tokens)); // [n]
    const mixed = sample.some((b) => b !== sample[0]);
    if (!mixed && !ctx.routed) return undefined;
    return tf.tidy(() => {
      let m: tf.Tensor = tf.ones([n, n]);
      if (mixed) {
        const same = new Float32Array(n * n);
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) same[i * n + j] = sample[i] === sample[j] ? 1 : 0;
        m = tf.tensor2d(same, [n, n]); // [n, n]
      }
      if (ctx.routed) m = tf.mul(m, tf.reshape(ctx.routed, [1, n])); // [n, n]: keys not routed here are masked
      return tf.reshape(m, [1, 1, n, n]) as tf.Tensor4D;
    });
  }

  /** @param x `[n, dim]` @param ctx rows' samples (absent: one sample) @returns `[n, dim]` */
  apply(x: tf.Tensor2D, ctx?: ExpertContext): tf.Tensor2D {
    return tf.tidy(() => {
      const [n, c] = x.shape;
      const h = this.heads;
      const dh = c / h;
      // [n, C] -> [1, heads, n, dh]
      const split = (t: tf.Tensor): tf.Tensor4D =>
        (h === 1
          ? tf.reshape(t, [1, 1, n, c])
          : tf.reshape(tf.transpose(tf.reshape(t, [n, h, dh]), [1, 0, 2]), [1, h, n, dh])) as tf.Tensor4D;
      const a = this.norm1.apply(x); // [n, C]
      const mask = this.keyMask(n, ctx);
      const att = attention(split(this.wq.apply(a)), split(this.wk.apply(a)), split(this.wv.apply(a)), { mask }); // [1, heads, n, dh]
      const merged = h === 1 ? tf.reshape(att, [n, c]) : tf.reshape(tf.transpose(tf.reshape(att, [h, n, dh]), [1, 0, 2]), [n, c]); // [n, C]
      const y = tf.add(x, this.wo.apply(merged)); // [n, C]
      const ff = this.ff2.apply(gelu(this.ff1.apply(this.norm2.apply(y)))); // [n, C]
      return tf.add(y, ff) as tf.Tensor2D;
    });
  }

  /** Projections and feed-forward per row; the n²-dependent score products are not included. */
  flopsPerRow(): number {
    return 4 * this.dim * this.dim + 2 * this.dim * this.hidden;
  }
}

/** How `depthwiseConv3dRows` computes: host loops (cpu, wasm) or rank-4 slices on the device. */
export type DepthwiseMethod = 'auto' | 'host' | 'slices';

const NEIGHBOUR_CACHE = new Map<string, Int32Array>();

/**
 * Neighbour table of a 3x3x3 window on B grids: entry t·R + r is the row read by tap t (in (dz, dy, dx)
 * order, each from −1 to +1) for output row r, or −1 where the tap falls into the zero padding.
 * Cached per geometry (a few small tables in practice; cleared past 64 entries).
 */
function neighbourTable(batch: number, grid: readonly [number, number, number]): Int32Array {
  const key = `${batch}:${grid.join(',')}`;
  const hit = NEIGHBOUR_CACHE.get(key);
  if (hit) return hit;
  const [gz, gy, gx] = grid;
  const n = gz * gy * gx;
  const rows = batch * n;
  const nb = new Int32Array(27 * rows);
  for (let t = 0; t < 27; t++) {
    const [dz, dy, dx] = [Math.floor(t / 9) - 1, (Math.floor(t / 3) % 3) - 1, (t % 3) - 1];
    for (let r = 0; r < rows; r++) {
      const b = Math.floor(r / n);
      const v = r % n;
      const [z, y, x] = [Math.floor(v / (gy * gx)) + dz, (Math.floor(v / gx) % gy) + dy, (v % gx) + dx];
      const inside = z >= 0 && z < gz && y >= 0 && y < gy && x >= 0 && x < gx;
      nb[t * rows + r] = inside ? b * n + (z * gy + y) * gx + x : -1;
    }
  }
  if (NEIGHBOUR_CACHE.size >= 64) NEIGHBOUR_CACHE.clear();
  NEIGHBOUR_CACHE.set(key, nb);
  return nb;
}

/**
 * The depthwise convolution as host loops with its own gradient, O(27·R·C) each way:
 * `y[r] = Σ_t x[nb_t(r)] ⊙ w_t`, `dx[nb_t(r)] += dy[r] ⊙ w_t`, `dw_t = Σ_r x[nb_t(r)] ⊙ dy[r]`.
 * Plain loops beat the kernels here: the cpu backend's rank-4 slice walks element by element (270 ms
 * for the 27 windows of a [2, 6, 6, 6·32] grid, against 7 ms for this whole op, measured), and the
 * windows need no copies at all.
 */
function depthwiseHost(x: tf.Tensor2D, w: tf.Tensor2D, nb: Int32Array): tf.Tensor2D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xIn, wIn] = args as [tf.Tensor2D, tf.Tensor2D];
    const [rows, c] = xIn.shape;
    const xv = xIn.dataSync() as Float32Array; // [R·C]
    const wv = wIn.dataSync() as Float32Array; // [27·C]
    const y = new Float32Array(rows * c);
    for (let t = 0; t < 27; t++) {
      for (let r = 0; r < rows; r++) {
        const q = nb[t * rows + r] as number;
        if (q < 0) continue;
        for (let ch = 0; ch < c; ch++) y[r * c + ch] = (y[r * c + ch] as number) + (xv[q * c + ch] as number) * (wv[t * c + ch] as number);
      }
    }
    const gradFunc = (dy: tf.Tensor): tf.Tensor[] => {
      const dyv = dy.dataSync() as Float32Array; // [R·C]
      const dx = new Float32Array(rows * c);
      const dw = new Float64Array(27 * c); // a sum over every row: accumulated in float64
      for (let t = 0; t < 27; t++) {
        for (let r = 0; r < rows; r++) {
          const q = nb[t * rows + r] as number;
          if (q < 0) continue;
          for (let ch = 0; ch < c; ch++) {
            const g = dyv[r * c + ch] as number;
            dx[q * c + ch] = (dx[q * c + ch] as number) + g * (wv[t * c + ch] as number);
            dw[t * c + ch] = (dw[t * c + ch] as number) + g * (xv[q * c + ch] as number);
          }
        }
      }
      return [tf.tensor2d(dx, [rows, c]), tf.tensor2d(Float32Array.from(dw), [27, c])];
    };
    return { value: tf.tensor2d(y, [rows, c]), gradFunc };
  });
  return f(x, w) as tf.Tensor2D;
}

/**
 * Depthwise 3x3x3 convolution rows from rank-4 slices of one padded volume (27 windows, each
 * multiplied by its tap's per-channel weights on a rank-2 view), which tfjs differentiates correctly on
 * every backend, WebGPU included (no synchronous reads there).
 */
function depthwiseSlices(x: tf.Tensor2D, w: tf.Tensor2D, batch: number, grid: readonly [number, number, number]): tf.Tensor2D {
  return tf.tidy(() => {
    const [gz, gy, gx] = grid;
    const c = x.shape[1];
    const v = tf.reshape(x, [batch, gz, gy, gx * c]); // [B, gz, gy, gx·C]
    const padded = tf.pad(v, [
      [0, 0],
      [1, 1],
      [1, 1],
      [c, c],
    ]); // [B, gz+2, gy+2, (gx+2)·C]
    const wRows = tf.tile(w, [1, gx]); // [27, gx·C]: each tap's channel weights repeated along x
    let acc: tf.Tensor | null = null;
    for (let a = 0; a < 3; a++)
      for (let b = 0; b < 3; b++)
        for (let e = 0; e < 3; e++) {
          const t = (a * 3 + b) * 3 + e;
          const win = tf.reshape(tf.slice(padded, [0, a, b, e * c], [batch, gz, gy, gx * c]), [batch * gz * gy, gx * c]); // [B·gz·gy, gx·C]
          const term = tf.mul(win, tf.slice(wRows, [t, 0], [1, gx * c])); // [B·gz·gy, gx·C]
          acc = acc ? tf.add(acc, term) : term;
        }
    return tf.reshape(acc as tf.Tensor, [batch * gz * gy * gx, c]) as tf.Tensor2D;
  });
}

/**
 * Depthwise 3x3x3 convolution with zero padding ('same', cross-correlation as tf.conv3d) of token rows
 * laid out on a grid, each channel with its own filter. tfjs has no depthwise conv3d, and a dense
 * conv3d with a block-diagonal filter would cost C times more. `auto`: host loops where the backend
 * reads back synchronously (cpu, wasm), device slices elsewhere (WebGPU).
 * @param x `[B·gz·gy·gx, C]` rows in (b, z, y, x) order
 * @param w `[27, C]` taps in (dz, dy, dx) order, each from −1 to +1
 * @returns `[B·gz·gy·gx, C]`
 */
export function depthwiseConv3dRows(
  x: tf.Tensor2D,
  w: tf.Tensor2D,
  batch: number,
  grid: readonly [number, number, number],
  method: DepthwiseMethod = 'auto',
): tf.Tensor2D {
  const host = method === 'host' || (method === 'auto' && canReadSync());
  return host ? depthwiseHost(x, w, neighbourTable(batch, grid)) : depthwiseSlices(x, w, batch, grid);
}

/**
 * A depthwise-separable convolutional unit over the token grid (GoE draft §3.1.4, "a convolutional
 * unit"): the rows routed here are scattered back to their grid positions (zeros where a token went
 * elsewhere, so a token only sees neighbours that chose the same expert), convolved depthwise 3x3x3,
 * gathered back, then mixed pointwise:
 *
 *   f(x) = gelu((DW(scatter(x)) + b_dw)[rows] W1 + b1) W2 + b2.
 *
 * The pointwise part runs on the n routed rows only; the depthwise part touches the whole grid
 * (27·C per grid position). Needs `ctx.grid`.
 */
export class ConvExpert extends Expert {
  /** Depthwise taps `[27, C]` in (dz, dy, dx) order. */
  readonly depthwise: tf.Variable;
  readonly depthwiseBias: tf.Variable;
  readonly pw1: Linear;
  readonly pw2: Linear;
  constructor(
    readonly dim: number,
    readonly hidden: number,
    rng: Rng,
  ) {
    super();
    // Unit variance per output for a fully routed neighbourhood (27 taps).
    this.depthwise = this.param('depthwise', [27, dim], { kind: 'normal', std: 1 / Math.sqrt(27) }, rng);
    this.depthwiseBias = this.param('depthwiseBias', [dim], { kind: 'zeros' }, rng);
    this.pw1 = this.child('pw1', new Linear(dim, hidden, rng));
    this.pw2 = this.child('pw2', new Linear(hidden, dim, rng, { init: { kind: 'normal', std: 1 / Math.sqrt(2 * hidden) } }));
  }

  override get needsGrid(): boolean {
    return true;
  }

  /** @param x `[n, C]` @param ctx rows and the token grid (required) @returns `[n, C]` */
  apply(x: tf.Tensor2D, ctx?: ExpertContext): tf.Tensor2D {
    const grid = ctx?.grid;
    if (!ctx || !grid) {
      throw new GoeInputError('grid', '[gz, gy, gx] with gz·gy·gx = N (the conv expert convolves over the token grid)', 'nothing');
    }
    const total = ctx.batch * ctx.tokens;
    if (grid[0] * grid[1] * grid[2] !== ctx.tokens) {
      throw new GoeInputError('grid', `[gz, gy, gx] with gz·gy·gx = N = ${ctx.tokens}`, `[${grid.join(', ')}]`);
    }
    if (ctx.rows.length !== x.shape[0]) {
      throw new GoeInputError('rows', `${x.shape[0]} row indices (one per row of x)`, `${ctx.rows.length}`);
    }
    return tf.tidy(() => {
      const xr = ctx.routed ? (tf.mul(x, ctx.routed) as tf.Tensor2D) : x; // rows not routed here count as empty
      const all = isAllRows(ctx.rows, total);
      const inv = all ? null : inverse(ctx.rows, total); // [R]: position of each grid row in ctx.rows, or n
      const full = inv ? takeRows(xr, inv, ctx.rows) : xr; // [R, C], zeros where the token went elsewhere
      const conv = depthwiseConv3dRows(full, this.depthwise as tf.Tensor2D, ctx.batch, grid); // [R, C]
      const back = inv ? takeRows(conv, ctx.rows, inv) : conv; // [n, C]
      const z = tf.add(back, this.depthwiseBias); // [n, C]
      return this.pw2.apply(gelu(this.pw1.apply(z))) as tf.Tensor2D; // [n, C]
    });
  }

  /** Depthwise taps and the pointwise expansion, per routed row. */
  flopsPerRow(): number {
    return 27 * this.dim + 2 * this.dim * this.hidden;
  }
}

/** Expert kinds by config key. Built in: `mlp` (SwiGLU), `attention`, `conv`, `linear`. */
export const expertRegistry = new Registry<ExpertFactory>('expert');
expertRegistry.register('mlp', (spec, rng) => new SwiGluExpert(spec.dim, spec.hidden, rng));
expertRegistry.register('attention', (spec, rng) => new AttentionExpert(spec.dim, spec.hidden, rng));
expertRegistry.register('conv', (spec, rng) => new ConvExpert(spec.dim, spec.hidden, rng));
expertRegistry.register('linear', (spec, rng) => new LinearExpert(spec.dim, rng));

/**
 * The expert kinds of a heterogeneous library: `config.expert` is one registry key or a comma-separated
 * list of them (`'mlp,attention,conv'`), assigned round robin over the M experts.
 * @returns the keys, trimmed, in order (not checked against the registry)
 */
export function expertKinds(expert: string): string[] {
  return expert.split(',').map((s) => s.trim());
}

/** The registry key of expert m (0-based) of a library given as in `expertKinds`. */
export function expertKindOf(expert: string, m: number): string {
  const kinds = expertKinds(expert);
  return kinds[m % kinds.length] as string;
}
