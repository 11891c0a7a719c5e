#!/usr/bin/env node
/**
 * Drives headless Chromium through the app with DICOM files for `tests/ports/test_web_dicom.py`:
 *
 * 1. **parity**: the harness page (`test/harness.html`, `window.harness.predictFiles`) reads, checks and
 *    classifies each file as the app does, with each bundle (its decode gate included), and returns the
 *    probabilities, the info and the decoded image;
 * 2. **app**: the real page on the default bundle: a PNG first, then the page's fetches (no DICOM module
 *    or codec may have been fetched), several DICOMs through the file input, a folder through the folder
 *    input, dropped files (a synthetic `drop`), a folder tree walked as a drop walks it (mock
 *    `FileSystemEntry` objects), and what the page shows, logs and stores (the privacy check);
 * 3. **offline**: the app on a second server (another origin: a fresh service worker and cache) is
 *    opened once, never given a DICOM, the server is stopped, the page reloaded, and DICOMs of every
 *    codec are classified from the service worker's cache.
 *
 * Usage: `node test/dicom_app_driver.mjs config.json`, the config holding `{mounts, parity: [{name,
 * bundleUrl, urls, image?}], app: {png, files, folder, drop: [url], tree}, offline: {files}}`. Results go to stdout
 * as JSON; progress (phase names only) to stderr.
 *
 * @module test/dicom_app_driver
 */

import { readFile } from 'node:fs/promises';
import { startServer } from '../serve.mjs';
import { launch } from './driver.mjs';

const DICOM_PATHS = ['/src/dicom/', '/node_modules/dicom-parser/', '/node_modules/fflate/', '/node_modules/jpeg-lossless-decoder-js/', '/node_modules/@cornerstonejs/'];

/** Progress on stderr (phase names only). */
function step(name) {
  process.stderr.write(`[dicom-app ${new Date().toISOString().slice(11, 19)}] ${name}\n`);
}

/**
 * Console messages and page errors of a page (every message, to check that none names the patient).
 * @param {import('playwright-core').Page} page
 */
function watch(page) {
  const messages = [];
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    messages.push(m.text());
    if (m.type() === 'error' && !/^(INFO|WARNING): /.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  return { messages, errors };
}

/**
 * Paths below the server root of the DICOM layer's files (modules, packages) this page has fetched.
 * @param {import('playwright-core').Page} page
 */
async function dicomFetches(page) {
  const paths = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname));
  return paths.filter((p) => DICOM_PATHS.some((d) => p.startsWith(d)));
}

/**
 * Waits for the app to finish what it was given and returns the batch (or the single result).
 * @param {import('playwright-core').Page} page
 */
async function finished(page) {
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 120_000 });
  return page.evaluate(() => ({
    state: document.body.dataset.state,
    batch: window.cxrEdgeApp.state.batch,
    summary: document.getElementById('batch-summary').textContent,
    rows: Array.from(document.querySelectorAll('#batch-table tbody tr'), (tr) => ({ status: tr.dataset.status, cells: Array.from(tr.cells, (td) => td.textContent) })),
    error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
    last: window.cxrEdgeApp.state.last ? { label: window.cxrEdgeApp.state.last.label, probs: window.cxrEdgeApp.state.last.probs } : null,
    dicomInfo: document.getElementById('dicom-info').textContent,
  }));
}

/**
 * Starts a batch by setting an input's files and waits for it.
 * @param {import('playwright-core').Page} page
 * @param {string} selector
 * @param {string|string[]} files
 */
async function pick(page, selector, files) {
  await page.evaluate(() => {
    document.body.dataset.state = 'picking';
  });
  await page.setInputFiles(selector, files);
  return finished(page);
}

/**
 * The harness page: each bundle's predictions of its files.
 * @param {import('playwright-core').BrowserContext} context
 * @param {string} base
 * @param {object[]} parity
 */
async function parityScenario(context, base, parity) {
  const page = await context.newPage();
  const { errors } = watch(page);
  await page.goto(`${base}test/harness.html`);
  await page.waitForFunction(() => Boolean(window.harness));
  await page.evaluate(() => window.harness.init({ threads: 1 }));
  const out = {};
  for (const item of parity) {
    step(`parity ${item.name}`);
    const args = { bundleUrl: item.bundleUrl, imageUrls: item.urls, image: item.image ?? true };
    out[item.name] = await page.evaluate((a) => window.harness.predictFiles(a), args);
  }
  await page.close();
  return { results: out, errors };
}

/**
 * The app: lazy loading, several files, a folder, a drop, a walked folder tree, privacy.
 * @param {import('playwright-core').BrowserContext} context
 * @param {string} base
 * @param {object} app
 */
async function appScenario(context, base, app) {
  const page = await context.newPage();
  const { messages, errors } = watch(page);
  const out = {};
  await page.goto(base);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, { timeout: 120_000 });
  out.initialState = await page.evaluate(() => document.body.dataset.state);
  await page.waitForFunction(() => document.body.dataset.offline === 'ready', null, { timeout: 120_000 });
  out.fetchedAtStart = await dicomFetches(page);
  step('app: a PNG');
  out.png = await pick(page, '#image-input', app.png);
  out.fetchedAfterPng = await dicomFetches(page);
  step('app: several DICOMs');
  out.files = await pick(page, '#image-input', app.files);
  out.fetchedAfterDicom = await dicomFetches(page);
  step('app: a folder');
  out.folder = await pick(page, '#folder-input', app.folder);
  // What the app kept after the picked files (before the drop below, whose files the test page fetches).
  out.storage = await page.evaluate(async () => ({
    localStorage: localStorage.length,
    sessionStorage: sessionStorage.length,
    indexedDB: (await indexedDB.databases?.())?.length ?? 0,
    cookies: document.cookie,
    cached: (await Promise.all((await caches.keys()).map(async (k) => (await (await caches.open(k)).keys()).map((r) => new URL(r.url).pathname)))).flat(),
  }));
  step('app: a drop');
  await page.evaluate(() => {
    document.body.dataset.state = 'picking';
  });
  await page.evaluate(async (urls) => {
    const transfer = new DataTransfer();
    for (const url of urls) {
      const blob = await (await fetch(url)).blob();
      transfer.items.add(new File([blob], url.split('/').pop()));
    }
    document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, app.drop);
  out.drop = await finished(page);
  step('app: a dropped folder tree');
  out.tree = await page.evaluate(async (tree) => {
    // Mock FileSystemEntry objects: folders hand out their entries in batches of 2, as readEntries may.
    const build = (name, node) => {
      if (node === null) return { name, isFile: true, isDirectory: false, file: (ok) => ok(new File([new Uint8Array(4)], name)) };
      const children = Object.entries(node).map(([n, v]) => build(n, v));
      return {
        name,
        isFile: false,
        isDirectory: true,
        createReader: () => {
          let at = 0;
          return {
            readEntries: (ok) => {
              const batch = children.slice(at, at + 2);
              at += 2;
              setTimeout(() => ok(batch), 0);
            },
          };
        },
      };
    };
    const entries = Object.entries(tree).map(([n, v]) => build(n, v));
    const { inputs, skipped } = await window.cxrEdgeApp.walkEntries(entries);
    return { inputs: inputs.map((i) => i.path), skipped };
  }, app.tree);
  out.text = await page.evaluate(() => document.body.innerText);
  out.html = await page.content();
  out.messages = messages;
  out.errors = errors;
  await page.close();
  return out;
}

/**
 * Offline after one visit without any DICOM: the service worker must have precached the DICOM layer.
 * @param {import('playwright-core').BrowserContext} context
 * @param {object} mounts
 * @param {object} offline
 */
async function offlineScenario(context, mounts, offline) {
  let server = await startServer({ mounts, isolate: true });
  const base = server.url;
  const page = await context.newPage();
  const { errors } = watch(page);
  const out = {};
  try {
    await page.goto(base);
    await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 120_000 });
    await page.waitForFunction(() => document.body.dataset.offline === 'ready', null, { timeout: 120_000 });
    out.offlineText = await page.textContent('#offline');
    out.fetchedOnline = await dicomFetches(page);
    await server.close();
    server = null;
    step('offline: reload without a server');
    await page.goto(base, { waitUntil: 'load' });
    await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, { timeout: 120_000 });
    out.controlled = await page.evaluate(() => Boolean(navigator.serviceWorker?.controller));
    out.state = await page.evaluate(() => document.body.dataset.state);
    out.files = await pick(page, '#image-input', offline.files);
    out.fetchedOffline = await dicomFetches(page);
  } finally {
    out.errors = errors;
    await page.close();
    if (server) await server.close();
  }
  return out;
}

const config = JSON.parse(await readFile(process.argv[2], 'utf8'));
const server = await startServer({ mounts: config.mounts, isolate: true });
const browser = await launch();
const out = { chromium: browser.context.browser()?.version() ?? null };
try {
  if (config.parity) out.parity = await parityScenario(browser.context, server.url, config.parity);
  if (config.app) out.app = await appScenario(browser.context, server.url, config.app);
  if (config.offline) {
    step('offline: first visit');
    out.offline = await offlineScenario(browser.context, config.mounts, config.offline);
  }
} finally {
  await browser.close();
  await server.close();
}
process.stdout.write(JSON.stringify(out));
