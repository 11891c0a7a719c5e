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
 * A segmenter's `role` (`SEGMENTER_ROLES`, `SegmenterRole` in Python) says what it does to the
 * classifiers' input: `crop` (the default when absent; the paper's system: the classifiers see the lung
 * crop) or `evidence` (the classifiers were trained on the full image; the lung mask only checks where
 * the heat map's evidence lies). Any other value is refused.
 *
 * A manifest may pin a self-test file (`selftest: {file, sha256}`, `SelfTestEntry` in Python): this port
 * does not run the self-test, but checks the file's sha256 like a model file's, so a bundle whose self-test
 * was changed is refused here too.
 *
 * **Signed bundles** (`cxr_edge/bundle/signature.py`): `signature.json` beside the manifest holds an
 * Ed25519 signature over the manifest's exact bytes, which pin every other file by its sha256. The loaders
 * read it when there is one and check it with WebCrypto against the public key it embeds
 * ({@link checkSignature}, `bundle.signature`). That says whether the bundle is unchanged since the holder
 * of that key signed it, and names the key (`ed25519:` + 16 hex of the SHA-256 of the raw key, as Python's
 * `key_id`); it is **not** a trust decision: the app has no trusted keys (the Python runtime and the Android
 * core have a trust policy that refuses bundles not signed by a key the device trusts).
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
/** What a segmenter may do to the classifiers' input (`cxr_edge.bundle.manifest.SegmenterRole`). */
export const SEGMENTER_ROLES = Object.freeze(['crop', 'evidence']);
/** The signature beside the manifest (`cxr_edge.bundle.signature.SIGNATURE_NAME`). */
export const SIGNATURE_NAME = 'signature.json';
/**
 * Response header of `manifest.json` with which `serve.mjs` says whether the folder holds `signature.json`
 * (`present` or `absent`): with `absent` the loader does not ask for it, so an unsigned bundle costs no 404
 * (which the browser logs as an error) and no failed request offline. Other servers do not send it: the
 * loader then asks, and reads a 404 as "unsigned".
 */
export const SIGNATURE_HEADER = 'X-Cxr-Edge-Signature';
const SIGNATURE_FORMAT = 1;
const SIGNATURE_ALGORITHM = 'Ed25519';

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
 * @property {'crop'|'evidence'} role `crop`: the classifiers see the lung crop; `evidence`: they see the
 *     full image and the lung mask only checks the heat map (`segmenterCrops`)
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
 * @property {{file: string, sha256: string}|null} selftest the self-test file the manifest pins, or null
 * @property {DecodeConfig|null} decode reduced-resolution DICOM decoding and its gate, or null (always
 *     full resolution)
 * @typedef {object} DecodeConfig `cxr_edge.bundle.manifest.DecodeConfig`
 * @property {number} min_side short side, in pixels, that a reduced decode keeps
 * @property {boolean} reduced whether runtimes decode at reduced resolution (some kind passed the gate)
 * @property {string[]} kinds the reduction kinds that passed (`area`, `jpeg_dct`, `jpeg_dct_half`,
 *     `j2k_levels`, `j2k_levels_half`)
 * @property {object} gate the parity gate's result per kind (not used by the app)
 * @typedef {object} ModelCard `cxr_edge.bundle.card.ModelCard` as JSON (intended_use, disclaimer, task,
 *     training_data, loso {recipe, command, report, note}, in_distribution, shortcut_audit,
 *     failure_modes, lung_evidence)
 * @typedef {object} SignatureCheck what {@link checkSignature} found (not a trust decision)
 * @property {'unsigned'|'valid'|'invalid'|'malformed'|'unsupported'|'unavailable'} status `valid`: the
 *     signature matches the manifest's bytes under the key it embeds, which is the key its id names;
 *     `invalid`: it does not (the manifest changed after signing, or another key signed it); `malformed`:
 *     `signature.json` is not one Python reads; `unsupported`: this browser has no Ed25519 in WebCrypto;
 *     `unavailable`: `signature.json` could not be fetched
 * @property {string|null} keyId the embedded key's id, computed from its bytes (`ed25519:` + 16 hex)
 * @property {string|null} claimedKeyId the key id `signature.json` states
 * @property {string|null} signedAt when it was signed (ISO 8601), as the file states it
 * @property {string} text one line for the UI
 * @typedef {{manifest: Manifest, files: Map<string, Uint8Array>, source: string, signature: SignatureCheck}} Bundle
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
 * The short, stable name of a public key (`cxr_edge.bundle.signature.key_id`): `ed25519:` and the first 16
 * hex digits of the SHA-256 of its raw 32 bytes.
 * @param {Uint8Array} rawKey
 * @returns {Promise<string>}
 */
export async function keyIdOf(rawKey) {
  return `ed25519:${(await sha256Hex(rawKey)).slice(0, 16)}`;
}

/**
 * Strict base64 (Python's `base64.b64decode(..., validate=True)`): the alphabet, correct padding.
 * @param {unknown} value
 * @param {string} key
 */
function strictBase64(value, key) {
  if (typeof value !== 'string') throw new Error(`${key} is not base64 text: ${JSON.stringify(value)}`);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) throw new Error(`${key} is not strict base64`);
  return Uint8Array.from(atob(value), (c) => c.charCodeAt(0));
}

/**
 * Parses `signature.json` as Python's `read_signature` does: format 1, algorithm Ed25519, `key_id`,
 * `public_key`, `signature` and `manifest_sha256` present, strict base64, a 32-byte key and a 64-byte
 * signature.
 * @param {Uint8Array} bytes
 * @returns {{key_id: string, public_key: Uint8Array, signature: Uint8Array, manifest_sha256: string, signed_at: string}}
 * @throws {BundleError} `malformed bundle signature`
 */
export function parseSignature(bytes) {
  let sig;
  try {
    const data = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    if (!data || typeof data !== 'object' || Array.isArray(data)) throw new Error(`not a JSON object: ${JSON.stringify(data)}`);
    if (data.format !== SIGNATURE_FORMAT || data.algorithm !== SIGNATURE_ALGORITHM) {
      throw new Error(`format ${JSON.stringify(data.format)}, algorithm ${JSON.stringify(data.algorithm)}`);
    }
    for (const key of ['key_id', 'public_key', 'signature', 'manifest_sha256']) {
      if (!(key in data)) throw new Error(`missing key '${key}'`);
    }
    sig = {
      key_id: String(data.key_id),
      public_key: strictBase64(data.public_key, 'public_key'),
      signature: strictBase64(data.signature, 'signature'),
      manifest_sha256: String(data.manifest_sha256),
      signed_at: 'signed_at' in data ? String(data.signed_at) : '',
    };
  } catch (err) {
    throw new BundleError('malformed bundle signature', {
      expected: `a format-${SIGNATURE_FORMAT} ${SIGNATURE_ALGORITHM} signature.json`,
      received: String(err?.message ?? err),
    });
  }
  if (sig.public_key.length !== 32 || sig.signature.length !== 64) {
    throw new BundleError('malformed bundle signature', {
      expected: 'a 32-byte key and a 64-byte signature',
      received: `${sig.public_key.length} and ${sig.signature.length} bytes`,
    });
  }
  return sig;
}

/**
 * Checks a bundle's signature over its manifest's exact bytes against the key `signature.json` embeds
 * (WebCrypto Ed25519). Python's verdict with that key trusted: `valid` when the key is the one the file's
 * key id names and the signature matches the bytes. Never throws: what it finds is in the result.
 * @param {Uint8Array} manifestBytes the exact bytes of `manifest.json`
 * @param {Uint8Array|null} signatureBytes `signature.json`, or null when the bundle has none
 * @param {{subtle?: SubtleCrypto|undefined}} [options] the WebCrypto to use (tests)
 * @returns {Promise<SignatureCheck>}
 */
export async function checkSignature(manifestBytes, signatureBytes, { subtle = globalThis.crypto?.subtle } = {}) {
  const none = { keyId: null, claimedKeyId: null, signedAt: null };
  if (signatureBytes === null) return { status: 'unsigned', ...none, text: 'unsigned' };
  let sig;
  try {
    sig = parseSignature(signatureBytes);
  } catch (err) {
    return { status: 'malformed', ...none, text: `signature.json is malformed, so unsigned (${err.message})` };
  }
  const keyId = await keyIdOf(sig.public_key);
  const found = { keyId, claimedKeyId: sig.key_id, signedAt: sig.signed_at };
  if (keyId !== sig.key_id) {
    return { status: 'invalid', ...found, text: `signature is NOT valid: it names key ${sig.key_id} but holds key ${keyId}` };
  }
  const unsupported = (why) => ({
    status: 'unsupported',
    ...found,
    text: `signed by ${keyId} on ${sig.signed_at} (not checked: this browser cannot verify Ed25519 signatures: ${why})`,
  });
  if (!subtle) return unsupported('no WebCrypto here (it needs a secure context)');
  let key;
  try {
    key = await subtle.importKey('raw', sig.public_key, { name: 'Ed25519' }, false, ['verify']);
  } catch (err) {
    if (err?.name === 'NotSupportedError' || err instanceof TypeError) return unsupported(err.message);
    key = null; // 32 bytes that are not an Ed25519 key: it verifies nothing
  }
  let ok = false;
  if (key !== null) {
    try {
      ok = await subtle.verify({ name: 'Ed25519' }, key, sig.signature, manifestBytes);
    } catch (err) {
      if (err?.name === 'NotSupportedError') return unsupported(err.message);
      ok = false;
    }
  }
  if (!ok) {
    return {
      status: 'invalid',
      ...found,
      text: `signature does NOT match the manifest (signed by ${keyId}): the bundle was changed after signing`,
    };
  }
  return {
    status: 'valid',
    ...found,
    text: `signature valid for key ${keyId}, signed on ${sig.signed_at} (not a trust decision: the app has no trusted keys)`,
  };
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
 * A value as Python's `repr` prints it in the manifest parser's messages (strings quoted, numbers as they are).
 * @param {unknown} v
 */
function pyRepr(v) {
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (v === null || v === undefined) return 'None';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/**
 * The `decode` section (`DecodeConfig`): absent or null is none (always full resolution); else
 * `min_side` (an integer >= 8) and `reduced` (a boolean), optional `kinds` (a list) and `gate`.
 * @param {unknown} d
 * @returns {DecodeConfig|null}
 */
function parseDecode(d) {
  if (d === undefined || d === null) return null;
  const bad = (what, expected, value) =>
    new BundleError(`invalid bundle manifest: invalid value for bundle manifest.decode${what}`, { expected, received: pyRepr(value) });
  if (typeof d !== 'object' || Array.isArray(d)) {
    throw new BundleError('invalid bundle manifest: invalid bundle manifest.decode', { expected: 'a JSON object', received: Array.isArray(d) ? 'list' : typeof d });
  }
  if (!('min_side' in d) || !('reduced' in d)) {
    throw new BundleError('invalid bundle manifest: incomplete bundle manifest.decode', { expected: 'all required keys', received: `missing ${!('min_side' in d) ? 'min_side' : 'reduced'}` });
  }
  if (!Number.isInteger(d.min_side) || typeof d.min_side !== 'number') throw bad('.min_side', 'an integer', d.min_side);
  if (typeof d.reduced !== 'boolean') throw bad('.reduced', 'true or false', d.reduced);
  const kinds = d.kinds ?? [];
  if (!Array.isArray(kinds)) throw bad('.kinds', 'a list', kinds);
  if (d.min_side < 8) throw new BundleError('invalid bundle manifest: invalid decode.min_side', { expected: '>= 8 pixels', received: String(d.min_side) });
  return { min_side: d.min_side, reduced: d.reduced, kinds: kinds.map(String), gate: d.gate ?? {} };
}

/**
 * The `selftest` entry (`SelfTestEntry`): absent or null is none; else exactly `file` and `sha256`.
 * @param {unknown} s
 * @returns {{file: string, sha256: string}|null}
 */
function parseSelfTest(s) {
  if (s === undefined || s === null) return null;
  if (typeof s !== 'object' || Array.isArray(s)) {
    throw new BundleError('invalid bundle manifest: invalid value at selftest', { expected: 'an object or null', received: JSON.stringify(s) });
  }
  const unknown = Object.keys(s).filter((k) => !['file', 'sha256'].includes(k)).sort();
  if (unknown.length) {
    throw new BundleError('invalid bundle manifest: unknown keys in selftest', { expected: 'keys among ["file","sha256"]', received: JSON.stringify(unknown) });
  }
  for (const key of ['file', 'sha256']) {
    if (typeof s[key] !== 'string') throw new BundleError(`invalid bundle manifest: invalid value at selftest.${key}`, { expected: 'a string', received: JSON.stringify(s[key]) ?? 'nothing' });
  }
  checkFileName(s.file);
  return { file: s.file, sha256: s.sha256 };
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
    const role = s.role === undefined ? 'crop' : s.role; // absent: the paper's lung crop; null is refused
    if (!SEGMENTER_ROLES.includes(role)) {
      throw new BundleError('invalid bundle manifest: unknown segmenter role', { expected: SEGMENTER_ROLES.join(' or '), received: JSON.stringify(s.role) });
    }
    segmenter = { ...s, input: tensorSpec(s.input, 'segmenter.input'), outputs, preprocess: segSpec, crop: { ...DEFAULT_CROP, ...(s.crop ?? {}) }, role };
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
    selftest: parseSelfTest(data.selftest),
    decode: parseDecode(data.decode),
  };
  checkFormat3(manifest);
  checkManifest(manifest);
  checkSite(manifest);
  return manifest;
}

/**
 * Whether the classifiers see the segmenter's lung crop (`SegmenterEntry.crops`): false for a segmenter
 * of role `evidence`, whose classifiers see the full image (the border crop of a bundle without one).
 * @param {SegmenterEntry} segmenter
 * @returns {boolean}
 */
export function segmenterCrops(segmenter) {
  return segmenter.role === 'crop';
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
 * Loads a bundle from a URL (folder URL ending in `/`, or its `manifest.json`), with its signature when it
 * has one (`bundle.signature`; `signature.notFoundUrl` names the URL that answered 404, which the app keeps
 * out of its offline cache).
 * @param {string} url
 * @param {{verify?: boolean, fetchFn?: typeof fetch}} [options]
 * @returns {Promise<Bundle>}
 */
export async function loadBundleFromUrl(url, { verify = true, fetchFn = fetch } = {}) {
  const base = url.endsWith(MANIFEST_NAME) ? url.slice(0, -MANIFEST_NAME.length) : url.endsWith('/') ? url : `${url}/`;
  const href = (name) => new URL(name, new URL(base, globalThis.location?.href)).href;
  const get = async (name) => {
    try {
      return await fetchFn(href(name));
    } catch (err) {
      throw new BundleError('bundle is unreachable', { expected: `${base}${name}`, received: String(err.message ?? err) });
    }
  };
  const body = async (name, res) => {
    if (!res.ok) {
      throw new BundleError(name === MANIFEST_NAME ? 'not a bundle' : 'bundle is incomplete', {
        expected: name === MANIFEST_NAME ? `a folder holding ${MANIFEST_NAME}` : `bundle file ${name}`,
        received: `HTTP ${res.status}`,
      });
    }
    return new Uint8Array(await res.arrayBuffer());
  };
  const read = async (name) => body(name, await get(name));
  const manifestResponse = await get(MANIFEST_NAME);
  const manifestBytes = await body(MANIFEST_NAME, manifestResponse);
  /** @type {{bytes: Uint8Array|null, unavailable?: string, notFoundUrl?: string}} */
  let signature = { bytes: null };
  if (manifestResponse.headers?.get(SIGNATURE_HEADER)?.toLowerCase() !== 'absent') {
    try {
      const res = await fetchFn(href(SIGNATURE_NAME));
      if (res.ok) signature = { bytes: new Uint8Array(await res.arrayBuffer()) };
      else if (res.status === 404) signature = { bytes: null, notFoundUrl: href(SIGNATURE_NAME) };
      else signature = { bytes: null, unavailable: `HTTP ${res.status}` };
    } catch (err) {
      signature = { bytes: null, unavailable: String(err?.message ?? err) };
    }
  }
  const bundle = await assemble(manifestBytes, signature.bytes, read, base, verify);
  if (signature.unavailable) {
    bundle.signature = { ...bundle.signature, status: 'unavailable', text: `signature.json could not be read (${signature.unavailable})` };
  }
  if (signature.notFoundUrl) bundle.signature.notFoundUrl = signature.notFoundUrl;
  return bundle;
}

/**
 * Loads a bundle from picked files (e.g. the files of a folder chosen with `webkitdirectory`), with its
 * signature when the folder holds `signature.json`.
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
    if (!f) throw new BundleError('bundle is incomplete', { expected: `bundle file ${name}`, received: 'missing' });
    return new Uint8Array(await f.arrayBuffer());
  };
  const signature = byName.has(SIGNATURE_NAME) ? await read(SIGNATURE_NAME) : null;
  return assemble(await read(MANIFEST_NAME), signature, read, 'picked folder', verify);
}

/**
 * Parses the manifest, checks its signature (when there is one) on exactly the bytes parsed, and reads
 * every file the manifest pins (model files, the self-test), checking each one's sha256.
 * @param {Uint8Array} manifestBytes
 * @param {Uint8Array|null} signatureBytes
 * @param {(name: string) => Promise<Uint8Array>} read
 * @param {string} source
 * @param {boolean} verify
 * @returns {Promise<Bundle>}
 */
async function assemble(manifestBytes, signatureBytes, read, source, verify) {
  let data;
  try {
    data = JSON.parse(new TextDecoder().decode(manifestBytes));
  } catch (err) {
    throw new BundleError('bundle manifest is not valid JSON', { received: String(err.message ?? err) });
  }
  const manifest = parseManifest(data);
  const entries = [
    ...manifest.models,
    ...(manifest.segmenter ? [manifest.segmenter] : []),
    ...(manifest.selftest ? [manifest.selftest] : []),
  ];
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
  const signature = await checkSignature(manifestBytes, signatureBytes);
  return { manifest, files, source, signature };
}
