/**
 * Sparse dispatch (DESIGN.md §4 step 2): run each expert only on the rows that chose it, so the cost
 * grows with k, not with M. Everything stays rank 2 (`[rows, width]`), the fast path on every backend.
 *
 * `exact` reads the chosen ids back to the host (synchronously), builds each expert's row list, gathers
 * those rows, runs the expert, and gathers the results back into slot order. Every gather here is
 * injective (no row taken twice), so its gradient is another gather with the inverse index list
 * (`gatherRows`) instead of tfjs' UnsortedSegmentSum, which the wasm backend lacks and the cpu backend
 * runs in O(segments × rows) (1.2 s of a 1.5 s training step at R = 128, measured).
 * `dense` runs every expert on every row and selects with a one-hot mask: cost ∝ M, but no read-back
 * (the only choice on WebGPU in Node, where synchronous reads do not exist) and no gather.
 */
import { tf } from '@goe/tf';
import type { Expert, TokenLayout } from './experts.js';
import { slotOneHots } from './ops.js';

/**
 * Rows of `x` at `idx`, where no row is taken twice, with the gradient computed as a gather too
 * (an index >= n gives a zero row and may repeat). Both directions copy rows on the host: this runs only where tensors
 * can be read synchronously (cpu, wasm, tfjs-node), and there a row copy is ~50x faster than the
 * backends' GatherV2 kernels (wasm: 7 ms for 2048 rows of 64, measured), which walk element by element.
 * @param x `[n, w]` @param idx `[p]` row indices into x, distinct among those < n
 * @param inv `[n]`: for each row of x, its position in `idx`, or `p` when it was not taken
 * @returns `[p, w]`
 */
export function gatherRows(x: tf.Tensor2D, idx: Int32Array, inv: Int32Array): tf.Tensor2D {
  const f = tf.customGrad((xIn: tf.Tensor | tf.GradSaveFunc) => {
    const xt = xIn as tf.Tensor2D;
    const [n, w] = xt.shape;
    return {
      value: tf.tensor2d(copyRows(xt.dataSync() as Float32Array, w, idx), [idx.length, w]),
      // dx[r] = dy[inv[r]], zero for rows not taken.
      gradFunc: (dy: tf.Tensor) => tf.tensor2d(copyRows(dy.dataSync() as Float32Array, w, inv), [n, w]),
    };
  });
  return f(x) as tf.Tensor2D;
}

/** `out[p] = src[rows[p]]` for rows of width w; an index past the end of src gives a zero row. */
function copyRows(src: Float32Array, w: number, rows: Int32Array): Float32Array {
  const n = src.length / w;
  const out = new Float32Array(rows.length * w);
  for (let p = 0; p < rows.length; p++) {
    const r = rows[p] as number;
    if (r < n) out.set(src.subarray(r * w, r * w + w), p * w);
  }
  return out;
}

/**
 * Inverse of an index list into n rows, injective over its entries < n: `inv[idx[p]] = p`; rows not
 * taken get `idx.length` (past the end: a zero row). Entries >= n are skipped.
 */
export function inverse(idx: Int32Array, n: number): Int32Array {
  const inv = new Int32Array(n).fill(idx.length);
  for (let p = 0; p < idx.length; p++) {
    const r = idx[p] as number;
    if (r < n) inv[r] = p;
  }
  return inv;
}

/** What one dispatch did, counted on the host (exact mode) for compute accounting. */
export interface DispatchCount {
  /** Rows each expert was run on. */
  rowsPerExpert: number[];
}

/**
 * @param experts the M experts
 * @param x `[R, de]` expert inputs (`W_p r`)
 * @param ids `[R, s]` int32 chosen expert per slot, −1 = no expert (the slot stays zero)
 * @param layout how the R rows split into samples (and a token grid), handed to each expert with the
 *   row indices it got (`ExpertContext`); default: one sample of R tokens
 * @returns out: one `[R, de]` per slot j with `out[j][i] = f_{ids[i,j]}(x_i)`; per-expert row counts
 */
export function dispatchExact(
  experts: readonly Expert[],
  x: tf.Tensor2D,
  ids: tf.Tensor2D,
  layout?: TokenLayout,
): { out: tf.Tensor2D[]; count: DispatchCount } {
  const [rows, slots] = ids.shape;
  const de = x.shape[1];
  const m = experts.length;
  const lay = layout ?? { batch: 1, tokens: rows };
  const host = ids.dataSync() as Int32Array; // [R*s]
  const counts = new Array<number>(m).fill(0);
  for (let q = 0; q < host.length; q++) {
    const e = host[q] as number;
    if (e >= 0) counts[e] = (counts[e] as number) + 1;
  }
  // Row lists per expert, and for every slot its row in the concatenated expert outputs
  // (`total`, past their end, for unused slots: a zero row).
  const offsets = new Array<number>(m).fill(0);
  let total = 0;
  for (let e = 0; e < m; e++) {
    offsets[e] = total;
    total += counts[e] as number;
  }
  const rowLists = counts.map((c) => new Int32Array(c));
  const fill = new Array<number>(m).fill(0);
  const slotSrc = new Int32Array(rows * slots).fill(total);
  for (let q = 0; q < host.length; q++) {
    const e = host[q] as number;
    if (e < 0) continue;
    const n = fill[e] as number;
    (rowLists[e] as Int32Array)[n] = Math.floor(q / slots);
    slotSrc[q] = (offsets[e] as number) + n;
    fill[e] = n + 1;
  }
  const out = tf.tidy(() => {
    if (total === 0) return Array.from({ length: slots }, () => tf.zeros([rows, de]) as tf.Tensor2D);
    const parts: tf.Tensor2D[] = [];
    for (let e = 0; e < m; e++) {
      if ((counts[e] as number) === 0) continue;
      const list = rowLists[e] as Int32Array;
      const xe = gatherRows(x, list, inverse(list, rows)); // [n_e, de]
      parts.push((experts[e] as Expert).apply(xe, { ...lay, rows: list })); // [n_e, de]
    }
    const y = (parts.length === 1 ? parts[0] : tf.concat(parts, 0)) as tf.Tensor2D; // [total, de]
    // Slot j of row i reads row slotSrc[i·s + j] of y; unused slots read `total`, past the end of y,
    // which gives a zero row. Every row of y belongs to exactly one slot, so each slot's gather is
    // injective and the gradients of the s gathers add up to y's.
    return Array.from({ length: slots }, (_, j) => {
      const src = new Int32Array(rows);
      for (let i = 0; i < rows; i++) src[i] = slotSrc[i * slots + j] as number;
      return gatherRows(y, src, inverse(src, total)); // [R, de]
    });
  });
  return { out, count: { rowsPerExpert: counts } };
}

/**
 * Same contract as `dispatchExact`, computed densely: every expert on every row, then a one-hot
 * selection per slot. No read-back and no gather; cost ∝ M. Each expert sees every row, with
 * `ctx.routed` marking the rows routed to it (experts that mix rows ignore the others).
 * @param x `[R, de]` @param ids `[R, s]` int32 @param layout as in `dispatchExact`
 * @returns one `[R, de]` per slot
 */
export function dispatchDense(experts: readonly Expert[], x: tf.Tensor2D, ids: tf.Tensor2D, layout?: TokenLayout): tf.Tensor2D[] {
  return tf.tidy(() => {
    const rows = ids.shape[0];
    const lay = layout ?? { batch: 1, tokens: rows };
    const all = Int32Array.from({ length: rows }, (_, i) => i);
    const ohs = slotOneHots(ids, experts.length); // s × [R, M]
    const routed = ohs.length === 1 ? (ohs[0] as tf.Tensor2D) : tf.addN(ohs); // [R, M]: 1 where row i chose expert m
    const ys = experts.map((e, m) => e.apply(x, { ...lay, rows: all, routed: tf.slice(routed, [0, m], [rows, 1]) })); // M × [R, de]
    // out[j] = Σ_m oh_j[:, m] · ys[m], all at rank 2.
    return ohs.map((oh) => {
      const terms = ys.map((y, m) => tf.mul(tf.slice(oh, [0, m], [rows, 1]), y)); // M × [R, de]
      return (terms.length === 1 ? terms[0] : tf.addN(terms)) as tf.Tensor2D;
    });
  });
}
