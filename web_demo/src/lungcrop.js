/**
 * Lung mask -> cleaned mask -> crop box, with the quality gate and the fallback crop, mirroring
 * `cxr_edge/ops/lungcrop.py`:
 *
 * 1. threshold the lung probabilities (`p >= threshold`, compared in float32 as numpy does);
 * 2. keep the two largest 8-connected components and fill holes (background not 4-connected to the
 *    image border, as `cv2.floodFill` from a padded corner);
 * 3. bounding box widened by `margin`, scaled to source pixels.
 *
 * The gate falls back to the border crop (`fallback_border`) when nothing is found, the kept area is
 * outside `[min_area, max_area]`, there are more than `max_components` significant (>= 1% of the
 * image) components, or the box's aspect ratio is outside `[min_aspect, max_aspect]`.
 *
 * Ties: when components have exactly the same area, the later-labelled one (OpenCV's label order)
 * ranks first, as in Python (`np.argsort(areas, kind="stable")[::-1]`).
 *
 * @module lungcrop
 */

import { f32, roundHalfEven } from './numeric.js';

const SIGNIFICANT = 0.01;

/**
 * @typedef {import('./resize.js').FloatImage} FloatImage
 * @typedef {import('./clahe.js').U8Image} U8Image
 * @typedef {import('./preprocess.js').CropBox} CropBox
 */

/**
 * The crop rule and gate stored with the segmenter (`manifest.segmenter.crop`).
 * @typedef {object} CropSpec
 * @property {number} threshold
 * @property {number} margin
 * @property {number} min_area
 * @property {number} max_area
 * @property {number} max_components
 * @property {number} min_aspect
 * @property {number} max_aspect
 * @property {number} fallback_border
 */

/** Defaults of the Python dataclass. */
export const DEFAULT_CROP = Object.freeze({
  threshold: 0.5,
  margin: 0.05,
  min_area: 0.08,
  max_area: 0.8,
  max_components: 4,
  min_aspect: 0.6,
  max_aspect: 2.2,
  fallback_border: 0.08,
});

/**
 * The crop decided for one image.
 * @typedef {{box: CropBox, status: 'lung'|'fallback', reason: string, mask: U8Image}} CropResult
 */

/**
 * Python's `repr` of a float (for messages identical to the Python runtime's).
 * @param {number} x
 */
export function pyFloat(x) {
  if (Number.isInteger(x)) return x.toFixed(1);
  const s = String(x);
  return s.replace(/e([+-])(\d)$/, 'e$10$2'); // 1e-7 -> 1e-07
}

/**
 * Python's `f"{x:.2f}"` (exact binary value, ties to even).
 * @param {number} x
 */
export function pyFixed2(x) {
  // A binary float is exactly halfway between two 2-decimal numbers only when 8x is odd (x = k/8).
  const eighths = x * 8;
  if (Number.isInteger(eighths) && eighths % 2 !== 0) {
    const hundredths = Math.trunc(x * 100); // e.g. 0.125 -> 12 (ties to even: 12 or 13)
    const lower = Math.abs(hundredths) % 2 === 0 ? hundredths : hundredths + Math.sign(x);
    return (lower / 100).toFixed(2);
  }
  return x.toFixed(2);
}

/**
 * Labels 8-connected foreground components (union-find), numbered like OpenCV's block-based scan:
 * by the first 2x2 block (block row, then block column) that holds a pixel of the component.
 * @param {Uint8Array} binary 0/1
 * @param {number} w
 * @param {number} h
 * @returns {{labels: Int32Array, areas: number[]}} labels 1..n (0 = background), areas[i] of label i+1
 */
function components(binary, w, h) {
  const parent = new Int32Array(w * h).fill(-1);
  const find = (i) => {
    while (parent[i] !== i) {
      parent[i] = parent[parent[i]];
      i = parent[i];
    }
    return i;
  };
  const union = (a, b) => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent[Math.max(ra, rb)] = Math.min(ra, rb);
  };
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!binary[i]) continue;
      parent[i] = i;
      if (x > 0 && binary[i - 1]) union(i, i - 1);
      if (y > 0) {
        if (binary[i - w]) union(i, i - w);
        if (x > 0 && binary[i - w - 1]) union(i, i - w - 1);
        if (x < w - 1 && binary[i - w + 1]) union(i, i - w + 1);
      }
    }
  }
  // Order of first appearance in OpenCV's 2x2 block scan.
  const order = new Map();
  for (let by = 0; by < h; by += 2) {
    for (let bx = 0; bx < w; bx += 2) {
      for (const [dy, dx] of [[0, 0], [0, 1], [1, 0], [1, 1]]) {
        const y = by + dy;
        const x = bx + dx;
        if (y >= h || x >= w) continue;
        const i = y * w + x;
        if (!binary[i]) continue;
        const root = find(i);
        if (!order.has(root)) order.set(root, order.size + 1);
      }
    }
  }
  const labels = new Int32Array(w * h);
  const areas = new Array(order.size).fill(0);
  for (let i = 0; i < w * h; i++) {
    if (!binary[i]) continue;
    const label = order.get(find(i));
    labels[i] = label;
    areas[label - 1] += 1;
  }
  return { labels, areas };
}

/**
 * Thresholds, keeps the two largest components, fills holes.
 * @param {FloatImage} prob lung probabilities at the segmenter's resolution
 * @param {number} threshold
 * @returns {{mask: U8Image, significant: number}} mask 0/255
 */
export function cleanMask(prob, threshold) {
  const { width: w, height: h } = prob;
  const t = f32(threshold);
  const binary = new Uint8Array(w * h);
  for (let i = 0; i < binary.length; i++) binary[i] = prob.data[i] >= t ? 1 : 0;
  const { labels, areas } = components(binary, w, h);
  const significant = areas.filter((a) => a >= SIGNIFICANT * binary.length).length;
  // Two largest; ties: the later label first (reverse of a stable ascending sort).
  const ranked = areas.map((a, i) => [a, i + 1]).sort((p, q) => q[0] - p[0] || q[1] - p[1]);
  const keep = new Set(ranked.slice(0, 2).map((p) => p[1]));
  const mask = new Uint8Array(w * h);
  for (let i = 0; i < mask.length; i++) if (labels[i] && keep.has(labels[i])) mask[i] = 255;
  // Fill holes: background pixels not 4-connected to the border.
  const outside = new Uint8Array(w * h);
  const stack = [];
  const push = (x, y) => {
    const i = y * w + x;
    if (!mask[i] && !outside[i]) {
      outside[i] = 1;
      stack.push(i);
    }
  };
  for (let x = 0; x < w; x++) {
    push(x, 0);
    push(x, h - 1);
  }
  for (let y = 0; y < h; y++) {
    push(0, y);
    push(w - 1, y);
  }
  while (stack.length) {
    const i = stack.pop();
    const x = i % w;
    const y = (i - x) / w;
    if (x > 0) push(x - 1, y);
    if (x < w - 1) push(x + 1, y);
    if (y > 0) push(x, y - 1);
    if (y < h - 1) push(x, y + 1);
  }
  for (let i = 0; i < mask.length; i++) if (!mask[i] && !outside[i]) mask[i] = 255;
  return { mask: { width: w, height: h, data: mask }, significant };
}

/**
 * The default crop: `border` of each side removed.
 * @param {number} height
 * @param {number} width
 * @param {number} border
 * @returns {CropBox}
 */
export function fallbackBox(height, width, border) {
  const dy = roundHalfEven(height * border);
  const dx = roundHalfEven(width * border);
  return [dx, dy, width - dx, height - dy];
}

/**
 * Decides the crop box of one image from its lung-probability map.
 * @param {FloatImage} prob (h, w) lung probabilities
 * @param {[number, number]} imageShape (H, W) of the source image
 * @param {CropSpec} spec
 * @returns {CropResult}
 */
export function lungCrop(prob, imageShape, spec) {
  const s = { ...DEFAULT_CROP, ...spec };
  const { mask, significant } = cleanMask(prob, s.threshold);
  const { width: w, height: h } = mask;
  const [height, width] = imageShape;
  const fallback = (reason) => ({ box: fallbackBox(height, width, s.fallback_border), status: 'fallback', reason, mask });
  let count = 0;
  let x0 = w;
  let y0 = h;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask.data[y * w + x]) continue;
      count++;
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
    }
  }
  const area = count / (w * h);
  if (area === 0) return fallback('no lung found');
  if (!(s.min_area <= area && area <= s.max_area)) {
    return fallback(`lung area ${pyFixed2(area)} of the image outside [${pyFloat(s.min_area)}, ${pyFloat(s.max_area)}]`);
  }
  if (significant > s.max_components) return fallback(`mask fragmented into ${significant} pieces`);
  x1 += 1;
  y1 += 1;
  const aspect = (x1 - x0) / (y1 - y0);
  if (!(s.min_aspect <= aspect && aspect <= s.max_aspect)) {
    return fallback(`box width/height ${pyFixed2(aspect)} outside [${pyFloat(s.min_aspect)}, ${pyFloat(s.max_aspect)}]`);
  }
  const mx = s.margin * (x1 - x0);
  const my = s.margin * (y1 - y0);
  const sx = width / w;
  const sy = height / h;
  /** @type {CropBox} */
  const box = [
    Math.max(0, Math.floor((x0 - mx) * sx)),
    Math.max(0, Math.floor((y0 - my) * sy)),
    Math.min(width, Math.ceil((x1 + mx) * sx)),
    Math.min(height, Math.ceil((y1 + my) * sy)),
  ];
  return { box, status: 'lung', reason: '', mask };
}
