#!/usr/bin/env node
/**
 * Runs the app's pure modules (no browser, no LiteRT) on cases read as JSON from stdin and writes the
 * results as JSON to stdout. `tests/ports/test_web_demo.py` compares them with OpenCV/numpy/the Python
 * runtime on many random inputs, which the two golden images alone cannot cover.
 *
 * Request: `{"cases": [{"op": ..., "image": {dtype, shape, base64}, ...params}]}`; besides the image
 * operations, `quality` (the input checks of `src/quality.js`) and `inputs` (which opened files are
 * classified, `src/inputs.js`).
 *
 * @module test/node_ops
 */

import { lungFraction } from '../src/cam.js';
import { clahe, equalizeHist } from '../src/clahe.js';
import { decodeImage } from '../src/decode.js';
import { combine, applyTemperature, referral } from '../src/ensemble.js';
import { lungCrop } from '../src/lungcrop.js';
import { medianBlur } from '../src/median.js';
import { normalize, parseSpec, preprocessU8 } from '../src/preprocess.js';
import { resizeArea, resizeLinear } from '../src/resize.js';
import { applySite, headProbs } from '../src/site.js';
import { check, frontalScore } from '../src/quality.js';
import { selectInputs, skippedNote } from '../src/inputs.js';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { loadBundleFromUrl, parseManifest, segmenterCrops } from '../src/bundle.js';
import { decodeArray, encodeArray } from './arrays.mjs';
import { runCases } from './ops.mjs';

function image2d(entry, Type) {
  const { data, shape } = decodeArray(entry);
  return { height: shape[0], width: shape[1], data: Type ? Type.from(data) : data };
}

const OPS = {
  load_bundle: async (c) => {
    // fetch() stand-in that reads the bundle folder from disk
    const fetchFn = async (url) => {
      try {
        const bytes = await readFile(path.join(c.dir, new URL(url).pathname.split('/').pop()));
        return new Response(bytes, { status: 200 });
      } catch {
        return new Response('', { status: 404 });
      }
    };
    const bundle = await loadBundleFromUrl('http://bundle.invalid/b/', { fetchFn });
    return { name: bundle.manifest.name, members: bundle.manifest.ensemble.members, files: [...bundle.files.keys()].sort() };
  },
  decode: async (c) => {
    const { image, info } = await decodeImage(new Uint8Array(Buffer.from(c.bytes, 'base64')), c.name ?? '');
    return { image: encodeArray(image.data, [image.height, image.width]), info };
  },
  resize_area: (c) => {
    const r = resizeArea(image2d(c.image), c.width, c.height);
    return encodeArray(r.data, [r.height, r.width]);
  },
  resize_linear: (c) => {
    const r = resizeLinear(image2d(c.image), c.width, c.height);
    return encodeArray(r.data, [r.height, r.width]);
  },
  clahe: (c) => {
    const r = clahe(image2d(c.image), c.clip, c.tiles);
    return encodeArray(r.data, [r.height, r.width]);
  },
  equalize: (c) => {
    const r = equalizeHist(image2d(c.image));
    return encodeArray(r.data, [r.height, r.width]);
  },
  median: (c) => {
    const r = medianBlur(image2d(c.image), c.k);
    return encodeArray(r.data, [r.height, r.width]);
  },
  preprocess: (c) => {
    const spec = parseSpec(c.spec);
    const u8 = preprocessU8(image2d(c.image), spec, c.crop_box ?? null);
    const x = normalize(u8, spec);
    return {
      u8: encodeArray(u8.data, [u8.height, u8.width]),
      x: encodeArray(x.data, [x.height, x.width, x.channels]),
    };
  },
  combine: (c) => {
    const probs = combine(c.probs, c.method, c.weights ?? null, c.stacking ?? null);
    return c.temperature && c.temperature !== 1 ? applyTemperature(probs, c.temperature) : probs;
  },
  parse_manifest: (c) => {
    const m = parseManifest(c.manifest);
    const site = m.site && { ...m.site, heads: Object.keys(m.site.heads) }; // the heads' weights stay here
    const segmenter = m.segmenter && { name: m.segmenter.name, role: m.segmenter.role, crops: segmenterCrops(m.segmenter) };
    return { format_version: m.format_version, label_map: m.label_map, abstain: m.ensemble.abstain, lung_evidence: m.lung_evidence, card: m.card, site, segmenter };
  },
  site_head: (c) => {
    const { data, shape } = decodeArray(c.features);
    return headProbs({ weights: c.weights, bias: c.bias }, { shape, data });
  },
  site_apply: (c) => applySite({ temperature: c.temperature, bias: c.bias }, c.probs),
  lung_fraction: (c) => lungFraction(image2d(c.cam, Float32Array), c.region, image2d(c.mask), c.mask_region, c.frame),
  referral: (c) => referral(c.probs, c.band),
  quality: (c) => {
    const image = image2d(c.image, Float32Array);
    const big = Math.min(image.width, image.height) >= 128;
    return { rejection: check(image, c.info ?? { format: 'png' }, c.config ?? {}), score: big ? frontalScore(image) : null };
  },
  inputs: (c) => {
    const file = (path) => ({ file: null, path });
    const { inputs, skipped } = selectInputs(c.loose.map(file), c.in_folders.map(file));
    return { inputs: inputs.map((i) => i.path), skipped, note: skipped.length ? skippedNote(skipped) : null };
  },
  lung_crop: (c) => {
    const r = lungCrop(image2d(c.prob), c.image_shape, c.crop);
    return { box: r.box, status: r.status, reason: r.reason, mask: encodeArray(r.mask.data, [r.mask.height, r.mask.width]) };
  },
};

await runCases(OPS);
