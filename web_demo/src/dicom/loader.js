/**
 * Lazy loading of the DICOM layer's packages from `web_demo/node_modules`, only when a DICOM needs one:
 * the PNG/JPEG path never fetches them, so the app's start-up does not grow.
 *
 * The packages are what the field uses (`dicom-parser`, the `@cornerstonejs/codec-*` WebAssembly builds,
 * `jpeg-lossless-decoder-js`, `fflate`). The first two ship UMD/CommonJS scripts, not ES modules: in
 * Node they are `require`d; in a browser (window or module worker) the script is fetched and imported
 * as an ES module that wraps it in a CommonJS shim (a `blob:` URL, same origin, so it is allowed under
 * the app's cross-origin isolation headers). A codec's `.wasm` is fetched (read, in Node) by this module
 * and handed to Emscripten as `wasmBinary`, so no script has to guess where it lies.
 *
 * Each package loads once per page (a promise is kept); {@link setPackageBase} points the browser at
 * another `node_modules` URL.
 *
 * @module dicom/loader
 */

const IS_NODE = typeof process !== 'undefined' && Boolean(process.versions?.node) && typeof window === 'undefined';

/** Where `node_modules` is, relative to this module (`web_demo/src/dicom/` -> `web_demo/node_modules/`). */
let packageBase = new URL('../../node_modules/', import.meta.url).href;

/**
 * Serves the packages from another `node_modules` URL (the app's, when it is bundled or moved).
 * @param {string|URL} url a folder URL ending in `/`
 */
export function setPackageBase(url) {
  packageBase = new URL(url, typeof location !== 'undefined' ? location.href : import.meta.url).href;
  loaded.clear();
}

/**
 * The files of each package this layer loads, relative to `node_modules` (what a service worker must
 * cache for DICOM to work offline).
 */
export const PACKAGE_FILES = Object.freeze({
  dicomParser: { script: 'dicom-parser/dist/dicomParser.min.js' },
  fflate: { module: 'fflate/esm/browser.js' },
  jpegLossless: { module: 'jpeg-lossless-decoder-js/release/lossless.js' },
  openjpeg: { script: '@cornerstonejs/codec-openjpeg/dist/openjpegwasm_decode.js', wasm: '@cornerstonejs/codec-openjpeg/dist/openjpegwasm_decode.wasm' },
  openjph: { script: '@cornerstonejs/codec-openjph/dist/openjphjs.js', wasm: '@cornerstonejs/codec-openjph/dist/openjphjs.wasm' },
  charls: { script: '@cornerstonejs/codec-charls/dist/charlswasm_decode.js', wasm: '@cornerstonejs/codec-charls/dist/charlswasm_decode.wasm' },
  libjpegTurbo: {
    script: '@cornerstonejs/codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.js',
    wasm: '@cornerstonejs/codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.wasm',
  },
});

/** @type {Map<string, Promise<any>>} */
const loaded = new Map();

/**
 * Loads one package of {@link PACKAGE_FILES} (once): its module namespace, its CommonJS exports, or for
 * a WebAssembly codec the initialised Emscripten module.
 * @param {keyof PACKAGE_FILES} name
 * @returns {Promise<any>}
 */
export function loadPackage(name) {
  if (!loaded.has(name)) {
    const promise = load(PACKAGE_FILES[name]);
    promise.catch(() => loaded.delete(name)); // a failed load (offline, missing file) may be retried
    loaded.set(name, promise);
  }
  return loaded.get(name);
}

/**
 * Drops a loaded package, so that the next {@link loadPackage} instantiates it again (a WebAssembly
 * module that aborted cannot be used any more).
 * @param {keyof PACKAGE_FILES} name
 */
export function forgetPackage(name) {
  loaded.delete(name);
}

/**
 * Which packages have been loaded (or are loading) in this page: the lazy-loading test reads it.
 * @returns {string[]}
 */
export function loadedPackages() {
  return [...loaded.keys()];
}

/**
 * @param {{script?: string, module?: string, wasm?: string}} files
 */
async function load(files) {
  if (files.module) return import(/* @vite-ignore */ new URL(files.module, packageBase).href);
  const factory = IS_NODE ? await requireNode(files.script) : await importScript(files.script);
  if (!files.wasm) return factory;
  const wasmBinary = await readBytes(files.wasm);
  // Emscripten's MODULARIZE factory: resolves to the module once the WebAssembly is instantiated.
  return factory({ wasmBinary, print: () => {}, printErr: () => {} });
}

/**
 * `require` of a package file, in Node.
 * @param {string} file
 */
async function requireNode(file) {
  const { createRequire } = await import('node:module');
  const { fileURLToPath } = await import('node:url');
  return createRequire(import.meta.url)(fileURLToPath(new URL(file, packageBase)));
}

/**
 * A UMD/CommonJS script as an ES module in the browser: `module.exports` after running it.
 * @param {string} file
 */
async function importScript(file) {
  const url = new URL(file, packageBase).href;
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  const source = await res.text();
  const wrapped =
    'const module = { exports: {} }; const exports = module.exports; const require = () => ({});\n' +
    `${source}\n;export default module.exports;\n`;
  const blobUrl = URL.createObjectURL(new Blob([wrapped], { type: 'text/javascript' }));
  try {
    return (await import(/* @vite-ignore */ blobUrl)).default;
  } finally {
    URL.revokeObjectURL(blobUrl);
  }
}

/**
 * A package file's bytes (fetched in a browser, read in Node).
 * @param {string} file
 * @returns {Promise<Uint8Array>}
 */
async function readBytes(file) {
  const url = new URL(file, packageBase);
  if (IS_NODE) {
    const { readFile } = await import('node:fs/promises');
    return new Uint8Array(await readFile(url));
  }
  const res = await fetch(url.href);
  if (!res.ok) throw new Error(`GET ${url.href}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}
