/**
 * Heat maps without gradients, mirroring `cxr_edge/ops/cam.py`: the class activation map
 * `ReLU(sum_k w_kc A_k)` of the `features` output (= Grad-CAM for the toolkit's GAP -> dense heads),
 * normalised to [0, 1], averaged over members, placed back onto the region the classifiers saw, and
 * drawn over the radiograph in the JET colour map; and the heat map's lung fraction (`lungFraction`).
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

/** Lung probability at and above which a segmenter pixel is lung (`cam.LUNG_THRESHOLD`). */
export const LUNG_THRESHOLD = 0.5;
/** The flag of a prediction whose lung fraction is below the bundle's `lung_evidence.min_fraction`. */
export const FLAG_OUTSIDE_LUNGS = 'evidence outside the lungs';

/**
 * Share of the heat map's mass inside the lung mask, in the classifier's crop frame (`cam.lung_fraction`):
 * the CAM resized bilinearly to `frame` (the classifier input size); frame pixel `(r, c)` has its
 * centre at source pixel `x = ((c + 0.5) * (x1 - x0)) / W + x0` (same for y) and is lung when the mask
 * pixel `floor(((x - sx0) * ws) / (sx1 - sx0))` (same for y) is set; centres outside the segmenter's
 * region are not lung. Float64 throughout, in the Python operation order.
 * @param {FloatImage} cam (h, w) normalised CAM over `region`
 * @param {CropBox} region the source pixels the classifiers saw
 * @param {{width: number, height: number, data: ArrayLike<number>}} mask lung mask (non-zero = lung)
 * @param {CropBox} maskRegion the source pixels the segmenter saw
 * @param {[number, number]} frame (H, W)
 * @returns {number|null} null when the heat map is all zero
 */
export function lungFraction(cam, [x0, y0, x1, y1], mask, [sx0, sy0, sx1, sy1], [h, w]) {
  const heat = resizeLinear(cam, w, h).data;
  let total = 0;
  for (let i = 0; i < heat.length; i++) total += heat[i];
  if (!(total > 0)) return null;
  const { width: ws, height: hs, data: m } = mask;
  const cols = new Int32Array(w);
  for (let c = 0; c < w; c++) {
    const x = ((c + 0.5) * (x1 - x0)) / w + x0;
    const j = Math.floor(((x - sx0) * ws) / (sx1 - sx0));
    cols[c] = j >= 0 && j < ws ? j : -1;
  }
  let inside = 0;
  for (let r = 0; r < h; r++) {
    const y = ((r + 0.5) * (y1 - y0)) / h + y0;
    const i = Math.floor(((y - sy0) * hs) / (sy1 - sy0));
    if (i < 0 || i >= hs) continue;
    for (let c = 0; c < w; c++) if (cols[c] >= 0 && m[i * ws + cols[c]] > 0) inside += heat[r * w + c];
  }
  return Math.min(1, inside / total);
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
