/**
 * What reading a DICOM is told ({@link ReadOptions}: limits, colour policy, reduced decoding) and what it
 * tells back ({@link DicomImageInfo}: how the pixels were obtained, never who the patient is), as
 * `cxr_edge/imaging/image.py`.
 *
 * @module dicom/image
 */

import { ImageDecodeError, ImageTooLargeError } from '../errors.js';

/**
 * Ways to reduce a decode (`cxr_edge.imaging.pixels.KINDS`): `area` (full decode, then an integer box
 * average), `jpeg_dct`/`jpeg_dct_half` (libjpeg's DCT scaling) and `j2k_levels`/`j2k_levels_half`
 * (JPEG 2000 / HTJ2K wavelet levels).
 */
export const KINDS = Object.freeze(['area', 'jpeg_dct', 'jpeg_dct_half', 'j2k_levels', 'j2k_levels_half']);

/**
 * The kinds the browser can make: all of the Python reader's. libjpeg-turbo's WebAssembly build has no
 * DCT scaling, so `jpeg_dct` and `jpeg_dct_half` go through `jpegscaled.js` (libjpeg's reduced inverse
 * DCTs, pixel for pixel).
 */
export const BROWSER_KINDS = Object.freeze(['area', 'jpeg_dct', 'jpeg_dct_half', 'j2k_levels', 'j2k_levels_half']);

/**
 * The reduction kinds the browser uses for the kinds a bundle allows.
 * @param {readonly string[]} kinds
 * @returns {string[]}
 */
export function browserKinds(kinds) {
  return kinds.filter((k) => BROWSER_KINDS.includes(k));
}

/**
 * Reader options (`ReadOptions`).
 * @typedef {object} ReadOptions
 * @property {number} maxPixels decompression-bomb guard on the width x height a header or a codestream
 *     declares (36 MP: twice the largest chest detector)
 * @property {number} maxBytes files larger than this are refused
 * @property {number} maxInflatedBytes most bytes a deflated dataset may inflate to (also bounded by what
 *     its header says its pixels need, plus 1 MiB)
 * @property {'convert'|'reject'} color what a colour DICOM gets; the browser refuses colour DICOMs
 *     either way (see `dicom.js`)
 * @property {number|null} minSide allow a reduced decode that keeps at least this many pixels on the
 *     short side (null: full resolution)
 * @property {readonly string[]} reductions the reduction kinds allowed ({@link KINDS})
 */

/** @type {Readonly<ReadOptions>} */
export const DEFAULT_READ_OPTIONS = Object.freeze({
  maxPixels: 36_000_000,
  maxBytes: 128 << 20,
  maxInflatedBytes: 128 << 20,
  color: 'convert',
  minSide: null,
  reductions: KINDS,
});

/**
 * Options with defaults filled in.
 * @param {Partial<ReadOptions>} [options]
 * @returns {ReadOptions}
 */
export function readOptions(options = {}) {
  return { ...DEFAULT_READ_OPTIONS, ...options };
}

/**
 * How a DICOM was read (`ImageInfo`; no patient identifiers).
 * @typedef {object} DicomImageInfo
 * @property {string} source_file the name the caller gave
 * @property {'dicom'} format
 * @property {number} width columns of the decoded image
 * @property {number} height rows of the decoded image
 * @property {number} bits_stored
 * @property {string} photometric
 * @property {string|null} modality
 * @property {string|null} view_position
 * @property {string|null} body_part
 * @property {string|null} transfer_syntax the syntax's name
 * @property {string} intensity `window`, `voi_lut` or `minmax`
 * @property {boolean} inverted MONOCHROME1 was inverted
 * @property {string|null} converted_from always null here (colour DICOMs are refused)
 * @property {number} reduction source pixels per decoded pixel along each side
 * @property {string} decoder the codec that produced the stored values: `native`, `rle`,
 *     `libjpeg-turbo`, `jpeg-lossless`, `charls`, `openjpeg`, `openjph`, with `-level/N` for a codec's
 *     own reduction and `+area/N` for a box average after it (Python's names differ where its codecs do)
 */

/**
 * Refuses a declared size of no pixels or above `options.maxPixels` (`check_size`).
 * @param {number} width
 * @param {number} height
 * @param {ReadOptions} options
 */
export function checkSize(width, height, options) {
  if (width <= 0 || height <= 0) {
    throw new ImageDecodeError('image has no pixels', { expected: 'positive width and height', received: `${width}x${height}` });
  }
  if (width * height > options.maxPixels) {
    throw new ImageTooLargeError('image dimensions exceed the decompression-bomb guard', {
      expected: `at most ${options.maxPixels} pixels`,
      received: `${width}x${height} = ${width * height} pixels`,
    });
  }
}
