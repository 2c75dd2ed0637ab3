/**
 * The depth collapse for fragments (DESIGN §5): a Kaggle fragment (`surface_volume/00.tif … NN.tif`,
 * read as (layer, y, x)) carries ONE ink label per (y, x) column (`inklabels.png`), while the ink head
 * predicts a logit per voxel `[B, D, H, W]` with D the layers of the patch. The collapse reduces the
 * layer axis to the 2D map `[B, H, W]` that the label, the loss and the competition metric score.
 *
 * Legend: B batch, D layers (depth along the sheet normal), H rows, W columns.
 */
import { configChecks, tf } from '@goe/tf';
import { InkInputError } from './errors.js';

/** The layer reductions {@link collapseDepth} knows. */
export const DEPTH_COLLAPSE_MODES = ['max', 'mean', 'logsumexp'] as const;
export type DepthCollapseMode = (typeof DEPTH_COLLAPSE_MODES)[number];

export interface DepthCollapseConfig {
  /** How the layer axis is reduced (default `'max'`). */
  mode: DepthCollapseMode;
  /** τ of `'logsumexp'` in logit units (default 1); only that mode takes it. */
  temperature: number;
}

/** A mode name, or a partial config (unknown keys are errors). */
export type DepthCollapseInput = DepthCollapseMode | Partial<DepthCollapseConfig>;

/** Every default of the depth collapse, in one place. */
export const DEPTH_COLLAPSE_DEFAULTS: Readonly<DepthCollapseConfig> = Object.freeze({ mode: 'max', temperature: 1 });

const shown = (v: unknown): string => (typeof v === 'number' ? String(v) : (JSON.stringify(v) ?? String(v)));
const check = configChecks((field, expected, received) => new InkInputError(field, expected, shown(received)));

/**
 * A mode name or a partial config, merged over {@link DEPTH_COLLAPSE_DEFAULTS} and validated.
 * @throws InkInputError naming `mode` (unknown mode), `temperature` (not a finite number > 0, or given
 *   with a mode other than `'logsumexp'`, where it would be silently ignored) or an unknown key
 */
export function resolveDepthCollapse(input: DepthCollapseInput = {}): DepthCollapseConfig {
  const partial = typeof input === 'string' ? { mode: input } : input;
  const merged = check.merge(DEPTH_COLLAPSE_DEFAULTS, partial);
  const mode = check.oneOf('mode', merged['mode'], DEPTH_COLLAPSE_MODES);
  const temperature = check.above('temperature', merged['temperature']);
  const given = (partial as Partial<DepthCollapseConfig>).temperature;
  if (given !== undefined && mode !== 'logsumexp') throw new InkInputError('temperature', `no temperature with mode '${mode}' (only 'logsumexp' takes one)`, String(given));
  return { mode, temperature };
}

/**
 * Collapses per-voxel ink logits over the layer axis into one logit per (y, x) column.
 *
 * - `'max'` (default): the largest logit of the column. What a person reads off a fragment is "ink
 *   somewhere in this column"; sigmoid is monotone, so the max of the logits is the logit of the
 *   largest voxel probability and the collapsed map thresholds exactly like the voxel map would. Its
 *   gradient reaches only the arg-max layer of each column (every tied layer gets it in full).
 * - `'mean'`: the average logit; every layer gets 1/D of the gradient, but a thin ink layer among many
 *   blank ones is diluted by D.
 * - `'logsumexp'`: the smooth max τ·log((1/D)·Σ_d exp(x_d/τ)). It lies between the mean (τ → ∞) and
 *   the max (τ → 0) and, thanks to the 1/D, maps a constant column c to c as the other two do, so its
 *   value does not drift with the number of layers in a window. Its gradient is softmax(x/τ) over the
 *   layers: every layer gets a share, largest at the most ink-like ones. One may prefer it early in
 *   training or from a cold start: with `'max'` a layer that is not yet the column's arg-max receives
 *   no gradient at all, so the head can lock onto whichever layer happened to win at initialisation
 *   (the same argument as the log-sum-exp pooling of multiple-instance learning, Pinheiro & Collobert
 *   2015, where each column is a bag of layers and the label says only that some layer holds ink).
 *
 * @param logits `[B, D, H, W]` voxel ink logits (float32)
 * @param mode a mode name or `{ mode, temperature }` (see {@link resolveDepthCollapse})
 * @returns `[B, H, W]` column logits (the caller disposes)
 * @throws InkInputError naming `logits` when it is not rank 4 with D ≥ 1, or the option at fault
 */
export function collapseDepth(logits: tf.Tensor, mode: DepthCollapseInput = 'max'): tf.Tensor3D {
  const cfg = resolveDepthCollapse(mode);
  if (logits.rank !== 4 || logits.size === 0) throw new InkInputError('logits', '[B, D, H, W] with no zero dimension', `[${logits.shape.join(', ')}]`);
  const [B, D, H, W] = logits.shape as [number, number, number, number];
  return tf.tidy(() => {
    // Rank-3 view: reductions of rank-4 tensors are slow on wasm (FACTS.md).
    const x = tf.reshape(tf.cast(logits, 'float32'), [B, D, H * W]); // [B, D, H·W]
    let y: tf.Tensor; // [B, H·W]
    if (cfg.mode === 'max') y = tf.max(x, 1);
    else if (cfg.mode === 'mean') y = tf.mean(x, 1);
    else {
      const tau = cfg.temperature;
      // tf.logSumExp subtracts the column max before exp, so large logits / small τ stay finite.
      y = tf.mul(tf.sub(tf.logSumExp(tf.div(x, tau), 1), Math.log(D)), tau);
    }
    return tf.reshape(y, [B, H, W]) as tf.Tensor3D; // [B, H, W]
  });
}
