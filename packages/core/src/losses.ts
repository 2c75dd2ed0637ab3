/**
 * Router regularisers for one refinement cycle, averaged over the tokens still active in it. Values
 * here are raw (no coefficient); the layer weights them with `config.regularisers`.
 */
import { tf } from '@goe/tf';

/** Raw regulariser values of one cycle (scalars). */
export interface CycleRegularisers {
  /** Draft §3.1.4: `Σ_m (mean_i p_im − 1/M)²`. */
  balance: tf.Scalar;
  /** Mean router entropy `mean_i −Σ_m p_im log p_im` (the draft's L_entropy without −λ_e·(−1)). */
  entropy: tf.Scalar;
  /** Switch Transformer: `M Σ_m f_m P_m`, f_m = share of dispatched slots, P_m = mean p_im. */
  switchBalance: tf.Scalar;
  /** ST-MoE z-loss: `mean_i (logsumexp_m logits_im)²`. */
  zLoss: tf.Scalar;
  /** Share of dispatched slots per expert f `[M]` (the load). */
  load: tf.Tensor1D;
  /** Active tokens in this cycle (scalar, float). */
  activeCount: tf.Scalar;
}

/**
 * @param logits raw router logits `[R, M]`
 * @param scores the scores softmaxed into p `[R, M]` (logits plus any graph bias)
 * @param mask dispatched experts per row `[R, M]` (0/1, zero rows for halted tokens)
 * @param active `[R, 1]` 1 for tokens routed in this cycle, 0 for halted ones
 */
export function cycleRegularisers(
  logits: tf.Tensor2D,
  scores: tf.Tensor2D,
  mask: tf.Tensor2D,
  active: tf.Tensor2D,
): CycleRegularisers {
  return tf.tidy(() => {
    const m = logits.shape[1];
    const activeCount = tf.sum(active) as tf.Scalar;
    const n = tf.maximum(activeCount, 1); // all-halted cycles give 0, not NaN
    // log p = scores − logsumexp(scores), and p by softmax (XNNPACK's vectorised kernel on wasm): one
    // plain exp over [R, M] per cycle, where logSoftmax (its forward and its gradient), exp(log p)
    // and a second logsumexp for the z-loss took four; exp is the slowest element-wise kernel on
    // wasm (~10-15 ns per element, 6x sigmoid) and this runs on [R, M] every cycle.
    const lseScores = tf.logSumExp(scores, -1, true); // [R, 1]
    const logp = tf.sub(scores, lseScores); // [R, M]
    const p = tf.softmax(scores, -1);
    const meanP = tf.div(tf.sum(tf.mul(p, active), 0), n) as tf.Tensor1D; // [M]
    const balance = tf.sum(tf.square(tf.sub(meanP, 1 / m))) as tf.Scalar;
    const ent = tf.neg(tf.sum(tf.mul(p, logp), -1, true)); // [R, 1]
    const entropy = tf.div(tf.sum(tf.mul(ent, active)), n) as tf.Scalar;
    const slotsPerExpert = tf.sum(mask, 0); // [M]
    const load = tf.div(slotsPerExpert, tf.maximum(tf.sum(slotsPerExpert), 1)) as tf.Tensor1D; // [M]
    const switchBalance = tf.mul(tf.sum(tf.mul(load, meanP)), m) as tf.Scalar;
    const lse = logits === scores ? lseScores : tf.logSumExp(logits, -1, true); // [R, 1]; the same when no graph bias
    const zLoss = tf.div(tf.sum(tf.mul(tf.square(lse), active)), n) as tf.Scalar;
    return { balance, entropy, switchBalance, zLoss, load, activeCount };
  });
}
