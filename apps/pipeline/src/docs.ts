/**
 * The text the sequence task trains on by default: the project's own documentation, read at run time
 * from the repository the command runs in — nothing to download, and it is real prose, Markdown,
 * tables and code, with enough structure for context to pay off over a unigram guess.
 */
import { existsSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from './errors.js';

/** The nearest folder at or above `from` that holds `nx.json` (the workspace root), if any. */
export function findProjectRoot(from: string): string | undefined {
  let dir = resolve(from);
  for (;;) {
    if (existsSync(join(dir, 'nx.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/**
 * The project's documentation files: `README.md` at the root, then `packages/*\/README.md` and
 * `apps/*\/README.md`, each group sorted by name, so the same checkout always gives the same text.
 * The root is found above this module, else above the working directory.
 * @throws ConfigError (`data.text.files`) when no workspace or no README is found
 */
export function projectDocumentation(root?: string): string[] {
  const base = root ?? findProjectRoot(dirname(fileURLToPath(import.meta.url))) ?? findProjectRoot(process.cwd());
  if (!base) {
    throw new ConfigError('data.text.files', 'is empty and no project folder (with nx.json) was found to read the documentation from; list text files');
  }
  const files: string[] = [];
  if (existsSync(join(base, 'README.md'))) files.push(join(base, 'README.md'));
  for (const group of ['packages', 'apps']) {
    const dir = join(base, group);
    if (!existsSync(dir)) continue;
    const names = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
    for (const name of names) {
      const readme = join(dir, name, 'README.md');
      if (existsSync(readme)) files.push(readme);
    }
  }
  if (files.length === 0) throw new ConfigError('data.text.files', `is empty and ${base} has no README.md files; list text files`);
  return files;
}

/** A text file's bytes, as read. */
export interface TextFile {
  path: string;
  bytes: Uint8Array;
}

/**
 * Reads `files` as raw bytes (the byte tokens are the file's UTF-8 bytes, unchanged).
 * @throws ConfigError (`data.text.files`) naming a file that cannot be read or is empty
 */
export async function readTextFiles(files: readonly string[]): Promise<TextFile[]> {
  const out: TextFile[] = [];
  for (const path of files) {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(path));
    } catch (err) {
      throw new ConfigError('data.text.files', `cannot read ${path}`, { cause: err });
    }
    if (bytes.length === 0) throw new ConfigError('data.text.files', `${path} is empty`);
    out.push({ path, bytes });
  }
  return out;
}
