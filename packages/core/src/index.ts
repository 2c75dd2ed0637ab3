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
} from './config.js';
export { GoeConfigError, GoeInputError, RegistryError } from './errors.js';
export { Registry } from './registry.js';
export { Expert, SwiGluExpert, expertRegistry, type ExpertFactory, type ExpertSpec } from './experts.js';
export { ExpertGraph, StaticExpertGraph, graphRegistry, type GraphFactory, type GraphSpec } from './graph.js';
export {
  DenseRouter,
  GoeRouter,
  Router,
  TopKRouter,
  gatesFromSelection,
  routerRegistry,
  type RouteInput,
  type RouteOutput,
  type RouterFactory,
} from './routers.js';
export { dispatchDense, dispatchExact, type DispatchCount } from './dispatch.js';
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
