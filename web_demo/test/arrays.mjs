/**
 * Golden-vector array encoding shared by the test tools: `{dtype, shape, base64}` of little-endian
 * bytes (as written by `cxr_edge.evaluation.golden.encode`).
 *
 * @module test/arrays
 */

const TYPES = {
  uint8: Uint8Array,
  int8: Int8Array,
  int32: Int32Array,
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array, // raw halves; see halfToFloat
};

/**
 * Decodes `{dtype, shape, base64}` into a typed array (Node or browser).
 * @param {{dtype: string, shape: number[], base64: string}} entry
 */
export function decodeArray(entry) {
  const bytes = typeof Buffer !== 'undefined'
    ? new Uint8Array(Buffer.from(entry.base64, 'base64'))
    : Uint8Array.from(atob(entry.base64), (c) => c.charCodeAt(0));
  const Type = TYPES[entry.dtype];
  if (!Type) throw new Error(`unsupported dtype ${entry.dtype}`);
  const copy = bytes.slice().buffer;
  let out = new Type(copy);
  if (entry.dtype === 'float16') out = Float32Array.from(out, halfToFloat);
  return { data: out, shape: entry.shape, dtype: entry.dtype };
}

/**
 * Encodes a typed array as `{dtype, shape, base64}`.
 * @param {ArrayBufferView} data
 * @param {number[]} shape
 */
export function encodeArray(data, shape) {
  const dtype = Object.keys(TYPES).find((k) => data instanceof TYPES[k] && k !== 'float16');
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let base64;
  if (typeof Buffer !== 'undefined') base64 = Buffer.from(bytes).toString('base64');
  else {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    base64 = btoa(s);
  }
  return { dtype, shape, base64 };
}

/**
 * IEEE half -> number.
 * @param {number} h
 */
export function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
