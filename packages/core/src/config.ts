/**
 * The GoE layer's configuration: one typed object, every default in `GOE_DEFAULTS`, validated by
 * `resolveGoeConfig` with errors that name the field, what it must be and what arrived.
 */
import { configChecks } from '@goe/tf';
import { GoeConfigError } from './errors.js';
import { expertKinds, expertRegistry } from './experts.js';
import { graphRegistry } from './graph.js';
import { routerRegistry } from './routers.js';

/** How the tokens routed to each expert are gathered and run. */
export type DispatchMode = 'auto' | 'exact' | 'dense';

/** Form of the expert-to-expert messages (GoE draft §3.1.4). */
export type MessageMode = 'token' | 'slot';

/** Coefficients of the router regularisers (GoE draft §3.1.4; Switch; ST-MoE). 0 switches one off. */
export interface GoeRegularisers {
  /** Draft `L_balance = λ_b Σ_m (mean_i p_im − 1/M)²`. */
  balance: number;
  /** Draft `L_entropy = −λ_e mean_i Σ_m p_im log p_im` (mean per token, not sum): λ_e > 0 sharpens each token's routing. */
  entropy: number;
  /** Switch Transformer balance `M Σ_m f_m P_m` (f: fraction of dispatched slots, P: mean router probability). */
  switchBalance: number;
  /** ST-MoE router z-loss `mean_i (logsumexp_m logits_im)²` on the raw router logits. */
  zLoss: number;
  /**
   * Ponder-style cost `mean |u^k − u^{k−1}|` over active tokens, cycles k ≥ 1: the only training signal
   * the halting head W_u gets (halting itself is a hard, non-differentiable decision, draft §3.1.5).
   */
  halting: number;
}

export interface GoeConfig {
  /** Token width d (tokens are `[B, N, d]`). */
  d: number;
  /** Aux routing-feature width da (aux is `[B, N, da]`); 0 = no aux. */
  da: number;
  /** Number of experts M. */
  experts: number;
  /** Experts per token k (top-k); the `dense` router uses all M. */
  k: number;
  /** Refinement cycles K (the cap; tokens may halt earlier), draft §3.1.5. */
  cycles: number;
  /** Router key in `routerRegistry`: `goe`, `dense`, `topk`, … */
  router: string;
  /**
   * Expert key in `expertRegistry` (`mlp` SwiGLU, `attention`, `conv`), or a comma-separated list of
   * keys assigned round robin over the M experts (`'mlp,attention,conv'`: a heterogeneous library).
   */
  expert: string;
  /** Expert-graph key in `graphRegistry`: `static` (`A = row_softmax(Θ)`). */
  graph: string;
  /** Width d_e of the expert input `W_p r` and expert state h. */
  expertDim: number;
  /** Hidden width of each expert (SwiGLU hidden; feed-forward width of `attention`; pointwise expansion of `conv`). */
  expertHidden: number;
  /** γ of the graph entry bias `γ log(ε + Aᵀ q^{k−1})` (goe router, cycles ≥ 1). */
  graphGamma: number;
  /** ε inside that log. */
  graphEps: number;
  /** Whether experts receive the message `Σ_n A[n,m] W_c h_n^{k−1}` (draft §3.1.4). */
  messages: boolean;
  /** Renormalise the kept top-k probabilities to sum to 1 (with k = 1 the gate is then 1 and carries no router gradient). */
  renormalizeGates: boolean;
  /** Halting threshold ε_u: a token stops when `|u^k − u^{k−1}| < ε_u` (k ≥ 1). 0 disables halting. */
  haltEps: number;
  /**
   * `exact`: gather each expert's tokens (host-side index lists, read back synchronously), cost ∝ k;
   * `dense`: every expert on every token, masked, cost ∝ M (no read-back: the WebGPU path);
   * `auto`: exact unless the backend cannot read back synchronously (webgpu).
   */
  dispatch: DispatchMode;
  /** `topk` router: multiplicative input jitter ±jitter during training (Switch Transformer); 0 = off. */
  jitter: number;
  /**
   * Expert capacity `C = ceil(capacityFactor · k · R / M)` token slots per expert and cycle (Switch /
   * GShard); tokens over capacity are dropped (their slot becomes −1). `topk`: 0 = no limit;
   * `expert-choice`: each expert takes its C best tokens, so it must be > 0.
   */
  capacityFactor: number;
  /** `top-p` router: keep the smallest set of experts whose probabilities sum to at least topP. */
  topP: number;
  /** EMA decay β of the co-selection statistics (graph `ema`, router `symphony`; SymphonySMoE: 0.9, from zero). */
  emaBeta: number;
  /** Width of the learned expert embeddings of the `dynamic` graph (A = row_softmax(E Eᵀ / √width)). */
  graphEmbedDim: number;
  /**
   * A user-given topology: `[M][M]` of 0/1, `topology[n][m] = 1` allows the edge n -> m; A is masked
   * by it and renormalised. Every row needs at least one 1. null = every edge allowed.
   */
  topology: number[][] | null;
  /** `token`: per-token messages `Σ_n A[n,m] W_c h_n` (DESIGN.md §4); `slot`: the draft's pooled form. */
  messageMode: MessageMode;
  /** `graphmoe` router: hidden width of the low-rank GRU virtual node (the paper: 0.1 d). Default round(0.1 d), at least 1. */
  graphmoeHidden: number;
  regularisers: GoeRegularisers;
}

/** What `resolveGoeConfig` accepts: any subset; `expertDim`/`expertHidden`/`graphmoeHidden` default from `d`. */
export type GoeConfigInput = Partial<Omit<GoeConfig, 'regularisers'>> & { regularisers?: Partial<GoeRegularisers> };

/**
 * Every default of the layer, in one place. `expertDim` defaults to d, `expertHidden` to 2·expertDim
 * and `graphmoeHidden` to round(0.1 d).
 */
export const GOE_DEFAULTS: Readonly<Omit<GoeConfig, 'expertDim' | 'expertHidden' | 'graphmoeHidden'>> = Object.freeze({
  d: 64,
  da: 16,
  experts: 8,
  k: 2,
  cycles: 3,
  router: 'goe',
  expert: 'mlp',
  graph: 'static',
  graphGamma: 1,
  graphEps: 1e-6,
  messages: true,
  renormalizeGates: true,
  haltEps: 0.01,
  dispatch: 'auto',
  jitter: 0,
  capacityFactor: 0,
  topP: 0.8,
  emaBeta: 0.9,
  graphEmbedDim: 16,
  topology: null,
  messageMode: 'token',
  regularisers: Object.freeze({ balance: 0.01, entropy: 0.001, switchBalance: 0, zLoss: 0.001, halting: 0 }),
});

const TOP_KEYS = [...Object.keys(GOE_DEFAULTS), 'expertDim', 'expertHidden', 'graphmoeHidden'];
const REG_KEYS = Object.keys(GOE_DEFAULTS.regularisers);
const DISPATCH: readonly DispatchMode[] = ['auto', 'exact', 'dense'];
const MESSAGE_MODES: readonly MessageMode[] = ['token', 'slot'];

const check = configChecks((field, expected, received) => new GoeConfigError(field, expected, received));

function key(field: string, v: unknown, known: readonly string[]): string {
  if (typeof v !== 'string' || !known.includes(v)) throw new GoeConfigError(field, `one of ${known.join(', ')}`, v);
  return v;
}

/** One registered expert key or a comma-separated list of them; returned trimmed, joined by ','. */
function expertList(v: unknown): string {
  const known = expertRegistry.keys();
  const kinds = typeof v === 'string' ? expertKinds(v) : [];
  if (kinds.length === 0 || kinds.some((k) => !known.includes(k))) {
    throw new GoeConfigError('expert', `one of ${known.join(', ')}, or a comma-separated list of them`, v);
  }
  return kinds.join(',');
}

/**
 * Fills the defaults and validates. Throws `GoeConfigError` for an unknown key (top level or in
 * `regularisers`), a value of the wrong type or range, `k > experts`, `cycles < 1`, or a router /
 * expert / graph name that is not registered.
 */
export function resolveGoeConfig(partial: GoeConfigInput = {}): GoeConfig {
  if (typeof partial !== 'object' || partial === null) throw new GoeConfigError('(config)', 'an object', partial);
  for (const k of Object.keys(partial)) {
    if (!TOP_KEYS.includes(k)) throw new GoeConfigError(k, `a known key (${TOP_KEYS.join(', ')})`, 'unknown key');
  }
  const regIn: unknown = partial.regularisers ?? {};
  if (typeof regIn !== 'object' || regIn === null) throw new GoeConfigError('regularisers', 'an object', regIn);
  for (const k of Object.keys(regIn)) {
    if (!REG_KEYS.includes(k)) {
      throw new GoeConfigError(`regularisers.${k}`, `a known key (${REG_KEYS.join(', ')})`, 'unknown key');
    }
  }
  const p = { ...GOE_DEFAULTS, ...partial } as Record<string, unknown>;
  const r = { ...GOE_DEFAULTS.regularisers, ...(regIn as Record<string, unknown>) };

  const d = check.int('d', p['d'], 1);
  const experts = check.int('experts', p['experts'], 1);
  const k = check.int('k', p['k'], 1);
  if (k > experts) throw new GoeConfigError('k', `<= experts (${experts})`, k);
  const expertDim = check.int('expertDim', p['expertDim'] ?? d, 1);
  const cfg: GoeConfig = {
    d,
    da: check.int('da', p['da'], 0),
    experts,
    k,
    cycles: check.int('cycles', p['cycles'], 1),
    router: key('router', p['router'], routerRegistry.keys()),
    expert: expertList(p['expert']),
    graph: key('graph', p['graph'], graphRegistry.keys()),
    expertDim,
    expertHidden: check.int('expertHidden', p['expertHidden'] ?? 2 * expertDim, 1),
    graphGamma: check.finite('graphGamma', p['graphGamma']),
    graphEps: check.finite('graphEps', p['graphEps'], 0),
    messages: check.bool('messages', p['messages']),
    renormalizeGates: check.bool('renormalizeGates', p['renormalizeGates']),
    haltEps: check.finite('haltEps', p['haltEps'], 0),
    dispatch: key('dispatch', p['dispatch'], DISPATCH) as DispatchMode,
    jitter: check.finite('jitter', p['jitter'], 0),
    capacityFactor: check.finite('capacityFactor', p['capacityFactor'], 0),
    topP: check.finite('topP', p['topP'], 0),
    emaBeta: check.finite('emaBeta', p['emaBeta'], 0),
    graphEmbedDim: check.int('graphEmbedDim', p['graphEmbedDim'], 1),
    topology: checkTopology(p['topology'], experts),
    messageMode: key('messageMode', p['messageMode'], MESSAGE_MODES) as MessageMode,
    graphmoeHidden: check.int('graphmoeHidden', p['graphmoeHidden'] ?? Math.max(1, Math.round(0.1 * d)), 1),
    regularisers: {
      balance: check.finite('regularisers.balance', r.balance, 0),
      entropy: check.finite('regularisers.entropy', r.entropy, 0),
      switchBalance: check.finite('regularisers.switchBalance', r.switchBalance, 0),
      zLoss: check.finite('regularisers.zLoss', r.zLoss, 0),
      halting: check.finite('regularisers.halting', r.halting, 0),
    },
  };
  if (cfg.graphGamma !== 0 && cfg.graphEps <= 0) {
    throw new GoeConfigError('graphEps', '> 0 when graphGamma != 0 (log(ε + Aᵀq) must stay finite)', cfg.graphEps);
  }
  if (cfg.jitter >= 1) throw new GoeConfigError('jitter', 'a number in [0, 1)', cfg.jitter);
  if (cfg.topP <= 0 || cfg.topP > 1) throw new GoeConfigError('topP', 'a number in (0, 1]', cfg.topP);
  if (cfg.emaBeta >= 1) throw new GoeConfigError('emaBeta', 'a number in [0, 1)', cfg.emaBeta);
  if (cfg.router === 'expert-choice' && cfg.capacityFactor <= 0) {
    throw new GoeConfigError('capacityFactor', '> 0 for the expert-choice router (each expert takes ceil(capacityFactor · k · R / M) tokens)', cfg.capacityFactor);
  }
  return cfg;
}

/** A `[M][M]` 0/1 matrix with a 1 in every row, or null. */
function checkTopology(v: unknown, experts: number): number[][] | null {
  if (v === null || v === undefined) return null;
  const ok =
    Array.isArray(v) &&
    v.length === experts &&
    v.every((row) => Array.isArray(row) && row.length === experts && row.every((x) => x === 0 || x === 1) && row.includes(1));
  if (!ok) throw new GoeConfigError('topology', `null or a ${experts} x ${experts} matrix of 0/1 with a 1 in every row`, v);
  return (v as number[][]).map((row) => row.slice());
}
