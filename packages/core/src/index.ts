/**
 * @goe/core: the Graph-of-Experts layer (graph router, expert library, expert graph, recursive
 * refinement with halting, regularisers, provenance) and the routers it is compared with, behind one
 * router interface and registries keyed by config name.
 */
export {
  GOE_DEFAULTS,
  resolveGoeConfig,
  type DispatchMode,
  type GoeConfig,
  type GoeConfigInput,
  type GoeRegularisers,
  type MessageMode,
} from './config.js';
export { GoeConfigError, GoeInputError, RegistryError } from './errors.js';
export { Registry } from './registry.js';
export {
  AttentionExpert,
  ConvExpert,
  Expert,
  SwiGluExpert,
  depthwiseConv3dRows,
  expertKindOf,
  expertKinds,
  expertRegistry,
  type DepthwiseMethod,
  type ExpertContext,
  type ExpertFactory,
  type ExpertSpec,
  type TokenLayout,
} from './experts.js';
export { slotMessages } from './messages.js';
export {
  DynamicExpertGraph,
  EmaExpertGraph,
  ExpertGraph,
  StaticExpertGraph,
  graphRegistry,
  maskedRowSoftmax,
  type GraphFactory,
  type GraphSpec,
} from './graph.js';
export {
  DenseRouter,
  ExpertChoiceRouter,
  GoeRouter,
  LinearRouter,
  Router,
  SymphonyRouter,
  TopKRouter,
  TopPRouter,
  gatesFromSelection,
  routerPresets,
  routerRegistry,
  type CycleStep,
  type RouteInput,
  type RouteOutput,
  type RouterFactory,
} from './routers.js';
// These modules register the `graphmoe` and `chain` routers when @goe/core loads (they build on
// routers.ts, which therefore cannot import them).
export { GRAPHMOE_BASELINE, GraphMoeRouter } from './graphmoe.js';
export { ChainRouter } from './chain.js';
export { dispatchDense, dispatchExact, routeRows, type DispatchCount } from './dispatch.js';
export {
  DROP_RULES,
  PROVENANCE_FORMAT,
  dropRuleFor,
  exportProvenance,
  importProvenance,
  provenanceTransitions,
  readProvenance,
  summarizeProvenance,
  writeProvenance,
  type DropRule,
  type ProvenanceArrays,
  type ProvenanceExport,
  type ProvenanceManifest,
  type ProvenanceSummary,
  type SummarizeOptions,
  type TransitionWeight,
} from './provenance.js';
export {
  expertGraphSvg,
  heatmapSvg,
  loadBarsSvg,
  viridis,
  writeProvenancePictures,
  writeSvgPng,
  type ProvenancePictures,
} from './plots.js';
export { cycleRegularisers, type CycleRegularisers } from './losses.js';
export { canReadSync, detached, selectionMask, slotOneHots, toFloat32, topKIds } from './ops.js';
export {
  GoeLayer,
  disposeGoeOutput,
  readGoeStats,
  type GoeApplyOptions,
  type GoeLayerInput,
  type GoeLosses,
  type GoeOutput,
  type GoeProvenance,
  type GoeStats,
  type GoeStatsValues,
} from './layer.js';
