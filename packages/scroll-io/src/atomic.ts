import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** Create missing parent directories (default true). */
  mkdir?: boolean;
  /**
   * fsync the file before the rename (default false). The rename alone already guarantees that a
   * reader or a crashed process never sees a partial file; fsync adds durability across power loss,
   * worth its cost for checkpoints, not for every chunk.
   */
  fsync?: boolean;
}

let counter = 0;

/**
 * Writes `data` to `path` so that the file is either absent/old or complete: the bytes go to a
 * temporary file in the same directory (same filesystem, so the rename is atomic), which is then
 * renamed over `path`. On any failure the temporary file is removed and the error rethrown.
 */
export async function atomicWriteFile(
  path: string,
  data: Uint8Array | string,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const dir = dirname(path);
  if (options.mkdir ?? true) await mkdir(dir, { recursive: true });
  // Hidden name: Zarr readers list keys by name and skip dot-files; unique per process and call.
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${counter++}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx');
  try {
    try {
      await fh.writeFile(data);
      if (options.fsync) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/**
 * Puts the finished directory `tmp` at `target` (same filesystem) so that readers see either the old
 * directory or the whole new one, never a mix or nothing: an existing `target` is first renamed aside,
 * then `tmp` renamed into place, and only then the old one deleted; if the second rename fails the old
 * directory is moved back. Used for outputs made of several files (checkpoints, fragments, Zarr
 * arrays written whole).
 */
export async function replaceDirectory(tmp: string, target: string): Promise<void> {
  const old = join(dirname(target), `.${basename(target)}.old-${process.pid}-${randomBytes(4).toString('hex')}`);
  let moved = false;
  try {
    await rename(target, old);
    moved = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  try {
    await rename(tmp, target);
  } catch (err) {
    if (moved) await rename(old, target).catch(() => undefined);
    throw err;
  }
  if (moved) await rm(old, { recursive: true, force: true });
}
