/**
 * decode -> (segment -> lung crop) -> preprocess -> each member -> combine -> heat map, timed per
 * stage, mirroring `Predictor` in `cxr_edge/runtime/pipeline.py`; then the referral band's `referral` and,
 * with a segmenter, the heat map's `lung_fraction` and the flag "evidence outside the lungs".
 *
 * The segmenter's `role` decides what the classifiers see: `crop` (the paper's system), the lung crop;
 * `evidence`, the full image (the border crop of a bundle without a segmenter; `crop` is then `none` and
 * `cropBox` null) while the lung mask still gives the lung fraction, its flag and the lung outline
 * when it is plausible (crop status `lung`), with the heat map placed on the full-image region.
 *
 * Reading a file (`read`, as `Predictor.read`) decodes it with the bundle's decode gate (a bundle whose
 * gate passed decodes full-size DICOMs at reduced resolution, with the kinds the browser can make) and
 * runs the input checks (`quality.js`: header and pixel checks, as `cxr-edge predict`), which refuse a
 * lateral view, a CT, a blank or tiny image with `InputRejectedError`.
 *
 * A site-calibrated bundle (format 4, `site.js`) changes two steps: members with a refitted head take
 * their probabilities from their `features` output, and the combined probabilities get the site's
 * temperature and bias; label, heat map and referral then follow the calibrated probabilities.
 *
 * @module pipeline
 */

import { FLAG_OUTSIDE_LUNGS, LUNG_THRESHOLD, averageMaps, classActivationMap, lungFraction, place } from './cam.js';
import { decodeImage } from './decode.js';
import { applyEnsemble, referral } from './ensemble.js';
import { segmenterCrops } from './bundle.js';
import { DEFAULT_CHECKS, requireChecks } from './quality.js';
import { BundleError } from './errors.js';
import { Engine, normalise } from './engine.js';
import { cleanMask, lungCrop } from './lungcrop.js';
import { cropRegion, normalize, preprocessU8, preprocess } from './preprocess.js';
import { applySite, memberProbs } from './site.js';

/**
 * The result for one image (`Prediction`).
 * @typedef {object} Prediction
 * @property {string} label argmax of the combined probabilities
 * @property {Record<string, number>} probs combined probability per label
 * @property {Record<string, Record<string, number>>} perModel probabilities of each member (after its
 *     site head, when the bundle has one)
 * @property {Record<string, string>} votes each member's argmax label
 * @property {Record<string, number>} timings_ms milliseconds per stage
 * @property {import('./decode.js').ImageInfo|null} info
 * @property {'lung'|'fallback'|'none'} crop `none`: no segmenter, or one of role `evidence` (the
 *     classifiers saw the full image)
 * @property {string} cropReason why the fallback was used
 * @property {number[]|null} cropBox the lung crop box the classifiers saw (null: no crop)
 * @property {import('./resize.js').FloatImage|null} cam CAM at feature-map resolution
 * @property {number[]|null} camRegion where the CAM belongs in the source image
 * @property {string|null} referral why the prediction falls in the referral band (null: it does not)
 * @property {number|null} lung_fraction share of the heat map inside the lung mask (segmenter bundles)
 * @property {string[]} flags e.g. "evidence outside the lungs"
 * @property {import('./clahe.js').U8Image|null} lungMask the segmenter's lung mask (0/255) over
 *     `lungRegion` when it is plausible (crop status `lung`), for drawing the lung outline
 * @property {number[]|null} lungRegion the source-image region the segmenter saw
 * @property {object} [trace] intermediate results (when asked for)
 */

const now = () => performance.now();

/** Classifies images with a bundle's ensemble. */
export class Predictor {
  /**
   * @param {object} parts
   */
  constructor(parts) {
    Object.assign(this, parts);
  }

  /**
   * Compiles the bundle's member models (and its segmenter).
   * @param {import('./bundle.js').Bundle} bundle
   * @param {{members?: string[]|null, readOptions?: object|null, checks?: object|null}} [options]
   *     `members`: run these models instead of the ensemble members (then averaged:
   *     weights/stacking/temperature belong to the full ensemble, and so do the site's temperature and
   *     bias; the members' site heads still apply); `readOptions`: DICOM read options (default: the
   *     bundle's decode gate decides, as in Python); `checks`: the input checks' configuration
   *     (`quality.js`; default theirs; null classifies every readable image)
   * @returns {Promise<Predictor>}
   */
  static async create(bundle, { members = null, readOptions = null, checks = DEFAULT_CHECKS } = {}) {
    const m = bundle.manifest;
    const config = m.ensemble;
    const names = members?.length ? members : config.members;
    if (!names.length) throw new BundleError('bundle holds no classifiers', { expected: 'a bundle with models', received: `${bundle.source} (segmenter only)` });
    const same = !members?.length || members.join() === config.members.join();
    // The referral band stays for a subset: referring too often is safer than never referring.
    const ensemble = same ? config : { method: 'mean', members: names, weights: null, stacking: null, temperature: 1, abstain: config.abstain ?? null };
    // A site's heads belong to their members; its temperature and bias were fitted on the full
    // ensemble's output, so a chosen subset drops them (as it drops the ensemble's own).
    const site = m.site && same ? m.site : null;
    const heads = m.site && Object.keys(m.site.heads).length ? m.site : null;
    const engines = new Map();
    for (const name of names) {
      const entry = m.models.find((x) => x.name === name);
      if (!entry) throw new BundleError('no such model in the bundle', { expected: JSON.stringify(m.models.map((x) => x.name)), received: name });
      engines.set(name, await Engine.create(bundle.files.get(entry.file), entry));
    }
    const segmenter = m.segmenter ? await Engine.create(bundle.files.get(m.segmenter.file), m.segmenter) : null;
    return new Predictor({ bundle, manifest: m, ensemble, site, heads, engines, segmenter, readOptions: gatedReadOptions(m, readOptions), checks });
  }

  /** @returns {string[]} */
  get labels() {
    return this.manifest.labels;
  }

  /** @returns {string} the combiner in use */
  get method() {
    return this.ensemble.method;
  }

  /**
   * Lung probabilities of an image at the segmenter's resolution.
   * @param {import('./resize.js').FloatImage} image
   */
  async segmenterProbabilities(image) {
    const s = this.manifest.segmenter;
    const out = await this.segmenter.runAll(preprocess(image, s.preprocess));
    const [h, w] = s.preprocess.input_size;
    return { height: h, width: w, data: out.mask.data };
  }

  /**
   * Classifies a decoded image (2-D float in [0, 1]).
   * @param {import('./resize.js').FloatImage} image
   * @param {{info?: object|null, trace?: boolean}} [options] `trace` keeps every intermediate result
   * @returns {Promise<Prediction>}
   */
  async predictImage(image, { info = null, trace = false } = {}) {
    const timings = {};
    const tr = trace ? {} : null;
    let crop = null;
    let lungMask = null;
    if (this.segmenter) {
      const t = now();
      const prob = await this.segmenterProbabilities(image);
      const rule = this.manifest.segmenter.crop;
      crop = lungCrop(prob, [image.height, image.width], rule);
      lungMask = rule.threshold === LUNG_THRESHOLD ? crop.mask : cleanMask(prob, LUNG_THRESHOLD).mask;
      timings.segment = now() - t;
      if (tr) Object.assign(tr, { maskProbabilities: prob, cropResult: crop });
    }
    // A segmenter of role "evidence" only checks the heat map: the classifiers see the full image.
    const cropped = crop !== null && segmenterCrops(this.manifest.segmenter);
    const t0 = now();
    const box = cropped ? crop.box : null;
    const spec = this.manifest.preprocess;
    const u8 = preprocessU8(image, spec, box);
    const x = normalize(u8, spec);
    timings.preprocess = now() - t0;
    if (tr) Object.assign(tr, { u8, x });
    const perModel = [];
    const features = [];
    const raw = {};
    for (const [name, engine] of this.engines) {
      const t = now();
      const outputs = await engine.runAll(x);
      const probs = normalise(outputs.probs.data, engine.entry.outputs.probs);
      perModel.push(this.heads ? memberProbs(this.heads, name, probs, outputs.features) : probs);
      if (outputs.features && engine.entry.cam_weights) features.push([engine.entry.cam_weights, outputs.features]);
      timings[name] = now() - t;
      raw[name] = outputs;
    }
    if (tr) tr.outputs = raw;
    let t = now();
    const combined = applyEnsemble(this.ensemble, perModel);
    const probs = this.site ? applySite(this.site, combined) : combined;
    const why = referral(probs, this.ensemble.abstain);
    timings.combine = now() - t;
    const labels = this.labels;
    const index = probs.indexOf(Math.max(...probs));
    let cam = null;
    let region = null;
    let fraction = null;
    if (features.length) {
      t = now();
      cam = averageMaps(
        features.map(([weights, f]) => classActivationMap({ height: f.shape[0], width: f.shape[1], channels: f.shape[2], data: f.data }, weights, index)),
      );
      region = cropRegion(image.height, image.width, spec, box);
      timings.heatmap = now() - t;
      if (crop && crop.status === 'lung' && lungMask) {
        t = now();
        const segSpec = this.manifest.segmenter.preprocess;
        const segRegion = cropRegion(image.height, image.width, segSpec, null);
        fraction = lungFraction(cam, region, lungMask, segRegion, spec.input_size);
        timings.lung_fraction = now() - t;
      }
    }
    const evidence = this.manifest.lung_evidence;
    const flags = evidence && fraction !== null && fraction < evidence.min_fraction ? [FLAG_OUTSIDE_LUNGS] : [];
    const lungs = crop !== null && crop.status === 'lung' && lungMask !== null;
    const lungRegion = lungs ? cropRegion(image.height, image.width, this.manifest.segmenter.preprocess, null) : null;
    const named = (p) => Object.fromEntries(labels.map((l, i) => [l, Number(p[i])]));
    const names = [...this.engines.keys()];
    return {
      label: labels[index],
      probs: named(probs),
      perModel: Object.fromEntries(names.map((n, i) => [n, named(perModel[i])])),
      votes: Object.fromEntries(names.map((n, i) => [n, labels[Array.from(perModel[i]).indexOf(Math.max(...perModel[i]))]])),
      timings_ms: timings,
      info,
      crop: cropped ? crop.status : 'none',
      cropReason: cropped ? crop.reason : '',
      cropBox: box,
      cam,
      camRegion: region,
      referral: why,
      lung_fraction: fraction,
      flags,
      lungMask: lungs ? lungMask : null,
      lungRegion,
      trace: tr ?? undefined,
    };
  }

  /**
   * Reads one file's bytes with this predictor's read options and runs the input checks (`Predictor.read`).
   * @param {Uint8Array} bytes
   * @param {string} [name]
   * @returns {Promise<{image: import('./resize.js').FloatImage, info: object, decodeMs: number}>}
   * @throws {import('./errors.js').CxrEdgeError} the file cannot be read, or an input check refused it
   *     (`InputRejectedError`)
   */
  async read(bytes, name = '') {
    const t0 = now();
    const { image, info } = await decodeImage(bytes, name, this.readOptions);
    const decodeMs = now() - t0;
    if (this.checks) requireChecks(image, info, this.checks);
    return { image, info, decodeMs };
  }

  /**
   * Decodes, checks and classifies one file's bytes.
   * @param {Uint8Array} bytes
   * @param {string} [name]
   * @returns {Promise<{prediction: Prediction, image: import('./resize.js').FloatImage}>}
   */
  async predictBytes(bytes, name = '') {
    const t0 = now();
    const { image, info, decodeMs } = await this.read(bytes, name);
    const pred = await this.predictImage(image, { info });
    pred.timings_ms = { decode: decodeMs, ...pred.timings_ms, total: now() - t0 };
    return { prediction: pred, image };
  }

  /**
   * The heat map in source-image pixels.
   * @param {Prediction} pred
   * @param {[number, number]} shape (H, W)
   */
  heatmap(pred, shape) {
    return pred.cam ? place(pred.cam, shape, pred.camRegion) : null;
  }

  /** Frees every model. */
  delete() {
    for (const e of this.engines.values()) e.delete();
    this.segmenter?.delete();
  }
}

/**
 * The DICOM read options a predictor uses (`Predictor.__post_init__`): the caller's when they name a
 * `minSide`, else the bundle's decode gate when it passed (`decode.reduced`: its `min_side` and kinds;
 * the reader keeps the kinds the browser can make), else full resolution.
 * @param {import('./bundle.js').Manifest} manifest
 * @param {object|null} options
 * @returns {{minSide?: number, reductions?: string[]}}
 */
export function gatedReadOptions(manifest, options) {
  const decode = manifest.decode;
  if ((options?.minSide ?? null) === null && decode?.reduced) return { ...options, minSide: decode.min_side, reductions: [...decode.kinds] };
  return { ...options };
}
