/**
 * Sparse dispatch (DESIGN.md §4 step 2): run each expert only on the rows that chose it, so the cost
 * grows with k, not with M. Everything stays rank 2 (`[rows, width]`), the fast path on every backend.
 *
 * `exact` reads the chosen ids back to the host (synchronously), builds each expert's row list, gathers
 * those rows, runs the expert, and gathers the results back into slot order. Both moves are one host
 * row-routing op each (`routeRows`: one input tensor to M expert inputs, M expert outputs to s slots),
 * whose gradient is the same routing run backwards (a scatter-add), instead of tfjs' UnsortedSegmentSum,
 * which the wasm backend lacks and the cpu backend runs in O(segments × rows) (1.2 s of a 1.5 s
 * training step at R = 128, measured). One op for all experts keeps the cost of the moves O(k·R·d_e)
 * whatever M is: a gather per expert gave each expert a full `[R, d_e]` input gradient to add up, and a
 * concat of the M outputs a SplitV backwards whose wasm slices each copy the whole input (M = 32:
 * 96 -> 50 ms for dispatch forward+backward at R = 1024, d_e = 64, k = 2 on wasm, measured).
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

const ROUTE_GATHER = 'GoeRouteRowsGather';
const ROUTE_SCATTER = 'GoeRouteRowsScatterAdd';

/** What the routing kernels use of a backend that reads back synchronously (cpu, wasm, tfjs-node). */
interface RowBackend {
  readSync(dataId: object): ArrayLike<number>;
  /** wasm: a view of the tensor in the heap (no copy; readSync copies the whole tensor). */
  typedArrayFromHeap?(info: tf.TensorInfo): Float32Array;
  /** cpu, tfjs-node. */
  makeTensorInfo?(shape: number[], dtype: 'float32', values: Float32Array): tf.TensorInfo;
  /** wasm: allocates on its heap (the cpu backend's method of that name is another thing). */
  makeOutput?(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

/**
 * The host kernel of `routeRows`. Inputs and outputs are addressed by global row: the rows of all
 * inputs (outputs) one after the other, of width w.
 * - gather: `out[q] = in[src[q]]` (a zero row for src[q] < 0); src has one entry per output row.
 * - scatter-add: `out[src[q]] += in[q]` (row q dropped for src[q] < 0); src has one entry per input row.
 */
function routeRowsKernel(scatter: boolean): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const b = backend as unknown as RowBackend;
    const { src, outRows } = attrs as unknown as { src: Int32Array; outRows: number[] };
    const ins = Object.keys(inputs).map((key) => inputs[key] as tf.TensorInfo);
    const w = ins[0]?.shape[1] as number;
    // wasm: outputs allocated on its heap first, then every array viewed in place (an allocation can
    // move the heap, so no view is taken before the last one); elsewhere host arrays handed over.
    const heap = b.typedArrayFromHeap?.bind(b);
    const infos = heap ? outRows.map((n) => (b.makeOutput as NonNullable<RowBackend['makeOutput']>)([n, w], 'float32')) : [];
    const outs = heap ? infos.map((info) => heap(info).fill(0)) : outRows.map((n) => new Float32Array(n * w));
    const inData = ins.map((t) => (heap ? heap(t) : (b.readSync(t.dataId) as Float32Array)));
    const inRows = ins.map((t) => t.shape[0] as number);
    // src walks the outputs' rows (gather) or the inputs' rows (scatter) and points into the other side.
    const [walked, pointed] = scatter ? [inRows, outRows] : [outRows, inRows];
    const tensorOf = new Int32Array(pointed.reduce((a, n) => a + n, 0));
    const rowOf = new Int32Array(tensorOf.length);
    for (let i = 0, g = 0; i < pointed.length; i++) {
      for (let r = 0; r < (pointed[i] as number); r++, g++) {
        tensorOf[g] = i;
        rowOf[g] = r;
      }
    }
    // A scatter copies the first row that lands on an output row and adds the others (a row copy is
    // a native memmove, ~3x faster than a loop of float additions).
    const touched = scatter ? new Uint8Array(tensorOf.length) : null;
    for (let i = 0, q = 0; i < walked.length; i++) {
      const mine = (scatter ? inData[i] : outs[i]) as Float32Array;
      for (let r = 0; r < (walked[i] as number); r++, q++) {
        const g = src[q] as number;
        if (g < 0) continue;
        const other = (scatter ? outs : inData)[tensorOf[g] as number] as Float32Array;
        const o = (rowOf[g] as number) * w;
        const m = r * w;
        if (!touched) mine.set(other.subarray(o, o + w), m);
        else if (touched[g] === 0) {
          other.set(mine.subarray(m, m + w), o);
          touched[g] = 1;
        } else for (let c = 0; c < w; c++) other[o + c] = (other[o + c] as number) + (mine[m + c] as number);
      }
    }
    if (heap) return infos;
    return outs.map((v, j) => {
      if (!b.makeTensorInfo) throw new Error(`backend ${tf.getBackend()} cannot make tensors from host arrays`);
      return b.makeTensorInfo([outRows[j] as number, w], 'float32', v);
    });
  };
}

/** Registers the two routing kernels for the active backend (once) and their gradients (once). */
function ensureRouteKernels(): void {
  const backendName = tf.getBackend();
  for (const [kernelName, scatter] of [
    [ROUTE_GATHER, false],
    [ROUTE_SCATTER, true],
  ] as const) {
    if (!tf.getKernel(kernelName, backendName)) tf.registerKernel({ kernelName, backendName, kernelFunc: routeRowsKernel(scatter) });
    if (!tf.getGradient(kernelName)) {
      // The gradient of a gather is the scatter-add with the same src, and the other way round.
      const back = scatter ? ROUTE_GATHER : ROUTE_SCATTER;
      tf.registerGradient({
        kernelName,
        gradFunc: (dy, _saved, attrs) => {
          const a = attrs as unknown as { src: Int32Array; outRows: number[]; inRows: number[] };
          const grads = routeRowsOp(back, Array.isArray(dy) ? dy : [dy], a.src, a.inRows);
          return Object.fromEntries(grads.map((g, i) => [i, () => g]));
        },
      });
    }
  }
}

function routeRowsOp(kernel: string, xs: tf.Tensor[], src: Int32Array, outRows: number[]): tf.Tensor2D[] {
  ensureRouteKernels();
  const inputs: tf.NamedTensorMap = {};
  xs.forEach((x, i) => (inputs[i] = x));
  const attrs = { src, outRows, inRows: xs.map((x) => x.shape[0] as number) };
  const out = tf.engine().runKernel(kernel, inputs, attrs as unknown as tf.NamedAttrMap);
  return (Array.isArray(out) ? out : [out]) as tf.Tensor2D[];
}

/**
 * Moves rows between lists of rank-2 tensors of one width, in one op on the host (backends that read
 * back synchronously only): output row q (counting through all outputs in order) is the input row
 * `src[q]` (counting through all inputs in order), or zeros where `src[q] < 0`. Rows may be read any
 * number of times; the gradient adds up the output gradients of every copy of a row.
 * @param xs inputs `[n_i, w]` @param src `[Σ outRows]` global input row per output row
 * @param outRows rows of each output @returns one `[outRows[j], w]` per output
 */
export function routeRows(xs: tf.Tensor2D[], src: Int32Array, outRows: number[]): tf.Tensor2D[] {
  return routeRowsOp(ROUTE_GATHER, xs, src, outRows);
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
  // Units of work: the used experts that share a groupKey run as one (`Expert.applyGroup`, one set of
  // ops whatever their number: the per-op cost of small experts is what made M = 32 cost 1.6x M = 4),
  // the others alone. Rows are laid out unit after unit, a unit's experts in index order.
  const units = expertUnits(experts, counts);
  // The experts' rows one expert after the other in that layout (`order`: the row of x each takes), and
  // for every slot, slot-major (`slotSrc[j·R + i]`), its row in that order, −1 for unused slots (a zero row).
  const offsets = new Array<number>(m).fill(0);
  let total = 0;
  for (const unit of units) {
    for (const e of unit) {
      offsets[e] = total;
      total += counts[e] as number;
    }
  }
  const order = new Int32Array(total);
  const fill = offsets.slice();
  const slotSrc = new Int32Array(rows * slots).fill(-1);
  for (let q = 0; q < host.length; q++) {
    const e = host[q] as number;
    if (e < 0) continue;
    const p = fill[e] as number;
    order[p] = Math.floor(q / slots);
    slotSrc[(q % slots) * rows + Math.floor(q / slots)] = p;
    fill[e] = p + 1;
  }
  const out = tf.tidy(() => {
    if (total === 0) return Array.from({ length: slots }, () => tf.zeros([rows, de]) as tf.Tensor2D);
    const unitCounts = units.map((u) => u.map((e) => counts[e] as number));
    const xs = routeRows([x], order, unitCounts.map((c) => c.reduce((a, b) => a + b, 0))); // per unit: [Σ n_e, de]
    const ys = xs.map((xu, i) => {
      const unit = units[i] as number[];
      const first = experts[unit[0] as number] as Expert;
      if (unit.length > 1) return first.applyGroup(unit.map((e) => experts[e] as Expert), xu, unitCounts[i] as number[]); // [Σ n_e, de]
      const e = unit[0] as number;
      const list = order.subarray(offsets[e], (offsets[e] as number) + (counts[e] as number));
      return first.apply(xu, { ...lay, rows: list }); // [n_e, de]
    });
    return routeRows(ys, slotSrc, new Array<number>(slots).fill(rows)); // s × [R, de]
  });
  return { out, count: { rowsPerExpert: counts } };
}

/**
 * The used experts (row count > 0) in units of work: those with the same defined `groupKey` together,
 * the others one per unit; units in the order of their first expert, experts in index order.
 * @returns expert indices per unit
 */
export function expertUnits(experts: readonly Expert[], counts: readonly number[]): number[][] {
  const units: number[][] = [];
  const byKey = new Map<string, number[]>();
  for (const [e, expert] of experts.entries()) {
    if ((counts[e] as number) <= 0) continue;
    const key = expert.groupKey;
    const unit = key === undefined ? undefined : byKey.get(key);
    if (unit) unit.push(e);
    else {
      const fresh = [e];
      units.push(fresh);
      if (key !== undefined) byKey.set(key, fresh);
    }
  }
  return units;
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
