/**
 * Site calibration, mirroring `cxr_edge/ops/site.py` (float64 throughout, as numpy does).
 *
 * A hospital adapts a bundle to its own images with `cxr-edge site calibrate`; the new bundle (format 4)
 * carries the result as its manifest's `site` section, which changes two steps of the prediction:
 *
 * 1. **member heads** (method `head`): a member with a refitted head computes its probabilities from its
 *    `features` output instead of its own `probs`: `softmax(mean_hw(features) @ weights + bias)`
 *    ({@link headProbs}, {@link memberProbs});
 * 2. **site temperature and bias** (every method), after the ensemble's combiner and temperature:
 *    `softmax(log(clip(p, 1e-12, 1)) / T + bias)` ({@link applySite}).
 *
 * The label stays the argmax of the final probabilities, so the heat map, the referral and everything
 * shown read the same decision as every other runtime. The other fields (name, date, parent, images,
 * metrics...) are informational.
 *
 * The manifest checks ({@link parseSite}, {@link checkSite}) are those of `SiteCalibration.__post_init__`,
 * `BundleManifest._check_site` and `_check_version_fields`, plus the schema's field types: a format-4
 * bundle is read only together with its site section, so that it never predicts silently as its parent.
 *
 * @module site
 */

import { softmax } from './ensemble.js';
import { BundleError } from './errors.js';

/** The calibration methods (`SiteMethod`). */
export const SITE_METHODS = Object.freeze(['prior', 'head']);
/** The bundle format that carries a site section (`SITE_FORMAT_VERSION`). */
export const SITE_FORMAT_VERSION = 4;
const EPS = 1e-12;
const KEYS = Object.freeze([
  'name', 'date', 'parent_sha256', 'method', 'images', 'patients', 'temperature', 'bias', 'heads',
  'operating_point', 'metrics', 'reference', 'image_digests', 'parent_signed_by',
]);
const POINT_KEYS = Object.freeze(['normal_label', 'target_sensitivity', 'normal_shift']);

/**
 * A member's refitted head: `softmax(gap(features) @ weights + bias)`.
 * @typedef {{weights: number[][], bias: number[]}} MemberHead
 * @typedef {{normal_label: string, target_sensitivity: number, normal_shift: number}} OperatingPoint
 * @typedef {object} SiteCalibration the manifest's `site` section
 * @property {string} name the site's name
 * @property {string} date ISO date of the calibration
 * @property {string} parent_sha256 the bundle it was fitted on
 * @property {'prior'|'head'} method
 * @property {Record<string, number>} images labelled images per label
 * @property {number} patients
 * @property {number} temperature site temperature (1 = none)
 * @property {number[]} bias per-label bias after the temperature ([] = none)
 * @property {Record<string, MemberHead>} heads refitted heads by member name
 * @property {OperatingPoint|null} operating_point (already folded into `bias`)
 * @property {object} metrics
 * @property {object} reference
 * @property {string[]} image_digests
 * @property {string|null} parent_signed_by key id of the parent bundle's signature (`ed25519:...`), so a
 *     calibrated bundle re-signed by the site's key still names who made the model; null: the parent was
 *     unsigned (informational)
 */

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isNumber = (v) => typeof v === 'number';
const numbers = (v) => Array.isArray(v) && v.every(isNumber);

/**
 * @param {string} where
 * @param {string} expected
 * @param {unknown} value
 */
function invalid(where, expected, value) {
  return new BundleError(`invalid bundle manifest: invalid value at ${where}`, { expected, received: JSON.stringify(value) ?? String(value) });
}

/**
 * Refuses keys the format does not define (the schema's `additionalProperties: false`): an unknown key
 * could be a parameter of a later calibration that this runtime would silently skip.
 * @param {object} o
 * @param {readonly string[]} allowed
 * @param {string} where
 */
function knownKeys(o, allowed, where) {
  const unknown = Object.keys(o).filter((k) => !allowed.includes(k)).sort();
  if (unknown.length) {
    throw new BundleError(`invalid bundle manifest: unknown keys in ${where}`, { expected: `keys among ${JSON.stringify([...allowed].sort())}`, received: JSON.stringify(unknown) });
  }
}

/**
 * Parses the manifest's `site` section and checks its own fields (types, method, temperature, bias,
 * operating point); what it says about the models is checked by {@link checkSite}.
 * @param {unknown} data the `site` value (absent or null: no calibration)
 * @returns {SiteCalibration|null}
 */
export function parseSite(data) {
  if (data === undefined || data === null) return null;
  if (!isObject(data)) throw invalid('site', 'an object', data);
  knownKeys(data, KEYS, 'site');
  for (const key of ['name', 'date', 'parent_sha256', 'method']) {
    if (typeof data[key] !== 'string') throw invalid(`site.${key}`, 'a string', data[key]);
  }
  if (!isObject(data.images) || !Object.values(data.images).every(Number.isInteger)) {
    throw invalid('site.images', 'an object of integers', data.images);
  }
  if (!Number.isInteger(data.patients)) throw invalid('site.patients', 'an integer', data.patients);
  const temperature = data.temperature ?? 1;
  if (!isNumber(temperature)) throw invalid('site.temperature', 'a number', temperature);
  const bias = data.bias ?? [];
  if (!numbers(bias)) throw invalid('site.bias', 'a list of numbers', bias);
  const heads = data.heads ?? {};
  if (!isObject(heads)) throw invalid('site.heads', 'an object', heads);
  for (const [name, head] of Object.entries(heads)) {
    const where = `site.heads.${name}`;
    if (!isObject(head)) throw invalid(where, 'an object', head);
    knownKeys(head, ['weights', 'bias'], where);
    if (!Array.isArray(head.weights) || !head.weights.every(numbers)) throw invalid(`${where}.weights`, 'a list of lists of numbers', head.weights);
    if (!numbers(head.bias)) throw invalid(`${where}.bias`, 'a list of numbers', head.bias);
  }
  const point = data.operating_point ?? null;
  if (point !== null) {
    if (!isObject(point)) throw invalid('site.operating_point', 'an object or null', point);
    knownKeys(point, POINT_KEYS, 'site.operating_point');
    if (typeof point.normal_label !== 'string') throw invalid('site.operating_point.normal_label', 'a string', point.normal_label);
    if (!isNumber(point.target_sensitivity) || !isNumber(point.normal_shift)) {
      throw invalid('site.operating_point', 'numbers target_sensitivity and normal_shift', point);
    }
    if (!(point.target_sensitivity > 0 && point.target_sensitivity < 1)) {
      throw new BundleError('invalid bundle manifest: invalid target sensitivity', { expected: 'a fraction in (0, 1)', received: String(point.target_sensitivity) });
    }
  }
  for (const key of ['metrics', 'reference']) {
    if (data[key] !== undefined && !isObject(data[key])) throw invalid(`site.${key}`, 'an object', data[key]);
  }
  const digests = data.image_digests ?? [];
  if (!Array.isArray(digests) || !digests.every((d) => typeof d === 'string')) throw invalid('site.image_digests', 'a list of strings', digests);
  const parentSignedBy = data.parent_signed_by ?? null;
  if (parentSignedBy !== null && typeof parentSignedBy !== 'string') throw invalid('site.parent_signed_by', 'a string or null', parentSignedBy);
  // The checks of SiteCalibration.__post_init__.
  if (!SITE_METHODS.includes(data.method)) {
    throw new BundleError('invalid bundle manifest: unknown site calibration method', { expected: SITE_METHODS.join(' or '), received: data.method });
  }
  if (!(Number.isFinite(temperature) && temperature > 0)) {
    throw new BundleError('invalid bundle manifest: invalid site temperature', { expected: 'a finite T > 0', received: String(temperature) });
  }
  if (!bias.every(Number.isFinite)) throw new BundleError('invalid bundle manifest: invalid site bias', { expected: 'finite numbers', received: JSON.stringify(bias) });
  return {
    name: data.name,
    date: data.date,
    parent_sha256: data.parent_sha256,
    method: data.method,
    images: data.images,
    patients: data.patients,
    temperature,
    bias,
    heads,
    operating_point: point,
    metrics: data.metrics ?? {},
    reference: data.reference ?? {},
    image_digests: digests,
    parent_signed_by: parentSignedBy,
  };
}

/**
 * The cross-field checks (`_check_version_fields` for the site, `_check_site`): a site section exactly
 * in format 4, a bias per label, heads only for ensemble members and shaped `(K, n_labels)` over their
 * model's `features` output, an operating point on a bundle label.
 * @param {import('./bundle.js').Manifest} m
 */
export function checkSite(m) {
  const site = m.site;
  // Both ways: format 4 means "calibrated", so a runtime that reads only up to format 3 refuses every
  // bundle it could not apply in full, and a site section in an older format is never dropped.
  if ((site !== null) !== (m.format_version >= SITE_FORMAT_VERSION)) {
    throw new BundleError('site calibration and format version disagree', {
      expected: `a site section exactly when format_version is ${SITE_FORMAT_VERSION}`,
      received: `format_version ${m.format_version}, ${site !== null ? 'a' : 'no'} site section`,
    });
  }
  if (site === null) return;
  const n = m.labels.length;
  if (site.bias.length && site.bias.length !== n) {
    throw new BundleError('site bias does not fit the labels', { expected: `${n} values`, received: String(site.bias.length) });
  }
  for (const [name, head] of Object.entries(site.heads)) {
    if (!m.ensemble.members.includes(name)) {
      throw new BundleError('site head names a model that is not an ensemble member', { expected: `one of ${JSON.stringify(m.ensemble.members)}`, received: name });
    }
    const features = m.models.find((x) => x.name === name)?.outputs.features;
    const channels = features ? features.shape[features.shape.length - 1] : null;
    if (channels === null || head.weights.length !== channels || head.bias.length !== n) {
      throw new BundleError(`site head of ${name} does not fit the model`, {
        expected: `(${channels}, ${n}) weights over its features output and ${n} biases`,
        received: `(${head.weights.length}, ${head.weights[0]?.length ?? 0}) weights, ${head.bias.length} biases`,
      });
    }
    if (head.weights.some((row) => row.length !== n)) {
      throw new BundleError(`site head of ${name} has ragged weights`, { expected: `${n} per row` });
    }
  }
  const point = site.operating_point;
  if (point && !m.labels.includes(point.normal_label)) {
    throw new BundleError('site operating point names an unknown label', { expected: `one of ${JSON.stringify(m.labels)}`, received: point.normal_label });
  }
}

/**
 * Class probabilities of a member's refitted head on its `(h, w, K)` feature map (`MemberHead.probs`):
 * global average pooling (positions summed in order, then divided, as numpy's mean), the dense layer,
 * softmax.
 * @param {MemberHead} head
 * @param {{shape: number[], data: ArrayLike<number>}} features dequantised, without the batch axis
 * @returns {number[]}
 */
export function headProbs(head, features) {
  const k = features.shape[features.shape.length - 1];
  if (k !== head.weights.length) {
    throw new BundleError("site head does not fit the member's features", { expected: `${head.weights.length} feature channels`, received: String(k) });
  }
  const positions = features.data.length / k;
  const pooled = new Float64Array(k);
  for (let p = 0; p < positions; p++) for (let c = 0; c < k; c++) pooled[c] += features.data[p * k + c];
  for (let c = 0; c < k; c++) pooled[c] /= positions;
  const z = head.bias.map((b, j) => {
    let acc = 0;
    for (let c = 0; c < k; c++) acc += pooled[c] * head.weights[c][j];
    return acc + b;
  });
  return softmax(z);
}

/**
 * A member's probabilities: its refitted head's when the site has one for it, else its own `probs`
 * (`SiteCalibration.member_probs`).
 * @param {SiteCalibration} site
 * @param {string} name member name
 * @param {ArrayLike<number>} probs the model's (renormalised) `probs` output
 * @param {{shape: number[], data: ArrayLike<number>}|undefined|null} features the model's `features` output
 * @returns {ArrayLike<number>}
 */
export function memberProbs(site, name, probs, features) {
  const head = site.heads[name];
  if (!head) return probs;
  if (!features) {
    throw new BundleError(`site head of ${name} needs the member's features output`, { expected: 'a model with a features output', received: 'none' });
  }
  return headProbs(head, features);
}

/**
 * Site temperature and bias on combined probabilities (`SiteCalibration.apply`).
 * @param {{temperature: number, bias: number[]}} site
 * @param {ArrayLike<number>} probs
 * @returns {number[]}
 */
export function applySite(site, probs) {
  const z = Array.from(probs, (p) => Math.log(Math.min(Math.max(p, EPS), 1)) / site.temperature);
  return softmax(site.bias.length ? z.map((v, i) => v + site.bias[i]) : z);
}
