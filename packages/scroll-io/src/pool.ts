import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { NativeCodecName } from './decode-worker.js';

/** Why a pooled decode failed inside the worker: the bytes are not a valid stream of the codec. */
export class DecodeWorkerError extends Error {
  /** True when the worker judged the bytes corrupt (false: the worker itself failed). */
  readonly corrupt: boolean;
  constructor(message: string, corrupt: boolean) {
    super(message);
    this.name = 'DecodeWorkerError';
    this.corrupt = corrupt;
  }
}

interface Job {
  id: number;
  codec: NativeCodecName;
  bytes: Uint8Array;
  /** Decoded size when known ahead (blosc header, zstd frame header), else -1. */
  outSize: number;
  resolve: (out: Uint8Array | null) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | null;
}

interface Reply {
  id: number;
  /** The job's input buffer, handed back for reuse. */
  input?: Uint8Array;
  out?: Uint8Array | null;
  /** The output buffer sent with the job, handed back when the decoder could not use it. */
  target?: ArrayBuffer;
  error?: string;
  corrupt?: boolean;
}

const WORKER_URL = new URL('./decode-worker.js', import.meta.url);

/** Where a {@link DecodePool} gets reused output memory from, and where it returns what went unused. */
export interface OutputBuffers {
  /** A buffer of exactly `n` bytes that no one references, or undefined. */
  take(n: number): ArrayBuffer | undefined;
  /** Takes back a buffer from {@link take} that the decoder did not use. */
  give(buf: ArrayBuffer): void;
}

/**
 * A pool of worker threads that decode chunk bytes with the native codecs of decode-worker.js, so
 * that the reads of many chunks decode on every core while the main thread reads files and assembles
 * regions. Workers start on first use and are unreferenced while idle, so an idle pool never keeps
 * the process alive. When a worker cannot start (no worker support, worker file missing), the pool
 * reports itself unavailable and callers decode in their own thread.
 */
export class DecodePool {
  readonly size: number;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  // Input buffers handed back by the workers: reusing them spares the main thread the page faults of
  // fresh memory, which on Linux cost more than the copy itself.
  readonly #spare: ArrayBuffer[] = [];
  #nextId = 0;
  #broken = false;
  #closed = false;

  readonly #outputs: OutputBuffers | undefined;

  /**
   * @param size most worker threads (default: the number of cores)
   * @param outputs reused memory for decoded chunks: a worker decodes into it when the decoded size is
   *   known ahead, sparing the first-touch page faults of a fresh output
   */
  constructor(size = availableParallelism(), outputs?: OutputBuffers) {
    this.size = Math.max(1, Math.floor(size));
    this.#outputs = outputs;
  }

  /** False once a worker failed to start or the pool was closed: decode in-thread instead. */
  get available(): boolean {
    return !this.#broken && !this.#closed;
  }

  /** Jobs waiting for a free worker (not counting those being decoded). */
  get queued(): number {
    return this.#queue.length;
  }

  /** Worker threads started so far. */
  get started(): number {
    return this.#slots.length;
  }

  /**
   * Decodes `bytes` with `codec` on a worker. The bytes are copied into the message (the caller keeps
   * its buffer); the decoded result is transferred back without a copy.
   * @param outSize the decoded size when known ahead (-1: unknown), to pick a reused output buffer
   * @returns the decoded bytes, or null when the codec configuration is left to the reference decoder
   */
  decode(codec: NativeCodecName, bytes: Uint8Array, outSize = -1): Promise<Uint8Array | null> {
    if (!this.available) return Promise.reject(new Error('decode pool is not available'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, codec, bytes, outSize, resolve, reject });
      this.#pump();
    });
  }

  /** Stops every worker; pending jobs are rejected. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) job.reject(new Error('decode pool closed'));
    await Promise.all(
      this.#slots.splice(0).map((s) => {
        s.job?.reject(new Error('decode pool closed'));
        return s.worker.terminate();
      }),
    );
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      let slot = this.#slots.find((s) => s.job === null);
      if (!slot && this.#slots.length < this.size) slot = this.#spawn();
      if (!slot) return;
      const job = this.#queue.shift() as Job;
      slot.job = job;
      slot.worker.ref();
      // A private copy to transfer: the caller's buffer may be a view into a larger shared one.
      const copy = new Uint8Array(this.#buffer(job.bytes.length), 0, job.bytes.length);
      copy.set(job.bytes);
      // Output memory is taken only now, when a worker is about to decode, so queued jobs hold none.
      const target = job.outSize > 0 ? this.#outputs?.take(job.outSize) : undefined;
      const transfer: ArrayBuffer[] = target ? [copy.buffer, target] : [copy.buffer];
      slot.worker.postMessage({ id: job.id, codec: job.codec, bytes: copy, target }, transfer);
    }
  }

  /** A buffer of at least `n` bytes: a spare one when one fits, else a new one. */
  #buffer(n: number): ArrayBuffer {
    let best = -1;
    for (let i = 0; i < this.#spare.length; i++) {
      const len = this.#spare[i].byteLength;
      if (len >= n && (best < 0 || len < this.#spare[best].byteLength)) best = i;
    }
    if (best >= 0) return this.#spare.splice(best, 1)[0];
    return new ArrayBuffer(n);
  }

  #spawn(): Slot | undefined {
    let worker: Worker;
    try {
      // No inherited execArgv: the worker is plain JavaScript and needs none of the parent's loaders or flags.
      worker = new Worker(WORKER_URL, { workerData: { role: 'goe-decode' }, execArgv: [] });
    } catch {
      this.#fail(new Error('decode worker could not start'));
      return undefined;
    }
    const slot: Slot = { worker, job: null };
    worker.on('message', (reply: Reply) => {
      const job = slot.job;
      if (!job || job.id !== reply.id) return;
      slot.job = null;
      worker.unref();
      if (reply.input && this.#spare.length < 2 * this.size) this.#spare.push(reply.input.buffer as ArrayBuffer);
      if (reply.target) this.#outputs?.give(reply.target);
      if (reply.error !== undefined) job.reject(new DecodeWorkerError(reply.error, reply.corrupt === true));
      else job.resolve(reply.out ?? null);
      this.#pump();
    });
    const lost = (err: Error) => {
      const i = this.#slots.indexOf(slot);
      if (i >= 0) this.#slots.splice(i, 1);
      const job = slot.job;
      slot.job = null;
      // A worker that dies before answering anything means workers do not work here: stop using them.
      if (job) {
        this.#fail(err);
        job.reject(new DecodeWorkerError(`decode worker failed: ${err.message}`, false));
      }
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`decode worker exited with code ${code}`)));
    worker.unref();
    this.#slots.push(slot);
    return slot;
  }

  #fail(err: Error): void {
    this.#broken = true;
    for (const job of this.#queue.splice(0)) job.reject(new DecodeWorkerError(`decode worker failed: ${err.message}`, false));
  }
}
