import { resolveTrainConfig, type DeepPartial, type TrainConfig } from './config.js';

/**
 * A training config small enough to run in seconds on two cores (tests, quick checks): 8x32x32 patches
 * of a 24x64x64 phantom or 32-byte windows, width 16, on wasm, logging every step, validating and
 * checkpointing only at the end. `over.model` is merged into the model section, the rest replaces.
 */
export function smallTrainConfig(out: string, over: DeepPartial<TrainConfig> = {}): TrainConfig {
  return resolveTrainConfig({
    steps: 40,
    batch: 4,
    seed: 3,
    backend: 'wasm',
    out,
    logEvery: 1,
    validateEvery: 0,
    checkpointEvery: 0,
    validationPatches: 4,
    data: { phantomShape: [24, 64, 64], validationFraction: 1 / 3 },
    optim: { lr: 5e-3, warmupSteps: 5 },
    ...over,
    model: { patch: [8, 32, 32], sequenceLength: 32, width: 16, auxWidth: 8, ...over.model },
  });
}
