/**
 * DICOM RLE Lossless (PS3.5 Annex G), written from the standard: no well-kept npm package decodes it on
 * its own (cornerstone keeps its decoder inside its image loader). One greyscale frame of 8- or 16-bit
 * samples: a 64-byte header of segment offsets ({@link rleCheckHeader}), then one PackBits segment per
 * byte plane, most significant byte first.
 *
 * Strict as the Python reader's codec (imagecodecs' `dicomrle_decode`): a segment that asks for more
 * output than the image holds, or whose literal run lacks its bytes, is corrupt; a lone header byte at a
 * segment's end (its even-length padding) is ignored. A segment that ends short returns null, the
 * Python reader's cue to let pydicom try (which the browser reports as undecodable).
 *
 * @module dicom/rle
 */

import { rleCheckHeader } from './codestream.js';

/** What the PackBits decoder found wrong (imagecodecs' `IMCD_INPUT_CORRUPT` / `IMCD_OUTPUT_TOO_SMALL`). */
export class RleError extends Error {}

/**
 * Decodes one PackBits segment into `out` (`out.length` bytes).
 * @param {Uint8Array} src
 * @param {Uint8Array} out
 * @returns {number} bytes written
 */
function packbits(src, out) {
  let s = 0;
  let d = 0;
  const end = src.length;
  // The last byte alone cannot start a run that has data: it is padding.
  while (s < end - 1) {
    const n = src[s++];
    if (n < 128) {
      const count = n + 1;
      if (s + count > end) throw new RleError('input corrupt: literal run past the end of its segment');
      if (d + count > out.length) throw new RleError('output too small: literal run past the end of the image');
      // Runs are mostly a few bytes: a loop beats a subarray view per run.
      if (count < 32) for (let i = 0; i < count; i++) out[d + i] = src[s + i];
      else out.set(src.subarray(s, s + count), d);
      s += count;
      d += count;
    } else if (n > 128) {
      const count = 257 - n;
      if (d + count > out.length) throw new RleError('output too small: repeat run past the end of the image');
      const value = src[s++];
      if (count < 32) for (let i = 0; i < count; i++) out[d + i] = value;
      else out.fill(value, d, d + count);
      d += count;
    } // 128: no operation
  }
  return d;
}

/**
 * Decodes a DICOM RLE frame of one sample per pixel.
 * @param {Uint8Array} frame
 * @param {number} rows
 * @param {number} cols
 * @param {number} allocated 8 or 16
 * @param {boolean} signed
 * @returns {Uint8Array|Int8Array|Uint16Array|Int16Array|null} the stored values, or null when a segment
 *     ends before its plane does
 */
export function rleDecode(frame, rows, cols, allocated, signed) {
  const bytes = allocated / 8;
  const offsets = rleCheckHeader(frame, bytes);
  const n = rows * cols;
  const planes = [];
  for (let k = 0; k < bytes; k++) {
    const end = k + 1 < bytes ? offsets[k + 1] : frame.length;
    const plane = new Uint8Array(n);
    if (packbits(frame.subarray(offsets[k], end), plane) !== n) return null;
    planes.push(plane);
  }
  if (bytes === 1) return signed ? new Int8Array(planes[0].buffer) : planes[0];
  const out = signed ? new Int16Array(n) : new Uint16Array(n);
  const [hi, lo] = planes;
  for (let i = 0; i < n; i++) out[i] = (hi[i] << 8) | lo[i];
  return out;
}
