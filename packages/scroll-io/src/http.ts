/**
 * Reading Zarr stores over http(s) the way scroll volumes are served (static hosts, CDNs): transient
 * failures (5xx, 429, dropped connections, timeouts) are retried with exponential backoff a bounded
 * number of times, a missing key (404) is an absent chunk or metadata file, and chunk bytes can be
 * kept in an on-disk cache so a volume read twice is downloaded once.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AbsolutePath, AsyncReadable, GetOptions, RangeQuery } from '@zarrita/storage';
import { atomicWriteFile } from './atomic.js';
import { ScrollIoOptionError, ZarrError } from './errors.js';

/** Options of http(s) reads (see {@link configureHttp}). */
export interface HttpOptions {
  /**
   * Directory of the on-disk chunk cache (default none). Chunk bytes (not metadata, which may change)
   * are stored under the SHA-256 of their URL, each file written atomically, so several processes can
   * share one cache directory.
   */
  cacheDir?: string;
  /** Most attempts per request, the first included (default 5). */
  maxAttempts: number;
  /** Delay before the first retry; each further retry waits twice as long (default 250 ms). */
  baseDelayMs: number;
  /** Longest single wait between attempts (default 10 s). */
  maxDelayMs: number;
  /** A request that has not completed after this long is aborted and counts as transient (default 60 s). */
  timeoutMs: number;
}

export const DEFAULT_HTTP_OPTIONS: Readonly<HttpOptions> = { maxAttempts: 5, baseDelayMs: 250, maxDelayMs: 10_000, timeoutMs: 60_000 };

let current: HttpOptions = { ...DEFAULT_HTTP_OPTIONS };

/** Validates a partial {@link HttpOptions} against the defaults; throws naming the bad field. */
export function resolveHttpOptions(partial: Partial<HttpOptions> = {}): HttpOptions {
  const known = new Set(['cacheDir', ...Object.keys(DEFAULT_HTTP_OPTIONS)]);
  for (const k of Object.keys(partial)) if (!known.has(k)) throw new ScrollIoOptionError(`http.${k}`, 'unknown option');
  const o: HttpOptions = { ...DEFAULT_HTTP_OPTIONS, ...partial };
  if (o.cacheDir !== undefined && (typeof o.cacheDir !== 'string' || o.cacheDir === '')) {
    throw new ScrollIoOptionError('http.cacheDir', `expected a directory path, received ${JSON.stringify(o.cacheDir)}`);
  }
  if (!Number.isInteger(o.maxAttempts) || o.maxAttempts < 1) throw new ScrollIoOptionError('http.maxAttempts', `expected an integer >= 1, received ${o.maxAttempts}`);
  for (const k of ['baseDelayMs', 'maxDelayMs', 'timeoutMs'] as const) {
    if (typeof o[k] !== 'number' || !(o[k] >= 0) || !Number.isFinite(o[k])) throw new ScrollIoOptionError(`http.${k}`, `expected a finite number >= 0, received ${o[k]}`);
  }
  return o;
}

/**
 * Sets the options of every http(s) store opened from now on in this process (like the chunk cache,
 * a process-wide setting: one host, one policy). Returns the options now in force.
 */
export function configureHttp(partial: Partial<HttpOptions>): HttpOptions {
  current = resolveHttpOptions(partial);
  return { ...current };
}

/** The http options in force. */
export function httpOptions(): HttpOptions {
  return { ...current };
}

/** An http(s) request that failed for good: a non-retryable status, or retries exhausted. */
export class ZarrHttpError extends ZarrError {
  /** The URL requested. */
  readonly url: string;
  /** The last HTTP status, or undefined when the connection itself failed. */
  readonly status?: number;
  /** Attempts made. */
  readonly attempts: number;
  constructor(url: string, message: string, status: number | undefined, attempts: number, options?: { cause?: unknown }) {
    super(`${url}: ${message}${attempts > 1 ? ` (after ${attempts} attempts)` : ''}`, url, options);
    this.url = url;
    this.status = status;
    this.attempts = attempts;
  }
}

/** Network error codes worth retrying: the peer or the path dropped, not a bad address. */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

function errorCode(err: unknown): string | undefined {
  let e = err as { code?: unknown; cause?: unknown; name?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (typeof e.code === 'string') return e.code;
    if (e.name === 'TimeoutError') return 'ETIMEDOUT';
    e = e.cause as typeof e;
  }
  return undefined;
}

const METADATA_KEYS = new Set(['zarr.json', '.zarray', '.zattrs', '.zgroup']);

/**
 * A read-only Zarr store over http(s) with bounded retries, exponential backoff and an optional
 * on-disk cache of chunk bytes. 404 answers `undefined` (an absent key); other 4xx throw
 * {@link ZarrHttpError} at once; 5xx, 408, 429 and dropped connections are retried.
 */
export class HttpStore implements AsyncReadable {
  readonly url: string;
  readonly options: HttpOptions;
  /** Requests sent (attempts, retries included), for logs and tests. */
  requests = 0;

  constructor(url: string, options: Partial<HttpOptions> = httpOptions()) {
    this.url = url.replace(/\/+$/, '');
    this.options = resolveHttpOptions(options);
  }

  get(key: AbsolutePath, opts?: GetOptions): Promise<Uint8Array | undefined> {
    return this.#cached(key, undefined, opts);
  }

  getRange(key: AbsolutePath, range: RangeQuery, opts?: GetOptions): Promise<Uint8Array | undefined> {
    return this.#cached(key, range, opts);
  }

  async #cached(key: AbsolutePath, range: RangeQuery | undefined, opts?: GetOptions): Promise<Uint8Array | undefined> {
    const url = `${this.url}${key}`;
    const name = key.slice(key.lastIndexOf('/') + 1);
    const dir = this.options.cacheDir;
    const rangeTag = range ? ('suffixLength' in range ? `#-${range.suffixLength}` : `#${range.offset}+${range.length}`) : '';
    const file = dir && !METADATA_KEYS.has(name) ? join(dir, createHash('sha256').update(url + rangeTag).digest('hex')) : undefined;
    if (file) {
      try {
        return new Uint8Array(await readFile(file));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new ZarrError(`${file}: cached copy of ${url} cannot be read: ${(err as Error).message}`, file, { cause: err });
      }
    }
    const bytes = await this.#fetch(url, range, opts);
    // Absent keys are not cached on disk: the chunk may be written later (the memory cache remembers them).
    if (file && bytes) await atomicWriteFile(file, bytes);
    return bytes;
  }

  async #fetch(url: string, range: RangeQuery | undefined, opts?: GetOptions): Promise<Uint8Array | undefined> {
    const headers: Record<string, string> = {};
    if (range) headers.Range = 'suffixLength' in range ? `bytes=-${range.suffixLength}` : `bytes=${range.offset}-${range.offset + range.length - 1}`;
    const { maxAttempts, baseDelayMs, maxDelayMs, timeoutMs } = this.options;
    let lastStatus: number | undefined;
    let lastError: unknown;
    for (let attempt = 1; ; attempt++) {
      this.requests++;
      const signals = [AbortSignal.timeout(timeoutMs)];
      if (opts?.signal) signals.push(opts.signal);
      let retryable: boolean;
      try {
        const res = await fetch(url, { headers, signal: AbortSignal.any(signals) });
        lastStatus = res.status;
        if (res.status === 404) {
          await res.body?.cancel();
          return undefined;
        }
        if (res.status === 200 || res.status === 206) return new Uint8Array(await res.arrayBuffer());
        await res.body?.cancel();
        retryable = res.status >= 500 || res.status === 408 || res.status === 429;
        lastError = undefined;
        if (!retryable) throw new ZarrHttpError(url, `HTTP ${res.status} ${res.statusText}`, res.status, attempt);
      } catch (err) {
        if (err instanceof ZarrHttpError) throw err;
        if (opts?.signal?.aborted) throw err;
        const code = errorCode(err);
        retryable = code !== undefined && TRANSIENT_CODES.has(code);
        lastError = err;
        lastStatus = undefined;
        if (!retryable) throw new ZarrHttpError(url, `request failed: ${(err as Error).message}${code ? ` (${code})` : ''}`, undefined, attempt, { cause: err });
      }
      if (attempt >= maxAttempts) {
        const what = lastStatus !== undefined ? `HTTP ${lastStatus}` : `request failed: ${(lastError as Error)?.message} (${errorCode(lastError)})`;
        throw new ZarrHttpError(url, `${what}; giving up`, lastStatus, attempt, { cause: lastError });
      }
      // Exponential backoff (base * 2^(attempt-1), capped): gives an overloaded host room to recover.
      await new Promise((ok) => setTimeout(ok, Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1))));
    }
  }
}
