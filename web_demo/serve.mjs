#!/usr/bin/env node
/**
 * A tiny static file server for the web demo, for 127.0.0.1 only.
 *
 * - serves this folder (the app, `node_modules/@litertjs/*` for LiteRT.js and its WASM files);
 * - mounts a bundle folder at `/bundle/` (default: the shipped `cxr_edge/data/default_bundle`; `--bundle`
 *   takes a folder or a preset name, `default` or `paper`, as `cxr_edge/bundle/presets.py` resolves
 *   them: an existing folder of that name wins), the shipped sample X-rays at `/samples/` (the app's
 *   "Try a sample" button) and any other folders given with `--mount /prefix/=DIR`;
 * - refuses to start without `node_modules/@litertjs` (the page would wait forever for LiteRT.js),
 *   naming the command that installs it, and logs every request that fails (404...);
 * - correct MIME types for `.wasm`, `.mjs`, `.js`, `.json`, `.tflite`...;
 * - sends `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`
 *   (cross-origin isolation, which threaded WASM needs for SharedArrayBuffer) unless `--no-isolation`;
 * - `Cache-Control: no-cache` so a rebuilt bundle is never served stale (the service worker does the
 *   offline caching);
 * - on every `manifest.json`, the header `X-Cxr-Edge-Signature: present|absent` (whether `signature.json`
 *   lies beside it), so the app asks for the signature only when there is one: a 404 is logged by the
 *   browser as an error, and a request that cannot be cached fails offline.
 *
 * Usage: `node serve.mjs [--port 8000] [--bundle DIR|PRESET] [--mount /prefix/=DIR ...] [--no-isolation]`
 * (`--port 0`: any free port).
 *
 * @module serve
 */

import { createReadStream, existsSync, promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE_DATA = path.resolve(HERE, '..', 'cxr_edge', 'data');
/**
 * The named bundles shipped with the package (`cxr_edge.bundle.presets.PRESETS`): `default`, what
 * leave-one-source-out chose (full image; its segmenter only checks the evidence), and `paper`, the
 * paper's system (lung crop).
 */
export const PRESETS = Object.freeze({
  default: path.join(PACKAGE_DATA, 'default_bundle'),
  paper: path.join(PACKAGE_DATA, 'paper_bundle'),
});
export const DEFAULT_BUNDLE = PRESETS.default;

/**
 * A `--bundle` value as a folder (`cxr_edge.bundle.presets.resolve`): an existing path as it is, else a
 * preset's folder; a value naming neither is returned as a path (the page then says "not a bundle").
 * @param {string} value
 * @returns {string}
 */
export function resolveBundle(value) {
  if (existsSync(value) || !Object.hasOwn(PRESETS, value)) return path.resolve(value);
  return PRESETS[value];
}
export const SAMPLES = path.resolve(HERE, '..', 'cxr_edge', 'data', 'samples');
/** What the page imports from `node_modules` (see the import map in index.html). */
export const LITERT = ['@litertjs/core/dist/index.js', '@litertjs/wasm-utils/dist/index.js'];

/**
 * Why the app cannot run from `root` (LiteRT.js missing), or null.
 * @param {string} root
 * @returns {Promise<string|null>}
 */
export async function missingRuntime(root) {
  for (const file of LITERT) {
    try {
      await fs.access(path.join(root, 'node_modules', file));
    } catch {
      return `${path.join(root, 'node_modules', file)} is missing: install the app's packages with ` +
        '`make web-deps` (or `npm ci` in web_demo/) and start again';
    }
  }
  return null;
}

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.tflite': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

/**
 * Starts the server.
 * @param {object} [options]
 * @param {number} [options.port] 0 picks a free port
 * @param {string} [options.root] folder served at `/`
 * @param {Record<string, string>} [options.mounts] URL prefix (ending in `/`) -> folder
 * @param {boolean} [options.isolate] send COOP/COEP headers
 * @param {(line: string) => void} [options.log]
 * @returns {Promise<{server: http.Server, url: string, close: () => Promise<void>}>}
 */
export async function startServer({ port = 0, root = HERE, mounts = { '/bundle/': DEFAULT_BUNDLE, '/samples/': SAMPLES }, isolate = true, log } = {}) {
  const missing = await missingRuntime(root);
  if (missing) throw new Error(missing);
  const table = Object.entries(mounts)
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : `${prefix}/`, path.resolve(dir)])
    .sort((a, b) => b[0].length - a[0].length);
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const fail = (status, text) => {
      log?.(`${req.method} ${url.pathname} ${status} ${text}`);
      return send(res, status, text);
    };
    let pathname;
    try {
      pathname = decodeURIComponent(url.pathname);
    } catch {
      return fail(400, 'bad request');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return fail(405, 'method not allowed');
    let base = path.resolve(root);
    let rel = pathname;
    for (const [prefix, dir] of table) {
      if (pathname.startsWith(prefix)) {
        base = dir;
        rel = pathname.slice(prefix.length - 1);
        break;
      }
    }
    if (rel.endsWith('/')) rel += 'index.html';
    const file = path.resolve(base, `.${rel}`);
    if (file !== base && !file.startsWith(base + path.sep)) return fail(403, 'forbidden');
    let stat;
    try {
      stat = await fs.stat(file);
    } catch {
      return fail(404, 'not found');
    }
    if (!stat.isFile()) return fail(404, 'not found');
    const headers = {
      'Content-Type': MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream',
      'Content-Length': stat.size,
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
      'Cross-Origin-Resource-Policy': 'same-origin',
    };
    if (isolate) {
      headers['Cross-Origin-Opener-Policy'] = 'same-origin';
      headers['Cross-Origin-Embedder-Policy'] = 'require-corp';
    }
    if (path.basename(file) === 'sw.js') headers['Service-Worker-Allowed'] = '/';
    if (path.basename(file) === 'manifest.json') {
      const signed = await fs.stat(path.join(path.dirname(file), 'signature.json')).then((s) => s.isFile(), () => false);
      headers['X-Cxr-Edge-Signature'] = signed ? 'present' : 'absent';
    }
    res.writeHead(200, headers);
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
    log?.(`${req.method} ${pathname} 200`);
  });
  await new Promise((resolve, reject) => {
    server.once('error', (err) =>
      reject(err.code === 'EADDRINUSE'
        ? new Error(`port ${port} is in use: choose another (--port N, or --port 0 for any free one; make web-serve WEB_PORT=N)`)
        : err));
    server.listen(port, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}/`;
  return {
    server,
    url,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}

/**
 * @param {http.ServerResponse} res
 * @param {number} status
 * @param {string} text
 */
function send(res, status, text) {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-cache' });
  res.end(text);
}

/**
 * Parses `--port`, `--bundle DIR|PRESET`, `--mount /p/=DIR`, `--no-isolation`.
 * @param {string[]} argv
 */
export function parseArgs(argv) {
  const options = { port: 8000, mounts: { '/bundle/': DEFAULT_BUNDLE, '/samples/': SAMPLES }, isolate: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--port') options.port = Number(argv[++i]);
    else if (arg === '--bundle') options.mounts['/bundle/'] = resolveBundle(argv[++i]);
    else if (arg === '--mount') {
      const [prefix, dir] = argv[++i].split('=');
      options.mounts[prefix] = dir;
    } else if (arg === '--no-isolation') options.isolate = false;
    else if (arg === '--help' || arg === '-h') {
      console.log(`usage: node serve.mjs [--port 8000] [--bundle DIR|${Object.keys(PRESETS).join('|')}] [--mount /prefix/=DIR] [--no-isolation]`);
      process.exit(0);
    } else throw new Error(`unknown argument ${arg}`);
  }
  return options;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const options = parseArgs(process.argv.slice(2));
  // Failed requests only: a 404 says what the page could not load; the rest is noise.
  const log = (line) => {
    if (/ [45]\d\d /.test(line)) console.error(line);
  };
  try {
    const { url } = await startServer({ ...options, log });
    console.log(`cxr-edge web demo: ${url}  (bundle: ${options.mounts['/bundle/']}; Ctrl-C stops)`);
  } catch (err) {
    console.error(`cannot start the web demo: ${err.message}`);
    process.exit(1);
  }
}
