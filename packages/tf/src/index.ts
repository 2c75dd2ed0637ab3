/**
 * @goe/tf: the tensor layer every model package stands on. Re-exports tfjs-core as `tf`, chooses the
 * best backend (with kernels fixed where a backend is wrong), and holds the shared helpers.
 */
export * as tf from '@tensorflow/tfjs-core';
export {
  BACKEND_ORDER,
  BackendUnavailableError,
  availableBackends,
  currentBackend,
  initBackend,
  isSoftwareAdapter,
  probeBackend,
  useBackend,
  type BackendChoice,
  type BackendName,
  type BackendProbe,
  type InitBackendOptions,
} from './backend.js';
export { WebGpuError, checkWebGpuErrors, type WebGpuInfo } from './webgpu.js';
export { makeRng, type Rng } from './rng.js';
export { median, parsePeerBenchOptions, positiveFlag, timeInterleaved, timeSteps, type PeerBenchOptions, type StepTiming } from './benchmark.js';
export { adamStepOn, hostGradients, backendsUnderTest, directionalGradCheck, expectNoLeak, maxAbsDiff } from './testing.js';
export { Linear, LayerNorm, Module, gelu, initValues, type Init } from './module.js';
// Importing grads.js registers tfjs-core's gradients (its Node build ships none) plus the ones it lacks.
export { GRADIENT_KERNELS, GradientError, registerMissingGradients } from './grads.js';
export { WASM_KERNEL_FIXES, WasmKernelError, heldTransposedWeights, patchWasmKernels } from './wasm-kernels.js';
export { segmentMatMul, type SegmentMatMulOptions } from './segment.js';
export {
  ReferenceShapeError,
  refAvgPool3d,
  refAvgPool3dGrad,
  refConv3d,
  refConv3dFilterGrad,
  refConv3dTranspose,
  refLayerNorm,
  refMatMul,
  refMaxPool3d,
  refMaxPool3dGrad,
  refSoftmax,
  refWindowAxis,
  type HostTensor,
  type HostTensorLike,
  type RefPadding,
  type RefTriple,
} from './reference.js';
export {
  CONFORMANCE_OPS,
  finiteDifferenceCheck,
  gradInputs,
  hostLoss,
  lossWeights,
  makeCaseInputs,
  runConformanceCase,
  type CaseResult,
  type ConformanceCase,
  type ConformanceInput,
  type FiniteDifferenceCheck,
  type HostInput,
  type HostValue,
  type InputKind,
} from './conformance-ops.js';
export { WebGpuKernelMissingError, mergeBroadcastAxes, patchWebGpuKernels } from './webgpu-kernels.js';
export {
  OpArgumentError,
  attention,
  clearOpIndexCache,
  conv3dFast,
  patchify3d,
  preferredConv3dMethod,
  preferredPatchMethod,
  unpatchify3d,
  type AttentionOptions,
  type Conv3dChoiceInput,
  type Conv3dFastOptions,
  type Conv3dMethod,
  type PatchMethod,
  type PatchOptions,
  type Triple,
} from './ops.js';
export { ADAM_DEFAULTS, Adam, type AdamConfig } from './optim.js';
export { ConfigFieldError, InputShapeError, describeValue, type InputErrorFactory } from './errors.js';
export { configChecks, type ConfigChecks, type ConfigErrorFactory } from './config-checks.js';
export {
  SeparableSmoothing,
  VOXEL_DECODER_DEFAULTS,
  resolveVoxelDecoderFields,
  unpatchifyCells,
  type TokenGrid,
  type VoxelDecoderConfig,
} from './upsample.js';
export { angleDegrees, angularErrorStats, type AngleStats } from './angles.js';
