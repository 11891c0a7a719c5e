/**
 * `cv2.medianBlur(u8, k)` for 8-bit greyscale images: the median of each k x k window, the image
 * extended by replicating its edge pixels (OpenCV's border for every median kernel size). A median is
 * an order statistic, so any correct algorithm gives OpenCV's result exactly.
 *
 * @module median
 */

/**
 * @typedef {import('./clahe.js').U8Image} U8Image
 */

/**
 * Median filter with an odd kernel size (k <= 1 returns a copy).
 * @param {U8Image} src
 * @param {number} k
 * @returns {U8Image}
 */
export function medianBlur(src, k) {
  const { width, height, data } = src;
  if (k <= 1) return { width, height, data: data.slice() };
  if (k % 2 === 0) throw new RangeError(`median kernel must be odd, got ${k}`);
  if (k === 3) return median3(src);
  const r = (k - 1) / 2;
  const half = (k * k - 1) / 2; // rank of the median (0-based)
  const out = new Uint8Array(width * height);
  const clampX = new Int32Array(width + 2 * r);
  for (let i = 0; i < clampX.length; i++) clampX[i] = Math.min(width - 1, Math.max(0, i - r));
  const hist = new Int32Array(256);
  for (let y = 0; y < height; y++) {
    // Huang's sliding histogram along the row.
    hist.fill(0);
    const rows = [];
    for (let dy = -r; dy <= r; dy++) rows.push(Math.min(height - 1, Math.max(0, y + dy)) * width);
    for (const row of rows) for (let i = 0; i < k; i++) hist[data[row + clampX[i]]]++;
    for (let x = 0; x < width; x++) {
      if (x > 0) {
        const gone = clampX[x - 1];
        const come = clampX[x + 2 * r];
        for (const row of rows) {
          hist[data[row + gone]]--;
          hist[data[row + come]]++;
        }
      }
      let seen = 0;
      let v = 0;
      for (; v < 256; v++) {
        seen += hist[v];
        if (seen > half) break;
      }
      out[y * width + x] = v;
    }
  }
  return { width, height, data: out };
}

/**
 * 3x3 median (the common case: the default spec's `median = 3`). Each column of 3 is sorted once
 * into (lo, mid, hi); the median of the 9 values is then
 * `med3(max(lo_l, lo_c, lo_r), med3(mid_l, mid_c, mid_r), min(hi_l, hi_c, hi_r))`.
 * @param {U8Image} src
 * @returns {U8Image}
 */
function median3(src) {
  const { width: w, height: h, data } = src;
  const out = new Uint8Array(w * h);
  const lo = new Uint8Array(w + 2);
  const md = new Uint8Array(w + 2);
  const hi = new Uint8Array(w + 2);
  const med3 = (a, b, c) => Math.max(Math.min(a, b), Math.min(Math.max(a, b), c));
  for (let y = 0; y < h; y++) {
    const up = (y > 0 ? y - 1 : 0) * w;
    const mid = y * w;
    const down = (y < h - 1 ? y + 1 : h - 1) * w;
    for (let i = 0; i < w + 2; i++) {
      const x = i === 0 ? 0 : i > w ? w - 1 : i - 1; // replicated border columns
      const a = data[up + x];
      const b = data[mid + x];
      const c = data[down + x];
      const mn = Math.min(a, b);
      const mx = Math.max(a, b);
      lo[i] = Math.min(mn, c);
      hi[i] = Math.max(mx, c);
      md[i] = Math.max(mn, Math.min(mx, c));
    }
    for (let x = 0; x < w; x++) {
      const l = Math.max(lo[x], lo[x + 1], lo[x + 2]);
      const m = med3(md[x], md[x + 1], md[x + 2]);
      const u = Math.min(hi[x], hi[x + 1], hi[x + 2]);
      out[mid + x] = med3(l, m, u);
    }
  }
  return { width: w, height: h, data: out };
}
