/**
 * Reading a DICOM chest X-ray into one float32 image in [0, 1] (`cxr_edge/imaging/reader.py` for DICOM
 * data): the file is decoded (`dicom.js`) and the result passes the one check every decoded image
 * passes ({@link checkedImage}): the size its header declared, finite values in [0, 1], not a single
 * intensity.
 *
 * Intensity conventions (as the Python reader's): stored value -> Bits Stored mask -> Modality LUT
 * (Rescale Slope/Intercept) -> VOI LUT Sequence, else Window Center/Width (LINEAR, LINEAR_EXACT or
 * SIGMOID), else min-max over the image; MONOCHROME1 inverted last so that bone is always bright.
 *
 * A reduced decode (`minSide`) uses only the reduction kinds the browser can make (`browserKinds`):
 * the Python reader given the same kinds returns the same image.
 *
 * @module dicom/reader
 */

import { ImageDecodeError, ImageTooLargeError, InputError, UnsupportedImageError } from '../errors.js';
import { decodeDicom } from './dicom.js';
import { browserKinds, readOptions } from './image.js';
import { pyG } from './pyformat.js';

/**
 * A decoded DICOM.
 * @typedef {object} DicomImage
 * @property {{width: number, height: number, data: Float32Array}} image in [0, 1], bright = dense
 * @property {import('./image.js').DicomImageInfo} info how it was read (no patient identifiers)
 */

/**
 * Reads DICOM bytes.
 * @param {Uint8Array} data the file's content
 * @param {string} [name] what to call the source in `info.source_file`
 * @param {Partial<import('./image.js').ReadOptions>} [options]
 * @returns {Promise<DicomImage>}
 */
export async function readDicom(data, name = '<bytes>', options = {}) {
  const opts = readOptions(options);
  opts.reductions = browserKinds(opts.reductions);
  if (!data.length) throw new InputError('empty file', { expected: 'image data', received: '0 bytes' });
  if (data.length > opts.maxBytes) {
    throw new ImageTooLargeError('file too large', { expected: `at most ${opts.maxBytes} bytes`, received: `${data.length} bytes` });
  }
  const { image, info, declared, range } = await decodeDicom(data, name, opts);
  checkedImage(image, info, declared, range);
  return { image: { width: info.width, height: info.height, data: image }, info };
}

/**
 * The one check every decoded image passes (`checked_image`).
 * @param {Float32Array} image
 * @param {{width: number, height: number, reduction: number}} info
 * @param {[number, number]} declared rows and columns the header declared
 * @param {import('./intensity.js').ValueRange|null} [range] the image's range when the decoder knows it
 *     (from its intensity table); else the image is scanned
 */
export function checkedImage(image, info, declared, range = null) {
  const [rows, cols] = declared;
  const r = info.reduction;
  const okRows = [Math.floor(rows / r), Math.ceil(rows / r)];
  const okCols = [Math.floor(cols / r), Math.ceil(cols / r)];
  if (!okRows.includes(info.height) || !okCols.includes(info.width) || image.length !== info.width * info.height) {
    throw new ImageDecodeError('decoded image differs from its declared size', {
      expected: `${cols}x${rows}${r > 1 ? ` reduced ${r}x` : ''}`,
      received: `${info.width}x${info.height}`,
    });
  }
  const { lo, hi, nan } = range ?? valueRange(image);
  if (nan || !(lo >= 0 && lo <= hi && hi <= 1)) {
    let bad = 0;
    for (let i = 0; i < image.length; i++) if (!Number.isFinite(image[i])) bad++;
    throw new ImageDecodeError('decoded intensities are not finite values in [0, 1]', {
      expected: 'finite values in [0, 1]',
      received: bad ? `${bad} of ${image.length} pixels NaN or infinite` : `values ${pyG(lo)} to ${pyG(hi)}`,
    });
  }
  if (lo === hi) {
    throw new UnsupportedImageError('image has a single intensity', { expected: 'a radiograph (varying intensities)', received: `every pixel ${pyG(lo)}` });
  }
}

/**
 * @param {Float32Array} image
 * @returns {import('./intensity.js').ValueRange}
 */
function valueRange(image) {
  let lo = Infinity;
  let hi = -Infinity;
  let nan = 0;
  for (let i = 0; i < image.length; i++) {
    const v = image[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    if (v !== v) nan++; // NaN, which min/max skip here (numpy's propagate it)
  }
  return { lo, hi, nan };
}
