/**
 * Float32 arithmetic helpers that reproduce what the Python runtime's C libraries compute, bit for bit.
 *
 * JavaScript numbers are doubles. A float32 operation `a op b` on float32 inputs equals
 * `Math.fround(a op b)` for +, -, *, / and sqrt (the double result is rounded once more, and for these
 * operations the double rounding is provably harmless). Fused multiply-add is the exception and is
 * emulated exactly by {@link fmaf}.
 *
 * @module numeric
 */

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** Shorthand for `Math.fround`. */
export const f32 = Math.fround;

/**
 * Rounds half to even, as `np.round`, `lrintf` and OpenCV's `cvRound` (SSE2 `cvtss2si`) do.
 * @param {number} x
 * @returns {number}
 */
export function roundHalfEven(x) {
  const r = Math.round(x); // half up
  if (r - x === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/**
 * The float32 next to `r` in the direction of `toward`.
 * @param {number} r a nonzero float32
 * @param {number} toward
 */
function nextF32(r, toward) {
  F32[0] = r;
  if (toward > r === r > 0) U32[0] += 1;
  else U32[0] -= 1;
  return F32[0];
}

/**
 * Single-precision fused multiply-add `round32(a * b + c)` with one rounding, for float32 inputs
 * (what IPP's AVX2/AVX-512 kernels compute with `vfmadd`).
 *
 * The product of two float32 values is exact in a double; the sum is computed with its exact error
 * (TwoSum), which decides the rare case where the double sum lands exactly halfway between two
 * float32 values.
 * @param {number} a
 * @param {number} b
 * @param {number} c
 * @returns {number}
 */
export function fmaf(a, b, c) {
  const p = a * b;
  const s = p + c;
  const r = Math.fround(s);
  if (r === s || r === 0 || !Number.isFinite(s)) return r;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb);
  if (err === 0) return r;
  const other = nextF32(r, s);
  if ((r + other) / 2 !== s) return r; // not a tie: the double already decided correctly
  const up = err > 0;
  return up ? Math.max(r, other) : Math.min(r, other);
}

/**
 * numpy's pairwise summation of a contiguous float32 array (`np.add.reduce` on float32), so that
 * `mean` and `std` agree with numpy to the last bit.
 * @param {Float32Array} a
 * @param {number} [start]
 * @param {number} [n]
 * @returns {number} a float32 value
 */
export function pairwiseSumF32(a, start = 0, n = a.length) {
  if (n < 8) {
    let res = -0; // numpy starts from -0.0 for float sums of < 8 items (exact either way but for -0)
    for (let i = 0; i < n; i++) res = f32(res + a[start + i]);
    return res;
  }
  if (n <= 128) {
    const r = [a[start], a[start + 1], a[start + 2], a[start + 3], a[start + 4], a[start + 5], a[start + 6], a[start + 7]];
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] = f32(r[j] + a[start + i + j]);
    }
    let res = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
    for (; i < n; i++) res = f32(res + a[start + i]);
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return f32(pairwiseSumF32(a, start, n2) + pairwiseSumF32(a, start + n2, n - n2));
}

/**
 * `float(x.mean())` of a float32 array, as numpy computes it.
 * @param {Float32Array} a
 */
export function meanF32(a) {
  return f32(f32(0 + pairwiseSumF32(a)) / a.length);
}

/**
 * `float(x.std())` (ddof 0) of a float32 array, as numpy computes it: float32 mean, float32 squared
 * deviations, pairwise sum, float32 division and square root.
 * @param {Float32Array} a
 * @param {number} [mean] the value of {@link meanF32} when already known
 */
export function stdF32(a, mean = meanF32(a)) {
  const sq = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) {
    const d = f32(a[i] - mean);
    sq[i] = f32(d * d);
  }
  return f32(Math.sqrt(f32(f32(0 + pairwiseSumF32(sq)) / a.length)));
}
