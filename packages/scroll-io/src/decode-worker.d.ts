/** Codecs with a native decoder in decode-worker.js. */
export type NativeCodecName = 'blosc' | 'zstd' | 'gzip' | 'zlib';

/** Thrown for a chunk whose bytes are not a valid stream of the codec. */
export declare class CorruptChunkError extends Error {}

/** Decoded size from a blosc header, or -1 when `src` is shorter than a blosc header. */
export declare function bloscDecodedSize(src: Uint8Array): number;

/**
 * Decodes a blosc 1.x buffer natively; null for the blosclz/snappy inner codecs and for bit-shuffled
 * blocks that end in a partial group of 8 elements (left to the reference decoder).
 */
export declare function decodeBlosc(src: Uint8Array, target?: ArrayBuffer): Uint8Array | null;

/** Decodes a zstd stream (one or more frames), into `target` when it has exactly the declared size. */
export declare function decodeZstd(src: Uint8Array, target?: ArrayBuffer): Uint8Array;

/**
 * Decodes one chunk's bytes natively. The result owns its buffer from offset 0. Null when this
 * configuration is left to the reference decoder. `target`: reused output memory (blosc, zstd), used
 * (and then the result's buffer) when its size is exactly the decoded size.
 */
export declare function decodeNative(codec: NativeCodecName, src: Uint8Array, target?: ArrayBuffer): Uint8Array | null;
