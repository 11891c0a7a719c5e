/**
 * Test and benchmark entry points of the web runtime, exposed as `window.harness` on harness.html.
 * They run exactly the modules the app runs and return every intermediate result (golden-vector
 * comparison) or per-stage latencies (benchmark).
 *
 * @module test/harness
 */

import { loadBundleFromUrl } from '../src/bundle.js';
import { decodeImage } from '../src/decode.js';
import { getGlobalLiteRt } from '@litertjs/core';
import { Engine, initLiteRt, runtimeInfo } from '../src/engine.js';
import { Predictor } from '../src/pipeline.js';
import { encodeArray } from './arrays.mjs';

/** @param {string} url */
async function fetchBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

const enc2d = (img) => encodeArray(img.data, [img.height, img.width]);

/**
 * Every intermediate result of the bundle's pipeline on one image (cf. `cxr_edge.evaluation.golden.vectors`).
 * @param {{bundleUrl: string, imageUrl: string, members?: string[]|null}} args `members`: run these
 *     models instead of the ensemble (`Predictor.create`'s option)
 */
async function golden({ bundleUrl, imageUrl, members = null }) {
  const bundle = await loadBundleFromUrl(bundleUrl);
  const m = bundle.manifest;
  const bytes = await fetchBytes(imageUrl);
  const { image, info } = await decodeImage(bytes, imageUrl);
  const predictor = await Predictor.create(bundle, { members });
  const pred = await predictor.predictImage(image, { info, trace: true });
  const out = {
    bundle_name: m.name,
    format_version: m.format_version,
    site: m.site ? { name: m.site.name, date: m.site.date, method: m.site.method } : null,
    image: { width: image.width, height: image.height },
    decoded: enc2d(image),
    info,
    preprocessed_u8: enc2d(pred.trace.u8),
    model_input: encodeArray(pred.trace.x.data, [pred.trace.x.height, pred.trace.x.width, pred.trace.x.channels]),
    models: {},
    ensemble: { label: pred.label, probs: m.labels.map((l) => pred.probs[l]) },
    per_model: pred.perModel,
    votes: pred.votes,
    cam: pred.cam ? enc2d(pred.cam) : null,
    cam_region: pred.camRegion,
    heatmap: pred.cam ? enc2d(predictor.heatmap(pred, [image.height, image.width])) : null,
    referral: pred.referral,
    lung_fraction: pred.lung_fraction,
    flags: pred.flags,
    // The Prediction's crop fields (`none` / "" / null for a segmenter of role "evidence") and lung outline.
    crop: pred.crop,
    crop_reason: pred.cropReason,
    crop_box: pred.cropBox,
    lung_mask: pred.lungMask ? enc2d(pred.lungMask) : null,
    lung_region: pred.lungRegion,
    timings_ms: pred.timings_ms,
    runtime: runtimeInfo(),
  };
  if (m.segmenter) {
    const c = pred.trace.cropResult;
    out.segmenter = {
      mask_probabilities: enc2d(pred.trace.maskProbabilities),
      crop: { status: c.status, reason: c.reason, box: c.box },
      role: m.segmenter.role,
    };
  }
  // Every model of the bundle (not only the members), raw outputs as `Engine.run_all` returns them.
  for (const entry of m.models) {
    const engine = await Engine.create(bundle.files.get(entry.file), entry);
    const outputs = await engine.runAll(pred.trace.x);
    engine.delete();
    out.models[entry.name] = {
      probs: Array.from(outputs.probs.data),
      features: outputs.features ? encodeArray(outputs.features.data, outputs.features.shape) : null,
    };
  }
  predictor.delete();
  return out;
}

/**
 * Reads, checks and classifies served files as the app does (`Predictor.predictBytes`: the bundle's
 * decode gate, the input checks), one predictor for all of them.
 * @param {{bundleUrl: string, imageUrls: string[], image?: boolean}} args `image`: also return the
 *     decoded image of each file
 */
async function predictFiles({ bundleUrl, imageUrls, image = false }) {
  const bundle = await loadBundleFromUrl(bundleUrl);
  const predictor = await Predictor.create(bundle);
  const out = { readOptions: predictor.readOptions, files: [] };
  for (const url of imageUrls) {
    const bytes = await fetchBytes(url);
    try {
      const { prediction: p, image: img } = await predictor.predictBytes(bytes, url.split('/').pop());
      out.files.push({
        url,
        ok: true,
        label: p.label,
        probs: bundle.manifest.labels.map((l) => p.probs[l]),
        info: p.info,
        crop: p.crop,
        crop_box: p.cropBox,
        timings_ms: p.timings_ms,
        image: image ? enc2d(img) : null,
      });
    } catch (err) {
      out.files.push({ url, ok: false, error: `${err?.name ?? 'Error'}: ${err?.message ?? err}` });
    }
  }
  predictor.delete();
  return out;
}

/**
 * Per-stage latencies of the bundle's pipeline (decode, segment, preprocess, each member, combine,
 * heat map, total) over `runs` repetitions after `warmup` untimed ones.
 * @param {{bundleUrl: string, imageUrls: string[], warmup?: number, runs?: number}} args
 */
async function bench({ bundleUrl, imageUrls, warmup = 3, runs = 20 }) {
  const t0 = performance.now();
  const bundle = await loadBundleFromUrl(bundleUrl);
  const predictor = await Predictor.create(bundle);
  const loadMs = performance.now() - t0;
  const images = await Promise.all(imageUrls.map(fetchBytes));
  const samples = {};
  const reduction = new Set();
  const decoder = new Set();
  for (let i = 0; i < warmup + runs; i++) {
    const bytes = images[i % images.length];
    const { prediction } = await predictor.predictBytes(bytes, 'x.png');
    predictor.heatmap(prediction, [prediction.info.height, prediction.info.width]);
    if (i < warmup) continue;
    for (const [stage, ms] of Object.entries(prediction.timings_ms)) (samples[stage] ??= []).push(ms);
    reduction.add(prediction.info.reduction ?? 1);
    if (prediction.info.decoder) decoder.add(prediction.info.decoder);
  }
  const wasmHeapMb = getGlobalLiteRt().liteRtWasm.HEAPU8.byteLength / 2 ** 20;
  predictor.delete();
  return {
    runtime: runtimeInfo(),
    bundle: bundle.manifest.name,
    members: bundle.manifest.ensemble.members,
    load_ms: loadMs,
    wasm_heap_mb: wasmHeapMb,
    samples,
    reduction: [...reduction].sort((a, b) => a - b),
    decoder: [...decoder].sort(),
  };
}

window.harness = {
  init: (options) => initLiteRt(options),
  golden,
  predictFiles,
  bench,
};
document.body.dataset.state = 'ready';
