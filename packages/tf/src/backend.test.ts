import { afterAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import {
  BACKEND_ORDER,
  BackendUnavailableError,
  availableBackends,
  initBackend,
  isSoftwareAdapter,
  probeBackend,
  useBackend,
} from './backend.js';
import { WebGpuError } from './webgpu.js';

afterAll(async () => {
  await tf.setBackend('cpu');
});

describe('backend choice', () => {
  it('an unknown name is a typed error that lists the valid names', async () => {
    const err = await initBackend({ backend: 'cuda', log: null }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect((err as Error).message).toContain("'cuda'");
    for (const n of BACKEND_ORDER) expect((err as Error).message).toContain(n);
  });

  it('forcing each backend either activates it or fails with the probe reason', async () => {
    for (const name of BACKEND_ORDER) {
      const probe = await probeBackend(name);
      if (probe.ok) {
        const choice = await initBackend({ backend: name, log: null });
        expect(choice.name).toBe(name);
        expect(tf.getBackend()).toBe(choice.engineName);
        expect(choice.reason).toContain('forced by --backend');
      } else {
        const err = await initBackend({ backend: name, log: null }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(BackendUnavailableError);
        expect((err as BackendUnavailableError).reason).toBe(probe.reason);
      }
    }
  });

  it('GOE_BACKEND forces a backend when no option is given', async () => {
    process.env['GOE_BACKEND'] = 'cpu';
    try {
      const choice = await initBackend({ log: null });
      expect(choice.name).toBe('cpu');
      expect(choice.reason).toContain('GOE_BACKEND');
    } finally {
      delete process.env['GOE_BACKEND'];
    }
  });

  it('auto picks the first available backend in order, passing over software WebGPU adapters', async () => {
    const choice = await initBackend({ backend: 'auto', log: null });
    let expected: string | undefined;
    for (const name of BACKEND_ORDER) {
      const p = await probeBackend(name);
      if (p.ok && !(p.webgpu && isSoftwareAdapter(p.webgpu))) {
        expected = name;
        break;
      }
    }
    expect(choice.name).toBe(expected);
    // cpu and wasm always exist here: the project's tests rely on both.
    const avail = await availableBackends();
    expect(avail).toContain('cpu');
    expect(avail).toContain('wasm');
    // every probe before the choice is listed with its reason
    expect(choice.probes.at(-1)?.name).toBe(expected);
  });

  it('prints the choice once per process', async () => {
    const lines: string[] = [];
    await initBackend({ backend: 'cpu', log: (l) => lines.push(l) });
    await initBackend({ backend: 'cpu', log: (l) => lines.push(l) });
    expect(lines.length).toBeLessThanOrEqual(1);
  });

  it('software adapters are recognised', () => {
    const base = { vendor: 'mesa', device: '', maxStorageBufferBindingSize: 1 };
    expect(isSoftwareAdapter({ ...base, architecture: 'software', description: 'llvmpipe' })).toBe(true);
    expect(isSoftwareAdapter({ ...base, vendor: 'nvidia', architecture: 'hopper', description: 'NVIDIA H100' })).toBe(false);
  });
});

describe('WebGPU device errors become exceptions', async () => {
  const probe = await probeBackend('webgpu');
  it.skipIf(!probe.ok)('a validation error surfaces at the next read as WebGpuError', async () => {
    await useBackend('webgpu');
    const device = (tf.backend() as unknown as { device: { createBuffer(d: object): { destroy(): void } } }).device;
    // A buffer mapped for reading cannot also be a storage buffer: a WebGPU validation error.
    device.createBuffer({ size: 16, usage: 0x0001 | 0x0080 });
    const t = tf.tensor1d([1, 2, 3]);
    const y = tf.add(t, t);
    await expect(y.data()).rejects.toBeInstanceOf(WebGpuError);
    // The error is reported once; the backend keeps working afterwards.
    expect(Array.from(await y.data())).toEqual([2, 4, 6]);
    tf.dispose([t, y]);
  });
});
