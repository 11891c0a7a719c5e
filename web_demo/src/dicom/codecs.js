/**
 * One compressed frame through one codec (`cxr_edge/imaging/codecs.py`), each loaded on first use
 * (`loader.js`): libjpeg-turbo (8-bit JPEG baseline), jpeg-lossless-decoder-js (JPEG Lossless 14 and
 * SV1), CharLS (JPEG-LS), OpenJPEG (JPEG 2000, with its own reduced-resolution decode) and OpenJPH
 * (HTJ2K, likewise), all as published on npm; RLE is `rle.js`.
 *
 * What a codec throws on data of a syntax it covers becomes a typed error ({@link runCodec}); a codec
 * whose WebAssembly instance threw is dropped and instantiated again on the next frame (an Emscripten
 * module that aborted is unusable). The message names the codec family as the Python reader's does;
 * the codec's own words are not available (the WebAssembly builds throw bare C++ exception pointers),
 * and what libjpeg only warns about (corrupt data inside an 8-bit JPEG that still ends with its end
 * marker) decodes here, where the Python reader's strict mode refuses it. A truncated frame is refused
 * by both before decoding (`pixels.js`, `checkFrame`).
 *
 * @module dicom/codecs
 */

import { ImageDecodeError } from '../errors.js';
import { forgetPackage, loadPackage } from './loader.js';
import { decodeScaled } from './jpegscaled.js';
import { rleDecode } from './rle.js';
import { HTJ2K, J2K, JPEG_BASELINE, JPEG_LOSSLESS, JPEG_LS, RLE, SYNTAX_NAMES } from './syntaxes.js';

/**
 * Stored values as a codec returns them, row-major.
 * @typedef {object} Decoded
 * @property {Uint8Array|Int8Array|Uint16Array|Int16Array} data
 * @property {number} rows
 * @property {number} cols
 * @property {number} [components] samples per pixel the codec returned (1 when absent)
 * @property {string} decoder the codec's name, as `ImageInfo.decoder` reports it
 */

/**
 * Runs a codec; what it throws on a frame of a syntax it covers is a typed error, not a retry.
 * @param {() => Promise<Decoded|null>} decode
 * @param {string} ts the transfer syntax
 * @returns {Promise<Decoded|null>}
 */
export async function runCodec(decode, ts) {
  try {
    return await decode();
  } catch (err) {
    if (err instanceof ImageDecodeError) throw err;
    const name = typeof err === 'object' && err?.constructor?.name && err.constructor.name !== 'Object' ? err.constructor.name : 'Error';
    throw new ImageDecodeError('corrupt compressed pixel data', {
      expected: `a frame the ${SYNTAX_NAMES[ts] ?? ts} codec can decode`,
      received: `codec errors (${name})`,
    });
  }
}

/**
 * The whole frame at full resolution, or null where no codec covers the syntax.
 * @param {Uint8Array} frame
 * @param {string} ts
 * @param {number} allocated bits allocated (8 or 16)
 * @param {boolean} signed
 * @param {number} rows
 * @param {number} cols
 * @returns {Promise<Decoded|null>}
 */
export async function decodeFull(frame, ts, allocated, signed, rows, cols) {
  if (ts === RLE) {
    const data = rleDecode(frame, rows, cols, allocated, signed);
    return data && { data, rows, cols, decoder: 'rle' };
  }
  if (ts === JPEG_BASELINE) return emscripten('libjpegTurbo', 'JPEGDecoder', frame, null, 'libjpeg-turbo');
  if (JPEG_LOSSLESS.has(ts)) return jpegLossless(frame);
  if (JPEG_LS.has(ts)) return emscripten('charls', 'JpegLSDecoder', frame, null, 'charls');
  if (J2K.has(ts)) return emscripten('openjpeg', 'J2KDecoder', frame, null, 'openjpeg');
  if (HTJ2K.has(ts)) return emscripten('openjph', 'HTJ2KDecoder', frame, null, 'openjph');
  return null;
}

/**
 * A codec's own reduced decode (8-bit JPEG DCT scaling, JPEG 2000 / HTJ2K resolution levels), or null
 * where it has none (or, for JPEG, where `jpegscaled.js` leaves the stream to libjpeg-turbo's full decode).
 * @param {Uint8Array} frame
 * @param {string} ts
 * @param {number} reduction 2, 4 or 8
 * @returns {Promise<Decoded|null>}
 */
export async function decodeReduced(frame, ts, reduction) {
  const levels = Math.log2(reduction);
  if (ts === JPEG_BASELINE) return decodeScaled(frame, /** @type {2|4|8} */ (reduction));
  if (J2K.has(ts)) return emscripten('openjpeg', 'J2KDecoder', frame, [levels, 0], `openjpeg-level/${reduction}`);
  if (HTJ2K.has(ts)) return emscripten('openjph', 'HTJ2KDecoder', frame, [levels], `openjph-level/${reduction}`);
  return null;
}

/**
 * A frame through one of the cornerstone WebAssembly codecs (`getEncodedBuffer` / `decode` /
 * `getFrameInfo` / `getDecodedBuffer`).
 * @param {'libjpegTurbo'|'charls'|'openjpeg'|'openjph'} pkg
 * @param {string} cls the decoder class
 * @param {Uint8Array} frame
 * @param {number[]|null} sub `decodeSubResolution` arguments, or null for `decode`
 * @param {string} decoder
 * @returns {Promise<Decoded>}
 */
async function emscripten(pkg, cls, frame, sub, decoder) {
  const codec = await loadPackage(pkg);
  let instance;
  try {
    instance = new codec[cls]();
    instance.getEncodedBuffer(frame.length).set(frame);
    if (sub) instance.decodeSubResolution(...sub);
    else instance.decode();
    const info = instance.getFrameInfo();
    const raw = instance.getDecodedBuffer();
    const rows = info.height;
    const cols = info.width;
    if (sub) {
      // The reduced size, as the codec computes it (ceil of the size / 2**levels for a zero offset).
      const size = instance.calculateSizeAtDecompositionLevel(sub[0]);
      [info.width, info.height] = [size.width, size.height];
    }
    const n = info.width * info.height * (info.componentCount || 1);
    const bytes = n ? raw.length / n : 0;
    if (bytes !== 1 && bytes !== 2) {
      throw new ImageDecodeError('corrupt compressed pixel data', {
        expected: `a frame the ${decoder} codec can decode`,
        received: `${raw.length} bytes for ${cols}x${rows} samples`,
      });
    }
    const copy = raw.slice(); // the WebAssembly memory is reused by the next frame
    const Type = bytes === 1 ? (info.isSigned ? Int8Array : Uint8Array) : info.isSigned ? Int16Array : Uint16Array;
    return {
      data: new Type(copy.buffer, 0, n),
      rows: info.height,
      cols: info.width,
      components: info.componentCount || 1,
      decoder,
    };
  } catch (err) {
    if (!(err instanceof ImageDecodeError)) forgetPackage(pkg); // an aborted instance cannot be reused
    throw err;
  } finally {
    try {
      instance?.delete();
    } catch {
      // the instance died with the module
    }
  }
}

/**
 * JPEG Lossless (process 14, any predictor) through jpeg-lossless-decoder-js.
 * @param {Uint8Array} frame
 * @returns {Promise<Decoded>}
 */
async function jpegLossless(frame) {
  const { Decoder } = await loadPackage('jpegLossless');
  const decoder = new Decoder();
  const copy = frame.slice();
  const out = decoder.decompress(copy.buffer, 0, copy.length);
  const rows = decoder.yDim;
  const cols = decoder.xDim;
  const components = decoder.numComp;
  const data = decoder.numBytes === 1 ? new Uint8Array(out) : new Uint16Array(out);
  return { data, rows, cols, components, decoder: 'jpeg-lossless' };
}
