/**
 * Float64 references shared by this package's tests (not part of the package API): the loss and the
 * depth collapse written from their definitions, independently of tfjs.
 */

/** float64 BCE + soft Dice over labelled elements, from the definitions. */
export function lossRef(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  valid: ArrayLike<number>,
  w = { bce: 1, dice: 1, smooth: 1 },
): { bce: number; dice: number; total: number } {
  let bceSum = 0;
  let count = 0;
  let inter = 0;
  let sp = 0;
  let sy = 0;
  for (let i = 0; i < x.length; i++) {
    if (!valid[i]) continue;
    const p = 1 / (1 + Math.exp(-x[i]!));
    const t = y[i] as number;
    bceSum += -(t * Math.log(p) + (1 - t) * Math.log(1 - p));
    count++;
    inter += p * t;
    sp += p;
    sy += t;
  }
  const bce = count ? bceSum / count : 0;
  const dice = 1 - (2 * inter + w.smooth) / (sp + sy + w.smooth);
  return { bce, dice, total: w.bce * bce + w.dice * dice };
}

/**
 * The depth collapse in float64: `x` is `[B, D, H, W]` row-major, the result `[B, H, W]`. The smooth
 * max is summed directly around the column max (exp of values ≤ 0), not through tfjs' logSumExp.
 */
export function collapseRef(x: ArrayLike<number>, shape: readonly number[], mode: string, tau = 1): Float64Array {
  const [B, D, H, W] = shape as [number, number, number, number];
  const plane = H * W;
  const out = new Float64Array(B * plane);
  for (let b = 0; b < B; b++)
    for (let p = 0; p < plane; p++) {
      const col = Array.from({ length: D }, (_, d) => x[(b * D + d) * plane + p] as number);
      const max = Math.max(...col);
      let v: number;
      if (mode === 'max') v = max;
      else if (mode === 'mean') v = col.reduce((s, c) => s + c, 0) / D;
      else v = max + tau * Math.log(col.reduce((s, c) => s + Math.exp((c - max) / tau), 0) / D);
      out[b * plane + p] = v;
    }
  return out;
}
