/**
 * Typed errors of @goe/scroll-io. Each names the file, chunk or field at fault, so that a bad volume
 * fails loudly with a message that says where to look, and carries the underlying `cause`.
 */

/** Base class of every error raised while reading or writing Zarr stores. */
export class ZarrError extends Error {
  /** The file or directory at fault. */
  readonly path: string;
  constructor(message: string, path: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.path = path;
  }
}

/** No `.zarray` / `.zgroup` / `zarr.json` where an array or group was expected. */
export class ZarrNotFoundError extends ZarrError {
  /** The metadata files that were looked for. */
  readonly tried: string[];
  constructor(path: string, tried: string[], what = 'Zarr array or group', options?: { cause?: unknown }) {
    super(`${what} not found at ${path} (looked for ${tried.join(', ')})`, path, options);
    this.tried = tried;
  }
}

/** Metadata present but unreadable, malformed or inconsistent (names the file and the field). */
export class ZarrMetadataError extends ZarrError {
  /** The metadata field at fault (e.g. `chunks`, `multiscales[0].datasets`). */
  readonly field: string;
  constructor(path: string, field: string, message: string, options?: { cause?: unknown }) {
    super(`${path}: field '${field}': ${message}`, path, options);
    this.field = field;
  }
}

/** A data type or codec this package cannot handle. */
export class ZarrUnsupportedError extends ZarrError {}

/** A chunk file that exists but cannot be decoded into a chunk of the declared shape and dtype. */
export class ZarrChunkError extends ZarrError {
  /** The chunk key inside the array (e.g. `0.1.2` or `c/0/1/2`). */
  readonly chunkKey: string;
  constructor(path: string, chunkKey: string, message: string, options?: { cause?: unknown }) {
    super(`chunk '${chunkKey}' of ${path}: ${message}`, path, options);
    this.chunkKey = chunkKey;
  }
}

/** A region whose rank, values or bounds do not fit the array. */
export class ZarrRegionError extends ZarrError {
  /** `offset` or `shape`. */
  readonly field: string;
  constructor(path: string, field: string, message: string) {
    super(`region.${field} for ${path}: ${message}`, path);
    this.field = field;
  }
}

/** Data of a different dtype than the array's handed to `write`. */
export class ZarrDtypeError extends ZarrError {
  readonly expected: string;
  readonly received: string;
  constructor(path: string, expected: string, received: string) {
    super(`${path}: write expects ${expected} data (a ${expected} typed array), received ${received}`, path);
    this.expected = expected;
    this.received = received;
  }
}

/** Data whose element count does not match the region it is written to. */
export class ZarrShapeMismatchError extends ZarrError {
  readonly expected: number;
  readonly received: number;
  constructor(path: string, regionShape: readonly number[], expected: number, received: number) {
    super(
      `${path}: region shape [${regionShape.join(', ')}] holds ${expected} elements, data has ${received}`,
      path,
    );
    this.expected = expected;
    this.received = received;
  }
}

/** An array or group already exists where one is being created. */
export class ZarrExistsError extends ZarrError {
  constructor(path: string) {
    super(`${path} already holds a Zarr array or group (pass overwrite: true to replace it)`, path);
  }
}

/** Invalid options passed to a function of this package (names the option). */
export class ScrollIoOptionError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`option '${field}': ${message}`);
    this.name = new.target.name;
    this.field = field;
  }
}

/** A PNG that cannot be read or written as asked. */
export class PngError extends Error {
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(`${path}: ${message}`, options);
    this.name = new.target.name;
    this.path = path;
  }
}
