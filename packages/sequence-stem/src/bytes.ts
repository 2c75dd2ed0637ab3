/**
 * Byte-level tokens: text becomes its UTF-8 bytes (0–255), so there is no vocabulary to download and
 * every string is representable.
 */

/** A batch of byte sequences, padded or truncated to one length, row-major `[B, N]`. */
export interface ByteBatch {
  /** `[B·N]` byte values 0–255 as int32 (the dtype tfjs indexes with). */
  bytes: Int32Array;
  shape: [number, number];
  /** Bytes of each row before padding (after truncation). */
  lengths: number[];
}

/**
 * UTF-8-encodes each text and pads (with `pad`, default 0) or truncates it to `length` bytes.
 * Truncation may cut a multi-byte character; the bytes are still valid tokens.
 */
export function encodeBytes(texts: readonly string[], length: number, pad = 0): ByteBatch {
  if (!Number.isInteger(length) || length < 1) throw new RangeError(`encodeBytes: length must be an integer >= 1, got ${length}`);
  if (!Number.isInteger(pad) || pad < 0 || pad > 255) throw new RangeError(`encodeBytes: pad must be a byte 0-255, got ${pad}`);
  const enc = new TextEncoder();
  const bytes = new Int32Array(texts.length * length).fill(pad);
  const lengths: number[] = [];
  texts.forEach((t, b) => {
    const u = enc.encode(t);
    const n = Math.min(u.length, length);
    for (let i = 0; i < n; i++) bytes[b * length + i] = u[i] as number;
    lengths.push(n);
  });
  return { bytes, shape: [texts.length, length], lengths };
}

/** Sinusoidal positions (Vaswani et al., 2017): `pe[i, 2j] = sin(i / base^(2j/d))`, `pe[i, 2j+1] = cos(…)`. @returns `[N·d]` row-major */
export function sinusoidalPositions(n: number, d: number, base = 10000, offset = 0): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < d; c++) {
      const j = Math.floor(c / 2);
      const angle = (i + offset) / Math.pow(base, (2 * j) / d);
      out[i * d + c] = c % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
    }
  }
  return out;
}
