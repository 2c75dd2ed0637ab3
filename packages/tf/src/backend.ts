/**
 * Backend choice: the best tensor backend this machine has, in a fixed order of preference, with the
 * reason for the choice printed once.
 *
 * Order (fastest first): `node-gpu` (@tensorflow/tfjs-node-gpu, CUDA libtensorflow), `node`
 * (@tensorflow/tfjs-node, CPU libtensorflow), `webgpu` (Dawn for Node via npm `webgpu`), `wasm`
 * (XNNPACK, SIMD), `cpu` (plain JS). The two libtensorflow bindings are optional dependencies: their
 * install script downloads libtensorflow and fails without network access, in which case npm drops
 * them and they show up here as "not installed".
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { createRequire } from 'node:module';
import { patchWasmKernels } from './wasm-kernels.js';
import { initWebGpu, type WebGpuInfo } from './webgpu.js';

/** Names accepted by `--backend` and `GOE_BACKEND`, in order of preference. */
export const BACKEND_ORDER = ['node-gpu', 'node', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_ORDER)[number];

/** What happened when one backend was tried. */
export interface BackendProbe {
  name: BackendName;
  ok: boolean;
  /** Why it is (not) usable, in words. */
  reason: string;
}

/** The backend in use and how it was chosen. */
export interface BackendChoice {
  name: BackendName;
  /** The tfjs engine's name for it (`tensorflow`, `webgpu`, `wasm`, `cpu`). */
  engineName: string;
  /** One line: what was chosen and why. */
  reason: string;
  /** Every backend tried on the way, best first. */
  probes: BackendProbe[];
  /** Adapter details when the choice is WebGPU. */
  webgpu?: WebGpuInfo;
}

export interface InitBackendOptions {
  /** Force one backend; defaults to `process.env.GOE_BACKEND`, else the best available. */
  backend?: string;
  /** Where the one-line report goes; `null` silences it. Defaults to stderr. */
  log?: ((line: string) => void) | null;
}

/** A backend that was asked for by name cannot be used here. */
export class BackendUnavailableError extends Error {
  override readonly name = 'BackendUnavailableError';
  constructor(
    readonly backend: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`backend '${backend}' is not available: ${reason}`, options);
  }
}

// tfjs prints a banner urging tfjs-node on every Node start; the choice and its reason are reported
// by initBackend instead, so silence tfjs' own warnings (PROD changes nothing else).
tf.env().set('PROD', true);

const ENGINE_NAME: Record<BackendName, string> = {
  'node-gpu': 'tensorflow',
  node: 'tensorflow',
  webgpu: 'webgpu',
  wasm: 'wasm',
  cpu: 'cpu',
};

const require = createRequire(import.meta.url);
const probeCache = new Map<BackendName, Promise<BackendProbe & { webgpu?: WebGpuInfo }>>();
let reported = false;
let current: BackendChoice | undefined;

function isBackendName(name: string): name is BackendName {
  return (BACKEND_ORDER as readonly string[]).includes(name);
}

function describeError(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && err.code === 'MODULE_NOT_FOUND') {
    return 'not installed';
  }
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0] ?? msg;
}

async function registerNode(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node'): Promise<string> {
  // Loading the binding registers the 'tensorflow' backend with this process's tfjs-core. Both
  // packages are pinned to the same tfjs version as @tensorflow/tfjs-core, so there is one engine.
  require(pkg);
  if (!tf.findBackendFactory('tensorflow') && !tf.findBackend('tensorflow')) {
    throw new Error(`${pkg} loaded but registered no 'tensorflow' backend`);
  }
  const ok = await tf.setBackend('tensorflow');
  if (!ok) throw new Error(`${pkg}: libtensorflow failed to initialise`);
  if (pkg === '@tensorflow/tfjs-node-gpu') {
    // tfjs-node-gpu falls back to the CPU silently when CUDA is missing; only call it the GPU
    // backend when TensorFlow actually sees a GPU device.
    const binding = (tf.backend() as unknown as { binding?: { isUsingGpuDevice?: () => boolean } }).binding;
    if (binding?.isUsingGpuDevice && !binding.isUsingGpuDevice()) {
      throw new Error('libtensorflow found no CUDA GPU (needs CUDA 11.2 + cuDNN 8.1)');
    }
    return 'libtensorflow with CUDA';
  }
  return 'libtensorflow (CPU)';
}

async function registerWasm(): Promise<string> {
  // The emscripten module installs process-wide 'uncaughtException' / 'unhandledRejection' listeners
  // that rethrow, so any uncaught error (ours included) is printed with the module's whole minified
  // source. Remove exactly the listeners that appear while the module loads; Node's default handling
  // (print the error, exit non-zero) stays.
  const uncaught = new Set(process.listeners('uncaughtException'));
  const unhandled = new Set(process.listeners('unhandledRejection'));
  let ok: boolean;
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    ok = await tf.setBackend('wasm');
  } finally {
    for (const l of process.listeners('uncaughtException')) {
      if (!uncaught.has(l)) process.removeListener('uncaughtException', l);
    }
    for (const l of process.listeners('unhandledRejection')) {
      if (!unhandled.has(l)) process.removeListener('unhandledRejection', l);
    }
  }
  if (!ok) throw new Error('the wasm module failed to load');
  // Re-route the kernels that are wrong or missing on wasm (FACTS: conv3d backward, maxPool3d,
  // UnsortedSegmentSum, …) and give batched/transposed matmul the XNNPACK fast path.
  patchWasmKernels();
  return 'XNNPACK with SIMD, 1 thread';
}

async function probeUncached(name: BackendName): Promise<BackendProbe & { webgpu?: WebGpuInfo }> {
  const previous = tf.getBackend();
  try {
    let reason: string;
    let webgpu: WebGpuInfo | undefined;
    switch (name) {
      case 'node-gpu':
        reason = await registerNode('@tensorflow/tfjs-node-gpu');
        break;
      case 'node':
        reason = await registerNode('@tensorflow/tfjs-node');
        break;
      case 'webgpu':
        webgpu = await initWebGpu();
        reason = `${webgpu.description} (${webgpu.vendor}, ${webgpu.architecture})`;
        break;
      case 'wasm':
        reason = await registerWasm();
        break;
      case 'cpu':
        if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend failed to initialise');
        reason = 'plain JavaScript';
        break;
    }
    return { name, ok: true, reason, webgpu };
  } catch (err) {
    return { name, ok: false, reason: describeError(err) };
  } finally {
    if (previous && previous !== tf.getBackend()) await tf.setBackend(previous);
  }
}

/** True for adapters that run on the CPU (Mesa lavapipe/llvmpipe, SwiftShader). */
export function isSoftwareAdapter(info: WebGpuInfo): boolean {
  return /software|cpu/i.test(info.architecture) || /llvmpipe|lavapipe|swiftshader/i.test(`${info.description} ${info.device}`);
}

/**
 * Tries one backend without switching to it (the active backend is restored). Cached per process.
 */
export function probeBackend(name: BackendName): Promise<BackendProbe & { webgpu?: WebGpuInfo }> {
  let p = probeCache.get(name);
  if (!p) {
    p = probeUncached(name);
    probeCache.set(name, p);
  }
  return p;
}

/** Every backend that initialises on this machine, best first. */
export async function availableBackends(): Promise<BackendName[]> {
  const out: BackendName[] = [];
  for (const name of BACKEND_ORDER) {
    // The two libtensorflow bindings register the same engine name; only one can be live.
    if (name === 'node' && out.includes('node-gpu')) continue;
    if ((await probeBackend(name)).ok) out.push(name);
  }
  return out;
}

/**
 * Chooses and activates the tensor backend: `options.backend`, else `GOE_BACKEND`, else the best one
 * that initialises. Prints the choice and the reason once per process (to stderr by default).
 *
 * @throws BackendUnavailableError when a backend asked for by name cannot be used, or the name is unknown.
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendChoice> {
  const requested = options.backend ?? process.env['GOE_BACKEND'] ?? undefined;
  const probes: BackendProbe[] = [];
  let chosen: (BackendProbe & { webgpu?: WebGpuInfo }) | undefined;
  let how: string;

  if (requested !== undefined && requested !== '' && requested !== 'auto') {
    if (!isBackendName(requested)) {
      throw new BackendUnavailableError(
        requested,
        `unknown backend name; expected one of ${BACKEND_ORDER.join(', ')} (or auto)`,
      );
    }
    const probe = await probeBackend(requested);
    probes.push(probe);
    if (!probe.ok) throw new BackendUnavailableError(requested, probe.reason);
    chosen = probe;
    how = options.backend !== undefined ? 'forced by --backend' : 'forced by GOE_BACKEND';
  } else {
    for (const name of BACKEND_ORDER) {
      const probe = await probeBackend(name);
      if (probe.ok && probe.webgpu && isSoftwareAdapter(probe.webgpu)) {
        // A CPU Vulkan driver (lavapipe/llvmpipe, SwiftShader) emulates a GPU on the CPU: correct but
        // slower than wasm, so auto mode passes it over; `--backend webgpu` still selects it.
        probes.push({ name, ok: false, reason: `software adapter (${probe.webgpu.description}); slower than wasm` });
        continue;
      }
      probes.push(probe);
      if (probe.ok) {
        chosen = probe;
        break;
      }
    }
    if (!chosen) throw new BackendUnavailableError('auto', 'no backend initialised, not even cpu');
    how = 'best available';
  }

  await tf.setBackend(ENGINE_NAME[chosen.name]);
  const skipped = probes
    .filter((p) => !p.ok)
    .map((p) => `${p.name}: ${p.reason}`)
    .join('; ');
  const reason = `backend ${chosen.name} (${how}: ${chosen.reason})${skipped ? ` — skipped ${skipped}` : ''}`;
  current = {
    name: chosen.name,
    engineName: ENGINE_NAME[chosen.name],
    reason,
    probes,
    ...(chosen.webgpu ? { webgpu: chosen.webgpu } : {}),
  };
  const log = options.log === undefined ? (line: string) => process.stderr.write(`${line}\n`) : options.log;
  if (log && !reported) {
    reported = true;
    log(reason);
  }
  return current;
}

/**
 * Switches to a backend that `availableBackends()` reported, without printing; for tests and
 * benchmarks that compare backends in one process.
 */
export async function useBackend(name: BackendName): Promise<void> {
  const probe = await probeBackend(name);
  if (!probe.ok) throw new BackendUnavailableError(name, probe.reason);
  await tf.setBackend(ENGINE_NAME[name]);
}

/** The backend chosen by the last `initBackend`, if any. */
export function currentBackend(): BackendChoice | undefined {
  return current;
}
