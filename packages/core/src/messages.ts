/**
 * The pooled (`slot`) form of the expert-to-expert messages (GoE draft §3.1.4):
 *
 *   h_m^{l+1} = f_m(·) + Σ_{n ∈ N(m)} A_mn W_c h_n^l,
 *
 * where h_n^l is expert n's state, one per expert, not one per token. Here an expert's state in sample
 * b after the previous cycle is the mean of the states of the tokens of b routed to it (the draft's
 * "set (or mean) of token embeddings arriving at node m"), and every token of b that chose expert m in
 * this cycle receives the same message:
 *
 *   pool_{b,n} = (1 / c_{b,n}) Σ_{i ∈ b} Σ_{l : prev[i,l] = n} h^{k−1}[l][i]   (c_{b,n} = that count; 0 if none),
 *   msg_{b,m}  = Σ_n A[n, m] W_c pool_{b,n}                                    (A[n, m]: edge n -> m).
 *
 * Token mode (layer.ts, DESIGN.md §4) instead sends each token the states of the experts *it* visited.
 *
 * Legend: B samples, R = B·N rows (batch-major), M experts, s / s' slots this / last cycle, de state width.
 */
import { tf, type Linear } from '@goe/tf';
import { detached, slotOneHots } from './ops.js';

/**
 * Each slot's (sample, expert) pair as one index `b·M + id` (−1 stays −1), no gradient.
 * @param ids `[R, s]` int32 @returns `[R, s]` int32 in [−1, B·M)
 */
function sampleExpertIds(ids: tf.Tensor2D, batch: number, experts: number): tf.Tensor2D {
  const rows = ids.shape[0];
  const tokens = rows / batch;
  const offset = Int32Array.from({ length: rows }, (_, i) => Math.floor(i / tokens) * experts); // [R]
  return detached((i) => {
    const used = tf.cast(tf.greaterEqual(i, tf.scalar(0, 'int32')), 'int32'); // [R, s] 1 where the slot is used
    const one = tf.scalar(1, 'int32');
    const shifted = tf.add(i, tf.tensor2d(offset, [rows, 1], 'int32')); // [R, s]
    // used ? b·M + id : −1
    return tf.sub(tf.mul(tf.add(shifted, one), used), one) as tf.Tensor2D;
  }, ids);
}

/**
 * Slot messages for every slot of this cycle (formula in the file header).
 * @param hPrev s' × `[R, de]` expert states of the previous cycle, per slot
 * @param idsPrev `[R, s']` int32 experts of the previous cycle (−1 = none: halted or dropped)
 * @param idsCur `[R, s]` int32 experts of this cycle
 * @param adjacency A `[M, M]`
 * @param wc W_c `[de] -> [de]`, linear without bias (so it commutes with the mixing over n)
 * @param batch B (R must be a multiple of it)
 * @returns s × `[R, de]`: `msg[j][i] = msg_{b(i), idsCur[i,j]}`, zero for unused slots
 */
export function slotMessages(
  hPrev: readonly tf.Tensor2D[],
  idsPrev: tf.Tensor2D,
  idsCur: tf.Tensor2D,
  adjacency: tf.Tensor2D,
  wc: Linear,
  batch: number,
): tf.Tensor2D[] {
  return tf.tidy(() => {
    const m = adjacency.shape[0];
    const de = (hPrev[0] as tf.Tensor2D).shape[1];
    const bm = batch * m;
    const prev = slotOneHots(sampleExpertIds(idsPrev, batch, m), bm); // s' × [R, B·M]
    // Sums and counts per (sample, expert) over the previous cycle's slots.
    const sums = prev.map((oh, l) => tf.matMul(oh, hPrev[l] as tf.Tensor2D, true, false)); // s' × [B·M, de]
    const counts = prev.map((oh) => tf.sum(oh, 0)); // s' × [B·M]
    const total = sums.length === 1 ? (sums[0] as tf.Tensor) : tf.addN(sums); // [B·M, de]
    const count = tf.reshape(counts.length === 1 ? (counts[0] as tf.Tensor) : tf.addN(counts), [bm, 1]); // [B·M, 1]
    const pool = tf.div(total, tf.maximum(count, 1)); // [B·M, de]: pool_{b,n}, 0 where no token went
    // Σ_n A[n, m] pool_{b,n} for every b at once: Aᵀ times the pools laid out as [M, B·de].
    const byExpert = tf.reshape(tf.transpose(tf.reshape(pool, [batch, m, de]), [1, 0, 2]), [m, batch * de]); // [M, B·de]
    const mixed = tf.matMul(adjacency, byExpert, true, false); // [M, B·de]
    const perSample = tf.reshape(tf.transpose(tf.reshape(mixed, [m, batch, de]), [1, 0, 2]), [bm, de]); // [B·M, de]
    const msg = wc.apply(perSample) as tf.Tensor2D; // [B·M, de]: msg_{b,m}
    // Each slot reads the row of its (sample, expert) pair; unused slots get a zero row.
    return slotOneHots(sampleExpertIds(idsCur, batch, m), bm).map((oh) => tf.matMul(oh, msg) as tf.Tensor2D); // s × [R, de]
  });
}
