/**
 * DICOM stored values to intensities in [0, 1] (`cxr_edge/imaging/intensity.py`): stored value ->
 * Modality LUT (Rescale Slope/Intercept, or a Modality LUT Sequence) -> VOI LUT Sequence, else Window
 * Center/Width (LINEAR, LINEAR_EXACT or SIGMOID), else min-max over the image -> MONOCHROME1 inverted
 * last, so that bone is always bright.
 *
 * The mapping is computed in float64 with the Python reader's exact steps (pydicom's
 * `apply_modality_lut` and `apply_voi`, numpy's operation order), once per distinct stored value, and
 * rounded to float32 at the end, as `to_unit_by_table` does; min-max results are float32 before the
 * inversion, as there. The attributes are checked first ({@link checkAttributes}) with the same typed
 * errors.
 *
 * @module dicom/intensity
 */

import { UnsupportedImageError } from '../errors.js';
import { roundHalfEven } from '../numeric.js';
import { pyFloat } from './pyformat.js';

/**
 * A decimal-string attribute as read (DS): pydicom's `str()` of its value and its numbers.
 * @typedef {object} NumberAttribute
 * @property {string} text `str(value)` (`0.5`, or `[1, 2]` for several values; '' when empty)
 * @property {number[]} values the values as floats (NaN where one does not parse)
 */

/**
 * One item of a VOI LUT or Modality LUT Sequence.
 * @typedef {object} LutItem
 * @property {number[]|null} descriptor LUT Descriptor (first value unsigned, second signed when SS)
 * @property {Uint16Array|null} data LUT Data as 16-bit words (null when absent)
 * @property {boolean} ow whether LUT Data is OW (its first `entries` words are read) rather than US
 */

/**
 * What the intensity mapping reads from a dataset.
 * @typedef {object} IntensityAttributes
 * @property {NumberAttribute} [RescaleSlope]
 * @property {NumberAttribute} [RescaleIntercept]
 * @property {NumberAttribute} [WindowCenter]
 * @property {NumberAttribute} [WindowWidth]
 * @property {string|null} VOILUTFunction
 * @property {LutItem[]|null} VOILUTSequence
 * @property {LutItem[]|null} ModalityLUTSequence
 */

/**
 * Checks the attributes that map stored values to intensities (`check_attributes`).
 * @param {IntensityAttributes} ds
 */
export function checkAttributes(ds) {
  for (const keyword of ['RescaleSlope', 'RescaleIntercept', 'WindowCenter', 'WindowWidth']) {
    const attr = ds[keyword];
    if (!attr || attr.text === '') continue;
    const value = firstNumber(attr);
    if (value === null || !Number.isFinite(value) || (keyword === 'RescaleSlope' && value === 0)) {
      throw new UnsupportedImageError(`invalid ${keyword}`, {
        expected: `a finite number${keyword === 'RescaleSlope' ? ', not 0' : ''}`,
        received: attr.text.slice(0, 60),
      });
    }
  }
  for (const keyword of ['VOILUTSequence', 'ModalityLUTSequence']) {
    const items = ds[keyword];
    if (!items?.length) continue;
    const { descriptor, data } = items[0];
    if (descriptor === null || descriptor.length !== 3 || data === null) {
      throw new UnsupportedImageError(`invalid ${keyword}`, {
        expected: 'an item with a 3-value LUT Descriptor and LUT Data',
        received: `LUT Descriptor ${descriptor === null ? 'missing' : `[${descriptor.join(', ')}]`}${data === null ? ', no LUT Data' : ''}`,
      });
    }
  }
}

/**
 * The first value of a possibly multi-valued number, or null (`first_number`).
 * @param {NumberAttribute|undefined} attr
 * @returns {number|null}
 */
export function firstNumber(attr) {
  return !attr || attr.text === '' || !attr.values.length ? null : attr.values[0];
}

/**
 * Whether a VOI LUT or a window decides the mapping (`has_voi`).
 * @param {IntensityAttributes} ds
 */
export function hasVoi(ds) {
  if (ds.VOILUTSequence?.length) return true;
  const center = firstNumber(ds.WindowCenter);
  const width = firstNumber(ds.WindowWidth);
  return center !== null && width !== null && width > 0;
}

/**
 * Stored values -> float32 intensities in [0, 1], MONOCHROME1 inverted (`to_unit_by_table`).
 * @param {ArrayLike<number>} values stored values (integers)
 * @param {IntensityAttributes} ds
 * @param {boolean} inverted
 * @returns {{image: Float32Array, intensity: string, range: ValueRange}}
 */
export function toUnit(values, ds, inverted) {
  const { lo, hi, present } = storedValues(values);
  const span = hi - lo + 1;
  // Modality values of every stored value from lo to hi (float64, pydicom's apply_modality_lut).
  const modality = new Float64Array(span);
  for (let k = 0; k < span; k++) modality[k] = lo + k;
  applyModality(modality, ds);
  for (let k = 0; k < span; k++) {
    if (!Number.isFinite(modality[k])) {
      throw new UnsupportedImageError('the Modality LUT gives values beyond floating point', {
        expected: 'Rescale Slope and Intercept that keep stored values finite',
        received: `slope ${ds.RescaleSlope ? ds.RescaleSlope.text.slice(0, 60) : '1'}, intercept ${ds.RescaleIntercept ? ds.RescaleIntercept.text.slice(0, 60) : '0'}`,
      });
    }
  }
  const { table, intensity, single } = voiTable(modality, present, ds);
  const out = new Float32Array(span);
  for (let k = 0; k < span; k++) {
    // min-max values are float32 before the inversion; window and VOI LUT values float64
    const t = single ? Math.fround(table[k]) : table[k];
    out[k] = inverted ? 1 - t : t;
  }
  const image = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) image[i] = out[values[i] - lo];
  // The image holds exactly the table's entries of the stored values present: its range is theirs, so the
  // reader's check need not scan the full-size image again.
  const range = { lo: Infinity, hi: -Infinity, nan: 0 };
  for (let k = 0; k < span; k++) {
    if (!present[k]) continue;
    const v = out[k];
    if (v < range.lo) range.lo = v;
    if (v > range.hi) range.hi = v;
    if (v !== v) range.nan++;
  }
  return { image, intensity, range };
}

/**
 * The smallest and largest stored value and which values in between occur. 8- and 16-bit stored values
 * are marked in one pass over the image in a table of every value the type holds (the image is the
 * full-size part of the work, the table at most 64 Ki entries).
 * @param {ArrayLike<number>} values
 * @returns {{lo: number, hi: number, present: Uint8Array}} `present[v - lo]` is 1 where value v occurs
 */
function storedValues(values) {
  const typed = [Uint8Array, Int8Array, Uint16Array, Int16Array].some((T) => values instanceof T);
  if (typed && values.length) {
    const offset = values instanceof Int8Array ? 128 : values instanceof Int16Array ? 32768 : 0;
    const seen = new Uint8Array(values.BYTES_PER_ELEMENT === 1 ? 256 : 65536);
    for (let i = 0; i < values.length; i++) seen[values[i] + offset] = 1;
    let first = 0;
    while (!seen[first]) first++;
    let last = seen.length - 1;
    while (!seen[last]) last--;
    return { lo: first - offset, hi: last - offset, present: seen.subarray(first, last + 1) };
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const present = new Uint8Array(hi - lo + 1);
  for (let i = 0; i < values.length; i++) present[values[i] - lo] = 1;
  return { lo, hi, present };
}

/**
 * The smallest and largest value of an image and whether it holds NaN (which the comparisons skip).
 * @typedef {{lo: number, hi: number, nan: number}} ValueRange
 */

/**
 * pydicom's `apply_modality_lut` in place on float64 values (integers in).
 * @param {Float64Array} values
 * @param {IntensityAttributes} ds
 */
function applyModality(values, ds) {
  const items = ds.ModalityLUTSequence;
  if (items?.length) {
    const { entries, first, lut } = lutTable(items[0], 'ModalityLUTSequence', true);
    for (let k = 0; k < values.length; k++) {
      const index = Math.min(Math.max(values[k] >= first ? values[k] - first : 0, 0), entries - 1);
      if (index >= lut.length) throw lutError('ModalityLUTSequence', 'IndexError');
      values[k] = lut[index];
    }
    return;
  }
  if (!ds.RescaleSlope || !ds.RescaleIntercept) return;
  if (ds.RescaleSlope.text === '' || ds.RescaleIntercept.text === '') throw lutError('ModalityLUTSequence', 'TypeError');
  if (ds.RescaleSlope.values.length > 1 || ds.RescaleIntercept.values.length > 1) throw lutError('ModalityLUTSequence', 'ValueError');
  const slope = ds.RescaleSlope.values[0];
  const intercept = ds.RescaleIntercept.values[0];
  for (let k = 0; k < values.length; k++) values[k] = values[k] * slope + intercept;
}

/**
 * The VOI step (LUT sequence, window or min-max) on modality values: `to_unit` after the Modality LUT.
 * @param {Float64Array} values modality values of the stored values lo..hi
 * @param {Uint8Array} present which of them occur in the image
 * @param {IntensityAttributes} ds
 * @returns {{table: Float64Array, intensity: string, single: boolean}} `single`: float32 results
 */
function voiTable(values, present, ds) {
  const n = values.length;
  const table = new Float64Array(n);
  const items = ds.VOILUTSequence;
  if (items?.length) {
    const { entries, first, lut, mask } = lutTable(items[0], 'VOILUTSequence', false);
    const look = (v) => {
      // pydicom's index array has the LUT's dtype: v - first wraps to it before the clip
      const index = Math.min(v >= first ? (v - first) & mask : 0, entries - 1);
      if (index >= lut.length) throw lutError('VOILUTSequence', 'IndexError');
      return lut[index];
    };
    let lo = Infinity;
    let hi = -Infinity;
    for (let e = 0; e < entries; e++) {
      const v = look(first + e);
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    for (let k = 0; k < n; k++) {
      // LUT inputs are integers: the Python reader rounds them (half to even) first
      const out = look(roundHalfEven(values[k]));
      table[k] = hi <= lo ? 0 : Math.min(Math.max((out - lo) / (hi - lo), 0), 1);
    }
    return { table, intensity: 'voi_lut', single: hi <= lo };
  }
  const center = firstNumber(ds.WindowCenter);
  const width = firstNumber(ds.WindowWidth);
  if (center !== null && width !== null && width > 0) {
    const fn = (ds.VOILUTFunction || 'LINEAR').toUpperCase();
    if (fn === 'SIGMOID') {
      for (let k = 0; k < n; k++) table[k] = 1 / (1 + Math.exp((-4 * (values[k] - center)) / width));
    } else if (fn === 'LINEAR_EXACT') {
      for (let k = 0; k < n; k++) table[k] = Math.min(Math.max((values[k] - center) / width + 0.5, 0), 1);
    } else {
      if (width < 1) throw new UnsupportedImageError('invalid window', { expected: 'Window Width >= 1 for LINEAR', received: pyFloat(width) });
      for (let k = 0; k < n; k++) table[k] = Math.min(Math.max((values[k] - (center - 0.5)) / (width - 1) + 0.5, 0), 1);
    }
    return { table, intensity: 'window', single: false };
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (let k = 0; k < n; k++) {
    if (!present[k]) continue;
    if (values[k] < lo) lo = values[k];
    if (values[k] > hi) hi = values[k];
  }
  if (hi > lo) for (let k = 0; k < n; k++) table[k] = (values[k] - lo) / (hi - lo);
  return { table, intensity: 'minmax', single: true };
}

/**
 * A LUT item as pydicom reads it: entries (0 means 65536), first mapped value, the LUT's values.
 * @param {LutItem} item
 * @param {string} keyword
 * @param {boolean} modality the Modality LUT (LUT dtype `uint{depth}`) rather than the VOI LUT
 */
function lutTable(item, keyword, modality) {
  const [n, first, depth] = item.descriptor;
  const entries = n || 65536;
  let bytes;
  if (modality) {
    if (depth !== 8 && depth !== 16) throw lutError(keyword, 'TypeError'); // numpy: no such dtype
    bytes = depth / 8;
  } else if (depth >= 10 && depth <= 16) bytes = 2;
  else if (depth === 8) bytes = 1;
  else throw lutError(keyword, 'NotImplementedError');
  let words = item.data;
  if (item.ow) {
    if (words.length < entries) throw lutError(keyword, 'error'); // struct.unpack_from needs them all
    words = words.subarray(0, entries);
  }
  if (bytes === 1 && words.some((w) => w > 255)) throw lutError(keyword, 'OverflowError');
  return { entries, first, lut: words, mask: bytes === 1 ? 0xff : 0xffff };
}

/**
 * @param {string} keyword
 * @param {string} exception the exception pydicom raises
 */
function lutError(keyword, exception) {
  return new UnsupportedImageError(`invalid ${keyword}`, {
    expected: 'a LUT Descriptor and LUT Data that agree',
    received: `a LUT pydicom cannot apply (${exception})`,
  });
}
