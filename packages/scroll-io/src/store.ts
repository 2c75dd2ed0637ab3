import { isAbsolute, join, resolve } from 'node:path';
import type { AbsolutePath, AsyncReadable, GetOptions, RangeQuery } from '@zarrita/storage';
import FileSystemStore from '@zarrita/storage/fs';
import { HttpStore } from './http.js';

/** True for `http://` and `https://` locations. */
export function isUrl(location: string): boolean {
  return /^https?:\/\//i.test(location);
}

/** A normalised location: an absolute filesystem path, or a URL without a trailing slash. */
export function normalizeLocation(location: string): string {
  if (isUrl(location)) return location.replace(/\/+$/, '');
  return isAbsolute(location) ? resolve(location) : resolve(process.cwd(), location);
}

/** The location of `child` (a relative Zarr path such as `labels/ink/0`) below `parent`. */
export function childLocation(parent: string, child: string): string {
  const rel = child.replace(/^\/+|\/+$/g, '');
  if (rel === '') return parent;
  return isUrl(parent) ? `${parent}/${rel}` : join(parent, rel);
}

/**
 * A read-only store rooted at one Zarr node (array or group), on disk or over http(s) (with the
 * retries and on-disk cache set by `configureHttp`).
 */
export function readableStore(location: string): AsyncReadable {
  return isUrl(location) ? new HttpStore(location) : new FileSystemStore(location);
}

/**
 * A store that answers one pending key from bytes already in hand, and everything else from the
 * store below. It lets the reader fetch a chunk's bytes itself (to tell an absent chunk from a
 * present one and to name the chunk in errors) and then hand those same bytes to zarrita's codec
 * pipeline without a second read.
 */
export class HandoffStore implements AsyncReadable {
  readonly #base: AsyncReadable;
  readonly #pending = new Map<string, Uint8Array>();
  constructor(base: AsyncReadable) {
    this.#base = base;
  }
  /** Makes the next `get(key)` answer `bytes`; call {@link release} right after the decode starts. */
  hold(key: AbsolutePath, bytes: Uint8Array): void {
    this.#pending.set(key, bytes);
  }
  release(key: AbsolutePath): void {
    this.#pending.delete(key);
  }
  get(key: AbsolutePath, opts?: GetOptions): Promise<Uint8Array | undefined> {
    const held = this.#pending.get(key);
    if (held) {
      this.#pending.delete(key);
      return Promise.resolve(held);
    }
    return this.#base.get(key, opts);
  }
  getRange(key: AbsolutePath, range: RangeQuery, opts?: GetOptions): Promise<Uint8Array | undefined> {
    if (!this.#base.getRange) throw new Error(`store below ${key} does not support range reads`);
    return this.#base.getRange(key, range, opts);
  }
}
