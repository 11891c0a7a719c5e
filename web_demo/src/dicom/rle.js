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

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** What the PackBits decoder found wrong (imagecodecs' `IMCD_INPUT_CORRUPT` / `IMCD_OUTPUT_TOO_SMALL`). */
export class RleError extends Error {}

/**
 * Decodes one PackBits segment into every `stride`-th byte of `out` from `offset` (`n` bytes): a byte
 * plane goes straight to its place in the samples, without a plane buffer to interleave afterwards.
 * @param {Uint8Array} src
 * @param {Uint8Array} out
 * @param {number} n bytes of the plane
 * @param {number} stride bytes per sample
 * @param {number} offset the plane's byte within a sample
 * @returns {number} bytes written
 */
function packbits(src, out, n, stride, offset) {
  let s = 0;
  let d = 0;
  const end = src.length;
  // The last byte alone cannot start a run that has data: it is padding.
  while (s < end - 1) {
    const h = src[s++];
    if (h < 128) {
      const count = h + 1;
      if (s + count > end) throw new RleError('input corrupt: literal run past the end of its segment');
      if (d + count > n) throw new RleError('output too small: literal run past the end of the image');
      for (let i = 0, o = offset + d * stride; i < count; i++, o += stride) out[o] = src[s + i];
      s += count;
      d += count;
    } else if (h > 128) {
      const count = 257 - h;
      if (d + count > n) throw new RleError('output too small: repeat run past the end of the image');
      const value = src[s++];
      for (let i = 0, o = offset + d * stride; i < count; i++, o += stride) out[o] = value;
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
  // Segments come most significant byte first; a sample's bytes lie in the host's order.
  const raw = new Uint8Array(n * bytes);
  for (let k = 0; k < bytes; k++) {
    const end = k + 1 < bytes ? offsets[k + 1] : frame.length;
    const place = LITTLE_ENDIAN_HOST ? bytes - 1 - k : k;
    if (packbits(frame.subarray(offsets[k], end), raw, n, bytes, place) !== n) return null;
  }
  if (bytes === 1) return signed ? new Int8Array(raw.buffer) : raw;
  return signed ? new Int16Array(raw.buffer) : new Uint16Array(raw.buffer);
}
