/**
 * Input checks before classification (`cxr_edge/ops/quality.py`): what the model must not judge.
 *
 * - **header checks** (DICOM facts in the image's info): Modality a projection radiograph (CR, DX, DR,
 *   RG), Body Part Examined a chest term when present, View Position frontal when present (a lateral
 *   LL/RL/LATERAL view is refused), no colour image converted to grey;
 * - **pixel checks** (every format): the shorter side at least 128 pixels, not nearly constant (the
 *   standard deviation of a 128x128 `INTER_AREA` thumbnail at least 0.02), and the **frontal chest
 *   pattern** (a bright centre between two darker lung fields in the column profile of the lung band;
 *   see the Python module's docstring).
 *
 * The same order, thresholds and messages as Python's `check`: a refused input throws
 * `InputRejectedError` (`check: reason`), the error `cxr-edge predict` and the DICOM node report. The
 * thumbnail is OpenCV's resize bit for bit (`resize.js`) and its standard deviation numpy's float32
 * pairwise one (`numeric.js`); the column profile's smoothing and z-scores are float64, as numpy's, in a
 * summation order that can differ from numpy's in the last bit (the score is printed to 2 decimals).
 *
 * @module quality
 */

import { InputRejectedError } from './errors.js';
import { f32, stdF32 } from './numeric.js';
import { resizeAreaShared } from './resize.js';

/**
 * Which inputs are refused (`QualityConfig`).
 * @typedef {object} QualityConfig
 * @property {string[]} modalities DICOM Modality values accepted (an absent Modality, as in PNG, passes)
 * @property {string[]} bodyParts Body Part Examined values accepted when present (upper case)
 * @property {string[]} frontalViews View Position values accepted when present
 * @property {number} minSide smallest accepted shorter side in pixels
 * @property {number} minStd smallest accepted standard deviation of intensities in [0, 1]
 * @property {number} minFrontalScore threshold of the frontal-pattern heuristic (`-Infinity`: off)
 * @property {boolean} allowColour accept colour images converted to grey
 */

/** @type {Readonly<QualityConfig>} */
export const DEFAULT_CHECKS = Object.freeze({
  modalities: ['CR', 'DX', 'DR', 'RG'],
  bodyParts: ['CHEST', 'THORAX', 'LUNG', 'TORSO'],
  frontalViews: ['PA', 'AP'],
  minSide: 128,
  minStd: 0.02,
  minFrontalScore: 0.0,
  allowColour: false,
});

const THUMB = 128;
const BORDER = 0.08;
const BAND = [0.2, 0.7];
const AXIS_RANGE = 0.08;
const CENTRE_HALF = 0.05;
const FLANK = [0.1, 0.3];

/**
 * Why an input is refused (`Rejection`).
 * @typedef {{check: string, reason: string}} Rejection
 */

/**
 * @param {Partial<QualityConfig>} config
 * @returns {QualityConfig}
 */
function withDefaults(config) {
  const c = { ...DEFAULT_CHECKS, ...config };
  const upper = (list) => list.map((v) => String(v).trim().toUpperCase());
  return { ...c, modalities: upper(c.modalities), bodyParts: upper(c.bodyParts), frontalViews: upper(c.frontalViews) };
}

/**
 * Checks the header facts of an image's info (never the pixels); the first failure, or null
 * (`check_header`).
 * @param {{format: string, modality?: string|null, body_part?: string|null, view_position?: string|null,
 *     converted_from?: string|null}} info
 * @param {Partial<QualityConfig>} [config]
 * @returns {Rejection|null}
 */
export function checkHeader(info, config = {}) {
  const c = withDefaults(config);
  const modality = (info.modality ?? '').toUpperCase();
  if (info.format === 'dicom' && !c.modalities.includes(modality)) {
    return { check: 'modality', reason: `modality ${modality || '(absent)'} is not a projection radiograph (accepted: ${c.modalities.join(', ')})` };
  }
  const body = (info.body_part ?? '').trim().toUpperCase();
  if (body && !c.bodyParts.includes(body)) {
    return { check: 'body_part', reason: `body part examined is ${body}, not a chest (accepted: ${c.bodyParts.join(', ')})` };
  }
  const view = (info.view_position ?? '').trim().toUpperCase();
  if (view && !c.frontalViews.includes(view)) {
    return { check: 'view', reason: `view position ${view} is not frontal (accepted: ${c.frontalViews.join(', ')})` };
  }
  if (info.converted_from && !c.allowColour) {
    return { check: 'colour', reason: `${info.converted_from} colour image, not a greyscale radiograph` };
  }
  return null;
}

/**
 * Checks the decoded image (float in [0, 1]); the first failure, or null (`check_pixels`).
 * @param {import('./resize.js').FloatImage} image
 * @param {Partial<QualityConfig>} [config]
 * @returns {Rejection|null}
 */
export function checkPixels(image, config = {}) {
  const c = withDefaults(config);
  if (Math.min(image.width, image.height) < c.minSide) {
    return { check: 'resolution', reason: `image is ${image.width}x${image.height} pixels; shorter side below ${c.minSide}` };
  }
  const std = stdF32(thumbnail(image).data);
  if (std < c.minStd) {
    return { check: 'blank', reason: `nearly constant image (standard deviation ${pyFixed(std, 4)} < ${pyStr(c.minStd)})` };
  }
  if (Number.isFinite(c.minFrontalScore)) {
    const score = frontalScore(image);
    if (score < c.minFrontalScore) {
      return {
        check: 'frontal_pattern',
        reason: `no frontal chest pattern (score ${pyFixed(score, 2)} < ${pyStr(c.minFrontalScore)}): lateral view, inverted or not a chest radiograph?`,
      };
    }
  }
  return null;
}

/**
 * Header checks, then pixel checks (`check`); the first failure or null when the image may be classified.
 * @param {import('./resize.js').FloatImage} image
 * @param {Parameters<typeof checkHeader>[0]} info
 * @param {Partial<QualityConfig>} [config]
 * @returns {Rejection|null}
 */
export function check(image, info, config = {}) {
  return checkHeader(info, config) ?? checkPixels(image, config);
}

/**
 * Throws the typed error of a failed check (`InputRejectedError`), as the Python predictor does.
 * @param {import('./resize.js').FloatImage} image
 * @param {Parameters<typeof checkHeader>[0]} info
 * @param {Partial<QualityConfig>} [config]
 */
export function requireChecks(image, info, config) {
  const rejection = check(image, info, config);
  if (rejection) throw new InputRejectedError(rejection.check, rejection.reason);
}

/**
 * Throws the typed error of a failed header check only (what a header tells before any pixel is read).
 * @param {Parameters<typeof checkHeader>[0]} info
 * @param {Partial<QualityConfig>} [config]
 */
export function requireHeader(info, config) {
  const rejection = checkHeader(info, config);
  if (rejection) throw new InputRejectedError(rejection.check, rejection.reason);
}

/**
 * The frontal-pattern score (`frontal_score`): higher is more frontal-like (typically 1-2.5 for frontal
 * chest films, below 0 for images without a bright centre between two darker sides).
 * @param {import('./resize.js').FloatImage} image
 * @returns {number}
 */
export function frontalScore(image) {
  const profile = columnProfile(image);
  const n = profile.length;
  const mean = sum64(profile, 0, n) / n;
  const dev = profile.map((v) => (v - mean) * (v - mean));
  const std = Math.sqrt(sum64(dev, 0, n) / n);
  if (std < 1e-6) return -Infinity;
  const p = profile.map((v) => (v - mean) / std);
  const half = Math.max(2, Math.trunc(CENTRE_HALF * n));
  const near = Math.trunc(FLANK[0] * n);
  const far = Math.trunc(FLANK[1] * n);
  const slice = (a, b) => sum64(p, a, b - a) / (b - a);
  let best = -Infinity;
  for (let axis = Math.trunc((0.5 - AXIS_RANGE) * n); axis <= Math.trunc((0.5 + AXIS_RANGE) * n); axis++) {
    const centre = slice(axis - half, axis + half + 1);
    const left = slice(Math.max(0, axis - far), axis - near);
    const right = slice(axis + near, axis + far);
    best = Math.max(best, Math.min(centre - left, centre - right));
  }
  return best;
}

/**
 * Mean brightness per column over the lung band of the border-cropped thumbnail, smoothed by a 5-wide
 * box (`column_profile`; the band mean in float32 as numpy's, the smoothing in float64).
 * @param {import('./resize.js').FloatImage} image
 * @returns {Float64Array}
 */
export function columnProfile(image) {
  const thumb = thumbnail(image);
  const b = Math.round(BORDER * THUMB);
  const size = THUMB - 2 * b;
  const r0 = Math.trunc(BAND[0] * size);
  const r1 = Math.trunc(BAND[1] * size);
  // numpy's mean over axis 0 of a strided view: row after row added in float32, then one division
  const means = new Float32Array(size);
  for (let x = 0; x < size; x++) {
    let s = thumb.data[(b + r0) * THUMB + b + x];
    for (let y = r0 + 1; y < r1; y++) s = f32(s + thumb.data[(b + y) * THUMB + b + x]);
    means[x] = f32(s / (r1 - r0));
  }
  // np.convolve(means, ones(5) / 5, mode="same"): zero padding, float64
  const out = new Float64Array(size);
  for (let i = 0; i < size; i++) {
    let s = 0;
    for (let k = -2; k <= 2; k++) if (i + k >= 0 && i + k < size) s += means[i + k] * 0.2;
    out[i] = s;
  }
  return out;
}

/**
 * `cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)` (the image is at least 128 on each side
 * once the resolution check passed).
 * @param {import('./resize.js').FloatImage} image
 */
function thumbnail(image) {
  // Shared: the blank check, the frontal score and a 128-px border-free model input read the same resize.
  return resizeAreaShared(image, THUMB, THUMB);
}

/**
 * numpy's pairwise sum of `n` float64 values from `start`.
 * @param {ArrayLike<number>} a
 * @param {number} start
 * @param {number} n
 */
function sum64(a, start, n) {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i];
    return res;
  }
  if (n <= 128) {
    const r = [];
    for (let j = 0; j < 8; j++) r.push(a[start + j]);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let res = (r[0] + r[1] + (r[2] + r[3])) + (r[4] + r[5] + (r[6] + r[7])); // numpy's ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7))
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return sum64(a, start, n2) + sum64(a, start + n2, n - n2);
}

/**
 * Python's `f"{x:.{digits}f}"`: exact binary ties rounded half to even (JavaScript rounds them up).
 * @param {number} x
 * @param {number} digits
 */
export function pyFixed(x, digits) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'nan' : x > 0 ? 'inf' : '-inf';
  const scale = 10 ** digits;
  const twice = x * 2 * scale;
  if (Number.isInteger(twice) && Math.abs(twice) % 2 === 1 && twice / (2 * scale) === x) {
    const lower = Math.trunc(x * scale);
    const even = Math.abs(lower) % 2 === 0 ? lower : lower + Math.sign(x);
    return (even / scale).toFixed(digits);
  }
  return x.toFixed(digits);
}

/**
 * `str(x)` of a Python float for the thresholds in messages (`0.0`, `0.02`, `-inf`).
 * @param {number} x
 */
function pyStr(x) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'nan' : x > 0 ? 'inf' : '-inf';
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}
