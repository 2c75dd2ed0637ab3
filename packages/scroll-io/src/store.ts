import { open } from 'node:fs/promises';
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
  return isUrl(location) ? new HttpStore(location) : new LocalStore(location);
}

/**
 * Chunk-sized ArrayBuffers kept for reuse. Touching fresh memory (first-touch page faults) ran at
 * about 1 GB/s on Linux VMs, slower than reading a chunk file from the page cache or copying it, so
 * buffers that a read has finished with are handed back here and the next chunk file is read into
 * one. Only buffers registered with {@link markRecyclable} (those no one else can hold: chunk files
 * read by {@link LocalStore}, native decoder outputs) are taken back, and at most `maxBytes` in all.
 */
export class BufferRecycler {
  readonly maxBuffers: number;
  readonly maxBytes: number;
  readonly #free: ArrayBuffer[] = [];
  readonly #recyclable = new WeakSet<ArrayBuffer>();
  #bytes = 0;
  constructor(maxBuffers: number, maxBytes: number) {
    this.maxBuffers = maxBuffers;
    this.maxBytes = maxBytes;
  }
  /** Bytes held for reuse now. */
  get bytes(): number {
    return this.#bytes;
  }
  /** Registers `buf` as owned by whoever holds it now, so that it may be given back later. */
  markRecyclable(buf: ArrayBuffer): void {
    this.#recyclable.add(buf);
  }
  /**
   * A buffer of at least `n` bytes and at most twice that (so small files do not pin large buffers),
   * the smallest such one held; a new one when none fits.
   */
  take(n: number): ArrayBuffer {
    let best = -1;
    for (let i = 0; i < this.#free.length; i++) {
      const len = this.#free[i].byteLength;
      if (len >= n && len <= 2 * n && (best < 0 || len < this.#free[best].byteLength)) best = i;
    }
    if (best < 0) {
      const fresh = new ArrayBuffer(n);
      this.#recyclable.add(fresh);
      return fresh;
    }
    const buf = this.#free.splice(best, 1)[0];
    this.#bytes -= buf.byteLength;
    return buf;
  }
  /** A held buffer of exactly `n` bytes (to decode a chunk into), or undefined. */
  takeExact(n: number): ArrayBuffer | undefined {
    const i = this.#free.findIndex((b) => b.byteLength === n);
    if (i < 0) return undefined;
    const buf = this.#free.splice(i, 1)[0];
    this.#bytes -= buf.byteLength;
    return buf;
  }
  /**
   * Hands `buf` back for reuse. The caller promises nothing references it any more; buffers never
   * registered as recyclable (and detached ones) are ignored.
   */
  give(buf: ArrayBuffer): void {
    if (!this.#recyclable.has(buf) || buf.byteLength === 0 || this.#free.includes(buf)) return;
    if (this.#free.length >= this.maxBuffers || this.#bytes + buf.byteLength > this.maxBytes) return;
    this.#free.push(buf);
    this.#bytes += buf.byteLength;
  }
}

/** The process-wide recycler of chunk buffers used by local reads. */
export const chunkBuffers = new BufferRecycler(16, 64 * 1024 * 1024);

/**
 * A read-only store over a local directory that reads each file with one positioned read into a
 * buffer of the file's size. `fs.promises.readFile` (what zarrita's FileSystemStore uses) reads in
 * 512 KiB pieces and joins them, which made reading 2 MiB chunk files 3-10x slower than this.
 * Buffers start at offset 0 of their own ArrayBuffer (recycled through {@link chunkBuffers}, so
 * possibly longer than the file), so typed-array views of any dtype fit.
 */
export class LocalStore implements AsyncReadable {
  readonly root: string;
  readonly #ranges: FileSystemStore;
  constructor(root: string) {
    this.root = root;
    this.#ranges = new FileSystemStore(root);
  }
  async get(key: AbsolutePath, opts: GetOptions = {}): Promise<Uint8Array | undefined> {
    opts.signal?.throwIfAborted();
    let fh;
    try {
      fh = await open(join(this.root, key.replace(/^\/+/, '')), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    try {
      const { size } = await fh.stat();
      const buf = new Uint8Array(chunkBuffers.take(size), 0, size);
      let got = 0;
      // One read is the rule; the loop only covers short reads (e.g. network filesystems).
      while (got < size) {
        const { bytesRead } = await fh.read(buf, got, size - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === size ? buf : buf.subarray(0, got);
    } finally {
      await fh.close();
    }
  }
  getRange(key: AbsolutePath, range: RangeQuery, opts?: GetOptions): Promise<Uint8Array | undefined> {
    return this.#ranges.getRange(key, range, opts);
  }
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
