/**
 * Worker threads for the phantom writer: a small pool that runs tasks on a worker module, and the
 * worker-side loop that serves them. A worker module is TypeScript when the package runs from its
 * sources (tests, the `goe` command, benchmarks) and JavaScript when it runs built; TypeScript workers
 * register tsx themselves and resolve workspace packages through the `@goe/source` condition, because
 * a worker thread starts without the loaders of the thread that made it.
 */
import { parentPort, Worker, workerData } from 'node:worker_threads';

/** A task's failure as it crosses threads (Error objects lose their class on the way). */
interface Failure {
  name: string;
  message: string;
  stack?: string;
}

interface Request<T> {
  id: number;
  task: T;
}

interface Reply<R> {
  id: number;
  result?: R;
  error?: Failure;
}

interface Pending {
  resolve: (value: never) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  running: Map<number, Pending>;
}

/** Runs TypeScript workers: tsx registered inside the worker, workspace packages from their sources. */
const TS_BOOTSTRAP = [
  "const { workerData } = require('node:worker_threads');",
  'import(workerData.tsx).then((tsx) => { tsx.register(); return import(workerData.entry); });',
].join('\n');

/**
 * The URL of the module `name` (without extension) beside this one: `.ts` when this module is itself
 * loaded from TypeScript sources, else `.js`.
 */
export function siblingModule(name: string): URL {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./${name}${ext}`, import.meta.url);
}

/** Starts a worker thread on `entry`, a `.js` or (with tsx available) `.ts` module. */
function startWorker(entry: URL, data: unknown): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, { workerData: { data }, execArgv: [] });
  let tsx: string;
  try {
    tsx = import.meta.resolve('tsx/esm/api');
  } catch (cause) {
    throw new Error(`cannot start the worker ${entry.pathname}: running from TypeScript sources needs the tsx package`, { cause });
  }
  return new Worker(TS_BOOTSTRAP, { eval: true, execArgv: ['--conditions=@goe/source'], workerData: { tsx, entry: entry.href, data } });
}

/**
 * Worker threads running tasks of type `T` with results `R` on one worker module (which calls
 * {@link serveTasks}). Workers start when tasks need them, up to `size`; a task goes to the worker
 * with the fewest running, so the caller bounds how many are in flight. A task that throws in its
 * worker rejects with an Error carrying the worker's name, message and stack; a worker that dies
 * rejects every task it was running.
 */
export class ThreadPool<T, R> {
  readonly size: number;
  readonly #entry: URL;
  readonly #data: unknown;
  readonly #slots: Slot[] = [];
  #nextId = 0;
  #closed = false;

  constructor(entry: URL, size: number, data: unknown) {
    this.#entry = entry;
    this.size = Math.max(1, Math.floor(size));
    this.#data = data;
  }

  /** Worker threads started so far. */
  get started(): number {
    return this.#slots.length;
  }

  run(task: T): Promise<R> {
    if (this.#closed) return Promise.reject(new Error('thread pool is closed'));
    let slot = this.#slots.reduce<Slot | undefined>((best, s) => (!best || s.running.size < best.running.size ? s : best), undefined);
    if (!slot || (slot.running.size > 0 && this.#slots.length < this.size)) {
      try {
        slot = this.#spawn();
      } catch (err) {
        return Promise.reject(err);
      }
    }
    const id = this.#nextId++;
    const target = slot;
    return new Promise<R>((resolve, reject) => {
      target.running.set(id, { resolve: resolve as (value: never) => void, reject });
      target.worker.postMessage({ id, task } satisfies Request<T>);
    });
  }

  /** Terminates every worker; tasks still running reject. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(
      this.#slots.splice(0).map((s) => {
        this.#abandon(s, new Error('thread pool closed'));
        return s.worker.terminate();
      }),
    );
  }

  #spawn(): Slot {
    const worker = startWorker(this.#entry, this.#data);
    const slot: Slot = { worker, running: new Map() };
    worker.on('message', (reply: Reply<R>) => {
      const p = slot.running.get(reply.id);
      if (!p) return;
      slot.running.delete(reply.id);
      if (reply.error) {
        const err = new Error(reply.error.message);
        err.name = reply.error.name;
        if (reply.error.stack) err.stack = reply.error.stack;
        p.reject(err);
      } else p.resolve(reply.result as never);
    });
    const lost = (err: Error) => {
      const i = this.#slots.indexOf(slot);
      if (i >= 0) this.#slots.splice(i, 1);
      this.#abandon(slot, err);
    };
    worker.on('error', (err) => lost(err));
    worker.on('exit', (code) => lost(new Error(`worker thread exited with code ${code}`)));
    this.#slots.push(slot);
    return slot;
  }

  #abandon(slot: Slot, err: Error): void {
    for (const p of slot.running.values()) p.reject(err);
    slot.running.clear();
  }
}

/**
 * The worker side of a {@link ThreadPool}: answers every task with `handle(task, data)`'s result or
 * its error; `data` is what the pool was given. Tasks overlap when the pool sends several.
 */
export function serveTasks<T, R, D>(handle: (task: T, data: D) => Promise<R>): void {
  const port = parentPort;
  if (!port) throw new Error('serveTasks must run in a worker thread');
  const data = (workerData as { data: D }).data;
  port.on('message', ({ id, task }: Request<T>) => {
    handle(task, data).then(
      (result) => port.postMessage({ id, result } satisfies Reply<R>),
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        port.postMessage({ id, error: { name: e.name, message: e.message, stack: e.stack } } satisfies Reply<R>);
      },
    );
  });
}

/**
 * Runs `fn` over `items`, at most `limit` at once, in order of `items`. On the first failure no
 * further item starts; the running ones are awaited (so nothing is still working when this settles)
 * and the first error is thrown.
 */
export async function forEachBounded<T>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const running = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  for (const item of items) {
    if (failure) break;
    // Started inside an async function, so a synchronous throw is a rejection like any other.
    const p: Promise<void> = (async () => fn(item))().then(
      () => void running.delete(p),
      (error: unknown) => {
        failure ??= { error };
        running.delete(p);
      },
    );
    running.add(p);
    if (running.size >= limit) await Promise.race(running);
  }
  await Promise.all(running);
  if (failure) throw failure.error;
}
