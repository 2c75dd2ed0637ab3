/**
 * Imported for its effect by the bundled entry points (runner.ts, goe-entry.ts). In a bundle, @goe/tf's
 * run-time `require('@tensorflow/tfjs-backend-webgpu')` (made after Dawn has installed navigator.gpu)
 * must get the bundled copy, which shares the bundled tfjs-core; outside a bundle `require` is not
 * defined here and Node resolves it from node_modules as usual.
 */
import Module from 'node:module';

if (typeof require === 'function') {
  const bundled: Record<string, () => unknown> = {
    '@tensorflow/tfjs-backend-webgpu': () => require('@tensorflow/tfjs-backend-webgpu'),
  };
  const mod = Module as unknown as { _load: (request: string, ...rest: unknown[]) => unknown };
  const load = mod._load;
  mod._load = function (request: string, ...rest: unknown[]) {
    const hit = bundled[request];
    return hit ? hit() : load.call(this, request, ...rest);
  };
}
