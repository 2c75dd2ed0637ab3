/**
 * Adam (Kingma & Ba, 2015) keyed by parameter name, with optional decoupled weight decay (AdamW,
 * Loshchilov & Hutter, 2019).
 *
 * Why not `tf.train.adam`: tfjs' optimisers keep their moment estimates by position in the gradient
 * list, and `tf.variableGrads` drops variables that got no gradient this step (an expert no token
 * was routed to), which shifts every later moment onto the wrong variable. Here the state is keyed by
 * the parameter's dotted name, so a parameter without a gradient is simply not updated that step,
 * and the state saves and restores by name in checkpoints.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Module } from './module.js';

export interface AdamConfig {
  beta1: number;
  beta2: number;
  epsilon: number;
  /** Decoupled weight decay per step, multiplied by the learning rate (0 = plain Adam). */
  weightDecay: number;
}

export const ADAM_DEFAULTS: Readonly<AdamConfig> = Object.freeze({ beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 });

interface Slot {
  m: tf.Variable;
  v: tf.Variable;
  /** Updates applied to this parameter (its own bias-correction count). */
  t: number;
}

export class Adam {
  readonly config: AdamConfig;
  private readonly slots = new Map<string, Slot>();

  constructor(config: Partial<AdamConfig> = {}) {
    this.config = { ...ADAM_DEFAULTS, ...config };
  }

  /**
   * One update: `params` and `grads` are keyed by the same names; parameters without a gradient are
   * left alone.
   */
  apply(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void {
    const { beta1, beta2, epsilon, weightDecay } = this.config;
    // Parameters whose step counts agree (all of them, unless some got no gradient on some step) are
    // updated together, as one flat vector: the update is a dozen element-wise ops whatever the number
    // of parameters, plus one slice per parameter and moment to put the results back. Per parameter it
    // was a dozen ops and eight scalar uploads each; on WebGPU, where every op is a dispatch of fixed
    // cost, that was half of a training step (docs/gpu.md).
    const groups = new Map<number, { name: string; p: tf.Variable; g: tf.Tensor; slot: Slot }[]>();
    for (const [name, g] of grads) {
      const p = params.get(name);
      if (!p) throw new Error(`Adam: gradient for unknown parameter '${name}'`);
      if (g.size !== p.size) throw new Error(`Adam: gradient for '${name}' has shape [${g.shape}], the parameter [${p.shape}]`);
      let s = this.slots.get(name);
      if (!s) {
        // Inside tidy: tf.variable keeps its own reference to the data, and the zerosLike tensors
        // would otherwise stay live (two leaked tensors per parameter on its first step).
        const [m, v] = tf.tidy(() => [tf.variable(tf.zerosLike(p), false), tf.variable(tf.zerosLike(p), false)]);
        s = { m: m as tf.Variable, v: v as tf.Variable, t: 0 };
        this.slots.set(name, s);
      }
      s.t += 1;
      const group = groups.get(s.t) ?? [];
      group.push({ name, p, g, slot: s });
      groups.set(s.t, group);
    }
    for (const [t, group] of groups) {
      tf.tidy(() => {
        const flat = (xs: tf.Tensor[]): tf.Tensor1D =>
          xs.length === 1 ? tf.reshape(xs[0]!, [-1]) : tf.concat(xs.map((x) => tf.reshape(x, [-1])));
        const g = flat(group.map((e) => e.g));
        const m = tf.add(tf.mul(flat(group.map((e) => e.slot.m)), beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(flat(group.map((e) => e.slot.v)), beta2), tf.mul(tf.square(g), 1 - beta2));
        const p = flat(group.map((e) => e.p));
        // Kingma & Ba's section 2 form of the bias correction, exact in real arithmetic:
        // m̂ / (√v̂ + ε) = m · (√(1−β2^t) / (1−β1^t)) / (√v + ε√(1−β2^t)).
        const c2 = Math.sqrt(1 - beta2 ** t);
        let next = tf.sub(p, tf.mul(tf.div(m, tf.add(tf.sqrt(v), epsilon * c2)), (lr * c2) / (1 - beta1 ** t)));
        if (weightDecay > 0) next = tf.sub(next, tf.mul(p, lr * weightDecay));
        let at = 0;
        for (const e of group) {
          const n = e.p.size;
          e.slot.m.assign(tf.reshape(tf.slice(m, at, n), e.p.shape));
          e.slot.v.assign(tf.reshape(tf.slice(v, at, n), e.p.shape));
          e.p.assign(tf.reshape(tf.slice(next, at, n), e.p.shape));
          at += n;
        }
      });
    }
  }

  /**
   * One update of every trainable variable of `modules` for the scalar `loss` (run in a tidy): the
   * gradients are taken and applied here. Parameters are named as checkpoints name them (under each
   * key of a record of modules), so the state stays keyed by name.
   * @returns the loss value; the caller disposes it
   */
  minimize(modules: Module | Record<string, Module>, loss: () => tf.Scalar, lr: number): tf.Scalar {
    const entries: [string, Module][] = isModule(modules) ? [['', modules]] : Object.entries(modules);
    const params = new Map(entries.flatMap(([key, m]) => [...m.variables(key ? `${key}.` : '')].filter(([, v]) => v.trainable)));
    const byId = new Map([...params].map(([name, v]) => [v.name, name]));
    const { value, grads } = tf.variableGrads(() => tf.tidy(loss), [...params.values()]);
    this.apply(params, new Map(Object.entries(grads).map(([id, g]) => [byId.get(id) as string, g])), lr);
    tf.dispose(Object.values(grads));
    return value;
  }

  /** The moment tensors by `NAME/m`, `NAME/v`, and the per-parameter step counts, for checkpoints. */
  state(): { tensors: Map<string, tf.Tensor>; steps: Record<string, number> } {
    const tensors = new Map<string, tf.Tensor>();
    const steps: Record<string, number> = {};
    for (const [name, s] of this.slots) {
      tensors.set(`${name}/m`, s.m);
      tensors.set(`${name}/v`, s.v);
      steps[name] = s.t;
    }
    return { tensors, steps };
  }

  /** Restores what `state()` returned (values as float32 arrays with shapes). */
  restore(values: Map<string, { shape: number[]; data: Float32Array }>, steps: Record<string, number>): void {
    this.dispose();
    for (const [name, t] of Object.entries(steps)) {
      const m = values.get(`${name}/m`);
      const v = values.get(`${name}/v`);
      if (!m || !v) throw new Error(`Adam state for '${name}' is missing its moments`);
      this.slots.set(name, {
        m: tf.variable(tf.tensor(m.data, m.shape, 'float32'), false),
        v: tf.variable(tf.tensor(v.data, v.shape, 'float32'), false),
        t,
      });
    }
  }

  dispose(): void {
    for (const s of this.slots.values()) tf.dispose([s.m, s.v]);
    this.slots.clear();
  }
}

function isModule(x: Module | Record<string, Module>): x is Module {
  return typeof (x as Module).variables === 'function';
}
