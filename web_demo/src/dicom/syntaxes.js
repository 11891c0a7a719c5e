/**
 * DICOM transfer syntaxes by UID, grouped by the codec that decodes them (`cxr_edge/imaging/syntaxes.py`),
 * and which of them the browser decodes.
 *
 * The browser decodes every syntax the Python reader decodes except JPEG Extended (Process 2 and 4,
 * 12-bit lossy JPEG): no well-kept npm package decodes it (libjpeg-turbo's WebAssembly build on npm is
 * 8-bit only). A file in that syntax is refused with {@link browserUnsupported}'s error; syntaxes that
 * neither reader decodes (MPEG, JPEG XL...) get the Python reader's own error.
 *
 * @module dicom/syntaxes
 */

export const IMPLICIT_LE = '1.2.840.10008.1.2';
export const EXPLICIT_LE = '1.2.840.10008.1.2.1';
export const DEFLATED = '1.2.840.10008.1.2.1.99';
export const BIG_ENDIAN = '1.2.840.10008.1.2.2';
export const RLE = '1.2.840.10008.1.2.5';
export const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
export const JPEG_EXTENDED = '1.2.840.10008.1.2.4.51';

/** Uncompressed syntaxes (a deflated dataset is inflated first). */
export const NATIVE = new Set([IMPLICIT_LE, EXPLICIT_LE, DEFLATED, BIG_ENDIAN]);
/** What the Python reader decodes with libjpeg-turbo: JPEG Extended (12 bit), JPEG Lossless 14 and SV1. */
export const JPEG_LIBJPEG_TURBO = new Set([JPEG_EXTENDED, '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70']);
/** JPEG Lossless, process 14 and its selection value 1: jpeg-lossless-decoder-js in the browser. */
export const JPEG_LOSSLESS = new Set(['1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70']);
export const JPEG_LS = new Set(['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81']);
export const J2K = new Set(['1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91']);
export const HTJ2K = new Set(['1.2.840.10008.1.2.4.201', '1.2.840.10008.1.2.4.202', '1.2.840.10008.1.2.4.203']);

/** Codec family names used in error messages (`SYNTAX_NAMES`). */
export const SYNTAX_NAMES = Object.freeze({
  [RLE]: 'RLE',
  [JPEG_BASELINE]: 'JPEG baseline',
  ...Object.fromEntries([...JPEG_LIBJPEG_TURBO].map((uid) => [uid, 'JPEG extended/lossless'])),
  ...Object.fromEntries([...JPEG_LS].map((uid) => [uid, 'JPEG-LS'])),
  ...Object.fromEntries([...J2K].map((uid) => [uid, 'JPEG 2000'])),
  ...Object.fromEntries([...HTJ2K].map((uid) => [uid, 'HTJ2K'])),
});

/** Compressed syntaxes the Python reader decodes. */
export const PYTHON_COMPRESSED = new Set([RLE, JPEG_BASELINE, ...JPEG_LIBJPEG_TURBO, ...JPEG_LS, ...J2K, ...HTJ2K]);
/** Compressed syntaxes the Python reader decodes and the browser does not. */
export const BROWSER_UNSUPPORTED = new Set([JPEG_EXTENDED]);
/** Every syntax the browser decodes. */
export const BROWSER_SYNTAXES = new Set([...NATIVE, ...[...PYTHON_COMPRESSED].filter((uid) => !BROWSER_UNSUPPORTED.has(uid))]);

/**
 * Whether a syntax is encapsulated (compressed frames in items), as opposed to native pixel data.
 * @param {string} uid
 */
export function isCompressed(uid) {
  return !NATIVE.has(uid);
}
