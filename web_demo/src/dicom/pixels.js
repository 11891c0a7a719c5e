/**
 * DICOM pixel data to stored values, per transfer syntax, at full or reduced resolution
 * (`cxr_edge/imaging/pixels.py`, its `decode_stored` path):
 *
 * | syntax                    | full resolution              | reduced (2, 4, 8)                   |
 * |---------------------------|------------------------------|-------------------------------------|
 * | native (explicit, implicit, deflated, big endian) | typed-array read | area average (OpenCV's integer rule) |
 * | RLE                       | `rle.js`                     | area average                        |
 * | JPEG-LS                   | CharLS                       | area average                        |
 * | JPEG lossless (SV1/14)    | jpeg-lossless-decoder-js     | area average                        |
 * | JPEG baseline (8 bit)     | libjpeg-turbo                | area average (no DCT scaling here)  |
 * | JPEG 2000                 | OpenJPEG                     | resolution levels (OpenJPEG)        |
 * | HTJ2K                     | OpenJPH                      | resolution levels (OpenJPH)         |
 *
 * What a frame declares is checked against the header before it is decoded (`codestream.js`), Bits
 * Stored is kept (masked, or sign-extended for signed data) as pydicom does, and a reduced decode is
 * made only by the kinds the options allow.
 *
 * @module dicom/pixels
 */

import { ImageDecodeError, UnsupportedImageError } from '../errors.js';
import { roundHalfEven } from '../numeric.js';
import { decodeFull, decodeReduced, runCodec } from './codecs.js';
import { j2kCheckSiz, j2kCheckTileParts, j2kSize, jpegFrame, rleCheckHeader } from './codestream.js';
import { BIG_ENDIAN, BROWSER_UNSUPPORTED, HTJ2K, J2K, JPEG_BASELINE, NATIVE, PYTHON_COMPRESSED, RLE } from './syntaxes.js';
import { uidName } from './uids.js';

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reductions tried, largest first: powers of two, as wavelet levels allow. */
export const REDUCTIONS = Object.freeze([8, 4, 2]);

/**
 * Stored pixel values of one frame (`Stored`).
 * @typedef {object} Stored
 * @property {Uint8Array|Int8Array|Uint16Array|Int16Array} values row-major, Bits Stored kept
 * @property {number} rows
 * @property {number} cols
 * @property {number} reduction source pixels per decoded pixel along each side (1: full resolution)
 * @property {string} decoder
 */

/**
 * What the pixel module of a greyscale frame says (checked by `dicom.js`).
 * @typedef {object} PixelLayout
 * @property {string} ts transfer syntax UID
 * @property {number} rows
 * @property {number} cols
 * @property {number} allocated
 * @property {number} stored
 * @property {boolean} signed
 */

/**
 * The largest power-of-two reduction that keeps the short side at least `minSide` pixels.
 * @param {number} rows
 * @param {number} cols
 * @param {number|null|undefined} minSide
 */
export function chooseReduction(rows, cols, minSide) {
  if (!minSide) return 1;
  const short = Math.min(rows, cols);
  for (const factor of REDUCTIONS) if (Math.floor(short / factor) >= minSide) return factor;
  return 1;
}

/**
 * Decodes the single greyscale frame (`decode_stored` with the fast path).
 * @param {PixelLayout} layout
 * @param {Uint8Array} pixelData the Pixel Data value (to the end of the file when encapsulated)
 * @param {number} reduction 1 or one of {@link REDUCTIONS}
 * @param {readonly string[]} kinds the reduction kinds allowed
 * @returns {Promise<Stored>}
 */
export async function decodeStored(layout, pixelData, reduction, kinds) {
  const { ts, rows, cols, allocated, signed } = layout;
  const bits = J2K.has(ts) || HTJ2K.has(ts) ? 16 : layout.stored; // pydicom keeps JPEG 2000's decoded range
  let decoded;
  if (NATIVE.has(ts)) {
    decoded = { data: nativeValues(pixelData, rows, cols, allocated, signed, ts === BIG_ENDIAN), rows, cols, decoder: 'native' };
  } else {
    const frame = firstFrame(pixelData, ts);
    checkFrame(frame, ts, rows, cols, allocated / 8);
    // What the frame declares is checked first, as the Python reader does for every syntax.
    if (!PYTHON_COMPRESSED.has(ts)) throw undecodable(ts, 'NotImplementedError'); // no reader decodes it
    if (BROWSER_UNSUPPORTED.has(ts)) throw browserUnsupported(ts);
    const family = ts === JPEG_BASELINE ? 'jpeg_dct' : J2K.has(ts) || HTJ2K.has(ts) ? 'j2k_levels' : null;
    if (reduction > 1 && family !== null) {
      // The codec's own reduction, or half of it and a 2 x 2 average, as the kinds allow.
      const native = kinds.includes(family) ? reduction : kinds.includes(`${family}_half`) ? reduction / 2 : 1;
      const reduced = native > 1 ? await runCodec(() => decodeReduced(frame, ts, native), ts) : null;
      const out = reduced && checked(reduced, rows, cols, native, bits, signed);
      // A reduced size other than ceil(size / reduction) (an image offset): a full decode then, as
      // the Python reader's pydicom fallback does.
      if (out) {
        if (native === reduction) return out;
        const step = reduction / native;
        return { ...areaReduce(out, step), reduction, decoder: `${reduced.decoder}+area/${step}` };
      }
    }
    decoded = await runCodec(() => decodeFull(frame, ts, allocated, signed, rows, cols), ts);
    if (decoded === null) throw undecodable(ts, 'RuntimeError'); // an RLE segment that ends short
  }
  const result = checked(decoded, rows, cols, 1, bits, signed);
  // A frame of another shape (colour in a greyscale object): pydicom's turn in Python, refused here.
  if (result === null) throw undecodable(ts, 'ValueError');
  if (reduction === 1 || !kinds.includes('area')) return result;
  return { ...areaReduce(result, reduction), reduction, decoder: `${decoded.decoder}+area/${reduction}` };
}

/**
 * The Python reader's error when pydicom's own decoders refuse the data (or have none for the syntax).
 * @param {string} ts
 * @param {string} exception the exception type pydicom raises
 */
export function undecodable(ts, exception) {
  return new ImageDecodeError('DICOM pixel data cannot be decoded', {
    expected: `decodable pixel data in ${ts ? uidName(ts) : 'an unknown syntax'}`,
    received: `data its decoders refuse (${exception})`,
  });
}

/**
 * The browser's refusal of a syntax that the Python reader decodes and no npm package does (JPEG
 * Extended, 12 bit).
 * @param {string} ts
 */
export function browserUnsupported(ts) {
  return new UnsupportedImageError('transfer syntax not supported in the browser', {
    expected: 'a syntax the browser decodes (`cxr-edge predict` reads this file)',
    received: uidName(ts),
  });
}

/**
 * Checks a compressed frame against the header before it is decoded (`check_frame`): its size, its
 * components, its end marker, and for JPEG 2000 / HTJ2K its tile-parts.
 * @param {Uint8Array} frame
 * @param {string} ts
 * @param {number} rows
 * @param {number} cols
 * @param {number} bytesPerSample
 * @param {number} [samples]
 */
export function checkFrame(frame, ts, rows, cols, bytesPerSample, samples = 1) {
  if (ts === RLE) {
    rleCheckHeader(frame, samples * bytesPerSample);
    return;
  }
  let eoi = false;
  for (let i = Math.max(0, frame.length - 16); i + 1 < frame.length && !eoi; i++) eoi = frame[i] === 0xff && frame[i + 1] === 0xd9;
  if (!eoi) {
    // libjpeg-turbo and OpenJPH decode a truncated stream without an error (grey or blurred rest).
    throw new ImageDecodeError('truncated compressed frame', { expected: 'an end-of-image marker', received: 'none' });
  }
  const j2k = J2K.has(ts) || HTJ2K.has(ts);
  let width;
  let height;
  let components;
  if (j2k) [[width, height], components] = [j2kSize(frame), j2kCheckSiz(frame)];
  else [width, height, , components] = jpegFrame(frame);
  const where = j2k ? 'SIZ marker' : 'start-of-frame marker';
  if (height !== rows || width !== cols) {
    throw new ImageDecodeError('compressed frame size differs from the DICOM header', {
      expected: `${cols}x${rows} (Columns x Rows)`,
      received: `${width}x${height} in the ${where}`,
    });
  }
  if (components !== samples) {
    // each component is a plane of the declared size
    throw new ImageDecodeError('compressed frame components differ from the DICOM header', {
      expected: `${samples} (Samples per Pixel)`,
      received: `${components} in the ${where}`,
    });
  }
  if (j2k) j2kCheckTileParts(frame);
}

/**
 * Uncompressed stored values (`_native`), after checking there are enough bytes.
 * @param {Uint8Array} data
 * @param {number} rows
 * @param {number} cols
 * @param {number} allocated 8 or 16
 * @param {boolean} signed
 * @param {boolean} bigEndian
 */
export function nativeValues(data, rows, cols, allocated, signed, bigEndian) {
  const n = rows * cols;
  const bytes = allocated / 8;
  checkLength(data.length, n * bytes);
  if (bytes === 1) return signed ? new Int8Array(data.slice(0, n).buffer) : data.slice(0, n);
  const Type = signed ? Int16Array : Uint16Array;
  if (!bigEndian && LITTLE_ENDIAN_HOST) return new Type(data.slice(0, n * 2).buffer); // one aligned copy
  const view = new DataView(data.buffer, data.byteOffset, n * 2);
  const out = new Type(n);
  if (signed) for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, !bigEndian);
  else for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, !bigEndian);
  return out;
}

/**
 * @param {number} received
 * @param {number} needed
 */
export function checkLength(received, needed) {
  if (received < needed) {
    throw new ImageDecodeError('truncated pixel data', { expected: `${needed} bytes`, received: `${received} bytes` });
  }
}

/**
 * The first frame of encapsulated pixel data: every fragment after the Basic Offset Table up to the
 * sequence delimiter, joined (`pydicom.encaps.generate_frames(..., number_of_frames=1)`).
 * @param {Uint8Array} data
 * @param {string} ts
 * @returns {Uint8Array}
 */
export function firstFrame(data, ts) {
  const refused = () => undecodable(ts, PYTHON_COMPRESSED.has(ts) ? 'ValueError' : 'NotImplementedError');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const tagAt = (p) => (p + 4 <= data.length ? ((view.getUint16(p, true) << 16) | view.getUint16(p + 2, true)) >>> 0 : null);
  // The Basic Offset Table is the first item; a malformed one is refused as pydicom refuses it.
  if (tagAt(0) !== 0xfffee000 || data.length < 8 || view.getUint32(4, true) % 4 !== 0) throw refused();
  let p = 8 + view.getUint32(4, true);
  const fragments = [];
  for (;;) {
    const tag = tagAt(p);
    if (tag === null || tag === 0xfffee0dd) break;
    if (tag !== 0xfffee000 || p + 8 > data.length) throw refused();
    const length = view.getUint32(p + 4, true);
    if (length === 0xffffffff) throw refused();
    fragments.push(data.subarray(p + 8, Math.min(data.length, p + 8 + length)));
    p += 8 + length;
  }
  if (fragments.length === 1) return fragments[0];
  const out = new Uint8Array(fragments.reduce((s, f) => s + f.length, 0));
  let o = 0;
  for (const f of fragments) {
    out.set(f, o);
    o += f.length;
  }
  return out;
}

/**
 * Shape and sign checks, then pydicom's Bits Stored rule (`_checked`, `_keep_bits`).
 * @param {import('./codecs.js').Decoded} decoded
 * @param {number} rows
 * @param {number} cols
 * @param {number} reduction
 * @param {number} bits the bits to keep
 * @param {boolean} signed
 * @returns {Stored|null} null for another shape than expected
 */
function checked(decoded, rows, cols, reduction, bits, signed) {
  const expected = [Math.ceil(rows / reduction), Math.ceil(cols / reduction)];
  if ((decoded.components ?? 1) !== 1 || decoded.rows !== expected[0] || decoded.cols !== expected[1]) return null;
  let values = decoded.data;
  const wide = values.BYTES_PER_ELEMENT === 2;
  const isSigned = values instanceof Int8Array || values instanceof Int16Array;
  if (!isSigned && signed) values = wide ? new Int16Array(values.buffer, values.byteOffset, values.length) : new Int8Array(values.buffer, values.byteOffset, values.length);
  else if (isSigned && !signed) values = wide ? new Uint16Array(values.buffer, values.byteOffset, values.length) : new Uint8Array(values.buffer, values.byteOffset, values.length);
  return { values: keepBits(values, bits, signed), rows: decoded.rows, cols: decoded.cols, reduction, decoder: decoded.decoder };
}

/**
 * Keeps the low `bits` bits: masks unsigned values, sign-extends signed ones (pydicom >= 3).
 * @template {Uint8Array|Int8Array|Uint16Array|Int16Array} T
 * @param {T} values
 * @param {number} bits
 * @param {boolean} signed
 * @returns {T}
 */
export function keepBits(values, bits, signed) {
  const width = values.BYTES_PER_ELEMENT * 8;
  if (bits >= width) return values;
  // Indexed loops, not `for...of` or `map` with a callback: this runs over every full-size pixel.
  const n = values.length;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const out = () => /** @type {T} */ (new /** @type {any} */ (values.constructor)(n));
  if (!signed) {
    if (hi < 2 ** bits) return values;
    const masked = out();
    const mask = 2 ** bits - 1;
    for (let i = 0; i < n; i++) masked[i] = values[i] & mask;
    return masked;
  }
  if (-(2 ** (bits - 1)) <= lo && hi < 2 ** (bits - 1)) return values;
  const shift = 32 - bits;
  const extended = out();
  for (let i = 0; i < n; i++) extended[i] = (values[i] << shift) >> shift; // the typed array keeps the low `width` bits
  return extended;
}

/**
 * Box average of `factor` x `factor` blocks in the integer domain, as `cv2.resize(..., INTER_AREA)` on
 * 8- and 16-bit samples computes it for an integer factor (`area_reduce`): the last `rows % factor`
 * rows and `cols % factor` columns are dropped; 2 x 2 blocks average as `(sum + 2) >> 2`, larger ones
 * as `sum / factor**2` rounded half to even.
 * @param {{values: Stored['values'], rows: number, cols: number}} stored
 * @param {number} factor
 * @returns {{values: Stored['values'], rows: number, cols: number}}
 */
export function areaReduce(stored, factor) {
  const { values, rows, cols } = stored;
  const outRows = Math.floor(rows / factor);
  const outCols = Math.floor(cols / factor);
  if (outRows === 0 || outCols === 0) return stored;
  const out = new /** @type {any} */ (values.constructor)(outRows * outCols);
  const area = factor * factor;
  for (let y = 0; y < outRows; y++) {
    for (let x = 0; x < outCols; x++) {
      let sum = 0;
      for (let dy = 0; dy < factor; dy++) {
        const row = (y * factor + dy) * cols + x * factor;
        for (let dx = 0; dx < factor; dx++) sum += values[row + dx];
      }
      // area is a power of two: the quotient is exact before it is rounded
      out[y * outCols + x] = factor === 2 ? (sum + 2) >> 2 : roundHalfEven(sum / area);
    }
  }
  return { values: out, rows: outRows, cols: outCols };
}

