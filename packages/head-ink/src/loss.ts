/**
 * The ink loss: binary cross-entropy with logits plus soft Dice (Milletari et al. 2016), over labelled
 * voxels only (DESIGN §5: unlabelled voxels never enter a loss). Dice counters the extreme class
 * imbalance of ink (a few percent of voxels); BCE keeps per-voxel gradients well-conditioned.
 */
import { tf } from '@goe/tf';
import { collapseDepth, type DepthCollapseInput } from './collapse.js';
import { InkInputError } from './errors.js';

export interface InkLossOptions {
  /**
   * Score a depth-collapsed 2D map (fragments: one label per (y, x) column): voxel logits
   * `[B, D, H, W]` are reduced over the layer axis by {@link collapseDepth} with this mode (or
   * `{ mode, temperature }`) first, and `target` and `mask` are `[B, H, W]`. Unset: no collapse.
   */
  collapse?: DepthCollapseInput;
  /** Same size as the scored logits (`[B, D, H, W]`, or `[B, H, W]` with `collapse`): 1 = labelled, 0 = never counted. */
  mask?: tf.Tensor;
  /** Target value meaning "unlabelled" (e.g. 255 or -1): such voxels are never counted. */
  ignoreValue?: number;
  /** Weight of the BCE term (default 1). */
  bceWeight?: number;
  /** Weight of the Dice term (default 1). */
  diceWeight?: number;
  /** Additive smoothing s of the Dice ratio (2·Σpy + s)/(Σp + Σy + s) (default 1). */
  diceSmooth?: number;
}

export interface InkLoss {
  /** bceWeight·bce + diceWeight·dice */
  total: tf.Scalar;
  /** Mean BCE over labelled voxels (0 when none). */
  bce: tf.Scalar;
  /** 1 − soft Dice over all labelled voxels of the batch together. */
  dice: tf.Scalar;
}

/**
 * Any rank works (the loss is element-wise then pooled): `[B, D, H, W]` voxel logits of a scroll
 * patch, or `[B, H, W]` column logits of a fragment that the caller collapsed, or let `collapse` do it.
 * @param logits `[B, D, H, W]` ink logits (or `[B, H, W]`)
 * @param target 0/1 (or `ignoreValue`) of the scored shape: `logits`' shape, or `[B, H, W]` with `collapse`
 * @returns total, bce, dice (scalars; the caller disposes)
 * @throws InkInputError when shapes differ, or naming `logits` / the collapse option (see {@link collapseDepth})
 */
export function inkLoss(logits: tf.Tensor, target: tf.Tensor, opts: InkLossOptions = {}): InkLoss {
  if (opts.collapse === undefined) return pooledLoss(logits, target, opts);
  // Validate the targets before collapsing, so a bad call allocates nothing.
  const [B, , H, W] = logits.shape;
  if (logits.rank === 4 && target.shape.join() !== [B, H, W].join()) throw new InkInputError('target', `[${B}, ${H}, ${W}] (logits [B, D, H, W] collapsed)`, `[${target.shape.join(', ')}]`);
  return tf.tidy(() => {
    const { total, bce, dice } = pooledLoss(collapseDepth(logits, opts.collapse), target, opts); // logits [B, H, W]
    return { total, bce, dice };
  });
}

/** BCE + Dice pooled over every labelled element of `logits` (same shape as `target`). */
function pooledLoss(logits: tf.Tensor, target: tf.Tensor, opts: InkLossOptions): InkLoss {
  const shape = `[${logits.shape.join(', ')}]`;
  if (target.size !== logits.size || target.shape.join() !== logits.shape.join()) {
    throw new InkInputError('target', shape, `[${target.shape.join(', ')}]`);
  }
  if (opts.mask && opts.mask.size !== logits.size) throw new InkInputError('mask', `${logits.size} values (as ${shape})`, `[${opts.mask.shape.join(', ')}]`);
  const bceWeight = opts.bceWeight ?? 1;
  const diceWeight = opts.diceWeight ?? 1;
  const smooth = opts.diceSmooth ?? 1;
  const last = logits.shape[logits.rank - 1] ?? 1;
  return tf.tidy(() => {
    // Rank-2 views for the element-wise work (FACTS.md).
    const x = tf.reshape(logits, [-1, last]); // [rows, W]
    const yRaw = tf.reshape(tf.cast(target, 'float32'), [-1, last]); // [rows, W]
    let valid: tf.Tensor = opts.mask ? tf.reshape(tf.cast(opts.mask, 'float32'), [-1, last]) : tf.onesLike(x);
    if (opts.ignoreValue !== undefined) valid = tf.mul(valid, tf.cast(tf.notEqual(yRaw, opts.ignoreValue), 'float32'));
    // Ignored targets become 0 so that their value (255, −1, …) cannot leak into a product.
    const y = tf.mul(yRaw, valid);
    const count = tf.sum(valid);
    // Stable BCE with logits: max(x, 0) − x·y + log(1 + exp(−|x|)).
    const perVoxel = tf.add(tf.sub(tf.relu(x), tf.mul(x, y)), tf.log1p(tf.exp(tf.neg(tf.abs(x)))));
    const bce = tf.div(tf.sum(tf.mul(perVoxel, valid)), tf.maximum(count, 1)) as tf.Scalar;
    const p = tf.mul(tf.sigmoid(x), valid);
    const inter = tf.sum(tf.mul(p, y));
    const dice = tf.sub(1, tf.div(tf.add(tf.mul(inter, 2), smooth), tf.add(tf.add(tf.sum(p), tf.sum(y)), smooth))) as tf.Scalar;
    const total = tf.add(tf.mul(bce, bceWeight), tf.mul(dice, diceWeight)) as tf.Scalar;
    return { total, bce, dice };
  });
}
