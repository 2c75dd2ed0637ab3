import { makeRng } from '@goe/tf';
import { describe, expect, it } from 'vitest';
import { GOE_DEFAULTS, resolveGoeConfig } from './config.js';
import { GoeConfigError, RegistryError } from './errors.js';
import { routerRegistry, TopKRouter } from './routers.js';
import { GoeLayer } from './layer.js';

function fieldOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(GoeConfigError);
    return (e as GoeConfigError).field;
  }
  throw new Error('expected a GoeConfigError');
}

describe('resolveGoeConfig', () => {
  it('fills every default and derives the expert widths from d', () => {
    const c = resolveGoeConfig({ d: 32 });
    expect(c.experts).toBe(GOE_DEFAULTS.experts);
    expect(c.k).toBe(2);
    expect(c.cycles).toBe(3);
    expect(c.router).toBe('goe');
    expect(c.expertDim).toBe(32);
    expect(c.expertHidden).toBe(64);
    expect(c.regularisers).toEqual({ balance: 0.01, entropy: 0.001, switchBalance: 0, zLoss: 0.001, halting: 0 });
    const c2 = resolveGoeConfig({ d: 32, expertDim: 16, regularisers: { balance: 0 } });
    expect(c2.expertHidden).toBe(32);
    expect(c2.regularisers.balance).toBe(0);
    expect(c2.regularisers.zLoss).toBe(0.001);
  });

  it('names the field of every bad value', () => {
    expect(fieldOf(() => resolveGoeConfig({ experts: 4, k: 5 }))).toBe('k');
    expect(fieldOf(() => resolveGoeConfig({ cycles: 0 }))).toBe('cycles');
    expect(fieldOf(() => resolveGoeConfig({ d: 2.5 }))).toBe('d');
    expect(fieldOf(() => resolveGoeConfig({ da: -1 }))).toBe('da');
    expect(fieldOf(() => resolveGoeConfig({ router: 'nope' }))).toBe('router');
    expect(fieldOf(() => resolveGoeConfig({ expert: 'transformer?' }))).toBe('expert');
    expect(fieldOf(() => resolveGoeConfig({ graph: 'dynamic?' }))).toBe('graph');
    expect(fieldOf(() => resolveGoeConfig({ dispatch: 'capacity' as never }))).toBe('dispatch');
    expect(fieldOf(() => resolveGoeConfig({ haltEps: -0.1 }))).toBe('haltEps');
    expect(fieldOf(() => resolveGoeConfig({ graphGamma: Number.NaN }))).toBe('graphGamma');
    expect(fieldOf(() => resolveGoeConfig({ graphEps: 0 }))).toBe('graphEps');
    expect(fieldOf(() => resolveGoeConfig({ jitter: 1 }))).toBe('jitter');
    expect(fieldOf(() => resolveGoeConfig({ messages: 'yes' as never }))).toBe('messages');
    expect(fieldOf(() => resolveGoeConfig({ regularisers: { balance: -1 } }))).toBe('regularisers.balance');
    expect(fieldOf(() => resolveGoeConfig({ kk: 2 } as never))).toBe('kk');
    expect(fieldOf(() => resolveGoeConfig({ regularisers: { blance: 1 } as never }))).toBe('regularisers.blance');
    const e = (() => {
      try {
        resolveGoeConfig({ experts: 4, k: 5 });
      } catch (err) {
        return err as GoeConfigError;
      }
      return undefined;
    })();
    expect(e?.message).toContain("'k' must be <= experts (4); got 5");
  });

  it('accepts a router once it is registered, and refuses a duplicate key', () => {
    expect(fieldOf(() => resolveGoeConfig({ router: 'my-topk' }))).toBe('router');
    routerRegistry.register('my-topk', (cfg, rng) => new TopKRouter(cfg, rng));
    const c = resolveGoeConfig({ router: 'my-topk', d: 8, da: 0, experts: 2, k: 1, cycles: 1 });
    const layer = new GoeLayer(c, makeRng(1));
    expect(layer.router).toBeInstanceOf(TopKRouter);
    layer.dispose();
    expect(() => routerRegistry.register('my-topk', (cfg, rng) => new TopKRouter(cfg, rng))).toThrow(RegistryError);
    const keys = routerRegistry.keys();
    expect(keys.slice(0, 3)).toEqual(['goe', 'dense', 'topk']);
    expect(keys.at(-1)).toBe('my-topk');
    expect(keys.filter((k) => k === 'my-topk')).toHaveLength(1);
  });
});
