/**
 * Service worker: makes the demo work offline.
 *
 * - On install it precaches the app shell (HTML, CSS, the ES modules, LiteRT.js's JS glue) and the DICOM
 *   layer: its modules (`src/dicom/`) and the packages' files it loads (`PACKAGE_FILES` of
 *   `src/dicom/loader.js`: dicom-parser, fflate, jpeg-lossless-decoder-js and the four WebAssembly
 *   codecs, about 1.5 MB). The page itself never fetches or runs them until a DICOM arrives (a dynamic
 *   import, then one codec per syntax), so the PNG path's start-up does not grow; the worker fetches
 *   them in the background once per version, after the app has started, so that DICOMs of every syntax
 *   open offline after the first visit, even if none was opened online. A copy hosted without the DICOM
 *   packages still installs (PNG and JPEG offline); the `cache` reply says how many DICOM files are
 *   missing, and the page says DICOM is not available offline.
 * - Every same-origin GET is answered network-first and the response is stored in the cache, so the
 *   WASM runtime that this browser actually loads and the bundle files (manifest + .tflite) are
 *   cached by the first successful run; afterwards, without a network, everything comes from the
 *   cache. Network-first means a rebuilt bundle is picked up as soon as the server is reachable
 *   (its checksums are verified on every load either way).
 *
 * - The page also posts the list of same-origin URLs it has already fetched (message `cache`), because
 *   the first visit fetches the WASM runtime and the bundle before this worker controls the page.
 *
 * Bump `VERSION` when the shell's file list changes.
 */

const VERSION = 'cxr-edge-web-v4';
const SHELL = [
  './',
  './index.html',
  './styles.css',
  './app.js',
  './app.webmanifest',
  './src/bundle.js',
  './src/cam.js',
  './src/clahe.js',
  './src/decode.js',
  './src/engine.js',
  './src/ensemble.js',
  './src/errors.js',
  './src/lungcrop.js',
  './src/median.js',
  './src/numeric.js',
  './src/pipeline.js',
  './src/preprocess.js',
  './src/inputs.js',
  './src/quality.js',
  './src/resize.js',
  './src/site.js',
  './node_modules/@litertjs/core/dist/index.js',
  './node_modules/@litertjs/wasm-utils/dist/index.js',
];

/**
 * The DICOM layer: cached at install too, but a copy of the app hosted without the DICOM packages still
 * installs (and works offline for PNG and JPEG); the page is told whether these are all cached.
 */
const DICOM = [
  // The DICOM reader, imported by src/decode.js when the first DICOM arrives.
  './src/dicom/codecs.js',
  './src/dicom/codestream.js',
  './src/dicom/dataset.js',
  './src/dicom/deflate.js',
  './src/dicom/dicom.js',
  './src/dicom/image.js',
  './src/dicom/intensity.js',
  './src/dicom/jpegscaled.js',
  './src/dicom/loader.js',
  './src/dicom/pixels.js',
  './src/dicom/pyformat.js',
  './src/dicom/reader.js',
  './src/dicom/rle.js',
  './src/dicom/syntaxes.js',
  './src/dicom/uids.js',
  // Its packages (PACKAGE_FILES in src/dicom/loader.js), loaded per transfer syntax.
  './node_modules/dicom-parser/dist/dicomParser.min.js',
  './node_modules/fflate/esm/browser.js',
  './node_modules/jpeg-lossless-decoder-js/release/lossless.js',
  './node_modules/@cornerstonejs/codec-openjpeg/dist/openjpegwasm_decode.js',
  './node_modules/@cornerstonejs/codec-openjpeg/dist/openjpegwasm_decode.wasm',
  './node_modules/@cornerstonejs/codec-openjph/dist/openjphjs.js',
  './node_modules/@cornerstonejs/codec-openjph/dist/openjphjs.wasm',
  './node_modules/@cornerstonejs/codec-charls/dist/charlswasm_decode.js',
  './node_modules/@cornerstonejs/codec-charls/dist/charlswasm_decode.wasm',
  './node_modules/@cornerstonejs/codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.js',
  './node_modules/@cornerstonejs/codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.wasm',
];

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(VERSION);
      await cache.addAll(SHELL);
      await cache.addAll(DICOM).catch(() => {}); // reported by the `cache` message below
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== VERSION).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(VERSION);
      try {
        const response = await fetch(request);
        if (response.ok && response.status === 200) await cache.put(request, response.clone());
        return response;
      } catch (err) {
        const cached = await cache.match(request, { ignoreSearch: url.pathname.endsWith('/') || url.pathname.endsWith('.html') });
        if (cached) return cached;
        throw err;
      }
    })(),
  );
});

self.addEventListener('message', (event) => {
  const { type, urls } = event.data ?? {};
  if (type !== 'cache' || !Array.isArray(urls)) return;
  const port = event.ports?.[0];
  event.waitUntil(
    (async () => {
      const cache = await caches.open(VERSION);
      const same = urls.filter((u) => new URL(u, self.location.href).origin === self.location.origin);
      const missing = [];
      for (const u of same) if (!(await cache.match(u))) missing.push(u);
      let error = null;
      try {
        await cache.addAll(missing);
      } catch (err) {
        error = String(err?.message ?? err);
      }
      let dicomMissing = 0;
      for (const u of DICOM) if (!(await cache.match(new URL(u, self.location.href).href))) dicomMissing++;
      port?.postMessage({ cached: same.length, error, dicomMissing });
    })(),
  );
});
