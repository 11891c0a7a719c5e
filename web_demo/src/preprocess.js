/**
 * The bundle's preprocessing, mirroring `cxr_edge/ops/preprocess.py` step by step:
 *
 * 1. crop to the crop box (lung box) or remove `border` of each side;
 * 2. resize (stretch) to `input_size` in float32: `INTER_AREA` when shrinking both sides, else
 *    `INTER_LINEAR` (see resize.js);
 * 3. (training-only augmentation: none here);
 * 4. quantise to 8 bits, round half up; then, with `equalize`, global histogram equalisation;
 * 5. CLAHE (see clahe.js);
 * 6. median filter;
 * 7. normalise: `standardize` (float32 mean/std exactly as numpy computes them) or `unit`;
 * 8. repeat to `channels`, giving an (H, W, C) float32 tensor.
 *
 * Steps 1-6 are bit-identical to Python (the golden vectors check it); 7-8 are float32 arithmetic in
 * numpy's order, identical too in practice (the tests allow 1e-6).
 *
 * @module preprocess
 */

import { clahe, equalizeHist } from './clahe.js';
import { medianBlur } from './median.js';
import { f32, meanF32, roundHalfEven, stdF32 } from './numeric.js';
import { compact, resizeAreaShared, resizeLinear } from './resize.js';

const STD_FLOOR = 1e-6;

/**
 * @typedef {import('./resize.js').FloatImage} FloatImage
 * @typedef {import('./clahe.js').U8Image} U8Image
 * @typedef {[number, number, number, number]} CropBox (x0, y0, x1, y1), end exclusive
 */

/**
 * The preprocessing spec stored in bundles as `manifest.preprocess`.
 * @typedef {object} PreprocessSpec
 * @property {[number, number]} input_size model input (height, width)
 * @property {number} channels 1 or 3
 * @property {number} border fraction removed from each side when no crop box is given
 * @property {boolean} equalize global histogram equalisation before CLAHE
 * @property {boolean} clahe
 * @property {number} clahe_clip
 * @property {number} clahe_tiles
 * @property {number} median odd kernel size, 0/1 = off
 * @property {'standardize'|'unit'} normalize
 * @property {number} version
 */

/** Defaults of the Python dataclass (a manifest may omit fields that have defaults). */
export const DEFAULT_SPEC = Object.freeze({
  input_size: [256, 256],
  channels: 1,
  border: 0.0,
  equalize: false,
  clahe: true,
  clahe_clip: 2.0,
  clahe_tiles: 8,
  median: 3,
  normalize: 'standardize',
  version: 1,
});

/**
 * Parses and checks a spec from its JSON form (same rules as `PreprocessSpec.__post_init__`).
 * @param {object} data
 * @returns {PreprocessSpec}
 */
export function parseSpec(data) {
  const known = Object.keys(DEFAULT_SPEC);
  const unknown = Object.keys(data || {}).filter((k) => !known.includes(k));
  if (unknown.length) throw new Error(`unknown preprocess spec keys: ${unknown.join(', ')}`);
  const spec = { ...DEFAULT_SPEC, ...data };
  const [h, w] = spec.input_size;
  if (!(h >= 8 && h <= 4096 && w >= 8 && w <= 4096)) throw new Error(`invalid input_size ${spec.input_size}`);
  if (spec.channels !== 1 && spec.channels !== 3) throw new Error(`invalid channels ${spec.channels}`);
  if (typeof spec.equalize !== 'boolean') throw new Error(`invalid equalize ${spec.equalize}`);
  if (!(spec.border >= 0 && spec.border < 0.4)) throw new Error(`invalid border ${spec.border}`);
  if (!(spec.clahe_clip > 0) || !(spec.clahe_tiles >= 1 && spec.clahe_tiles <= 64)) {
    throw new Error(`invalid CLAHE parameters clip=${spec.clahe_clip}, tiles=${spec.clahe_tiles}`);
  }
  if (spec.median < 0 || (spec.median > 1 && spec.median % 2 === 0)) throw new Error(`invalid median ${spec.median}`);
  if (spec.normalize !== 'standardize' && spec.normalize !== 'unit') throw new Error(`invalid normalize ${spec.normalize}`);
  if (spec.version !== 1) throw new Error(`unsupported preprocessing version ${spec.version}`);
  return Object.freeze(spec);
}

/**
 * The region step 1 keeps (heat maps are placed back there).
 * @param {number} height
 * @param {number} width
 * @param {PreprocessSpec} spec
 * @param {CropBox|null} [cropBox]
 * @returns {CropBox}
 */
export function cropRegion(height, width, spec, cropBox = null) {
  if (cropBox) {
    const [x0, y0, x1, y1] = cropBox.map((v) => Math.trunc(v));
    if (!(x0 >= 0 && x0 < x1 && x1 <= width && y0 >= 0 && y0 < y1 && y1 <= height)) {
      throw new Error(`crop box ${cropBox} outside the ${width}x${height} image`);
    }
    return [x0, y0, x1, y1];
  }
  const dy = roundHalfEven(height * spec.border); // Python's round() is half to even
  const dx = roundHalfEven(width * spec.border);
  return [dx, dy, width - dx, height - dy];
}

/**
 * Step 1.
 * @param {FloatImage} image
 * @param {PreprocessSpec} spec
 * @param {CropBox|null} [cropBox]
 * @returns {FloatImage}
 */
export function crop(image, spec, cropBox = null) {
  return compact(cropView(image, spec, cropBox));
}

/**
 * Step 1 without a copy: the region as a view of the image (what the resizes read).
 * @param {FloatImage} image
 * @param {PreprocessSpec} spec
 * @param {CropBox|null} [cropBox]
 * @returns {import('./resize.js').FloatView}
 */
export function cropView(image, spec, cropBox = null) {
  const [x0, y0, x1, y1] = cropRegion(image.height, image.width, spec, cropBox);
  return { width: x1 - x0, height: y1 - y0, data: image.data, stride: image.width, offset: y0 * image.width + x0 };
}

/**
 * Step 2: stretch to (height, width).
 * @param {import('./resize.js').FloatView} image
 * @param {[number, number]} size (height, width)
 * @returns {FloatImage}
 */
export function resize(image, [h, w]) {
  const shrinking = image.height >= h && image.width >= w;
  return shrinking ? resizeAreaShared(image, w, h) : resizeLinear(image, w, h);
}

/**
 * Step 4: float [0, 1] -> uint8, round half up.
 * @param {FloatImage} image
 * @returns {U8Image}
 */
export function quantize(image) {
  const out = new Uint8Array(image.data.length);
  for (let i = 0; i < out.length; i++) {
    const v = Math.min(1, Math.max(0, image.data[i]));
    out[i] = Math.floor(f32(f32(v * 255) + 0.5));
  }
  return { width: image.width, height: image.height, data: out };
}

/**
 * Steps 5-6.
 * @param {U8Image} u8
 * @param {PreprocessSpec} spec
 * @returns {U8Image}
 */
export function enhance(u8, spec) {
  let out = u8;
  if (spec.equalize) out = equalizeHist(out);
  if (spec.clahe) out = clahe(out, spec.clahe_clip, spec.clahe_tiles);
  if (spec.median > 1) out = medianBlur(out, spec.median);
  return out;
}

/**
 * Steps 1-6: the 8-bit image every runtime must reproduce exactly.
 * @param {FloatImage} image decoded image in [0, 1]
 * @param {PreprocessSpec} spec
 * @param {CropBox|null} [cropBox]
 * @returns {U8Image}
 */
export function preprocessU8(image, spec, cropBox = null) {
  return enhance(quantize(resize(cropView(image, spec, cropBox), spec.input_size)), spec);
}

/**
 * A model input: (H, W, C) float32, channels interleaved.
 * @typedef {{height: number, width: number, channels: number, data: Float32Array}} InputTensor
 */

/**
 * Steps 7-8.
 * @param {U8Image} u8
 * @param {PreprocessSpec} spec
 * @returns {InputTensor}
 */
export function normalize(u8, spec) {
  const n = u8.data.length;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = f32(u8.data[i] / 255);
  if (spec.normalize === 'standardize') {
    const mean = meanF32(x);
    const std = f32(Math.max(stdF32(x, mean), STD_FLOOR)); // numpy casts the Python float to float32
    for (let i = 0; i < n; i++) x[i] = f32(f32(x[i] - mean) / std);
  }
  return { height: u8.height, width: u8.width, channels: spec.channels, data: repeatChannels(x, spec.channels) };
}

/**
 * Grey (H*W) -> interleaved (H*W*C).
 * @param {Float32Array} grey
 * @param {number} channels
 */
export function repeatChannels(grey, channels) {
  if (channels === 1) return grey;
  const out = new Float32Array(grey.length * channels);
  for (let i = 0; i < grey.length; i++) for (let c = 0; c < channels; c++) out[i * channels + c] = grey[i];
  return out;
}

/**
 * The whole preprocessing: decoded image -> model input.
 * @param {FloatImage} image
 * @param {PreprocessSpec} spec
 * @param {CropBox|null} [cropBox]
 * @returns {InputTensor}
 */
export function preprocess(image, spec, cropBox = null) {
  return normalize(preprocessU8(image, spec, cropBox), spec);
}
