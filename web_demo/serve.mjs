#!/usr/bin/env node
/**
 * A tiny static file server for the web demo, for 127.0.0.1 only.
 *
 * - serves this folder (the app, `node_modules/@litertjs/*` for LiteRT.js and its WASM files);
 * - mounts a bundle folder at `/bundle/` (default: the shipped `cxr_edge/data/default_bundle`) and
 *   any other folders given with `--mount /prefix/=DIR`;
 * - correct MIME types for `.wasm`, `.mjs`, `.js`, `.json`, `.tflite`...;
 * - sends `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`
 *   (cross-origin isolation, which threaded WASM needs for SharedArrayBuffer) unless `--no-isolation`;
 * - `Cache-Control: no-cache` so a rebuilt bundle is never served stale (the service worker does the
 *   offline caching).
 *
 * Usage: `node serve.mjs [--port 8000] [--bundle DIR] [--mount /prefix/=DIR ...] [--no-isolation]`
 *
 * @module serve
 */

import { createReadStream, promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_BUNDLE = path.resolve(HERE, '..', 'cxr_edge', 'data', 'default_bundle');

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
export async function startServer({ port = 0, root = HERE, mounts = { '/bundle/': DEFAULT_BUNDLE }, isolate = true, log } = {}) {
  const table = Object.entries(mounts)
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : `${prefix}/`, path.resolve(dir)])
    .sort((a, b) => b[0].length - a[0].length);
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    let pathname;
    try {
      pathname = decodeURIComponent(url.pathname);
    } catch {
      return send(res, 400, 'bad request');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed');
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
    if (file !== base && !file.startsWith(base + path.sep)) return send(res, 403, 'forbidden');
    let stat;
    try {
      stat = await fs.stat(file);
    } catch {
      return send(res, 404, 'not found');
    }
    if (!stat.isFile()) return send(res, 404, 'not found');
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
    res.writeHead(200, headers);
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
    log?.(`${req.method} ${pathname} 200`);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
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
 * Parses `--port`, `--bundle`, `--mount /p/=DIR`, `--no-isolation`.
 * @param {string[]} argv
 */
export function parseArgs(argv) {
  const options = { port: 8000, mounts: { '/bundle/': DEFAULT_BUNDLE }, isolate: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--port') options.port = Number(argv[++i]);
    else if (arg === '--bundle') options.mounts['/bundle/'] = argv[++i];
    else if (arg === '--mount') {
      const [prefix, dir] = argv[++i].split('=');
      options.mounts[prefix] = dir;
    } else if (arg === '--no-isolation') options.isolate = false;
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: node serve.mjs [--port 8000] [--bundle DIR] [--mount /prefix/=DIR] [--no-isolation]');
      process.exit(0);
    } else throw new Error(`unknown argument ${arg}`);
  }
  return options;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const options = parseArgs(process.argv.slice(2));
  const { url } = await startServer(options);
  console.log(`cxr-edge web demo: ${url}  (bundle: ${options.mounts['/bundle/']}; Ctrl-C stops)`);
}
