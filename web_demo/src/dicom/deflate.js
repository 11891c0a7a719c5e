/**
 * Deflated datasets inflated once, within the bounds their header sets (a deflate bomb holds 1 GB in
 * 1 MB), as `cxr_edge/imaging/deflate.py` does: the first 256 KiB, where the image header is, then the
 * rest up to what those pixels need plus 1 MiB.
 *
 * fflate inflates (the browser's `DecompressionStream('deflate-raw')` refuses data after the end of
 * the deflate stream, which real files carry, e.g. pydicom's `image_dfl.dcm`; fflate, like zlib,
 * ignores it). The input goes in 4 KiB at a time, so the bound is checked while inflating.
 *
 * @module dicom/deflate
 */

import { ImageDecodeError, ImageTooLargeError, UnsupportedImageError } from '../errors.js';
import { parseDataset } from './dataset.js';
import { loadPackage } from './loader.js';
import { DEFLATED } from './syntaxes.js';

/** Inflated bytes read first to find the image header (Rows, Columns...) of a deflated dataset. */
export const INFLATE_HEAD = 256 << 10;
/** Compressed bytes pushed at a time until the bound is known (deflate inflates at most ~1032:1). */
const STEP = 4096;
/**
 * ... and after: fflate copies its 32 KiB window on every push, so 4 KiB pushes spent more time copying
 * than inflating (a full-size file took ~500 ms). A 64 KiB push inflates at most ~66 MiB past the bound
 * before the check refuses it.
 */
const BOUNDED_STEP = 64 << 10;
const GROUP_LENGTH = [0x02, 0x00, 0x00, 0x00, 0x55, 0x4c, 0x04, 0x00]; // (0002,0000) UL, length 4

/**
 * Whether the Python reader treats the file as possibly deflated: the syntax's UID in its first 2 KiB.
 * @param {Uint8Array} data
 */
export function mentionsDeflate(data) {
  return indexOf(data.subarray(0, 2048), ascii(DEFLATED), 0) >= 0;
}

/**
 * A deflated Part 10 file's dataset, inflated (`inflate_part10`); a header declaring more than one
 * frame is refused before the rest is inflated.
 * @param {Uint8Array} data the file
 * @param {{maxInflatedBytes: number, maxPixels: number}} options
 * @returns {Promise<{meta: Uint8Array, dataset: Uint8Array}|null>} the file meta and the inflated
 *     dataset, or null when the file meta is well formed and its syntax is not deflated
 */
export async function inflatePart10(data, options) {
  const malformed = () =>
    new ImageDecodeError('deflated DICOM with a malformed file meta', {
      expected: 'a Part 10 file meta group with its group length',
      received: 'other bytes',
    });
  if (data.length < 144 || ascii2(data, 128, 132) !== 'DICM' || GROUP_LENGTH.some((b, i) => data[132 + i] !== b)) throw malformed();
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const metaEnd = 144 + view.getUint32(140, true);
  const at = indexOf(data.subarray(0, Math.min(metaEnd, data.length)), [0x02, 0x00, 0x10, 0x00, 0x55, 0x49], 144);
  if (at < 0 || metaEnd > data.length) throw malformed();
  const length = view.getUint16(at + 6, true);
  const uid = ascii2(data, at + 8, Math.min(at + 8 + length, data.length)).replace(/[\0 ]+$/, '');
  if (uid !== DEFLATED) return null;
  const meta = data.subarray(0, metaEnd);
  const dataset = await inflateBounded(data.subarray(metaEnd), meta, options);
  return { meta, dataset };
}

/**
 * Inflates the dataset: first its head, whose image header bounds the rest.
 * @param {Uint8Array} body
 * @param {Uint8Array} meta
 * @param {{maxInflatedBytes: number, maxPixels: number}} options
 */
async function inflateBounded(body, meta, options) {
  const { Inflate } = await loadPackage('fflate');
  /** @type {Uint8Array[]} */
  const chunks = [];
  let total = 0;
  let finished = false;
  const inflater = new Inflate((chunk, final) => {
    chunks.push(chunk);
    total += chunk.length;
    if (final) finished = true;
  });
  let bound = null;
  let failure = null;
  for (let i = 0, step = STEP; i < body.length && !finished; i += step) {
    step = bound === null ? STEP : BOUNDED_STEP;
    try {
      inflater.push(body.subarray(i, i + step), i + step >= body.length);
    } catch (err) {
      failure = err;
      break;
    }
    if (bound === null && (total >= INFLATE_HEAD || finished)) {
      if (finished && total <= INFLATE_HEAD) return join(chunks, total); // all of it in the head
      bound = Math.min(options.maxInflatedBytes, await inflatedBound(meta, join(chunks, total).subarray(0, INFLATE_HEAD), options.maxPixels));
    }
    if (bound !== null && total > bound) {
      throw new ImageTooLargeError('deflated dataset larger than its image needs (a decompression bomb?)', {
        expected: `at most ${bound} bytes inflated`,
        received: `more than ${bound}`,
      });
    }
  }
  // zlib tells a corrupt stream at once, a cut one only at its end (after the head's bound is known).
  const truncated = failure === null ? !finished : failure.code === 0; // fflate's "unexpected EOF"
  if (failure !== null && !truncated) {
    throw new ImageDecodeError('corrupt deflated dataset', { expected: 'a valid deflate stream', received: 'zlib errors' });
  }
  if (truncated) {
    if (bound === null) await inflatedBound(meta, join(chunks, total).subarray(0, INFLATE_HEAD), options.maxPixels);
    throw new ImageDecodeError('truncated deflated dataset', { expected: 'a complete deflate stream', received: 'end of data' });
  }
  return join(chunks, total);
}

/**
 * Most bytes a deflated dataset may inflate to: its header, its pixels as declared, 1 MiB more
 * (`_inflated_bound`).
 * @param {Uint8Array} meta
 * @param {Uint8Array} start the first inflated bytes
 * @param {number} maxPixels
 */
async function inflatedBound(meta, start, maxPixels) {
  const plain = new Uint8Array(meta.length + start.length);
  plain.set(meta);
  plain.set(start, meta.length);
  let rows;
  let cols;
  let samples;
  let allocated;
  let frames;
  let end;
  try {
    const parsed = await parseDataset(plain);
    const h = parsed.header;
    [rows, cols] = [h.shorts('Rows')?.[0], h.shorts('Columns')?.[0]];
    if (rows === undefined || cols === undefined) throw new Error('no Rows/Columns');
    samples = h.shorts('SamplesPerPixel')?.[0] || 1;
    allocated = h.shorts('BitsAllocated')?.[0] || 16;
    frames = h.int('NumberOfFrames', 1) || 1;
    end = parsed.end;
  } catch {
    throw new ImageTooLargeError('deflated DICOM without an image header near its start', {
      expected: `Rows and Columns within the first ${INFLATE_HEAD >> 10} KiB of the dataset`,
      received: 'none',
    });
  }
  if (frames > 1) {
    // refused by the reader's header checks too, but only after inflating it all
    throw new UnsupportedImageError('multi-frame DICOM', { expected: 'a single frame', received: `${frames} frames` });
  }
  if (Math.min(rows, cols, samples, allocated, frames) < 1 || rows * cols > maxPixels) {
    throw new ImageTooLargeError('image dimensions exceed the decompression-bomb guard', {
      expected: `at most ${maxPixels} pixels`,
      received: `${cols}x${rows}`,
    });
  }
  return end - meta.length + rows * cols * samples * frames * Math.ceil(allocated / 8) + (1 << 20);
}

/**
 * @param {Uint8Array[]} chunks
 * @param {number} total
 */
function join(chunks, total) {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  chunks.splice(0, chunks.length, out);
  return out;
}

/**
 * @param {string} s
 * @returns {number[]}
 */
function ascii(s) {
  return Array.from(s, (c) => c.charCodeAt(0));
}

/**
 * @param {Uint8Array} data
 * @param {number} start
 * @param {number} end
 */
function ascii2(data, start, end) {
  return String.fromCharCode(...data.subarray(start, end));
}

/**
 * First index of `needle` in `data` at or after `from`, or -1.
 * @param {Uint8Array} data
 * @param {number[]} needle
 * @param {number} from
 */
function indexOf(data, needle, from) {
  outer: for (let i = from; i + needle.length <= data.length; i++) {
    for (let j = 0; j < needle.length; j++) if (data[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
