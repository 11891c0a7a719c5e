/**
 * What compressed pixel data declares about itself, read from its markers before anything is decoded
 * (`cxr_edge/imaging/codestream.py`): the size and the components a JPEG, JPEG-LS, JPEG 2000 or HTJ2K
 * frame declares (a decoder allocates what the codestream says, not what the DICOM header says), the
 * tile-part lengths of
 * a JPEG 2000 codestream (a cut one may still end with an end-of-codestream marker) and the segment
 * table of a DICOM RLE frame. Nothing here decodes pixels.
 *
 * @module dicom/codestream
 */

import { ImageDecodeError } from '../errors.js';

// JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC); F7 is JPEG-LS's SOF55.
const JPEG_SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf, 0xf7]);
const JPEG_NO_LENGTH = new Set([0xd8, 0x01, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7]); // SOI, TEM, RST0-7
const J2K_SOC_SIZ = [0xff, 0x4f, 0xff, 0x51];
const J2K_SOT = 0xff90;
const J2K_EOC = 0xffd9;

const u16 = (d, i) => (d[i] << 8) | d[i + 1];
const u32 = (d, i) => ((d[i] << 24) >>> 0) + (d[i + 1] << 16) + (d[i + 2] << 8) + d[i + 3];
const hex4 = (n) => n.toString(16).toUpperCase().padStart(4, '0');

/**
 * `[width, height, precision]` from the first start-of-frame marker of a JPEG or JPEG-LS stream.
 * @param {Uint8Array} data
 * @returns {[number, number, number]}
 */
export function jpegSize(data) {
  return /** @type {[number, number, number]} */ (jpegFrame(data).slice(0, 3));
}

/**
 * `[width, height, precision, components]` from the first start-of-frame marker of a JPEG or JPEG-LS
 * stream (`jpeg_frame`).
 * @param {Uint8Array} data
 * @returns {[number, number, number, number]}
 */
export function jpegFrame(data) {
  let i = 2;
  const n = data.length;
  while (i + 4 <= n) {
    if (data[i] !== 0xff) {
      i += 1;
      continue;
    }
    const marker = data[i + 1];
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    if (JPEG_NO_LENGTH.has(marker)) {
      i += 2;
      continue;
    }
    if (marker === 0xda) break; // start of scan before any frame header
    if (JPEG_SOF.has(marker) && i + 10 <= n) return [u16(data, i + 7), u16(data, i + 5), data[i + 4], data[i + 9]];
    i += 2 + u16(data, i + 2);
  }
  throw new ImageDecodeError('truncated or corrupt JPEG', { expected: 'a start-of-frame marker', received: 'none' });
}

/**
 * Where SOC + SIZ start within the first 64 KiB, or -1.
 * @param {Uint8Array} data
 */
function findSocSiz(data) {
  const end = Math.min(data.length, 1 << 16) - J2K_SOC_SIZ.length;
  for (let i = 0; i <= end; i++) {
    if (data[i] === 0xff && data[i + 1] === 0x4f && data[i + 2] === 0xff && data[i + 3] === 0x51) return i;
  }
  return -1;
}

/**
 * `[width, height]` of the image area from the SIZ marker of a JPEG 2000 / HTJ2K codestream (a JP2 file
 * is read at its codestream).
 * @param {Uint8Array} data
 * @returns {[number, number]}
 */
export function j2kSize(data) {
  const at = findSocSiz(data);
  if (at < 0 || at + 24 > data.length) {
    throw new ImageDecodeError('corrupt JPEG 2000 codestream', { expected: 'a SIZ marker after SOC', received: 'none' });
  }
  const [xsiz, ysiz, xosiz, yosiz] = [8, 12, 16, 20].map((o) => u32(data, at + o));
  return [Math.max(0, xsiz - xosiz), Math.max(0, ysiz - yosiz)];
}

/**
 * Checks the SIZ marker of a JPEG 2000 / HTJ2K codestream as ISO/IEC 15444-1 A.5.1 constrains it, and
 * returns its component count (`Csiz`; the decoder allocates an image plane for each) (`j2k_check_siz`).
 * Decoders trust SIZ: a tile height of 0 makes OpenJPH divide by zero, a tile of 1 x 1 pixels makes
 * millions of tiles.
 * @param {Uint8Array} data
 * @returns {number}
 * @throws {ImageDecodeError} no SIZ marker, one cut short, or values the standard does not allow: an empty
 *     image area, tiles of size 0, a tile grid that does not cover the image origin, more than 65535
 *     tiles, components of 0 or sampled at 0, component counts or precisions out of range
 */
export function j2kCheckSiz(data) {
  const at = findSocSiz(data);
  if (at < 0 || at + 42 > data.length) {
    throw new ImageDecodeError('corrupt JPEG 2000 codestream', { expected: 'a complete SIZ marker after SOC', received: 'none' });
  }
  const length = u16(data, at + 4);
  const [xsiz, ysiz, xosiz, yosiz, xtsiz, ytsiz, xtosiz, ytosiz] = [8, 12, 16, 20, 24, 28, 32, 36].map((o) => u32(data, at + o));
  const csiz = u16(data, at + 40);
  const components = data.subarray(at + 42, at + 42 + 3 * csiz);
  let problem = null;
  if (!(csiz >= 1 && csiz <= 16384) || length !== 38 + 3 * csiz || components.length < 3 * csiz) {
    problem = `${csiz} components in a SIZ of ${length} bytes`;
  } else if (xsiz <= xosiz || ysiz <= yosiz) {
    problem = 'an empty image area';
  } else if (xtsiz === 0 || ytsiz === 0) {
    problem = `tiles of ${xtsiz} x ${ytsiz}`;
  } else if (!(xtosiz <= xosiz && xosiz < xtosiz + xtsiz && ytosiz <= yosiz && yosiz < ytosiz + ytsiz)) {
    problem = 'a tile grid that does not cover the image origin';
  } else if (Math.ceil((xsiz - xtosiz) / xtsiz) * Math.ceil((ysiz - ytosiz) / ytsiz) > 65535) {
    problem = 'more than 65535 tiles';
  } else {
    for (let c = 0; c < csiz; c++) {
      const [precision, dx, dy] = [components[3 * c], components[3 * c + 1], components[3 * c + 2]];
      if ((precision & 0x7f) + 1 > 38 || dx === 0 || dy === 0) {
        problem = `component ${c} of ${(precision & 0x7f) + 1} bits sampled every ${dx} x ${dy}`;
        break;
      }
    }
  }
  if (problem !== null) {
    throw new ImageDecodeError('corrupt JPEG 2000 SIZ marker', { expected: 'values ISO/IEC 15444-1 allows', received: problem });
  }
  return csiz;
}

/**
 * Checks that every tile-part of a JPEG 2000 / HTJ2K codestream is complete (`j2k_check_tile_parts`).
 * @param {Uint8Array} data
 */
export function j2kCheckTileParts(data) {
  const start = findSocSiz(data);
  const end = data.length;
  let pos = start + 2;
  for (;;) {
    // main header: markers with a length, up to the first SOT
    if (pos + 4 > end) {
      throw new ImageDecodeError('truncated JPEG 2000 codestream', { expected: 'a tile-part (SOT marker)', received: 'end of data' });
    }
    const marker = u16(data, pos);
    const length = u16(data, pos + 2);
    if (marker === J2K_SOT) break;
    if (marker >> 8 !== 0xff || length < 2) {
      throw new ImageDecodeError('corrupt JPEG 2000 main header', { expected: 'marker segments', received: `bytes ${hex4(marker)}` });
    }
    pos += 2 + length;
  }
  let parts = 0;
  for (;;) {
    const marker = pos + 2 <= end ? u16(data, pos) : null;
    if (marker === J2K_EOC) return;
    if (marker !== J2K_SOT || pos + 12 > end) {
      throw new ImageDecodeError('truncated or corrupt JPEG 2000 codestream', {
        expected: `tile-part ${parts + 1} or the end-of-codestream marker`,
        received: marker === null ? 'end of data' : `bytes ${hex4(marker)} at offset ${pos}`,
      });
    }
    const psot = u32(data, pos + 6);
    if (psot === 0) return; // the last tile-part, running to the end of the codestream
    if (pos + psot > end - 2) {
      throw new ImageDecodeError('truncated JPEG 2000 codestream', {
        expected: `${psot} bytes in tile-part ${parts + 1}`,
        received: `${Math.max(0, end - 2 - pos)} before the end-of-codestream marker`,
      });
    }
    pos += psot;
    parts += 1;
  }
}

/**
 * The segment offsets of a DICOM RLE frame header (PS3.5 G.3.1), checked: `segments` segments whose
 * offsets increase from 64 and lie within the frame (`rle_check_header`).
 * @param {Uint8Array} frame
 * @param {number} segments samples per pixel x bytes per sample
 * @returns {number[]} the offsets
 */
export function rleCheckHeader(frame, segments) {
  if (frame.length < 64) {
    throw new ImageDecodeError('truncated RLE frame', { expected: 'a 64-byte header', received: `${frame.length} bytes` });
  }
  const view = new DataView(frame.buffer, frame.byteOffset, 64);
  const header = Array.from({ length: 16 }, (_, i) => view.getUint32(4 * i, true));
  if (header[0] !== segments) {
    throw new ImageDecodeError('RLE frame does not match the header', {
      expected: `${segments} segments (samples x bytes per sample)`,
      received: `${header[0]}`,
    });
  }
  const offsets = header.slice(1, 1 + segments);
  const increasing = offsets.every((o, i) => i === 0 || o > offsets[i - 1]);
  if (offsets[0] !== 64 || !increasing || offsets[offsets.length - 1] >= frame.length) {
    throw new ImageDecodeError('corrupt RLE header', {
      expected: `increasing segment offsets from 64 within ${frame.length} bytes`,
      received: offsets.join(', '),
    });
  }
  return offsets;
}
