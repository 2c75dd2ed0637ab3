/**
 * Element types this package reads and writes, their typed arrays and their Zarr spellings.
 * 64-bit integers, bool, float16 and strings are out of scope: scroll volumes are uint8/uint16 and
 * predictions float32.
 */

export type Dtype = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'float64';

/** Any typed array a volume can hold. */
export type VolumeArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array;

/** The typed array of each dtype. */
export interface DtypeArrayMap {
  uint8: Uint8Array;
  int8: Int8Array;
  uint16: Uint16Array;
  int16: Int16Array;
  uint32: Uint32Array;
  int32: Int32Array;
  float32: Float32Array;
  float64: Float64Array;
}

type Ctor = { new (length: number): VolumeArray; new (buffer: ArrayBuffer): VolumeArray; readonly BYTES_PER_ELEMENT: number; readonly name: string };

const CTORS: Record<Dtype, Ctor> = {
  uint8: Uint8Array,
  int8: Int8Array,
  uint16: Uint16Array,
  int16: Int16Array,
  uint32: Uint32Array,
  int32: Int32Array,
  float32: Float32Array,
  float64: Float64Array,
};

/** Zarr v2 `dtype` strings (little-endian; single bytes use `|`). */
const V2: Record<Dtype, string> = {
  uint8: '|u1',
  int8: '|i1',
  uint16: '<u2',
  int16: '<i2',
  uint32: '<u4',
  int32: '<i4',
  float32: '<f4',
  float64: '<f8',
};

export const DTYPES: readonly Dtype[] = Object.keys(CTORS) as Dtype[];

export function isDtype(x: unknown): x is Dtype {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(CTORS, x);
}

/** A new zero-filled typed array of `dtype`. */
export function allocate<D extends Dtype>(dtype: D, length: number): DtypeArrayMap[D] {
  return new CTORS[dtype](length) as DtypeArrayMap[D];
}

/** A typed array of `dtype` over the whole of `buffer` (whose length must be a multiple of the element size). */
export function viewOf<D extends Dtype>(dtype: D, buffer: ArrayBuffer): DtypeArrayMap[D] {
  return new CTORS[dtype](buffer) as DtypeArrayMap[D];
}

export function bytesPerElement(dtype: Dtype): number {
  return CTORS[dtype].BYTES_PER_ELEMENT;
}

/** The dtype of a typed array, or undefined for anything else (plain arrays, BigInt64Array, …). */
export function dtypeOf(data: unknown): Dtype | undefined {
  for (const d of DTYPES) if (data instanceof CTORS[d]) return d;
  return undefined;
}

/** A short description of a value's type for error messages. */
export function describeType(data: unknown): string {
  const d = dtypeOf(data);
  if (d) return d;
  if (data === null) return 'null';
  if (typeof data === 'object') return (data as object).constructor?.name ?? 'object';
  return typeof data;
}

export function v2DtypeString(dtype: Dtype): string {
  return V2[dtype];
}

export function isFloatDtype(dtype: Dtype): boolean {
  return dtype === 'float32' || dtype === 'float64';
}
