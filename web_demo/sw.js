/**
 * Service worker: makes the demo work offline.
 *
 * - On install it precaches the app shell (HTML, CSS, the ES modules, LiteRT.js's JS glue).
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

const VERSION = 'cxr-edge-web-v2';
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
  './src/resize.js',
  './src/site.js',
  './node_modules/@litertjs/core/dist/index.js',
  './node_modules/@litertjs/wasm-utils/dist/index.js',
];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(VERSION)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
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
      port?.postMessage({ cached: same.length, error });
    })(),
  );
});
