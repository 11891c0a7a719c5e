/**
 * Loading a cxr-edge bundle (a folder with `manifest.json` and the `.tflite` files it names), with
 * the same checks as `cxr_edge/bundle/manifest.py`: readable format version, required fields, cross-field
 * consistency (labels, members, shapes, stacking sizes, segmenter) and the sha256 of every model file,
 * so a tampered or incomplete bundle is refused before it classifies anything.
 *
 * Format 3 adds `label_map` (manifest label -> bundle label), `ensemble.abstain` (the referral band),
 * `lung_evidence` (`{min_fraction, chosen_on}`, needs a segmenter) and `card` (the model card, whose
 * disclaimer must be `DISCLAIMER`); an older manifest may not use them. Format 4 is a site-calibrated
 * bundle (`cxr-edge site calibrate`): its `site` section is parsed and checked by `site.js`, and a
 * manifest has one exactly when it is format 4, so that a calibrated bundle never predicts as its parent.
 *
 * A bundle comes either from a URL (e.g. `bundle/` on the serving host) or from files the user picked
 * (a folder via `<input webkitdirectory>`).
 *
 * @module bundle
 */

import { METHODS } from './ensemble.js';
import { BundleError } from './errors.js';
import { DEFAULT_CROP } from './lungcrop.js';
import { parseSpec } from './preprocess.js';
import { checkSite, parseSite } from './site.js';

export const MANIFEST_NAME = 'manifest.json';
export const READABLE_VERSIONS = Object.freeze([1, 2, 3, 4]);
/** The disclaimer every model card carries (`cxr_edge.bundle.card.DISCLAIMER`). */
export const DISCLAIMER = 'Not a medical device. A research artefact: do not use it to make clinical decisions.';

/**
 * @typedef {{shape: number[], dtype: 'float32'|'int8'|'uint8', scale: number, zero_point: number}} TensorSpec
 * @typedef {object} ModelEntry
 * @property {string} name
 * @property {string} file
 * @property {string} sha256
 * @property {string} architecture
 * @property {string} quant
 * @property {TensorSpec} input
 * @property {Record<string, TensorSpec>} outputs
 * @property {number[][]|null} [cam_weights]
 * @typedef {object} SegmenterEntry
 * @property {string} name
 * @property {string} file
 * @property {string} sha256
 * @property {string} quant
 * @property {TensorSpec} input
 * @property {Record<string, TensorSpec>} outputs
 * @property {import('./preprocess.js').PreprocessSpec} preprocess
 * @property {import('./lungcrop.js').CropSpec} crop
 * @typedef {object} Manifest
 * @property {number} format_version
 * @property {string} name
 * @property {string[]} labels
 * @property {import('./preprocess.js').PreprocessSpec} preprocess
 * @property {ModelEntry[]} models
 * @property {import('./ensemble.js').EnsembleConfig} ensemble
 * @property {object} provenance
 * @property {SegmenterEntry|null} segmenter
 * @property {Record<string, string>} label_map manifest label -> bundle label (empty: identity)
 * @property {{min_fraction: number, chosen_on: string}|null} lung_evidence
 * @property {ModelCard|null} card
 * @property {import('./site.js').SiteCalibration|null} site the site calibration (format 4), or null
 * @typedef {object} ModelCard `cxr_edge.bundle.card.ModelCard` as JSON (intended_use, disclaimer, task,
 *     training_data, loso {recipe, command, report, note}, in_distribution, shortcut_audit,
 *     failure_modes, lung_evidence)
 * @typedef {{manifest: Manifest, files: Map<string, Uint8Array>, source: string}} Bundle
 */

/**
 * Hex sha256 of bytes (WebCrypto; needs a secure context such as http://127.0.0.1).
 * @param {Uint8Array} bytes
 */
export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * @param {unknown} t
 * @param {string} where
 * @returns {TensorSpec}
 */
function tensorSpec(t, where) {
  if (!t || !Array.isArray(t.shape) || !['float32', 'int8', 'uint8'].includes(t.dtype)) {
    throw new BundleError(`invalid tensor spec at ${where}`, { expected: 'shape and dtype float32/int8/uint8', received: JSON.stringify(t) });
  }
  return { shape: t.shape.map(Number), dtype: t.dtype, scale: Number(t.scale ?? 0), zero_point: Number(t.zero_point ?? 0) };
}

/**
 * @param {string} file
 */
function checkFileName(file) {
  if (typeof file !== 'string' || !file || file.includes('/') || file.includes('\\') || file === '..' || file === '.') {
    throw new BundleError('model file outside the bundle', { expected: 'a plain file name', received: String(file) });
  }
}

/**
 * Parses and checks a manifest (the checks of `BundleManifest.from_dict` and `check`).
 * @param {unknown} data
 * @returns {Manifest}
 */
export function parseManifest(data) {
  if (!data || typeof data !== 'object' || Array.isArray(data)) {
    throw new BundleError('bundle manifest is not a JSON object', { received: Array.isArray(data) ? 'list' : typeof data });
  }
  const version = data.format_version;
  if (!READABLE_VERSIONS.includes(version)) {
    throw new BundleError('unsupported bundle format', {
      expected: `format_version in (${READABLE_VERSIONS.join(', ')})`,
      received: `format_version ${JSON.stringify(version)}`,
    });
  }
  let preprocess;
  try {
    preprocess = parseSpec(data.preprocess);
  } catch (err) {
    throw new BundleError(`invalid bundle manifest: ${err.message}`);
  }
  const models = (data.models ?? []).map((m, i) => {
    if (!m || typeof m.name !== 'string' || typeof m.sha256 !== 'string') {
      throw new BundleError(`invalid model entry ${i}`, { expected: 'name, file, sha256, input, outputs', received: JSON.stringify(m).slice(0, 200) });
    }
    checkFileName(m.file);
    const outputs = Object.fromEntries(Object.entries(m.outputs ?? {}).map(([role, t]) => [role, tensorSpec(t, `${m.name}.outputs.${role}`)]));
    return { ...m, input: tensorSpec(m.input, `${m.name}.input`), outputs, cam_weights: m.cam_weights ?? null };
  });
  const e = data.ensemble ?? {};
  const ensemble = {
    method: e.method ?? 'mean',
    members: e.members ?? [],
    weights: e.weights ?? null,
    stacking: e.stacking ?? null,
    temperature: e.temperature ?? 1,
    abstain: e.abstain ? { min_top_prob: e.abstain.min_top_prob ?? 0.6, min_margin: e.abstain.min_margin ?? 0 } : null,
  };
  const ab = ensemble.abstain;
  if (ab && !(ab.min_top_prob >= 0 && ab.min_top_prob <= 1 && ab.min_margin >= 0 && ab.min_margin <= 1)) {
    throw new BundleError('invalid bundle manifest: invalid referral band', {
      expected: 'min_top_prob and min_margin in [0, 1]',
      received: `${ab.min_top_prob}, ${ab.min_margin}`,
    });
  }
  if (!METHODS.includes(ensemble.method)) {
    throw new BundleError(`invalid bundle manifest: unknown ensemble method`, { expected: METHODS.join(' or '), received: ensemble.method });
  }
  if (ensemble.method === 'weighted' && (!ensemble.weights || ensemble.weights.length !== ensemble.members.length)) {
    throw new BundleError('invalid bundle manifest: weighted ensemble needs one weight per member');
  }
  if (ensemble.method === 'stacking' && !ensemble.stacking) {
    throw new BundleError('invalid bundle manifest: stacking ensemble needs its meta-learner');
  }
  if (!(ensemble.temperature > 0)) throw new BundleError('invalid bundle manifest: invalid temperature');
  let segmenter = null;
  if (data.segmenter) {
    const s = data.segmenter;
    checkFileName(s.file);
    const outputs = Object.fromEntries(Object.entries(s.outputs ?? {}).map(([role, t]) => [role, tensorSpec(t, `segmenter.outputs.${role}`)]));
    let segSpec;
    try {
      segSpec = parseSpec(s.preprocess);
    } catch (err) {
      throw new BundleError(`invalid bundle manifest: segmenter ${err.message}`);
    }
    segmenter = { ...s, input: tensorSpec(s.input, 'segmenter.input'), outputs, preprocess: segSpec, crop: { ...DEFAULT_CROP, ...(s.crop ?? {}) } };
  }
  /** @type {Manifest} */
  const manifest = {
    format_version: version,
    name: String(data.name ?? ''),
    labels: data.labels ?? [],
    preprocess,
    models,
    ensemble,
    provenance: data.provenance ?? {},
    segmenter,
    label_map: data.label_map ?? {},
    lung_evidence: data.lung_evidence ?? null,
    card: data.card ?? null,
    site: parseSite(data.site),
  };
  checkFormat3(manifest);
  checkManifest(manifest);
  checkSite(manifest);
  return manifest;
}

/**
 * The format-3 parts: only in format 3, label map onto bundle labels, lung evidence with a segmenter,
 * a card about these labels with the disclaimer.
 * @param {Manifest} m
 */
function checkFormat3(m) {
  const used = [
    ['label_map', Object.keys(m.label_map).length > 0],
    ['ensemble.abstain', m.ensemble.abstain !== null],
    ['lung_evidence', m.lung_evidence !== null],
    ['card', m.card !== null],
  ].filter(([, on]) => on).map(([k]) => k);
  if (m.format_version < 3 && used.length) {
    throw new BundleError(`format ${m.format_version} manifest uses format-3 fields`, { expected: 'format_version 3', received: used.join(', ') });
  }
  const strays = Object.entries(m.label_map).filter(([, v]) => !m.labels.includes(v));
  if (strays.length) {
    throw new BundleError('label map names labels the bundle does not have', { expected: `values among ${JSON.stringify(m.labels)}`, received: JSON.stringify(Object.fromEntries(strays)) });
  }
  const ev = m.lung_evidence;
  if (ev) {
    if (!(typeof ev.min_fraction === 'number' && ev.min_fraction >= 0 && ev.min_fraction <= 1)) {
      throw new BundleError('invalid lung_evidence.min_fraction', { expected: 'a fraction in [0, 1]', received: String(ev.min_fraction) });
    }
    if (!m.segmenter) throw new BundleError('lung_evidence needs a segmenter', { expected: 'a bundle with a segmenter', received: 'none' });
  }
  const card = m.card;
  if (card) {
    if ((card.disclaimer ?? DISCLAIMER) !== DISCLAIMER) {
      throw new BundleError('a model card must carry the disclaimer', { expected: DISCLAIMER, received: String(card.disclaimer) });
    }
    card.disclaimer = DISCLAIMER;
    if (JSON.stringify(card.task?.labels ?? []) !== JSON.stringify(m.labels)) {
      throw new BundleError('model card describes other labels', { expected: JSON.stringify(m.labels), received: JSON.stringify(card.task?.labels) });
    }
  }
}

/**
 * Cross-field checks (`BundleManifest.check`).
 * @param {Manifest} m
 */
function checkManifest(m) {
  if (m.segmenter) {
    const s = m.segmenter;
    const [h, w] = s.preprocess.input_size;
    const mask = s.outputs.mask;
    if (!mask || mask.shape.join() !== [1, h, w, 1].join()) {
      throw new BundleError(`segmenter ${s.name} has no mask output matching its input`, { expected: `outputs.mask of shape (1, ${h}, ${w}, 1)` });
    }
    if (s.input.shape.join() !== [1, h, w, s.preprocess.channels].join()) {
      throw new BundleError(`segmenter ${s.name} input does not match its preprocessing spec`, { received: String(s.input.shape) });
    }
    if (!m.models.length && !m.labels.length && !m.ensemble.members.length) return;
  }
  if (!m.labels.length || new Set(m.labels).size !== m.labels.length) {
    throw new BundleError('invalid label list', { expected: 'unique labels', received: JSON.stringify(m.labels) });
  }
  const names = m.models.map((x) => x.name);
  if (new Set(names).size !== names.length) throw new BundleError('duplicate model names', { received: JSON.stringify(names) });
  if (!m.ensemble.members.length) throw new BundleError('ensemble has no members', { expected: 'at least one model name', received: '[]' });
  const unknown = m.ensemble.members.filter((n) => !names.includes(n));
  if (unknown.length) throw new BundleError('ensemble names unknown models', { expected: `names among ${JSON.stringify(names)}`, received: JSON.stringify(unknown) });
  const st = m.ensemble.stacking;
  if (st) {
    const nIn = m.ensemble.members.length * m.labels.length;
    const nOut = m.labels.length;
    if (st.w1.length !== nIn || st.b2.length !== nOut || st.w2.some((r) => r.length !== nOut)) {
      throw new BundleError('stacking meta-learner does not fit the members and labels', { expected: `${nIn} inputs and ${nOut} outputs` });
    }
  }
  const [h, w] = m.preprocess.input_size;
  for (const x of m.models) {
    const probs = x.outputs.probs;
    if (!probs || probs.shape.join() !== [1, m.labels.length].join()) {
      throw new BundleError(`model ${x.name} has no probability output matching the labels`, { expected: `outputs.probs of shape (1, ${m.labels.length})` });
    }
    const s = x.input.shape;
    if (s.length !== 4 || s[0] !== 1 || s[1] !== h || s[2] !== w || ![1, 3].includes(s[3])) {
      throw new BundleError(`model ${x.name} input does not match the preprocessing spec`, { expected: `(1, ${h}, ${w}, 1 or 3)`, received: String(s) });
    }
  }
}

/**
 * Loads a bundle from a URL (folder URL ending in `/`, or its `manifest.json`).
 * @param {string} url
 * @param {{verify?: boolean, fetchFn?: typeof fetch}} [options]
 * @returns {Promise<Bundle>}
 */
export async function loadBundleFromUrl(url, { verify = true, fetchFn = fetch } = {}) {
  const base = url.endsWith(MANIFEST_NAME) ? url.slice(0, -MANIFEST_NAME.length) : url.endsWith('/') ? url : `${url}/`;
  const read = async (name) => {
    let res;
    try {
      res = await fetchFn(new URL(name, new URL(base, globalThis.location?.href)).href);
    } catch (err) {
      throw new BundleError('bundle is unreachable', { expected: `${base}${name}`, received: String(err.message ?? err) });
    }
    if (!res.ok) {
      throw new BundleError(name === MANIFEST_NAME ? 'not a bundle' : 'bundle is incomplete', {
        expected: name === MANIFEST_NAME ? `a folder holding ${MANIFEST_NAME}` : `model file ${name}`,
        received: `HTTP ${res.status}`,
      });
    }
    return new Uint8Array(await res.arrayBuffer());
  };
  return assemble(read, base, verify);
}

/**
 * Loads a bundle from picked files (e.g. the files of a folder chosen with `webkitdirectory`).
 * @param {Iterable<File>} fileList
 * @param {{verify?: boolean}} [options]
 * @returns {Promise<Bundle>}
 */
export async function loadBundleFromFiles(fileList, { verify = true } = {}) {
  const byName = new Map();
  for (const f of fileList) byName.set(f.name, f);
  if (!byName.has(MANIFEST_NAME)) throw new BundleError('not a bundle', { expected: `a folder holding ${MANIFEST_NAME}`, received: `${byName.size} files` });
  const read = async (name) => {
    const f = byName.get(name);
    if (!f) throw new BundleError('bundle is incomplete', { expected: `model file ${name}`, received: 'missing' });
    return new Uint8Array(await f.arrayBuffer());
  };
  return assemble(read, 'picked folder', verify);
}

/**
 * @param {(name: string) => Promise<Uint8Array>} read
 * @param {string} source
 * @param {boolean} verify
 * @returns {Promise<Bundle>}
 */
async function assemble(read, source, verify) {
  let data;
  try {
    data = JSON.parse(new TextDecoder().decode(await read(MANIFEST_NAME)));
  } catch (err) {
    if (err instanceof BundleError) throw err;
    throw new BundleError('bundle manifest is not valid JSON', { received: String(err.message ?? err) });
  }
  const manifest = parseManifest(data);
  const entries = [...manifest.models, ...(manifest.segmenter ? [manifest.segmenter] : [])];
  const files = new Map();
  await Promise.all(
    entries.map(async (entry) => {
      const bytes = await read(entry.file);
      if (verify) {
        const digest = await sha256Hex(bytes);
        if (digest !== entry.sha256) {
          throw new BundleError(`checksum mismatch for ${entry.file}: the bundle was modified or damaged`, {
            expected: `${entry.sha256.slice(0, 16)}...`,
            received: `${digest.slice(0, 16)}...`,
          });
        }
      }
      files.set(entry.file, bytes);
    }),
  );
  return { manifest, files, source };
}
