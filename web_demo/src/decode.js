/**
 * Decoding a picked file into a greyscale float32 image in [0, 1], as `cxr_edge/imaging/reader.py` does.
 *
 * PNG is decoded here, in JavaScript (chunk parser, CRC check, zlib via `DecompressionStream`,
 * scanline filters, Adam7), so the pixels are exactly what OpenCV/libpng gives Python: browsers'
 * own decoders may apply gamma/colour management and only return 8 bits. Conventions mirrored from
 * the Python reader:
 *
 * - 8-bit samples: `value / 255`; 1/2/4-bit grey expanded to 8 bits first (x255, x85, x17);
 * - 16-bit samples: min-max scaled over the image;
 * - RGB with equal channels is grey; true colour is converted with OpenCV 5's BT.601 fixed-point
 *   weights (15-bit) (flagged as `converted_from: "RGB"`); alpha is composited on black first.
 *
 * JPEG goes through the browser's decoder (`createImageBitmap` without colour-space conversion),
 * which may differ from libjpeg-turbo in OpenCV by one grey level.
 *
 * DICOM goes to the DICOM reader (`dicom/reader.js`, the port of the Python reader's DICOM path, with
 * the field's WebAssembly codecs), imported **only when a DICOM arrives**: the PNG/JPEG path loads none of
 * its modules or codecs, so the app's start-up does not grow. `options` (the bundle's decode gate, as
 * `Predictor` passes it) allow a reduced-resolution decode of a full-size DICOM.
 *
 * @module decode
 */

import { ImageDecodeError, ImageTooLargeError, InputError, UnsupportedImageError } from './errors.js';
import { f32, roundHalfEven } from './numeric.js';

/**
 * How an image was read (no patient identifiers; mirrors `ImageInfo`).
 * @typedef {object} ImageInfo
 * @property {string} format png or jpeg
 * @property {number} width
 * @property {number} height
 * @property {number} bits_stored
 * @property {string} photometric
 * @property {string} intensity scaled or minmax
 * @property {string|null} converted_from RGB, RGBA, GA or null
 */

/** Reader limits, as `ReadOptions`. */
export const READ_OPTIONS = Object.freeze({ maxPixels: 64_000_000, maxBytes: 512 * 1024 * 1024 });

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const DICOM_SUFFIXES = ['.dcm', '.dicom', '.dic'];

/**
 * @param {Uint8Array} data
 * @param {number[]} magic
 */
function startsWith(data, magic) {
  return magic.every((b, i) => data[i] === b);
}

/**
 * Whether the first 512 bytes are mostly printable ASCII.
 * @param {Uint8Array} data
 */
function looksLikeText(data) {
  const head = data.subarray(0, 512);
  if (!head.length) return false;
  let printable = 0;
  for (const b of head) if ((b >= 32 && b < 127) || b === 9 || b === 10 || b === 13) printable++;
  return printable / head.length > 0.95;
}

/**
 * Recognises a file by its first bytes (and a DICOM by its suffix).
 * @param {Uint8Array} data
 * @param {string} [name]
 * @returns {'png'|'jpeg'|'dicom'|null}
 */
export function sniffFormat(data, name = '') {
  if (startsWith(data, PNG_MAGIC)) return 'png';
  if (startsWith(data, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (data.length >= 132 && String.fromCharCode(...data.subarray(128, 132)) === 'DICM') return 'dicom';
  const lower = name.toLowerCase();
  if (DICOM_SUFFIXES.some((s) => lower.endsWith(s)) && !looksLikeText(data)) return 'dicom';
  return null;
}

/**
 * Decodes image bytes (the file's content).
 * @param {Uint8Array} data
 * @param {string} [name] file name (its suffix is used; a DICOM's info names it `source_file`)
 * @param {Partial<import('./dicom/image.js').ReadOptions>} [options] DICOM read options (`minSide`,
 *     `reductions`: a reduced decode where the bundle's decode gate allows it); PNG and JPEG ignore them
 * @returns {Promise<{image: import('./resize.js').FloatImage, info: ImageInfo|import('./dicom/image.js').DicomImageInfo}>}
 */
export async function decodeImage(data, name = '', options = {}) {
  if (!data.length) throw new InputError('empty file', { expected: 'image data', received: '0 bytes' });
  if (data.length > READ_OPTIONS.maxBytes) {
    throw new ImageTooLargeError('file too large', { expected: `at most ${READ_OPTIONS.maxBytes} bytes`, received: `${data.length} bytes` });
  }
  const kind = sniffFormat(data, name);
  if (kind === 'png') return decodePng(data);
  if (kind === 'jpeg') return decodeJpeg(data);
  if (kind === 'dicom') {
    // Loaded on the first DICOM only (a dynamic import; the codecs load later still, per syntax).
    const { readDicom } = await import('./dicom/reader.js');
    return readDicom(data, name || '<bytes>', options);
  }
  const what = looksLikeText(data)
    ? 'text data'
    : `unrecognised binary data starting ${Array.from(data.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join('')}`;
  throw new InputError('not an image', { expected: 'PNG, JPEG or DICOM data', received: what });
}

/**
 * @param {number} width
 * @param {number} height
 */
function checkSize(width, height) {
  if (width <= 0 || height <= 0) {
    throw new ImageDecodeError('image has no pixels', { expected: 'positive width and height', received: `${width}x${height}` });
  }
  if (width * height > READ_OPTIONS.maxPixels) {
    throw new ImageTooLargeError('image dimensions exceed the decompression-bomb guard', {
      expected: `at most ${READ_OPTIONS.maxPixels} pixels`,
      received: `${width}x${height} = ${width * height} pixels`,
    });
  }
}

// ----------------------------------------------------------------------------------------------- PNG

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * @param {Uint8Array} bytes
 */
function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * zlib inflate with the platform's DecompressionStream.
 * @param {Uint8Array} bytes
 */
async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Undoes PNG scanline filters in place; returns rows of `rowBytes` each.
 * @param {Uint8Array} raw filtered data (filter byte + row) x height
 * @param {number} offset
 * @param {number} rowBytes
 * @param {number} height
 * @param {number} bpp bytes per complete pixel (>= 1)
 * @returns {{rows: Uint8Array, next: number}}
 */
function unfilter(raw, offset, rowBytes, height, bpp) {
  const rows = new Uint8Array(rowBytes * height);
  let p = offset;
  for (let y = 0; y < height; y++) {
    if (p + 1 + rowBytes > raw.length) throw new ImageDecodeError('truncated PNG', { expected: 'complete image data', received: 'fewer rows' });
    const filter = raw[p++];
    const o = y * rowBytes;
    const prev = o - rowBytes;
    const first = y === 0;
    if (filter === 0) {
      rows.set(raw.subarray(p, p + rowBytes), o);
    } else if (filter === 1) {
      for (let x = 0; x < rowBytes; x++) rows[o + x] = (raw[p + x] + (x >= bpp ? rows[o + x - bpp] : 0)) & 0xff;
    } else if (filter === 2) {
      for (let x = 0; x < rowBytes; x++) rows[o + x] = (raw[p + x] + (first ? 0 : rows[prev + x])) & 0xff;
    } else if (filter === 3) {
      for (let x = 0; x < rowBytes; x++) {
        const a = x >= bpp ? rows[o + x - bpp] : 0;
        const b = first ? 0 : rows[prev + x];
        rows[o + x] = (raw[p + x] + ((a + b) >> 1)) & 0xff;
      }
    } else if (filter === 4) {
      for (let x = 0; x < rowBytes; x++) {
        const a = x >= bpp ? rows[o + x - bpp] : 0;
        const b = first ? 0 : rows[prev + x];
        const c = x >= bpp && !first ? rows[prev + x - bpp] : 0;
        const pa = Math.abs(b - c);
        const pb = Math.abs(a - c);
        const pc = Math.abs(a + b - 2 * c);
        rows[o + x] = (raw[p + x] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 0xff;
      }
    } else {
      throw new ImageDecodeError('corrupt PNG data', { expected: 'filter type 0-4', received: `filter ${filter}` });
    }
    p += rowBytes;
  }
  return { rows, next: p };
}

/**
 * Sample `i` of a row of `depth`-bit samples.
 * @param {Uint8Array} rows
 * @param {number} rowStart
 * @param {number} i
 * @param {number} depth
 */
function sample(rows, rowStart, i, depth) {
  if (depth === 8) return rows[rowStart + i];
  if (depth === 16) return (rows[rowStart + 2 * i] << 8) | rows[rowStart + 2 * i + 1];
  const perByte = 8 / depth;
  const byte = rows[rowStart + Math.floor(i / perByte)];
  const shift = 8 - depth * ((i % perByte) + 1);
  return (byte >> shift) & ((1 << depth) - 1);
}

const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];

/**
 * Decodes a PNG to channel planes as OpenCV's IMREAD_UNCHANGED sees them (before grey conversion).
 * @param {Uint8Array} data
 */
async function pngPixels(data) {
  if (data.length < 33 || String.fromCharCode(...data.subarray(12, 16)) !== 'IHDR') {
    throw new ImageDecodeError('truncated PNG', { expected: 'an IHDR chunk', received: `${data.length} bytes` });
  }
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  checkSize(width, height);
  const tail = String.fromCharCode(...data.subarray(Math.max(0, data.length - 32)));
  if (!tail.includes('IEND')) throw new ImageDecodeError('truncated PNG', { expected: 'an IEND chunk', received: 'none' });
  const depth = data[24];
  const colorType = data[25];
  const interlace = data[28];
  const idat = [];
  let palette = null;
  let hasTrns = false;
  for (let p = 8; p + 12 <= data.length;) {
    const len = view.getUint32(p);
    const type = String.fromCharCode(...data.subarray(p + 4, p + 8));
    if (p + 12 + len > data.length) throw new ImageDecodeError('truncated PNG', { expected: `a complete ${type} chunk`, received: 'end of file' });
    const body = data.subarray(p + 8, p + 8 + len);
    if (crc32(data.subarray(p + 4, p + 8 + len)) !== view.getUint32(p + 8 + len)) {
      throw new ImageDecodeError('corrupt PNG data', { expected: 'decodable pixels', received: `bad CRC in ${type}` });
    }
    if (type === 'IDAT') idat.push(body);
    else if (type === 'PLTE') palette = body;
    else if (type === 'tRNS') hasTrns = true;
    else if (type === 'IEND') break;
    p += 12 + len;
  }
  const channelsOf = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType];
  const validDepth = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] }[colorType];
  if (!channelsOf || !validDepth.includes(depth)) {
    throw new ImageDecodeError('corrupt PNG data', { expected: 'a valid colour type and bit depth', received: `type ${colorType}, ${depth} bits` });
  }
  if (hasTrns && colorType !== 3) {
    throw new UnsupportedImageError('unsupported PNG variant', { expected: 'no tRNS transparency key', received: 'a tRNS chunk' });
  }
  if (colorType === 3 && !palette) throw new ImageDecodeError('corrupt PNG data', { expected: 'a PLTE chunk', received: 'none' });
  let total = 0;
  for (const c of idat) total += c.length;
  const joined = new Uint8Array(total);
  let o = 0;
  for (const c of idat) {
    joined.set(c, o);
    o += c.length;
  }
  let raw;
  try {
    raw = await inflate(joined);
  } catch {
    throw new ImageDecodeError('corrupt PNG data', { expected: 'decodable pixels', received: 'decoder error' });
  }
  const bitsPerPixel = channelsOf * depth;
  const bpp = Math.max(1, bitsPerPixel >> 3);
  // samples[c][y * width + x]: raw sample values of each stored channel
  const samples = Array.from({ length: channelsOf }, () => new Uint16Array(width * height));
  const passes = interlace ? ADAM7 : [[0, 0, 1, 1]];
  let offset = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const pw = Math.ceil((width - x0) / dx);
    const ph = Math.ceil((height - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    const rowBytes = Math.ceil((pw * bitsPerPixel) / 8);
    const { rows, next } = unfilter(raw, offset, rowBytes, ph, bpp);
    offset = next;
    if (depth === 8 && dx === 1 && dy === 1) {
      // fast path: whole 8-bit rows
      for (let y = 0; y < ph; y++) {
        const r = y * rowBytes;
        for (let x = 0; x < pw; x++) for (let c = 0; c < channelsOf; c++) samples[c][y * width + x] = rows[r + x * channelsOf + c];
      }
      continue;
    }
    for (let y = 0; y < ph; y++) {
      for (let x = 0; x < pw; x++) {
        const dst = (y0 + y * dy) * width + x0 + x * dx;
        for (let c = 0; c < channelsOf; c++) samples[c][dst] = sample(rows, y * rowBytes, x * channelsOf + c, depth);
      }
    }
  }
  // What libpng hands OpenCV: palette -> RGB (RGBA with tRNS); low-bit grey -> 8 bits.
  if (colorType === 3) {
    const rgb = [0, 1, 2].map(() => new Uint16Array(width * height));
    for (let i = 0; i < width * height; i++) {
      const k = samples[0][i];
      for (let c = 0; c < 3; c++) rgb[c][i] = palette[3 * k + c] ?? 0;
    }
    if (hasTrns) {
      throw new UnsupportedImageError('unsupported PNG variant', { expected: 'an opaque palette', received: 'palette transparency' });
    }
    return { width, height, depth: 8, planes: rgb };
  }
  if (depth < 8) {
    const scale = { 1: 255, 2: 85, 4: 17 }[depth];
    for (let i = 0; i < samples[0].length; i++) samples[0][i] *= scale;
    return { width, height, depth: 8, planes: samples };
  }
  return { width, height, depth, planes: samples };
}

/**
 * PNG -> grey float image, with Python's conventions.
 * @param {Uint8Array} data
 */
export async function decodePng(data) {
  const { width, height, depth, planes } = await pngPixels(data);
  const { grey, converted } = toGrey(planes, depth);
  return finish(grey, width, height, depth, converted, 'png');
}

/**
 * Python's `_to_gray` on channel planes in RGB(A) order.
 * @param {Uint16Array[]|Uint8ClampedArray[]} planes
 * @param {number} depth 8 or 16
 * @returns {{grey: Uint16Array, converted: string|null}}
 */
export function toGrey(planes, depth) {
  const n = planes[0].length;
  if (planes.length === 1) return { grey: Uint16Array.from(planes[0]), converted: null };
  const max = depth === 16 ? 65535 : 255;
  if (planes.length === 2) {
    // grey + alpha: OpenCV expands it to 4 channels; composited on black, equal channels -> grey
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = roundHalfEven(f32(planes[0][i] * f32(planes[1][i] / max)));
    return { grey: out, converted: 'RGBA' };
  }
  let [r, g, b] = planes;
  let converted = null;
  if (planes.length === 4) {
    const a = planes[3];
    const comp = (p) => Uint16Array.from(p, (v, i) => roundHalfEven(f32(v * f32(a[i] / max))));
    r = comp(r);
    g = comp(g);
    b = comp(b);
    converted = 'RGBA';
  }
  let equal = true;
  for (let i = 0; i < n && equal; i++) equal = r[i] === g[i] && g[i] === b[i];
  if (equal) return { grey: Uint16Array.from(r), converted };
  // cv2.COLOR_BGR2GRAY in OpenCV 5, integer BT.601: (R*9798 + G*19235 + B*3735 + 2^14) >> 15
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor((r[i] * 9798 + g[i] * 19235 + b[i] * 3735 + 16384) / 32768);
  return { grey: out, converted: 'RGB' };
}

/**
 * Integer samples -> float image in [0, 1] plus info.
 * @param {Uint16Array} grey
 * @param {number} width
 * @param {number} height
 * @param {number} depth
 * @param {string|null} converted
 * @param {string} format
 */
function finish(grey, width, height, depth, converted, format) {
  const data = new Float32Array(width * height);
  let intensity = 'scaled';
  if (depth === 8) {
    for (let i = 0; i < data.length; i++) data[i] = f32(grey[i] / 255);
  } else {
    intensity = 'minmax';
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of grey) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (hi > lo) {
      const range = f32(hi - lo);
      for (let i = 0; i < data.length; i++) data[i] = f32(f32(grey[i] - lo) / range);
    }
  }
  return {
    image: { width, height, data },
    info: {
      format,
      width,
      height,
      bits_stored: depth,
      photometric: converted ? 'RGB' : 'MONOCHROME2',
      intensity,
      converted_from: converted,
    },
  };
}

// ----------------------------------------------------------------------------------------------- JPEG

/**
 * JPEG via the browser's decoder, without colour-space conversion.
 * @param {Uint8Array} data
 */
async function decodeJpeg(data) {
  const tail = data.subarray(Math.max(0, data.length - 64));
  let hasEoi = false;
  for (let i = 0; i + 1 < tail.length; i++) if (tail[i] === 0xff && tail[i + 1] === 0xd9) hasEoi = true;
  if (!hasEoi) throw new ImageDecodeError('truncated JPEG', { expected: 'an end-of-image marker', received: 'none' });
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([data], { type: 'image/jpeg' }), {
      colorSpaceConversion: 'none',
      premultiplyAlpha: 'none',
    });
  } catch {
    throw new ImageDecodeError('corrupt JPEG data', { expected: 'decodable pixels', received: 'decoder error' });
  }
  const { width, height } = bitmap;
  checkSize(width, height);
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const planes = [0, 1, 2].map((c) => Uint16Array.from({ length: width * height }, (_, i) => rgba[i * 4 + c]));
  const { grey, converted } = toGrey(planes, 8);
  return finish(grey, width, height, 8, converted, 'jpeg');
}
