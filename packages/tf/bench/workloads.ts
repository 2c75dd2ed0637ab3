/**
 * The benchmark's workloads: each is one computation the models spend their time in, with the
 * variants we can run it with and the spec PyTorch gets to run the same thing (tools/bench_torch.py).
 *
 * Forward + backward workloads take the gradient of `sum(y * r)` (r a fixed random cotangent) with
 * respect to every input, as PyTorch's side does, and every gradient is read back.
 */
import {
  LayerNorm,
  Linear,
  Module,
  attention,
  conv3dFast,
  gelu,
  makeRng,
  patchify3d,
  tf,
  type Conv3dMethod,
  type PatchMethod,
  type Rng,
} from '@goe/tf';

/** One way of running a workload: `setup` allocates, `step` runs once and returns what to read back. */
export interface Variant {
  name: string;
  /** Excluded from "fastest" (e.g. a kernel known to be wrong on this backend), with the reason. */
  excluded?: string;
  setup(): { step: () => tf.Tensor[]; dispose: () => void };
}

export interface Workload {
  id: string;
  /** Human title with the sizes, e.g. `matmul [1024x1024]^2`. */
  title: string;
  /** Floating-point operations per step (multiply-add = 2); 0 for pure data movement. */
  flops: number;
  variants: Variant[];
  /** What tools/bench_torch.py runs for the same computation. */
  torch: { kind: string; params: Record<string, unknown> };
}

/** Sizes of every workload; `small` is used where a backend is too slow for the full ones. */
export interface Sizes {
  matmul: number;
  batched: { batch: number; n: number };
  volume: [number, number, number, number, number];
  convOut: number;
  patch: number;
  embed: number;
  block: { B: number; N: number; d: number; heads: number; mlp: number };
}

export const FULL_SIZES: Sizes = {
  matmul: 1024,
  batched: { batch: 16, n: 256 },
  volume: [2, 32, 64, 64, 1],
  convOut: 16,
  patch: 4,
  embed: 128,
  block: { B: 4, N: 512, d: 128, heads: 4, mlp: 4 },
};

/**
 * For the plain-JavaScript cpu backend and CPU-emulated WebGPU (lavapipe): each size cut so that a
 * step takes about a second rather than tens of seconds.
 */
export const SMALL_SIZES: Sizes = {
  matmul: 512,
  batched: { batch: 16, n: 128 },
  volume: [1, 16, 32, 32, 1],
  convOut: 16,
  patch: 4,
  embed: 128,
  block: { B: 2, N: 256, d: 128, heads: 4, mlp: 4 },
};

function normal(rng: Rng, shape: number[]): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(Float32Array.from({ length: n }, () => rng.normal()), shape, 'float32');
}

/** A step that returns the gradients of sum(f(...xs) * r) wrt `xs` (r drawn once, on first use). */
function gradStep(xs: tf.Tensor[], f: (...args: tf.Tensor[]) => tf.Tensor, rng: Rng): { step: () => tf.Tensor[]; dispose: () => void } {
  let r: tf.Tensor | undefined;
  return {
    step: () => {
      if (!r) {
        const shape = tf.tidy(() => f(...xs).shape);
        r = normal(rng, shape);
      }
      const cot = r;
      return tf.tidy(() => tf.grads((...args: tf.Tensor[]) => tf.sum(tf.mul(f(...args), cot)))(xs));
    },
    dispose: () => tf.dispose([...xs, ...(r ? [r] : [])]),
  };
}

function matmulVariant(name: string, shapeA: number[], shapeB: number[], ta: boolean, tb: boolean): Variant {
  return {
    name,
    setup: () => {
      const rng = makeRng(1);
      const a = normal(rng, shapeA);
      const b = normal(rng, shapeB);
      return { step: () => [tf.matMul(a, b, ta, tb)], dispose: () => tf.dispose([a, b]) };
    },
  };
}

function convVariant(method: Conv3dMethod, x: number[], w: number[], stride: number, padding: 'same' | 'valid', excluded?: string): Variant {
  return {
    name: method === 'native' ? 'tf.conv3d' : `conv3dFast ${method}`,
    ...(excluded ? { excluded } : {}),
    setup: () => {
      const rng = makeRng(2);
      const xt = normal(rng, x);
      const wt = tf.tidy(() => tf.mul(normal(rng, w), 0.1));
      return gradStep([xt, wt], (a, b) => conv3dFast(a as tf.Tensor, b as tf.Tensor, stride, padding, { method }), rng);
    },
  };
}

/** Pre-LN transformer block (Vaswani et al. 2017; pre-LN as in Xiong et al. 2020), as the encoder uses it. */
class Block extends Module {
  readonly ln1: LayerNorm;
  readonly wq: Linear;
  readonly wk: Linear;
  readonly wv: Linear;
  readonly wo: Linear;
  readonly ln2: LayerNorm;
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(
    readonly d: number,
    readonly heads: number,
    mlp: number,
    rng: Rng,
  ) {
    super();
    this.ln1 = this.child('ln1', new LayerNorm(d, rng));
    this.wq = this.child('wq', new Linear(d, d, rng));
    this.wk = this.child('wk', new Linear(d, d, rng));
    this.wv = this.child('wv', new Linear(d, d, rng));
    this.wo = this.child('wo', new Linear(d, d, rng));
    this.ln2 = this.child('ln2', new LayerNorm(d, rng));
    this.fc1 = this.child('fc1', new Linear(d, mlp * d, rng));
    this.fc2 = this.child('fc2', new Linear(mlp * d, d, rng));
  }

  /** @param x `[B, N, d]` @returns `[B, N, d]` */
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [B, N, d] = x.shape as [number, number, number];
      const dh = d / this.heads;
      const x2 = tf.reshape(x, [B * N, d]); // [B*N, d]
      const h = this.ln1.apply(x2);
      const split = (t: tf.Tensor) => tf.transpose(tf.reshape(t, [B, N, this.heads, dh]), [0, 2, 1, 3]); // [B, heads, N, dh]
      const a = attention(split(this.wq.apply(h)), split(this.wk.apply(h)), split(this.wv.apply(h))); // [B, heads, N, dh]
      const merged = tf.reshape(tf.transpose(a, [0, 2, 1, 3]), [B * N, d]); // [B*N, d]
      const x3 = tf.add(x2, this.wo.apply(merged));
      const m = this.fc2.apply(gelu(this.fc1.apply(this.ln2.apply(x3))));
      return tf.reshape(tf.add(x3, m), [B, N, d]);
    });
  }
}

/** Every workload at the given sizes. */
export function workloads(s: Sizes): Workload[] {
  const n = s.matmul;
  const { batch, n: bn } = s.batched;
  const [B, D, H, W, C] = s.volume;
  const M = B * D * H * W;
  const k3 = 27 * C * s.convOut;
  const p = s.patch;
  const P3 = p * p * p;
  const Mp = M / P3;
  const blk = s.block;
  const BN = blk.B * blk.N;
  // Linear layers: q, k, v, o (4 d^2) and the MLP (2 mlp d^2); attention: scores and values, 2 N^2 d each.
  const blockFwd = 2 * BN * (4 + 2 * blk.mlp) * blk.d * blk.d + 2 * 2 * blk.B * blk.N * blk.N * blk.d;
  const vol = `[${s.volume.join(',')}]`;
  return [
    {
      id: 'matmul',
      title: `matmul [${n}x${n}]^2`,
      flops: 2 * n ** 3,
      variants: [matmulVariant('tf.matMul', [n, n], [n, n], false, false)],
      torch: { kind: 'matmul', params: { n } },
    },
    {
      id: 'matmul-batched',
      title: `batched matmul [${batch},${bn},${bn}]^2`,
      flops: 2 * batch * bn ** 3,
      variants: [matmulVariant('tf.matMul', [batch, bn, bn], [batch, bn, bn], false, false)],
      torch: { kind: 'bmm', params: { batch, n: bn } },
    },
    {
      id: 'matmul-tA',
      title: `matmul A^T B [${n}x${n}]`,
      flops: 2 * n ** 3,
      variants: [matmulVariant('tf.matMul', [n, n], [n, n], true, false)],
      torch: { kind: 'matmul', params: { n, transposeA: true } },
    },
    {
      id: 'matmul-tB',
      title: `matmul A B^T [${n}x${n}]`,
      flops: 2 * n ** 3,
      variants: [matmulVariant('tf.matMul', [n, n], [n, n], false, true)],
      torch: { kind: 'matmul', params: { n, transposeB: true } },
    },
    {
      id: 'conv3d',
      title: `conv3d k=3 fwd+bwd ${vol}->${s.convOut}`,
      flops: 3 * 2 * M * k3,
      variants: [
        convVariant('native', s.volume, [3, 3, 3, C, s.convOut], 1, 'same'),
        convVariant('slices', s.volume, [3, 3, 3, C, s.convOut], 1, 'same'),
        convVariant('gather', s.volume, [3, 3, 3, C, s.convOut], 1, 'same'),
      ],
      torch: { kind: 'conv3d', params: { x: s.volume, k: 3, stride: 1, cout: s.convOut, padding: 'same' } },
    },
    {
      id: 'patch-embed',
      title: `patch embedding k=s=${p} fwd+bwd ${vol}->${s.embed}`,
      flops: 3 * 2 * Mp * P3 * C * s.embed,
      variants: [
        convVariant('native', s.volume, [p, p, p, C, s.embed], p, 'valid'),
        convVariant('patch', s.volume, [p, p, p, C, s.embed], p, 'valid'),
        convVariant('slices', s.volume, [p, p, p, C, s.embed], p, 'valid'),
        convVariant('gather', s.volume, [p, p, p, C, s.embed], p, 'valid'),
      ],
      torch: { kind: 'conv3d', params: { x: s.volume, k: p, stride: p, cout: s.embed, padding: 'valid' } },
    },
    {
      id: 'patchify',
      title: `patchify p=${p} fwd+bwd ${vol}`,
      flops: 0,
      variants: (['gather', 'transpose'] as PatchMethod[]).map((method) => ({
        name: `patchify3d ${method}`,
        setup: () => {
          const rng = makeRng(3);
          return gradStep([normal(rng, s.volume)], (x) => patchify3d(x as tf.Tensor, p, { method }), rng);
        },
      })),
      torch: { kind: 'patchify', params: { x: s.volume, p } },
    },
    {
      id: 'block',
      title: `pre-LN attention block fwd+bwd [${blk.B},${blk.N},${blk.d}] ${blk.heads} heads, MLP ${blk.mlp}x`,
      flops: 3 * blockFwd,
      variants: [
        {
          name: 'attention + Linear',
          setup: () => {
            const rng = makeRng(4);
            // In tidy: a Module's initial-value tensors are intermediates (its variables survive).
            let block: Block | undefined;
            tf.tidy(() => {
              block = new Block(blk.d, blk.heads, blk.mlp, rng);
            });
            if (!block) throw new Error('block construction failed');
            const built: Block = block;
            const x = normal(rng, [blk.B, blk.N, blk.d]);
            const vars = built.trainableVariables();
            // Disposing the step's inputs disposes x and every variable of the block.
            return gradStep([x, ...vars], (xx) => built.apply(xx as tf.Tensor), rng);
          },
        },
      ],
      torch: { kind: 'block', params: { x: [blk.B, blk.N, blk.d], heads: blk.heads, mlp: blk.mlp } },
    },
  ];
}
