/**
 * `cv2.resize` of float32 greyscale images, reproduced bit for bit (the opencv-python 5 wheel the
 * Python runtime uses, on x86-64).
 *
 * - `INTER_AREA` when shrinking follows OpenCV's own code: for integer factors the "fast" block
 *   average (2x2 blocks summed as `(s00 + s01) + (s10 + s11)` by its 4-lane SIMD loop, the leftover
 *   columns in scalar order), otherwise the generic weighted decimation table.
 * - `INTER_LINEAR` goes through Intel IPP in that wheel (OpenCV's IPP HAL): horizontal pass first,
 *   each output `fma(s1 - s0, fx, s0)` in float32 with `fx = float32(((x + 0.5) * src / dst - 0.5) - sx)`
 *   computed in double, borders clamped to the edge pixel.
 *
 * @module resize
 */

import { f32, fmaf } from './numeric.js';

/**
 * A greyscale float32 image.
 * @typedef {{width: number, height: number, data: Float32Array}} FloatImage
 */

/**
 * A rectangle of a larger float32 image, read in place: pixel (y, x) is `data[offset + y * stride + x]`.
 * The resizes take one, so that cropping a full-size radiograph's border copies nothing (a 2560 x 2130
 * image is 22 MB of float32).
 * @typedef {FloatImage & {stride?: number, offset?: number}} FloatView
 */

/**
 * The rows of a view, compact.
 * @param {FloatView} src
 * @returns {FloatImage}
 */
export function compact(src) {
  const { width, height } = src;
  const stride = src.stride ?? width;
  const offset = src.offset ?? 0;
  if (stride === width) return { width, height, data: src.data.slice(offset, offset + width * height) };
  const data = new Float32Array(width * height);
  for (let y = 0; y < height; y++) data.set(src.data.subarray(offset + y * stride, offset + y * stride + width), y * width);
  return { width, height, data };
}

/**
 * `cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)` for float32 images.
 * @param {FloatView} src
 * @param {number} width
 * @param {number} height
 * @returns {FloatImage}
 */
export function resizeArea(src, width, height) {
  if (width === src.width && height === src.height) return compact(src);
  const invX = width / src.width;
  const invY = height / src.height;
  if (invX > 1 || invY > 1) throw new RangeError('INTER_AREA is only used for shrinking');
  const scaleX = 1 / invX;
  const scaleY = 1 / invY;
  const ix = Math.round(scaleX);
  const iy = Math.round(scaleY);
  const fast = Math.abs(scaleX - ix) < Number.EPSILON && Math.abs(scaleY - iy) < Number.EPSILON;
  return fast ? areaFast(src, width, height, ix, iy) : areaGeneric(src, width, height, scaleX, scaleY);
}

/**
 * `resizeArea`, computed once per image, region and size: the quality checks' thumbnail and a border-free
 * 128 x 128 model input are the same resize of the same full-size image, so the second is a look-up.
 * The result is shared: read it, never write to it.
 * @param {FloatView} src
 * @param {number} width
 * @param {number} height
 * @returns {FloatImage}
 */
export function resizeAreaShared(src, width, height) {
  let done = shared.get(src.data);
  if (done === undefined) {
    done = new Map();
    shared.set(src.data, done);
  }
  const key = `${src.offset ?? 0}:${src.stride ?? src.width}:${src.width}x${src.height}:${width}x${height}`;
  let out = done.get(key);
  if (out === undefined) {
    out = resizeArea(src, width, height);
    done.set(key, out);
  }
  return out;
}

/** @type {WeakMap<Float32Array, Map<string, FloatImage>>} resizes by source pixels (freed with them) */
const shared = new WeakMap();

/**
 * Integer-factor block average (OpenCV `resizeAreaFast_`).
 * @param {FloatImage} src
 * @param {number} width
 * @param {number} height
 * @param {number} sx scale factor in x
 * @param {number} sy scale factor in y
 */
function areaFast(src, width, height, sx, sy) {
  const out = new Float32Array(width * height);
  const S = src.data;
  const sw = src.stride ?? src.width;
  const base0 = src.offset ?? 0;
  const area = sx * sy;
  const scale = f32(1 / area);
  const ofs = [];
  for (let y = 0; y < sy; y++) for (let x = 0; x < sx; x++) ofs.push(y * sw + x);
  // Columns whose whole block lies inside the image (OpenCV's dwidth1); the rest are border cases.
  const w1 = Math.min(width, Math.floor(src.width / sx));
  const simd = sx === 2 && sy === 2;
  for (let dy = 0; dy < height; dy++) {
    const sy0 = dy * sy;
    const row = dy * width;
    if (sy0 >= src.height) continue; // stays 0
    const inside = sy0 + sy <= src.height;
    const w = inside ? w1 : 0;
    let dx = 0;
    if (simd) {
      // OpenCV's 4-lane SIMD loop covers whole groups of 4 columns, summing (s00 + s01) + (s10 + s11).
      for (const n = Math.floor(w / 4) * 4; dx < n; dx++) {
        const p = base0 + sy0 * sw + 2 * dx;
        const a = f32(S[p] + S[p + 1]);
        const b = f32(S[p + sw] + S[p + sw + 1]);
        out[row + dx] = f32(f32(a + b) * 0.25);
      }
    }
    for (; dx < w; dx++) {
      const base = base0 + sy0 * sw + dx * sx;
      let sum = 0;
      let k = 0;
      for (; k <= area - 4; k += 4) {
        sum = f32(sum + f32(f32(f32(S[base + ofs[k]] + S[base + ofs[k + 1]]) + S[base + ofs[k + 2]]) + S[base + ofs[k + 3]]));
      }
      for (; k < area; k++) sum = f32(sum + S[base + ofs[k]]);
      out[row + dx] = f32(sum * scale);
    }
    // Border blocks (only when the size is not a multiple of the factor): average of what exists.
    for (; dx < width; dx++) {
      let sum = 0;
      let count = 0;
      const sx0 = dx * sx;
      for (let y = 0; y < sy && sy0 + y < src.height; y++) {
        for (let x = 0; x < sx && sx0 + x < src.width; x++) {
          sum = f32(sum + S[base0 + (sy0 + y) * sw + sx0 + x]);
          count++;
        }
      }
      out[row + dx] = count ? f32(sum / count) : 0;
    }
  }
  return { width, height, data: out };
}

/**
 * OpenCV `computeResizeAreaTab`: which source pixels feed each destination pixel, with weights.
 * @param {number} ssize
 * @param {number} dsize
 * @param {number} scale
 * @returns {{di: Int32Array, si: Int32Array, alpha: Float32Array}}
 */
function areaTable(ssize, dsize, scale) {
  const di = [];
  const si = [];
  const alpha = [];
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale;
    const fsx2 = fsx1 + scale;
    const cellWidth = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1);
    let sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    if (sx1 - fsx1 > 1e-3) {
      di.push(dx);
      si.push(sx1 - 1);
      alpha.push((sx1 - fsx1) / cellWidth);
    }
    for (let sx = sx1; sx < sx2; sx++) {
      di.push(dx);
      si.push(sx);
      alpha.push(1 / cellWidth);
    }
    if (fsx2 - sx2 > 1e-3) {
      di.push(dx);
      si.push(sx2);
      alpha.push(Math.min(Math.min(fsx2 - sx2, 1), cellWidth) / cellWidth);
    }
  }
  return { di: Int32Array.from(di), si: Int32Array.from(si), alpha: Float32Array.from(alpha) };
}

/**
 * Non-integer area decimation (OpenCV `ResizeArea_Invoker`, float accumulators).
 * @param {FloatImage} src
 * @param {number} width
 * @param {number} height
 * @param {number} scaleX
 * @param {number} scaleY
 */
function areaGeneric(src, width, height, scaleX, scaleY) {
  const xt = areaTable(src.width, width, scaleX);
  const yt = areaTable(src.height, height, scaleY);
  const out = new Float32Array(width * height);
  const buf = new Float32Array(width);
  const sum = new Float32Array(width);
  // Locals rather than property reads in the inner loop: this runs once per source pixel.
  const data = src.data;
  const stride = src.stride ?? src.width;
  const offset = src.offset ?? 0;
  const { si: xsi, alpha: xalpha } = xt;
  const { di: ydi, si: ysi, alpha: yalpha } = yt;
  // The table's entries come grouped by destination column, in order: each column's sum is built in a
  // local, in the table's order (the float32 rounding of OpenCV's `buf[dx] += ...` loop, step for step).
  const first = new Int32Array(width + 1);
  for (let k = xt.di.length - 1; k >= 0; k--) first[xt.di[k]] = k;
  first[width] = xt.di.length;
  let prev = ydi[0];
  for (let j = 0; j < ydi.length; j++) {
    const beta = yalpha[j];
    const dy = ydi[j];
    const S = offset + ysi[j] * stride;
    for (let d = 0; d < width; d++) {
      let acc = 0;
      for (let k = first[d], end = first[d + 1]; k < end; k++) acc = f32(acc + f32(data[S + xsi[k]] * xalpha[k]));
      buf[d] = acc;
    }
    if (dy !== prev) {
      out.set(sum, prev * width);
      for (let x = 0; x < width; x++) sum[x] = f32(beta * buf[x]);
      prev = dy;
    } else {
      for (let x = 0; x < width; x++) sum[x] = f32(sum[x] + f32(beta * buf[x]));
    }
  }
  out.set(sum, prev * width);
  return { width, height, data: out };
}

/**
 * Source index pairs and float32 fractions of IPP's linear resize along one axis.
 * @param {number} ssize
 * @param {number} dsize
 */
function linearCoefs(ssize, dsize) {
  const i0 = new Int32Array(dsize);
  const i1 = new Int32Array(dsize);
  const fr = new Float32Array(dsize);
  const scale = ssize / dsize;
  for (let d = 0; d < dsize; d++) {
    const x = (d + 0.5) * scale - 0.5;
    let s = Math.floor(x);
    let f = x - s;
    if (s < 0) {
      s = 0;
      f = 0;
    }
    if (s >= ssize - 1) {
      s = ssize - 1;
      f = 0;
    }
    i0[d] = s;
    i1[d] = Math.min(s + 1, ssize - 1);
    fr[d] = f;
  }
  return { i0, i1, fr };
}

/**
 * `cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)` for float32 images (IPP path).
 * @param {FloatView} src
 * @param {number} width
 * @param {number} height
 * @returns {FloatImage}
 */
export function resizeLinear(src, width, height) {
  if (width === src.width && height === src.height) return compact(src);
  const cx = linearCoefs(src.width, width);
  const cy = linearCoefs(src.height, height);
  const tmp = new Float32Array(width * src.height);
  const S = src.data;
  const stride = src.stride ?? src.width;
  const offset = src.offset ?? 0;
  for (let y = 0; y < src.height; y++) {
    const r = offset + y * stride;
    const o = y * width;
    for (let x = 0; x < width; x++) {
      const a = S[r + cx.i0[x]];
      tmp[o + x] = fmaf(f32(S[r + cx.i1[x]] - a), cx.fr[x], a);
    }
  }
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    const r0 = cy.i0[y] * width;
    const r1 = cy.i1[y] * width;
    const fy = cy.fr[y];
    const o = y * width;
    for (let x = 0; x < width; x++) {
      const a = tmp[r0 + x];
      out[o + x] = fmaf(f32(tmp[r1 + x] - a), fy, a);
    }
  }
  return { width, height, data: out };
}
