/**
 * A registry of pluggable parts keyed by name (routers, experts, expert graphs). The config names a
 * part by its key; validation lists the keys that are registered, so a part registered by a user
 * becomes a valid config value at once.
 */
import { RegistryError } from './errors.js';

export class Registry<F> {
  private readonly entries = new Map<string, F>();

  constructor(
    /** What the registry holds, for messages (`router`, `expert`, `graph`). */
    readonly kind: string,
  ) {}

  /** Adds `factory` under `key`; throws `RegistryError` if the key is taken (use `replace` to override). */
  register(key: string, factory: F, options: { replace?: boolean } = {}): void {
    if (!key) throw new RegistryError(this.kind, key, 'empty key');
    if (this.entries.has(key) && !options.replace) {
      throw new RegistryError(this.kind, key, 'already registered (pass { replace: true } to override)');
    }
    this.entries.set(key, factory);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** The factory for `key`; throws `RegistryError` naming the registered keys if there is none. */
  get(key: string): F {
    const f = this.entries.get(key);
    if (!f) throw new RegistryError(this.kind, key, `not registered; known: ${this.keys().join(', ')}`);
    return f;
  }

  /** Registered keys in registration order. */
  keys(): string[] {
    return [...this.entries.keys()];
  }
}
