/**
 * A DICOM file's header, parsed as the Python reader has pydicom parse it
 * (`pydicom.dcmread(..., force=..., stop_before_pixels=True)`), with `dicom-parser` reading the
 * elements: the file meta group (read when the file starts with it, with or without the 128-byte
 * preamble), the dataset in the encoding its Transfer Syntax says (guessed from the first element when
 * there is none, as pydicom guesses), up to the Pixel Data element, whose position is kept. A dataset
 * cut short is what was read before the cut, as pydicom's lenient read gives it.
 *
 * Values are read with the data dictionary's VR for the few attributes the reader uses ({@link TAGS})
 * and converted as pydicom converts them (trailing padding stripped, several values split on `\`).
 *
 * @module dicom/dataset
 */

import { ImageDecodeError } from '../errors.js';
import { loadPackage } from './loader.js';
import { BIG_ENDIAN, IMPLICIT_LE } from './syntaxes.js';

/** The attributes the reader uses: keyword -> [tag, VR]. */
export const TAGS = Object.freeze({
  SOPClassUID: ['x00080016', 'UI'],
  Modality: ['x00080060', 'CS'],
  BodyPartExamined: ['x00180015', 'CS'],
  ViewPosition: ['x00185101', 'CS'],
  SamplesPerPixel: ['x00280002', 'US'],
  PhotometricInterpretation: ['x00280004', 'CS'],
  NumberOfFrames: ['x00280008', 'IS'],
  Rows: ['x00280010', 'US'],
  Columns: ['x00280011', 'US'],
  BitsAllocated: ['x00280100', 'US'],
  BitsStored: ['x00280101', 'US'],
  PixelRepresentation: ['x00280103', 'US'],
  WindowCenter: ['x00281050', 'DS'],
  WindowWidth: ['x00281051', 'DS'],
  RescaleIntercept: ['x00281052', 'DS'],
  RescaleSlope: ['x00281053', 'DS'],
  VOILUTFunction: ['x00281056', 'CS'],
  ModalityLUTSequence: ['x00283000', 'SQ'],
  LUTDescriptor: ['x00283002', 'US or SS'],
  LUTData: ['x00283006', 'US or OW'],
  VOILUTSequence: ['x00283010', 'SQ'],
  FloatPixelData: ['x7fe00008', 'OF'],
  DoubleFloatPixelData: ['x7fe00009', 'OD'],
  PixelData: ['x7fe00010', 'OB or OW'],
});

// VRs whose explicit-VR header holds a 4-byte length (12 bytes in all), as dicom-parser reads them.
const LONG_VRS = new Set(['OB', 'OD', 'OL', 'OW', 'SQ', 'OF', 'UC', 'UR', 'UT', 'UN']);
// The VRs pydicom knows (`pydicom.values.converters`): an explicit-VR dataset is recognised by one.
const VRS = new Set('AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(' '));

/**
 * A parsed header.
 * @typedef {object} ParsedDataset
 * @property {Header} header the dataset's attributes (meta group included)
 * @property {string} transferSyntax the file meta's Transfer Syntax UID ('' when there is none)
 * @property {boolean} littleEndian
 * @property {number|null} pixelTagAt where the Pixel Data element starts (null: not reached)
 * @property {number} end where the header-only read stopped
 */

/**
 * Parses the header of a Part 10 file (or of a bare dataset, as pydicom's `force=True` does).
 * @param {Uint8Array} data
 * @returns {Promise<ParsedDataset>}
 */
export async function parseDataset(data) {
  const dp = await loadPackage('dicomParser');
  let pos = data.length >= 132 && ascii(data, 128, 132) === 'DICM' ? 132 : 0;
  const meta = {};
  // The file meta group (explicit VR little endian), when the file starts with one.
  if (pos + 2 <= data.length && data[pos] === 0x02 && data[pos + 1] === 0x00) {
    const stream = new dp.ByteStream(dp.littleEndianByteArrayParser, data, pos);
    try {
      while (stream.position + 8 <= data.length) {
        const at = stream.position;
        const element = dp.readDicomElementExplicit(stream, []);
        if (!element.tag.startsWith('x0002')) {
          stream.position = at;
          break;
        }
        meta[element.tag] = element;
      }
    } catch {
      // a cut meta group: what was read
    }
    pos = Math.min(stream.position, data.length);
  }
  const tsElement = meta.x00020010;
  const hasTs = tsElement !== undefined;
  const transferSyntax = hasTs ? text(data, tsElement, true).replace(/[\0 ]+$/, '').replace(/^[\0 ]+/, '') : '';
  let implicit = true;
  let littleEndian = true;
  if (!hasTs) {
    if (pos + 6 <= data.length && VRS.has(ascii(data, pos + 4, pos + 6))) {
      implicit = false;
      if (data[pos] + 256 * data[pos + 1] >= 1024) littleEndian = false; // a big-endian group read backwards
    }
  } else if (transferSyntax === IMPLICIT_LE) {
    implicit = true;
  } else if (transferSyntax === BIG_ENDIAN) {
    implicit = false;
    littleEndian = false;
  } else {
    implicit = false; // explicit VR little endian, and every encapsulated syntax
  }
  const parser = littleEndian ? dp.littleEndianByteArrayParser : dp.bigEndianByteArrayParser;
  const dataSet = new dp.DataSet(parser, data, {});
  let end = pos;
  if (pos < data.length) {
    const stream = new dp.ByteStream(parser, data, pos);
    const parse = implicit ? dp.parseDicomDataSetImplicit : dp.parseDicomDataSetExplicit;
    try {
      parse(dataSet, stream, data.length, { untilTag: 'x7fe00010' });
    } catch {
      // cut short (or corrupt past this point): pydicom reads on what it can and keeps the rest
    }
    end = Math.min(stream.position, data.length);
  }
  const pixel = dataSet.elements.x7fe00010;
  const pixelTagAt = pixel ? pixel.dataOffset - (implicit || !LONG_VRS.has(pixel.vr) ? 8 : 12) : null;
  Object.assign(dataSet.elements, meta);
  const header = new Header(dataSet, data, littleEndian, implicit, null);
  return { header, transferSyntax, littleEndian, pixelTagAt, end: pixelTagAt ?? end };
}

/** The attributes of a dataset (or of a sequence item), read as pydicom converts them. */
export class Header {
  /**
   * @param {any} dataSet a dicom-parser DataSet
   * @param {Uint8Array} data
   * @param {boolean} littleEndian
   * @param {boolean} implicit
   * @param {Header|null} root the dataset holding this item (null for the dataset itself)
   */
  constructor(dataSet, data, littleEndian, implicit, root) {
    this.dataSet = dataSet;
    this.data = data;
    this.littleEndian = littleEndian;
    this.implicit = implicit;
    this.root = root ?? this;
  }

  /**
   * @param {keyof TAGS} keyword
   */
  element(keyword) {
    return this.dataSet.elements[TAGS[keyword][0]];
  }

  /**
   * `keyword in ds`.
   * @param {keyof TAGS} keyword
   */
  has(keyword) {
    return this.element(keyword) !== undefined;
  }

  /**
   * The element's VR: the file's (explicit VR) or the dictionary's (implicit VR, UN).
   * @param {keyof TAGS} keyword
   */
  vr(keyword) {
    const element = this.element(keyword);
    return !this.implicit && element?.vr && element.vr !== 'UN' ? element.vr : TAGS[keyword][1];
  }

  /**
   * A text attribute (CS, UI, IS, DS) as pydicom's `str(value)`: null when absent or empty; several
   * values as Python prints a list of them.
   * @param {keyof TAGS} keyword
   * @returns {string|null}
   */
  text(keyword) {
    const parts = this.parts(keyword);
    if (parts === null) return null;
    if (parts.length === 1) return parts[0] === '' ? null : parts[0];
    return TAGS[keyword][1] === 'DS' || TAGS[keyword][1] === 'IS' ? `[${parts.join(', ')}]` : `[${parts.map((p) => `'${p}'`).join(', ')}]`;
  }

  /**
   * The values of a text attribute (pydicom's `multi_string`), or null when absent.
   * @param {keyof TAGS} keyword
   * @returns {string[]|null}
   */
  parts(keyword) {
    const element = this.element(keyword);
    if (!element) return null;
    let value = text(this.data, element, TAGS[keyword][1] === 'UI').replace(/[ \0]+$/, '');
    if (TAGS[keyword][1] === 'UI') value = value.replace(/^[ \0]+/, '');
    const parts = value.split('\\');
    return ['DS', 'IS'].includes(TAGS[keyword][1]) ? parts.map((p) => p.trim()) : parts;
  }

  /**
   * A DS attribute as {@link import('./intensity.js').NumberAttribute}, or undefined when absent.
   * @param {keyof TAGS} keyword
   */
  numbers(keyword) {
    const parts = this.parts(keyword);
    if (parts === null) return undefined;
    const text = parts.length === 1 ? parts[0] : `[${parts.join(', ')}]`;
    return { text, values: parts.filter((p) => p !== '').map(pyNumber) };
  }

  /**
   * The values of a US (or SS) attribute, or null when absent or empty.
   * @param {keyof TAGS} keyword
   * @param {boolean} [signed]
   * @returns {number[]|null}
   */
  shorts(keyword, signed = false) {
    const element = this.element(keyword);
    if (!element || element.length < 2) return null;
    const end = Math.min(element.dataOffset + element.length, this.data.length);
    const view = new DataView(this.data.buffer, this.data.byteOffset, this.data.byteLength);
    const out = [];
    for (let p = element.dataOffset; p + 2 <= end; p += 2) out.push(signed ? view.getInt16(p, this.littleEndian) : view.getUint16(p, this.littleEndian));
    return out.length ? out : null;
  }

  /**
   * An integer attribute as the Python reader reads it (`_int_attribute`): the first value, `fallback`
   * when absent or empty.
   * @param {keyof TAGS} keyword
   * @param {number} fallback
   */
  int(keyword, fallback) {
    if (TAGS[keyword][1] === 'US' && this.vr(keyword) !== 'IS' && this.vr(keyword) !== 'DS') {
      return this.shorts(keyword)?.[0] ?? fallback;
    }
    const parts = this.parts(keyword);
    const first = parts?.[0] ?? '';
    if (first === '') return fallback;
    const value = Number(first);
    if (!/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(first) || !Number.isInteger(value)) {
      throw new ImageDecodeError(`invalid ${keyword}`, { expected: 'an integer', received: first.slice(0, 40) });
    }
    return value;
  }

  /**
   * The items of a sequence, each a Header, or null when absent.
   * @param {keyof TAGS} keyword
   * @returns {Header[]|null}
   */
  items(keyword) {
    const element = this.element(keyword);
    if (!element) return null;
    return (element.items ?? []).map((item) => new Header(item.dataSet, this.data, this.littleEndian, this.implicit, this.root));
  }

  /**
   * The items of a LUT sequence as {@link import('./intensity.js').LutItem}s, or null when absent.
   * @param {'VOILUTSequence'|'ModalityLUTSequence'} keyword
   */
  lutItems(keyword) {
    return this.items(keyword)?.map((item) => {
      const descriptorVR = item.vr('LUTDescriptor');
      // US or SS: the file's VR; without one, pydicom's rule (SS for signed pixel data)
      const signed = descriptorVR === 'SS' || (descriptorVR === 'US or SS' && this.root.int('PixelRepresentation', 0) === 1);
      const descriptor = item.shorts('LUTDescriptor', signed);
      if (descriptor && descriptor[0] < 0) descriptor[0] += 65536; // the number of entries is unsigned
      const data = item.has('LUTData') ? Uint16Array.from(item.shorts('LUTData') ?? []) : null;
      const dataVR = item.vr('LUTData');
      const ow = dataVR === 'OW' || (dataVR === 'US or OW' && !(descriptor && descriptor[0] === 1));
      return { descriptor, data, ow };
    }) ?? null;
  }
}

/**
 * Python's `float()` of a DS value (NaN where it does not parse).
 * @param {string} s
 */
function pyNumber(s) {
  const t = s.trim().toLowerCase();
  if (/^[+-]?(inf|infinity)$/.test(t)) return t.startsWith('-') ? -Infinity : Infinity;
  if (/^[+-]?nan$/.test(t)) return NaN;
  return /^[+-]?(\d+(\.\d*)?|\.\d+)([e][+-]?\d+)?$/.test(t) ? Number(t) : NaN;
}

/**
 * @param {Uint8Array} data
 * @param {number} start
 * @param {number} end
 */
function ascii(data, start, end) {
  return String.fromCharCode(...data.subarray(start, end));
}

/**
 * An element's value as text (bytes as Latin-1, cut at a NUL for UIDs).
 * @param {Uint8Array} data
 * @param {{dataOffset: number, length: number}} element
 * @param {boolean} cutAtNul
 */
function text(data, element, cutAtNul) {
  const end = Math.min(element.dataOffset + element.length, data.length);
  let s = '';
  for (let p = element.dataOffset; p < end; p++) {
    if (cutAtNul && data[p] === 0) break;
    s += String.fromCharCode(data[p]);
  }
  return s;
}
