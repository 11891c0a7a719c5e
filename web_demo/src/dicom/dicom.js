/**
 * DICOM objects to images (`cxr_edge/imaging/dicom.py`): the header is parsed once up to the Pixel Data
 * (`dataset.js`), whose value is taken as a view of the file's bytes; a deflated dataset is inflated
 * first within the bounds its header sets (`deflate.js`); the modality and the group-0028 pixel
 * description are checked ({@link layoutOf}) with the Python reader's typed errors and messages; the
 * stored values decode per syntax (`pixels.js`) and `intensity.js` maps them to [0, 1].
 *
 * Where the browser differs from the Python reader (it refuses, with an `UnsupportedImageError` that
 * says so, what the Python reader hands to pydicom's slower decoders):
 *
 * - colour DICOMs (RGB, YBR) are refused as `ReadOptions(color="reject")` refuses them (the app's input
 *   checks refuse colour images anyway);
 * - Bits Allocated 1 or 32 (no radiograph uses them) and float pixel data;
 * - JPEG Extended (12-bit lossy JPEG), which no npm package decodes (`syntaxes.js`).
 *
 * @module dicom/dicom
 */

import { ImageDecodeError, UnsupportedImageError } from '../errors.js';
import { parseDataset } from './dataset.js';
import { inflatePart10, mentionsDeflate } from './deflate.js';
import { checkSize } from './image.js';
import { checkAttributes, toUnit } from './intensity.js';
import { chooseReduction, decodeStored, undecodable } from './pixels.js';
import { BIG_ENDIAN, IMPLICIT_LE } from './syntaxes.js';
import { uidName } from './uids.js';

/**
 * Modalities a projection chest radiograph can carry (`PROJECTION_MODALITIES`): OT covers secondary
 * captures of radiographs; an empty modality is accepted because many exported files omit it.
 */
export const PROJECTION_MODALITIES = new Set(['CR', 'DX', 'DR', 'RG', 'OT', '']);

// Palette colour would need its LUT applied first; no radiograph uses it, so it is refused.
const SUPPORTED_PHOTOMETRIC = new Set(['MONOCHROME1', 'MONOCHROME2', 'RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_ICT', 'YBR_RCT']);
const GREY = new Set(['MONOCHROME1', 'MONOCHROME2']);
const SEQUENCE_DELIMITER = [0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0];

/**
 * Decodes a DICOM file (`decode_dicom`).
 * @param {Uint8Array} data the file's content
 * @param {string} name what to call it in `ImageInfo.source_file`
 * @param {import('./image.js').ReadOptions} options
 * @returns {Promise<{image: Float32Array, info: import('./image.js').DicomImageInfo, declared: [number, number],
 *     stored: import('./pixels.js').Stored}>} the image (row-major, `info.height` x `info.width`), the
 *     size its header declared and the stored values it was mapped from
 */
export async function decodeDicom(data, name, options) {
  let plain = data;
  let syntaxName = null; // the file's own syntax, when the data parsed below is an inflated copy
  if (mentionsDeflate(data)) {
    const inflated = await inflatePart10(data, options);
    if (inflated !== null) {
      plain = new Uint8Array(inflated.meta.length + inflated.dataset.length);
      plain.set(inflated.meta);
      plain.set(inflated.dataset, inflated.meta.length);
      syntaxName = 'Deflated Explicit VR Little Endian';
    }
  }
  const parsed = await parseDataset(plain);
  const pixels = pixelDataView(plain, parsed);
  return dicomImage(parsed, name, options, pixels, syntaxName);
}

/**
 * The Pixel Data value where the header-only parse stopped, or null where it is not plainly there
 * (`_pixel_data_view`); encapsulated data runs to the end of the file.
 * @param {Uint8Array} data
 * @param {import('./dataset.js').ParsedDataset} parsed
 * @returns {Uint8Array|null}
 */
function pixelDataView(data, parsed) {
  const ts = parsed.transferSyntax;
  const pos = parsed.end;
  if (!ts || ts === BIG_ENDIAN || pos + 12 > data.length) return null;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (view.getUint16(pos, true) !== 0x7fe0 || view.getUint16(pos + 2, true) !== 0x0010) return null;
  let length;
  let start;
  const vr = String.fromCharCode(data[pos + 4], data[pos + 5]);
  if (ts === IMPLICIT_LE) [length, start] = [view.getUint32(pos + 4, true), pos + 8];
  else if (['OB', 'OW', 'UN'].includes(vr)) [length, start] = [view.getUint32(pos + 8, true), pos + 12];
  else return null;
  if (length === 0xffffffff) {
    if (lastIndexOf(data, SEQUENCE_DELIMITER, start) < 0) {
      throw new ImageDecodeError('truncated pixel data', {
        expected: 'an encapsulated sequence delimiter (FFFE,E0DD)',
        received: 'end of file',
      });
    }
    return data.subarray(start);
  }
  // Short pixel data stays a view too: the decoder says how many bytes are missing.
  return data.subarray(start, Math.min(data.length, start + length));
}

/**
 * The pixel description of a DICOM image (group 0028), checked before any pixel is decoded
 * (`_layout`), with typed errors naming the attribute.
 * @param {import('./dataset.js').Header} ds
 * @param {import('./image.js').ReadOptions} options
 */
export function layoutOf(ds, options) {
  const frames = ds.int('NumberOfFrames', 1);
  if (frames < 1) throw new ImageDecodeError('invalid NumberOfFrames', { expected: '1 or more', received: String(frames) });
  if (frames > 1) throw new UnsupportedImageError('multi-frame DICOM', { expected: 'a single frame', received: `${frames} frames` });
  if (!ds.has('Rows') || !ds.has('Columns')) {
    throw new ImageDecodeError('DICOM lacks Rows/Columns', { expected: 'image geometry', received: 'missing attributes' });
  }
  const rows = ds.int('Rows', 0);
  const cols = ds.int('Columns', 0);
  checkSize(cols, rows, options);
  const samples = ds.int('SamplesPerPixel', 1);
  const allocated = ds.int('BitsAllocated', 8);
  const stored = ds.int('BitsStored', allocated);
  const representation = ds.int('PixelRepresentation', 0);
  const photometric = (ds.text('PhotometricInterpretation') || 'MONOCHROME2').trim().toUpperCase();
  if (!SUPPORTED_PHOTOMETRIC.has(photometric)) {
    throw new UnsupportedImageError('unsupported photometric interpretation', {
      expected: 'MONOCHROME1, MONOCHROME2, RGB or YBR',
      received: photometric,
    });
  }
  const grey = GREY.has(photometric);
  if (samples !== (grey ? 1 : 3)) {
    throw new UnsupportedImageError('SamplesPerPixel does not match the photometric interpretation', {
      expected: `${grey ? 1 : 3} for ${photometric}`,
      received: String(samples),
    });
  }
  if (![1, 8, 16, 32].includes(allocated) || !(stored >= 1 && stored <= allocated) || ![0, 1].includes(representation)) {
    throw new UnsupportedImageError('unsupported pixel encoding', {
      expected: 'BitsAllocated 1/8/16/32, 1 <= BitsStored <= BitsAllocated, PixelRepresentation 0/1',
      received: `BitsAllocated ${allocated}, BitsStored ${stored}, PixelRepresentation ${representation}`,
    });
  }
  return { rows, cols, samples, allocated, stored, signed: representation === 1, photometric };
}

/**
 * Checks and decodes a parsed DICOM (`_dicom_image`).
 * @param {import('./dataset.js').ParsedDataset} parsed
 * @param {string} name
 * @param {import('./image.js').ReadOptions} options
 * @param {Uint8Array|null} view the Pixel Data value, when plainly there
 * @param {string|null} syntaxName the file's syntax when the parsed data is an inflated copy
 */
async function dicomImage(parsed, name, options, view, syntaxName) {
  const ds = parsed.header;
  if (view === null && parsed.pixelTagAt === null && !ds.has('FloatPixelData') && !ds.has('DoubleFloatPixelData')) {
    const sop = ds.text('SOPClassUID');
    throw new UnsupportedImageError('DICOM object has no pixel data', {
      expected: 'an image object (CR/DX)',
      received: (sop && uidName(sop)) || 'an object without a SOP Class',
    });
  }
  const modality = (ds.text('Modality') ?? '').toUpperCase();
  if (!PROJECTION_MODALITIES.has(modality)) {
    throw new UnsupportedImageError('modality is not a projection radiograph', { expected: 'CR, DX, DR or RG', received: modality });
  }
  const layout = layoutOf(ds, options);
  const attributes = {
    RescaleSlope: ds.numbers('RescaleSlope'),
    RescaleIntercept: ds.numbers('RescaleIntercept'),
    WindowCenter: ds.numbers('WindowCenter'),
    WindowWidth: ds.numbers('WindowWidth'),
    VOILUTFunction: ds.text('VOILUTFunction'),
    VOILUTSequence: ds.lutItems('VOILUTSequence'),
    ModalityLUTSequence: ds.lutItems('ModalityLUTSequence'),
  };
  const grey = GREY.has(layout.photometric);
  if (grey) checkAttributes(attributes);
  if (!grey) {
    // What the Python reader does with ReadOptions(color="reject"), after decoding.
    throw new UnsupportedImageError('colour DICOM', { expected: 'a greyscale radiograph', received: layout.photometric });
  }
  if (parsed.pixelTagAt === null || (layout.allocated !== 8 && layout.allocated !== 16)) {
    throw new UnsupportedImageError('pixel encoding not supported in the browser', {
      expected: 'BitsAllocated 8 or 16 (`cxr-edge predict` reads this file)',
      received: parsed.pixelTagAt === null ? 'float pixel data' : `BitsAllocated ${layout.allocated}`,
    });
  }
  const ts = parsed.transferSyntax;
  if (!ts) throw undecodable('', 'AttributeError'); // pydicom has no syntax to decode with
  const pixels = view ?? elementValue(ds);
  const reduction = chooseReduction(layout.rows, layout.cols, options.minSide);
  const stored = await decodeStored({ ts, ...layout }, pixels, reduction, options.reductions);
  const inverted = layout.photometric === 'MONOCHROME1';
  const { image, intensity, range } = toUnit(stored.values, attributes, inverted);
  const view_ = ds.text('ViewPosition');
  const body = ds.text('BodyPartExamined');
  /** @type {import('./image.js').DicomImageInfo} */
  const info = {
    source_file: name,
    format: 'dicom',
    width: stored.cols,
    height: stored.rows,
    bits_stored: layout.stored,
    photometric: layout.photometric,
    modality: modality || null,
    view_position: view_ || null,
    body_part: body || null,
    transfer_syntax: syntaxName ?? uidName(ts),
    intensity,
    inverted,
    converted_from: null,
    reduction: stored.reduction,
    decoder: stored.decoder,
  };
  return { image, info, declared: [layout.rows, layout.cols], stored, range };
}

/**
 * The Pixel Data element's value as parsed (big endian, or a VR the plain view does not take).
 * @param {import('./dataset.js').Header} ds
 */
function elementValue(ds) {
  const element = ds.element('PixelData');
  return ds.data.subarray(element.dataOffset, Math.min(ds.data.length, element.dataOffset + element.length));
}

/**
 * Last index of `needle` in `data` at or after `from`, or -1.
 * @param {Uint8Array} data
 * @param {number[]} needle
 * @param {number} from
 */
function lastIndexOf(data, needle, from) {
  outer: for (let i = data.length - needle.length; i >= from; i--) {
    for (let j = 0; j < needle.length; j++) if (data[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
