/**
 * Entry points of the browser's DICOM reader for `test/dicom_driver.mjs`, exposed as
 * `window.dicomHarness` on dicom_harness.html: read a served file exactly as the app will, and say
 * which files the page has fetched (the codecs must load only when a DICOM of their syntax arrives).
 *
 * @module test/dicom_harness
 */

import { loadedPackages } from '../src/dicom/loader.js';
import { readDicom } from '../src/dicom/reader.js';
import { encodeArray } from './arrays.mjs';

/**
 * Reads one served DICOM.
 * @param {{url: string, options?: object}} args
 */
async function read({ url, options = {} }) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const t0 = performance.now();
  try {
    const { image, info } = await readDicom(bytes, url.split('/').pop(), options);
    return { ok: true, ms: performance.now() - t0, image: encodeArray(image.data, [image.height, image.width]), info };
  } catch (err) {
    return { ok: false, ms: performance.now() - t0, error: `${err?.name ?? 'Error'}: ${err?.message ?? err}` };
  }
}

/** Paths (below the server root) of the `node_modules` files this page has fetched so far. */
function fetchedPackages() {
  return performance
    .getEntriesByType('resource')
    .map((e) => new URL(e.name).pathname)
    .filter((p) => p.includes('/node_modules/'))
    .map((p) => p.slice(p.indexOf('/node_modules/') + '/node_modules/'.length));
}

window.dicomHarness = { read, loaded: () => loadedPackages(), fetchedPackages };
document.body.dataset.state = 'ready';
