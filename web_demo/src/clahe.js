/**
 * CLAHE on 8-bit images, bit-identical to `cv2.createCLAHE(clipLimit, (tiles, tiles)).apply(u8)`.
 *
 * OpenCV's algorithm, step by step:
 *
 * 1. When the image size is not a multiple of the tile grid, the histograms are computed on a copy
 *    padded at the bottom/right with `BORDER_REFLECT_101` by `tiles - size % tiles` pixels in *both*
 *    directions (also the one that was already a multiple: OpenCV pads a full extra tile then).
 * 2. Per tile: a 256-bin histogram, clipped at `max(1, int(clip * tileArea / 256))`; the clipped
 *    count is spread evenly (`clipped / 256` per bin) and the residual one by one at a stride of
 *    `max(256 / residual, 1)` bins from bin 0.
 * 3. LUT = `saturate_cast<uchar>(cumsum * (255.f / tileArea))` in float32, rounded half to even.
 * 4. Each pixel is interpolated bilinearly between the LUTs of the 4 nearest tile centres, in
 *    float32, in OpenCV's exact operation order, then rounded half to even.
 *
 * @module clahe
 */

import { f32, roundHalfEven } from './numeric.js';

/**
 * A greyscale 8-bit image.
 * @typedef {{width: number, height: number, data: Uint8Array}} U8Image
 */

/**
 * `BORDER_REFLECT_101` index into [0, n).
 * @param {number} i
 * @param {number} n
 */
function reflect101(i, n) {
  if (n === 1) return 0;
  while (i < 0 || i >= n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * n - 2 - i;
  }
  return i;
}

/**
 * Applies CLAHE.
 * @param {U8Image} src
 * @param {number} clipLimit OpenCV's clip limit (e.g. 2.0)
 * @param {number} tiles tiles per side
 * @returns {U8Image}
 */
export function clahe(src, clipLimit, tiles) {
  const { width, height, data } = src;
  const tilesX = tiles;
  const tilesY = tiles;
  let extW = width;
  let extH = height;
  if (width % tilesX !== 0 || height % tilesY !== 0) {
    extW = width + tilesX - (width % tilesX);
    extH = height + tilesY - (height % tilesY);
  }
  const tileW = extW / tilesX;
  const tileH = extH / tilesY;
  const tileArea = tileW * tileH;
  const lutScale = f32(255 / tileArea);
  let limit = 0;
  if (clipLimit > 0) limit = Math.max(Math.trunc((clipLimit * tileArea) / 256), 1);

  // Column/row index of the padded image into the source.
  const colIdx = new Int32Array(extW);
  for (let x = 0; x < extW; x++) colIdx[x] = reflect101(x, width);
  const rowIdx = new Int32Array(extH);
  for (let y = 0; y < extH; y++) rowIdx[y] = reflect101(y, height);

  const lut = new Uint8Array(tilesX * tilesY * 256);
  const hist = new Int32Array(256);
  for (let ty = 0; ty < tilesY; ty++) {
    for (let tx = 0; tx < tilesX; tx++) {
      hist.fill(0);
      for (let y = ty * tileH; y < (ty + 1) * tileH; y++) {
        const row = rowIdx[y] * width;
        for (let x = tx * tileW; x < (tx + 1) * tileW; x++) hist[data[row + colIdx[x]]]++;
      }
      if (limit > 0) {
        let clipped = 0;
        for (let i = 0; i < 256; i++) {
          if (hist[i] > limit) {
            clipped += hist[i] - limit;
            hist[i] = limit;
          }
        }
        const batch = Math.trunc(clipped / 256);
        let residual = clipped - batch * 256;
        for (let i = 0; i < 256; i++) hist[i] += batch;
        if (residual !== 0) {
          const step = Math.max(Math.trunc(256 / residual), 1);
          for (let i = 0; i < 256 && residual > 0; i += step, residual--) hist[i]++;
        }
      }
      const base = (ty * tilesX + tx) * 256;
      let sum = 0;
      for (let i = 0; i < 256; i++) {
        sum += hist[i];
        lut[base + i] = Math.min(255, Math.max(0, roundHalfEven(f32(sum * lutScale))));
      }
    }
  }

  // Bilinear interpolation between tile LUTs (CLAHE_Interpolation_Body).
  const invTw = f32(1 / tileW);
  const invTh = f32(1 / tileH);
  const ind1 = new Int32Array(width);
  const ind2 = new Int32Array(width);
  const xa = new Float32Array(width);
  const xa1 = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const txf = f32(f32(x * invTw) - 0.5);
    let tx1 = Math.floor(txf);
    let tx2 = tx1 + 1;
    xa[x] = f32(txf - tx1);
    xa1[x] = f32(1 - xa[x]);
    tx1 = Math.max(tx1, 0);
    tx2 = Math.min(tx2, tilesX - 1);
    ind1[x] = tx1 * 256;
    ind2[x] = tx2 * 256;
  }
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const tyf = f32(f32(y * invTh) - 0.5);
    let ty1 = Math.floor(tyf);
    let ty2 = ty1 + 1;
    const ya = f32(tyf - ty1);
    const ya1 = f32(1 - ya);
    ty1 = Math.max(ty1, 0);
    ty2 = Math.min(ty2, tilesY - 1);
    const p1 = ty1 * tilesX * 256;
    const p2 = ty2 * tilesX * 256;
    const row = y * width;
    for (let x = 0; x < width; x++) {
      const v = data[row + x];
      const i1 = ind1[x] + v;
      const i2 = ind2[x] + v;
      const w1 = xa1[x];
      const w2 = xa[x];
      const top = f32(f32(lut[p1 + i1] * w1) + f32(lut[p1 + i2] * w2));
      const bottom = f32(f32(lut[p2 + i1] * w1) + f32(lut[p2 + i2] * w2));
      const res = f32(f32(top * ya1) + f32(bottom * ya));
      // saturate_cast<uchar>: round half to even, clamp (res is within [0, 255] up to rounding)
      let r = Math.round(res);
      if (r - res === 0.5 && (r & 1) === 1) r -= 1;
      out[row + x] = r > 255 ? 255 : r;
    }
  }
  return { width, height, data: out };
}

/**
 * Global histogram equalisation, bit-identical to `cv2.equalizeHist(u8)` (the spec's `equalize`):
 * LUT = `saturate_cast<uchar>(cumsum * (255.f / (total - first)))` in float32 from the first
 * occupied bin (which maps to 0), rounded half to even; a constant image stays as it is.
 * @param {U8Image} src
 * @returns {U8Image}
 */
export function equalizeHist(src) {
  const { width, height, data } = src;
  const hist = new Int32Array(256);
  for (let i = 0; i < data.length; i++) hist[data[i]]++;
  let first = 0;
  while (first < 255 && !hist[first]) first++;
  const total = data.length;
  if (!total || hist[first] === total) return { width, height, data: Uint8Array.from(data) };
  const scale = f32(255 / f32(total - hist[first]));
  const lut = new Uint8Array(256);
  let sum = 0;
  for (let i = first + 1; i < 256; i++) {
    sum += hist[i];
    lut[i] = Math.min(255, Math.max(0, roundHalfEven(f32(sum * scale))));
  }
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = lut[data[i]];
  return { width, height, data: out };
}
