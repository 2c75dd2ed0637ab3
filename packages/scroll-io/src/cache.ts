import type { VolumeArray } from './dtype.js';
import { ScrollIoOptionError } from './errors.js';

/** Counters of a {@link ChunkCache}, for logs and tests. */
export interface ChunkCacheStats {
  hits: number;
  misses: number;
  evictions: number;
  /** Bytes of decoded chunk data held now. */
  bytes: number;
  entries: number;
  budget: number;
}

interface Entry {
  /** Decoded chunk in C order, or null for a chunk that is absent from the store (all fill value). */
  data: VolumeArray | null;
  bytes: number;
}

/** What an absent chunk costs in the budget: the map entry, not a chunk's worth of fill values. */
const ABSENT_ENTRY_BYTES = 64;

/**
 * A least-recently-used cache of decoded chunks, bounded in bytes, shared by every reader in the
 * process that uses the same instance (by default {@link defaultChunkCache}). Concurrent requests for
 * one chunk share a single load. Cached arrays are shared: callers copy out of them, never write.
 */
export class ChunkCache {
  #budget: number;
  #bytes = 0;
  // Map iteration order is insertion order: re-inserting on every hit keeps the oldest first.
  readonly #entries = new Map<string, Entry>();
  readonly #inflight = new Map<string, { promise: Promise<VolumeArray | null>; token: object; shared: boolean }>();
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  /** @param budgetBytes most bytes of decoded chunks to hold (0 disables caching, loads still dedupe) */
  constructor(budgetBytes: number) {
    this.#budget = checkBudget(budgetBytes);
  }

  get budget(): number {
    return this.#budget;
  }

  /** Changes the byte budget, evicting least-recently-used chunks until it holds. */
  setBudget(budgetBytes: number): void {
    this.#budget = checkBudget(budgetBytes);
    this.#evict();
  }

  /**
   * The chunk under `key`, loading it with `load` on a miss. Returns the shared decoded array, or null
   * when the chunk is absent from the store.
   */
  getOrLoad(key: string, load: () => Promise<VolumeArray | null>): Promise<VolumeArray | null> {
    const hit = this.#entries.get(key);
    if (hit) {
      this.#hits++;
      this.#entries.delete(key);
      this.#entries.set(key, hit);
      return Promise.resolve(hit.data);
    }
    const pending = this.#inflight.get(key);
    if (pending) {
      this.#hits++;
      pending.shared = true;
      return pending.promise;
    }
    this.#misses++;
    const token = {};
    const promise = load().then(
      (data) => {
        // A write that invalidated this key while it loaded replaced the token: drop the stale result.
        if (this.#inflight.get(key)?.token === token) {
          this.#inflight.delete(key);
          this.#insert(key, data);
        }
        return data;
      },
      (err: unknown) => {
        if (this.#inflight.get(key)?.token === token) this.#inflight.delete(key);
        throw err;
      },
    );
    this.#inflight.set(key, { promise, token, shared: false });
    return promise;
  }

  /**
   * Like {@link getOrLoad}, and also says whether the caller holds the only reference to the data:
   * it was loaded for this call alone (no other caller joined the load) and the cache did not keep
   * it. An owner may recycle the data's memory once it is done with it.
   */
  async getOrLoadOwned(key: string, load: () => Promise<VolumeArray | null>): Promise<{ data: VolumeArray | null; owned: boolean }> {
    if (this.#entries.has(key) || this.#inflight.has(key)) return { data: await this.getOrLoad(key, load), owned: false };
    const promise = this.getOrLoad(key, load);
    const record = this.#inflight.get(key);
    const data = await promise;
    // By now the load has settled and left the in-flight map, so no caller can join it any more.
    const owned = data !== null && record !== undefined && !record.shared && this.#entries.get(key)?.data !== data;
    return { data, owned };
  }

  /** Forgets one chunk (after it was rewritten); a load of it in flight will not be cached. */
  invalidate(key: string): void {
    const e = this.#entries.get(key);
    if (e) {
      this.#bytes -= e.bytes;
      this.#entries.delete(key);
    }
    this.#inflight.delete(key);
  }

  /** Forgets every chunk whose key starts with `prefix` (e.g. one array's). */
  invalidatePrefix(prefix: string): void {
    for (const key of [...this.#entries.keys()]) if (key.startsWith(prefix)) this.invalidate(key);
    for (const key of [...this.#inflight.keys()]) if (key.startsWith(prefix)) this.#inflight.delete(key);
  }

  clear(): void {
    this.#entries.clear();
    this.#inflight.clear();
    this.#bytes = 0;
  }

  stats(): ChunkCacheStats {
    return {
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
      bytes: this.#bytes,
      entries: this.#entries.size,
      budget: this.#budget,
    };
  }

  #insert(key: string, data: VolumeArray | null): void {
    const bytes = data ? data.byteLength : ABSENT_ENTRY_BYTES;
    if (bytes > this.#budget) return;
    const old = this.#entries.get(key);
    if (old) {
      this.#bytes -= old.bytes;
      this.#entries.delete(key);
    }
    this.#entries.set(key, { data, bytes });
    this.#bytes += bytes;
    this.#evict();
  }

  #evict(): void {
    for (const [key, e] of this.#entries) {
      if (this.#bytes <= this.#budget) break;
      this.#entries.delete(key);
      this.#bytes -= e.bytes;
      this.#evictions++;
    }
  }
}

function checkBudget(bytes: number): number {
  if (!Number.isFinite(bytes) || bytes < 0) {
    throw new ScrollIoOptionError('budgetBytes', `expected a finite number >= 0, received ${bytes}`);
  }
  return bytes;
}

/** The cache every volume uses unless given its own: 512 MiB of decoded chunks. */
export const defaultChunkCache = new ChunkCache(512 * 1024 * 1024);
