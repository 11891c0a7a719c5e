/**
 * Heat maps without gradients, mirroring `cxr_edge/cam.py`: the class activation map
 * `ReLU(sum_k w_kc A_k)` of the `features` output (= Grad-CAM for the toolkit's GAP -> dense heads),
 * normalised to [0, 1], averaged over members, placed back onto the region the classifiers saw, and
 * drawn over the radiograph in the JET colour map.
 *
 * @module cam
 */

import { f32 } from './numeric.js';
import { resizeLinear } from './resize.js';

/**
 * @typedef {import('./resize.js').FloatImage} FloatImage
 * @typedef {import('./preprocess.js').CropBox} CropBox
 * @typedef {{height: number, width: number, channels: number, data: Float32Array}} FeatureMap (h, w, K)
 */

/**
 * Normalised CAM of one class (float64 dot products, float32 result, as numpy).
 * @param {FeatureMap} features
 * @param {number[][]} weights (K, n_classes) dense weights after global average pooling
 * @param {number} classIndex
 * @returns {FloatImage} (h, w) in [0, 1]
 */
export function classActivationMap(features, weights, classIndex) {
  const { height, width, channels: K, data } = features;
  if (weights.length !== K) throw new Error(`CAM weights have ${weights.length} rows, features ${K} channels`);
  const w = weights.map((row) => row[classIndex]);
  const cam = new Float64Array(height * width);
  let peak = 0;
  for (let i = 0; i < cam.length; i++) {
    let acc = 0;
    for (let k = 0; k < K; k++) acc += data[i * K + k] * w[k];
    cam[i] = Math.max(acc, 0);
    if (cam[i] > peak) peak = cam[i];
  }
  const out = new Float32Array(cam.length);
  for (let i = 0; i < cam.length; i++) out[i] = peak > 0 ? cam[i] / peak : cam[i];
  return { height, width, data: out };
}

/**
 * Mean of members' maps, each resized to the finest member resolution first.
 * @param {FloatImage[]} maps
 * @returns {FloatImage}
 */
export function averageMaps(maps) {
  const height = Math.max(...maps.map((m) => m.height));
  const width = Math.max(...maps.map((m) => m.width));
  const same = maps.map((m) => (m.height === height && m.width === width ? m : resizeLinear(m, width, height)));
  const out = new Float32Array(height * width);
  for (const m of same) for (let i = 0; i < out.length; i++) out[i] = f32(out[i] + m.data[i]);
  for (let i = 0; i < out.length; i++) out[i] = f32(out[i] / same.length);
  return { height, width, data: out };
}

/**
 * The heat map in source-image pixels: resized onto the crop region, zero elsewhere.
 * @param {FloatImage} cam
 * @param {[number, number]} imageShape (H, W)
 * @param {CropBox} region
 * @returns {FloatImage}
 */
export function place(cam, [height, width], [x0, y0, x1, y1]) {
  const data = new Float32Array(height * width);
  const r = resizeLinear(cam, x1 - x0, y1 - y0);
  for (let y = 0; y < r.height; y++) data.set(r.data.subarray(y * r.width, (y + 1) * r.width), (y0 + y) * width + x0);
  return { height, width, data };
}

/**
 * The JET colour of a value in [0, 255] (MATLAB's jet, as `cv2.COLORMAP_JET`, to within one level).
 * @param {number} v
 * @returns {[number, number, number]} RGB
 */
export function jet(v) {
  const x = v / 255;
  const c = (t) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * x - t))));
  return [c(3), c(2), c(1)];
}

/**
 * An RGBA picture for a canvas: the radiograph with the heat map blended on top
 * (`weight = alpha * heat`, as `cam.overlay`).
 * @param {FloatImage} image grey in [0, 1]
 * @param {FloatImage|null} heat same size, in [0, 1]
 * @param {number} [alpha]
 * @returns {ImageData|{width: number, height: number, data: Uint8ClampedArray}}
 */
export function overlay(image, heat, alpha = 0.4) {
  const n = image.width * image.height;
  const rgba = new Uint8ClampedArray(n * 4);
  const lut = Array.from({ length: 256 }, (_, i) => jet(i));
  for (let i = 0; i < n; i++) {
    const base = Math.min(255, Math.max(0, Math.trunc(image.data[i] * 255 + 0.5)));
    let r = base;
    let g = base;
    let b = base;
    if (heat) {
      const h = heat.data[i];
      const [cr, cg, cb] = lut[Math.min(255, Math.max(0, Math.trunc(h * 255 + 0.5)))];
      const w = alpha * h;
      r = Math.trunc(base * (1 - w) + cr * w);
      g = Math.trunc(base * (1 - w) + cg * w);
      b = Math.trunc(base * (1 - w) + cb * w);
    }
    rgba[i * 4] = r;
    rgba[i * 4 + 1] = g;
    rgba[i * 4 + 2] = b;
    rgba[i * 4 + 3] = 255;
  }
  return { width: image.width, height: image.height, data: rgba };
}
