/**
 * WebGPU in Node: Dawn (npm `webgpu`) provides `navigator.gpu`, and @tensorflow/tfjs-backend-webgpu runs
 * on it. Dawn needs `libvulkan.so.1` and a Vulkan driver: NVIDIA's on a GPU machine, Mesa's lavapipe
 * (CPU) elsewhere — see tools/setup-lavapipe.sh.
 *
 * WebGPU reports validation and out-of-memory errors as events, not exceptions, so a broken shader or
 * an oversized buffer would otherwise give silently wrong numbers. Every uncaptured device error is
 * recorded here, and the next read of any tensor's data on this backend throws it as a `WebGpuError`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import { patchWebGpuKernels } from './webgpu-kernels.js';

/** What Dawn reports about the adapter in use. */
export interface WebGpuInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Largest storage buffer binding, bytes. */
  maxStorageBufferBindingSize: number;
}

/** A WebGPU device error (validation, out of memory, internal, device lost) raised as an exception. */
export class WebGpuError extends Error {
  override readonly name = 'WebGpuError';
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(`WebGPU ${kind} error: ${message}`);
  }
}

interface GpuErrorLike {
  constructor?: { name?: string };
  message?: string;
}

interface MinimalDevice {
  onuncapturederror: ((ev: { error: GpuErrorLike }) => void) | null;
  lost?: Promise<{ reason?: string; message?: string }>;
}

interface PatchableBackend {
  device: MinimalDevice;
  read(dataId: object): Promise<unknown>;
  readSync(dataId: object): unknown;
  __goeErrorsHooked?: boolean;
}

const require = createRequire(import.meta.url);
const pending: WebGpuError[] = [];
let info: WebGpuInfo | undefined;

/** Throws (and clears) the first WebGPU device error recorded since the last check, if any. */
export function checkWebGpuErrors(): void {
  const err = pending.shift();
  pending.length = 0;
  if (err) throw err;
}

function errorKind(e: GpuErrorLike): string {
  const n = e.constructor?.name ?? '';
  if (/Validation/i.test(n)) return 'validation';
  if (/OutOfMemory/i.test(n)) return 'out-of-memory';
  if (/Internal/i.test(n)) return 'internal';
  return n || 'device';
}

function hookErrors(backend: PatchableBackend): void {
  if (backend.__goeErrorsHooked) return;
  backend.__goeErrorsHooked = true;
  backend.device.onuncapturederror = (ev) => {
    pending.push(new WebGpuError(errorKind(ev.error), ev.error.message ?? String(ev.error)));
  };
  void backend.device.lost?.then((l) => {
    pending.push(new WebGpuError('device-lost', `${l.reason ?? ''} ${l.message ?? ''}`.trim()));
  });
  const read = backend.read.bind(backend);
  const readSync = backend.readSync.bind(backend);
  backend.read = async (dataId) => {
    const out = await read(dataId);
    checkWebGpuErrors();
    return out;
  };
  backend.readSync = (dataId) => {
    const out = readSync(dataId);
    checkWebGpuErrors();
    return out;
  };
}

/**
 * Installs Dawn's `navigator.gpu`, registers and activates the tfjs WebGPU backend, and hooks device
 * errors. Leaves WebGPU as the active backend.
 *
 * @throws Error when the `webgpu` package, the Vulkan loader or an adapter is missing.
 */
export async function initWebGpu(): Promise<WebGpuInfo> {
  if (!tf.findBackendFactory('webgpu')) {
    const dawn = require('webgpu') as { create(flags: string[]): unknown; globals: Record<string, unknown> };
    const g = globalThis as Record<string, unknown>;
    let gpu: { requestAdapter(): Promise<unknown> };
    try {
      gpu = dawn.create([]) as typeof gpu;
    } catch (err) {
      throw new Error(`Dawn failed to start (is libvulkan1 installed?): ${String(err)}`, { cause: err });
    }
    const adapter = (await gpu.requestAdapter()) as null | {
      info?: Record<string, string>;
      limits: { maxStorageBufferBindingSize: number };
    };
    if (!adapter) throw new Error('no WebGPU adapter (no Vulkan driver: install Mesa lavapipe or a GPU driver)');
    for (const [k, v] of Object.entries(dawn.globals)) if (!(k in g)) g[k] = v;
    const nav = (g['navigator'] as Record<string, unknown> | undefined) ?? {};
    nav['gpu'] = gpu;
    if (!g['navigator']) g['navigator'] = nav;
    info = {
      vendor: adapter.info?.['vendor'] ?? '',
      architecture: adapter.info?.['architecture'] ?? '',
      device: adapter.info?.['device'] ?? '',
      description: adapter.info?.['description'] ?? 'WebGPU adapter',
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    };
    // The package registers its backend factory on import, only when navigator.gpu exists.
    require('@tensorflow/tfjs-backend-webgpu');
    if (!tf.findBackendFactory('webgpu')) throw new Error('tfjs-backend-webgpu did not register');
  }
  if (!(await tf.setBackend('webgpu'))) throw new Error('the tfjs WebGPU backend failed to initialise');
  // Rank-5/6 kernels that fail to compile or give garbage in tfjs-backend-webgpu 4.22 (webgpu-kernels.ts).
  patchWebGpuKernels();
  hookErrors(tf.backend() as unknown as PatchableBackend);
  if (!info) throw new Error('WebGPU initialised without adapter info');
  return info;
}
