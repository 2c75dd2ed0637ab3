/**
 * Fixes for tfjs-backend-webgpu 4.22 kernels that are wrong at rank 5 and 6 (volumes are rank 5).
 *
 * Measured here (conformance.test.ts, lavapipe): at rank >= 5 the WebGPU backend stores coordinates in
 * a WGSL struct (`vec5`, `vec6`) that cannot be indexed, yet several shaders index it: broadcasting
 * binary ops on their shared-memory path (e.g. a per-channel bias `[B, D, H, W, C] + [C]` with C not a
 * multiple of 4), PadV2 (so the gradient of every rank-5 slice), MirrorPad and StridedSlice. The shader
 * fails to compile; Dawn reports that as an event, not an exception, so without the error hook in
 * webgpu.ts the op silently returns garbage. Select, Cumsum and Cumprod reject rank 5 outright,
 * Reverse fails on it with a shape error, and Tile falls back to reading its input synchronously,
 * which WebGPU in Node cannot do (no OffscreenCanvas) once the data is on the GPU. Separately, reverse
 * Cumsum/Cumprod are wrong at any rank once a reverse scan of another length has run (the shader
 * cache key misses the length), and UnsortedSegmentSum of host-uploaded int32 data returns garbage.
 * AddN fails at any rank with more than seven inputs (see addNFix).
 *
 * Each rank fix keeps the original for rank <= 4 and, above that, runs the original on a
 * lower-rank view of the same data: these ops are separable over axes, so reshaping (free: the data
 * is shared) to `[before, n, after]` or merging axes that broadcast alike gives the same numbers.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelBackend, KernelConfig, KernelFunc, NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';

/** A kernel function with its backend typed (tfjs types it as `{}`). */
type Fix = (args: { inputs: NamedTensorInfoMap; backend: KernelBackend; attrs: NamedAttrMap }) => TensorInfo | TensorInfo[];

function asKernel(f: Fix): KernelFunc {
  return ({ inputs, backend, attrs }) => f({ inputs, backend: backend as KernelBackend, attrs: attrs ?? {} });
}

const BACKEND = 'webgpu';

/** Element-wise binary kernels with inputs `{ a, b }` that broadcast (tfjs-core kernel names). */
const BINARY_KERNELS = [
  'Add',
  'Sub',
  'Multiply',
  'RealDiv',
  'FloorDiv',
  'Mod',
  'Pow',
  'Maximum',
  'Minimum',
  'SquaredDifference',
  'Atan2',
  'Equal',
  'NotEqual',
  'Greater',
  'GreaterEqual',
  'Less',
  'LessEqual',
  'LogicalAnd',
  'LogicalOr',
] as const;

/** The highest rank whose WebGPU shaders use indexable coordinates (`vec4<i32>` and below). */
const MAX_SAFE_RANK = 4;

/** The original (unpatched) kernel functions, by kernel name. */
const originals = new Map<string, KernelFunc>();

/** A kernel a fix builds on is not registered for WebGPU (a tfjs-backend-webgpu other than 4.22). */
export class WebGpuKernelMissingError extends Error {
  override readonly name = 'WebGpuKernelMissingError';
  constructor(readonly kernelName: string) {
    super(`WebGPU kernel '${kernelName}' is not registered`);
  }
}

function kernel(name: string): KernelFunc {
  const f = originals.get(name) ?? tf.getKernel(name, BACKEND)?.kernelFunc;
  if (!f) throw new WebGpuKernelMissingError(name);
  return f;
}

/** Runs kernels on one backend and frees the intermediates it made. */
class Scratch {
  private readonly made: TensorInfo[] = [];
  constructor(private readonly backend: KernelBackend) {}

  run(name: string, inputs: Record<string, TensorInfo>, attrs: Record<string, unknown> = {}): TensorInfo {
    const out = kernel(name)({ inputs, backend: this.backend, attrs: attrs as NamedAttrMap }) as TensorInfo;
    this.made.push(out);
    return out;
  }

  /** Takes ownership of a tensor made elsewhere, to be freed by `finish` like the others. */
  adopt(t: TensorInfo): void {
    this.made.push(t);
  }

  /** A view of `x` with another shape (shares the data). */
  reshape(x: TensorInfo, shape: number[]): TensorInfo {
    return this.run('Reshape', { x }, { shape });
  }

  /**
   * Frees every intermediate except `keep`, which is returned as the kernel's output. A reshape of
   * an intermediate shares its data; the data stays alive through the kept one's reference.
   */
  finish(keep: TensorInfo): TensorInfo {
    for (const t of this.made) if (t !== keep) this.backend.disposeData(t.dataId);
    return keep;
  }
}

function prod(xs: readonly number[]): number {
  return xs.reduce((a, b) => a * b, 1);
}

/**
 * Merges the axes of a broadcast into the fewest groups: consecutive axes merge when each input is
 * either full-size on both or broadcast (size 1) on both; axes of output size 1 drop out.
 *
 * @param shapes the inputs' shapes, each broadcastable to `outShape` (numpy rules: aligned at the end)
 * @param outShape the broadcast result's shape
 * @returns per-input shapes and the output shape over the merged axes (all the same length)
 */
export function mergeBroadcastAxes(shapes: readonly (readonly number[])[], outShape: readonly number[]): { inShapes: number[][]; outShape: number[] } {
  const r = outShape.length;
  const padded = shapes.map((s) => [...new Array<number>(r - s.length).fill(1), ...s]);
  const out: number[] = [];
  const ins: number[][] = shapes.map(() => []);
  let lastPattern = '';
  for (let i = 0; i < r; i++) {
    const n = outShape[i] as number;
    if (n === 1) continue;
    const pattern = padded.map((s) => (s[i] === n ? 'F' : 'B')).join('');
    if (pattern === lastPattern) {
      out[out.length - 1] = (out[out.length - 1] as number) * n;
      padded.forEach((s, k) => {
        const row = ins[k] as number[];
        row[row.length - 1] = (row[row.length - 1] as number) * (s[i] as number);
      });
    } else {
      out.push(n);
      padded.forEach((s, k) => (ins[k] as number[]).push(s[i] as number));
      lastPattern = pattern;
    }
  }
  if (out.length === 0) return { inShapes: shapes.map(() => [1]), outShape: [1] };
  return { inShapes: ins, outShape: out };
}

/** Binary op at rank >= 5: on merged axes (rank <= 4), or on inputs tiled to the full shape. */
function binaryFix(name: string): KernelFunc {
  return asKernel(({ inputs, backend, attrs }) => {
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    if (outShape.length <= MAX_SAFE_RANK) return kernel(name)({ inputs, backend, attrs });
    const s = new Scratch(backend);
    const merged = mergeBroadcastAxes([a.shape, b.shape], outShape);
    let [a2, b2] = [a, b];
    let shapes = merged.inShapes;
    if (merged.outShape.length > MAX_SAFE_RANK) {
      // Broadcast patterns alternate too often to merge: materialise the broadcast, after which both
      // inputs are full-size and merge into one axis.
      const tileTo = (x: TensorInfo): TensorInfo => {
        if (tf.util.arraysEqual(x.shape, outShape)) return x;
        const full = [...new Array<number>(outShape.length - x.shape.length).fill(1), ...x.shape];
        const tiled = tileByAxis(s.reshape(x, full), outShape.map((n, i) => n / (full[i] as number)), backend);
        s.adopt(tiled);
        return tiled;
      };
      [a2, b2] = [tileTo(a), tileTo(b)];
      shapes = [[prod(outShape)], [prod(outShape)]];
    }
    const y = s.run(name, { a: s.reshape(a2, shapes[0] as number[]), b: s.reshape(b2, shapes[1] as number[]) }, attrs);
    return s.finish(s.reshape(y, outShape));
  });
}

/**
 * Applies a per-axis op on the `[before, n, after]` view of each axis in turn (`perAxis` gives the
 * kernel's attrs for that view, or null to leave the axis alone). The result is owned by the caller.
 */
function axisByAxis(
  name: string,
  x: TensorInfo,
  backend: KernelBackend,
  perAxis: (axis: number, view: number[]) => Record<string, unknown> | null,
): TensorInfo {
  const s = new Scratch(backend);
  let cur = x;
  for (let axis = 0; axis < x.shape.length; axis++) {
    const view = [prod(cur.shape.slice(0, axis)), cur.shape[axis] as number, prod(cur.shape.slice(axis + 1))]; // [before, n, after]
    const attrs = perAxis(axis, view);
    if (!attrs) continue;
    const y = s.run(name, { x: s.reshape(cur, view) }, attrs);
    cur = s.reshape(y, [...cur.shape.slice(0, axis), y.shape[1] as number, ...cur.shape.slice(axis + 1)]);
  }
  if (cur === x) return s.finish(s.run('Identity', { x }));
  return s.finish(cur);
}

/**
 * Tile at any rank as one rank-3 tile per repeated axis: tiling axis i of `[before, n, after]` with
 * reps `[1, r, 1]` repeats whole blocks along it, and the axes tile independently.
 */
function tileByAxis(x: TensorInfo, reps: readonly number[], backend: KernelBackend): TensorInfo {
  return axisByAxis('Tile', x, backend, (axis) => ((reps[axis] as number) === 1 ? null : { reps: [1, reps[axis] as number, 1] }));
}

/**
 * Tile at rank >= 5: the WebGPU kernel falls back to the CPU there and reads the input synchronously,
 * which Node's WebGPU cannot do once the data lives on the GPU (it needs OffscreenCanvas). This is
 * what broadcastTo (and so tf.where with broadcasting, and Tile's gradient) runs.
 */
function tileFix(): KernelFunc {
  return asKernel(({ inputs, backend, attrs }) => {
    const { x } = inputs as { x: TensorInfo };
    if (x.shape.length <= MAX_SAFE_RANK) return kernel('Tile')({ inputs, backend, attrs });
    return tileByAxis(x, (attrs as unknown as { reps: number[] }).reps, backend);
  });
}

/** PadV2 / MirrorPad at rank >= 5: one axis at a time on a rank-3 view. */
function padFix(name: 'PadV2' | 'MirrorPad'): KernelFunc {
  return asKernel(({ inputs, backend, attrs }) => {
    const { x } = inputs as { x: TensorInfo };
    if (x.shape.length <= MAX_SAFE_RANK) return kernel(name)({ inputs, backend, attrs });
    const paddings = (attrs as unknown as { paddings: [number, number][] }).paddings;
    return axisByAxis(name, x, backend, (axis) => {
      const [lo, hi] = paddings[axis] as [number, number];
      if (lo === 0 && hi === 0) return null;
      return { ...attrs, paddings: [[0, 0], [lo, hi], [0, 0]] };
    });
  });
}

/** Reverse at rank >= 5: each reversed axis on a rank-3 view. */
function reverseFix(): KernelFunc {
  return asKernel(({ inputs, backend, attrs }) => {
    const { x } = inputs as { x: TensorInfo };
    if (x.shape.length <= MAX_SAFE_RANK) return kernel('Reverse')({ inputs, backend, attrs });
    const rank = x.shape.length;
    const raw = (attrs as unknown as { dims: number | number[] }).dims;
    const dims = new Set((Array.isArray(raw) ? raw : [raw]).map((d) => (d < 0 ? d + rank : d)));
    return axisByAxis('Reverse', x, backend, (axis) => (dims.has(axis) ? { dims: [1] } : null));
  });
}

/**
 * Cumsum / Cumprod. At rank >= 5: on the `[before, n, after]` view of the scanned axis. With
 * `reverse`, at any rank: as reverse(scan(reverse(x))), because the WebGPU shader bakes the axis
 * length into its source for reverse scans but caches it under a key without that length, so a
 * second reverse scan of another length (same rank) reuses the first one's shader and is wrong.
 */
function cumFix(name: 'Cumsum' | 'Cumprod'): KernelFunc {
  return asKernel(({ inputs, backend, attrs }) => {
    const { x } = inputs as { x: TensorInfo };
    const a = attrs as unknown as { axis: number; exclusive: boolean; reverse: boolean };
    if (x.shape.length <= MAX_SAFE_RANK && !a.reverse) return kernel(name)({ inputs, backend, attrs });
    let axis = a.axis < 0 ? a.axis + x.shape.length : a.axis;
    const s = new Scratch(backend);
    let v = x;
    if (x.shape.length > MAX_SAFE_RANK) {
      v = s.reshape(x, [prod(x.shape.slice(0, axis)), x.shape[axis] as number, prod(x.shape.slice(axis + 1))]); // [before, n, after]
      axis = 1;
    }
    if (a.reverse) v = s.run('Reverse', { x: v }, { dims: [axis] });
    let y = s.run(name, { x: v }, { axis, exclusive: a.exclusive, reverse: false });
    if (a.reverse) y = s.run('Reverse', { x: y }, { dims: [axis] });
    return s.finish(s.reshape(y, x.shape));
  });
}

/**
 * UnsortedSegmentSum of int32 data: the WebGPU kernel's integer path returns garbage when the data
 * was uploaded from the host (e.g. [1, 2, 3, 4] by ids [0, 1, 0, 1] gave [2143289344, -2139095040]);
 * its float path is right. Sums in float32, exact while every partial sum stays below 2^24 in
 * magnitude (counts of tokens per expert, the use here, are far below that).
 */
function unsortedSegmentSumFix(): KernelFunc {
  return asKernel(({ inputs, backend, attrs }) => {
    const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
    if (x.dtype !== 'int32') return kernel('UnsortedSegmentSum')({ inputs, backend, attrs });
    const s = new Scratch(backend);
    const xf = s.run('Cast', { x }, { dtype: 'float32' });
    const sum = s.run('UnsortedSegmentSum', { x: xf, segmentIds }, attrs);
    return s.finish(s.run('Cast', { x: sum }, { dtype: 'int32' }));
  });
}

/** Select at rank >= 5: the op broadcasts its three inputs to one shape first, so a flat view works. */
function selectFix(): KernelFunc {
  return asKernel(({ inputs, backend, attrs }) => {
    const { condition, t, e } = inputs as { condition: TensorInfo; t: TensorInfo; e: TensorInfo };
    if (t.shape.length <= MAX_SAFE_RANK) return kernel('Select')({ inputs, backend, attrs });
    const s = new Scratch(backend);
    const n = [prod(t.shape)];
    const y = s.run('Select', { condition: s.reshape(condition, [prod(condition.shape)]), t: s.reshape(t, n), e: s.reshape(e, n) }, attrs);
    return s.finish(s.reshape(y, t.shape));
  });
}

/**
 * AddN with more inputs than one shader may bind. tfjs-backend-webgpu 4.22 binds every input as its own
 * storage buffer but requests the device without raising `maxStorageBuffersPerShaderStage`, so the
 * WebGPU default of 8 applies: a ninth input (tfjs sums a tensor's gradients with AddN, so any tensor
 * used in eight or more places) fails pipeline validation. Measured on an NVIDIA H100 (Vulkan 580.159):
 * training stopped at the first backward pass. Sums groups that fit, then sums the partial sums.
 */
function addNFix(): KernelFunc {
  return asKernel(({ inputs, backend, attrs }) => {
    // AddN's inputs are an array, not named.
    const xs = (Array.isArray(inputs) ? inputs : Object.values(inputs)) as TensorInfo[];
    const device = (backend as unknown as { device?: { limits?: { maxStorageBuffersPerShaderStage?: number } } }).device;
    // One binding is the output.
    const fit = Math.max(2, (device?.limits?.maxStorageBuffersPerShaderStage ?? 8) - 1);
    if (xs.length <= fit) return kernel('AddN')({ inputs, backend, attrs });
    const s = new Scratch(backend);
    let level = xs;
    while (level.length > 1) {
      const next: TensorInfo[] = [];
      for (let i = 0; i < level.length; i += fit) {
        const group = level.slice(i, i + fit);
        next.push(group.length === 1 ? group[0]! : s.run('AddN', group as unknown as Record<string, TensorInfo>));
      }
      level = next;
    }
    return s.finish(level[0]!);
  });
}

/** StridedSlice at rank >= 5: resolved by tfjs' own slice rules, then one axis at a time. */
function stridedSliceFix(): KernelFunc {
  return asKernel(({ inputs, backend, attrs }) => {
    const { x } = inputs as { x: TensorInfo };
    if (x.shape.length <= MAX_SAFE_RANK) return kernel('StridedSlice')({ inputs, backend, attrs });
    const a = attrs as unknown as {
      begin: number[];
      end: number[];
      strides: number[];
      beginMask: number;
      endMask: number;
      ellipsisMask: number;
      newAxisMask: number;
      shrinkAxisMask: number;
    };
    const info = tf.slice_util.sliceInfo(
      x.shape,
      a.begin,
      a.end,
      a.strides,
      a.beginMask,
      a.endMask,
      a.ellipsisMask,
      a.newAxisMask,
      a.shrinkAxisMask,
    );
    // info.begin/end/strides are resolved per input axis (dense, non-negative begin; end -1 means
    // "past index 0" for a negative stride, which a fresh slice expresses with its end mask).
    const sliced = axisByAxis('StridedSlice', x, backend, (axis, view) => {
      const b = info.begin[axis] as number;
      const e = info.end[axis] as number;
      const st = info.strides[axis] as number;
      if (b === 0 && e === view[1] && st === 1) return null;
      return {
        begin: [0, b, 0],
        end: [view[0], e, view[2]],
        strides: [1, st, 1],
        beginMask: 0,
        endMask: e < 0 ? 2 : 0,
        ellipsisMask: 0,
        newAxisMask: 0,
        shrinkAxisMask: 0,
      };
    });
    // Shrunk and new axes only change the shape.
    const out = kernel('Reshape')({ inputs: { x: sliced }, backend, attrs: { shape: info.finalShape } }) as TensorInfo;
    backend.disposeData(sliced.dataId);
    return out;
  });
}

let patched = false;

/**
 * Re-registers the WebGPU kernels listed in the file header with versions that are right at rank 5
 * and 6. Idempotent; does nothing when the WebGPU backend is not registered.
 */
export function patchWebGpuKernels(): void {
  if (patched || !tf.getKernel('Add', BACKEND)) return;
  patched = true;
  const fixes: [string, KernelFunc][] = [
    ...BINARY_KERNELS.map((n): [string, KernelFunc] => [n, binaryFix(n)]),
    ['PadV2', padFix('PadV2')],
    ['MirrorPad', padFix('MirrorPad')],
    ['Reverse', reverseFix()],
    ['Cumsum', cumFix('Cumsum')],
    ['Cumprod', cumFix('Cumprod')],
    ['Select', selectFix()],
    ['Tile', tileFix()],
    ['UnsortedSegmentSum', unsortedSegmentSumFix()],
    ['StridedSlice', stridedSliceFix()],
    ['AddN', addNFix()],
  ];
  for (const [name, kernelFunc] of fixes) {
    const cfg = tf.getKernel(name, BACKEND) as KernelConfig | undefined;
    if (!cfg) continue;
    originals.set(name, cfg.kernelFunc);
    tf.unregisterKernel(name, BACKEND);
    tf.registerKernel({ ...cfg, kernelFunc });
  }
}
