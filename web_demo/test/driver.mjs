#!/usr/bin/env node
/**
 * Drives headless Chromium (playwright-core, the system's /usr/bin/chromium) through the web demo for
 * `tests/ports/test_web_demo.py`: golden-vector runs on the harness page, the real UI with a file input, a
 * bad file, and an offline reload served by the service worker. One browser session does all of it;
 * results go to stdout as JSON.
 *
 * Usage: `node test/driver.mjs config.json` where the config holds
 * `{mounts: {"/prefix/": dir}, golden: [{name, bundleUrl, imageUrl, threads?}], ui: {image, bad, screenshot,
 * offline} | null, bundles: [{name, query, image}], threads}`; each `bundles` item opens the app on
 * another bundle (e.g. `?bundle=/tiny/&sw=0`), classifies `image` and reports the card panel, the
 * referral and the lung-evidence line (and saves a full-page `screenshot` when one is named).
 *
 * @module test/driver
 */

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../serve.mjs';

export const CHROMIUM = process.env.CXR_EDGE_CHROMIUM ?? '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/**
 * Launches Chromium with a fresh user-data-dir.
 * @returns {Promise<{context: import('playwright-core').BrowserContext, close: () => Promise<void>}>}
 */
export async function launch() {
  const profile = await mkdtemp(path.join(os.tmpdir(), 'cxr-edge-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1200, height: 900 },
  });
  return {
    context,
    close: async () => {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Collects console errors and page errors of a page (no pixel data or file names are logged).
 * @param {import('playwright-core').Page} page
 */
function watch(page) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // LiteRT.js prints its INFO/WARNING log lines on stderr, which arrives as console errors.
    if (m.type() === 'error' && !/^(INFO|WARNING): /.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  return errors;
}

/**
 * The UI scenario: pick a sample through the file input, check the result, save a screenshot, pick
 * a non-image (error shown), pick the sample again (works), then stop the server and reload: the
 * service worker serves the app, LiteRT.js and the bundle from its cache.
 * @param {import('playwright-core').BrowserContext} context
 * @param {string} base server URL
 * @param {object} ui
 * @param {() => Promise<void>} stopServer
 */
async function uiScenario(context, base, ui, stopServer) {
  const page = await context.newPage();
  const errors = watch(page);
  const out = { steps: {} };
  const t0 = Date.now();
  await page.goto(`${base}${ui.query ?? ''}`);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, { timeout: 60_000 });
  out.initialState = await page.evaluate(() => document.body.dataset.state);
  out.bundleName = await page.textContent('#bundle-name');
  out.runtime = await page.textContent('#runtime');
  if (ui.offline) {
    await page.waitForFunction(() => document.body.dataset.offline === 'ready', null, { timeout: 60_000 });
    out.offlineText = await page.textContent('#offline');
  }
  const pick = async (file) => {
    await page.setInputFiles('#image-input', file);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 60_000 });
    return page.evaluate(() => ({
      state: document.body.dataset.state,
      label: document.getElementById('label').textContent,
      resultVisible: !document.getElementById('result').hidden,
      error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
      prediction: window.cxrEdgeApp.state.last
        ? {
            label: window.cxrEdgeApp.state.last.label,
            probs: window.cxrEdgeApp.state.last.probs,
            perModel: window.cxrEdgeApp.state.last.perModel,
            votes: window.cxrEdgeApp.state.last.votes,
            timings_ms: window.cxrEdgeApp.state.last.timings_ms,
            crop: window.cxrEdgeApp.state.last.crop,
          }
        : null,
      members: document.querySelectorAll('#members tbody tr').length,
      timingRows: document.querySelectorAll('#timings tbody tr').length,
      referralText: document.getElementById('referral').hidden ? null : document.getElementById('referral').textContent,
      evidenceText: document.getElementById('evidence').textContent,
      cardText: document.getElementById('card-body').textContent,
      cardLosoRows: document.querySelectorAll('#card-loso tbody tr').length,
      cardFailures: Array.from(document.querySelectorAll('#card-failures li'), (li) => li.textContent),
      evaluated: window.cxrEdgeApp.state.last
        ? {
            referral: window.cxrEdgeApp.state.last.referral,
            lung_fraction: window.cxrEdgeApp.state.last.lung_fraction,
            flags: window.cxrEdgeApp.state.last.flags,
          }
        : null,
    }));
  };
  out.steps.first = await pick(ui.image);
  if (ui.screenshot) {
    await page.evaluate(() => document.fonts?.ready);
    await page.screenshot({ path: ui.screenshot, fullPage: true });
    out.screenshot = ui.screenshot;
  }
  out.steps.bad = await pick(ui.bad);
  out.steps.again = await pick(ui.image);
  // The "Try a shipped sample" button classifies the first shipped sample.
  await page.evaluate(() => {
    window.cxrEdgeApp.state.last = null; // so the wait below sees this click's result, not the last one
  });
  await page.click('#try-sample');
  await page.waitForFunction(() => document.body.dataset.state === 'error' || (document.body.dataset.state === 'done' && window.cxrEdgeApp.state.last), null, { timeout: 60_000 });
  out.steps.sample = await page.evaluate(() => ({
    state: document.body.dataset.state,
    sampleText: document.getElementById('sample-name').textContent,
    prediction: window.cxrEdgeApp.state.last ? { label: window.cxrEdgeApp.state.last.label, probs: window.cxrEdgeApp.state.last.probs } : null,
  }));
  if (ui.offline) {
    await stopServer();
    await page.goto(base, { waitUntil: 'load' }).catch((e) => {
      out.offlineNavigationError = e.message;
    });
    await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset?.state), null, { timeout: 60_000 });
    out.offlineControlled = await page.evaluate(() => Boolean(navigator.serviceWorker?.controller));
    out.steps.offline = await pick(ui.image);
  }
  out.consoleErrors = errors;
  out.seconds = (Date.now() - t0) / 1000;
  await page.close();
  return out;
}

/**
 * The app on another bundle: load it through `?bundle=`, open the model card, classify one image.
 * @param {import('playwright-core').BrowserContext} context
 * @param {string} base server URL
 * @param {{name: string, query: string, image: string}} item
 */
async function bundleScenario(context, base, item) {
  const page = await context.newPage();
  const errors = watch(page);
  await page.goto(`${base}${item.query}`);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state), null, { timeout: 60_000 });
  await page.click('#card summary');
  await page.setInputFiles('#image-input', item.image);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 60_000 });
  const out = await page.evaluate(() => {
    const last = window.cxrEdgeApp.state.last;
    return {
      state: document.body.dataset.state,
      bundleName: document.getElementById('bundle-name').textContent,
      cardOpen: document.getElementById('card').open,
      cardText: document.getElementById('card-body').textContent,
      cardLosoRows: document.querySelectorAll('#card-loso tbody tr').length,
      cardFailures: Array.from(document.querySelectorAll('#card-failures li'), (li) => li.textContent),
      referralText: document.getElementById('referral').hidden ? null : document.getElementById('referral').textContent,
      evidenceText: document.getElementById('evidence').textContent,
      prediction: last ? { label: last.label, probs: last.probs, referral: last.referral, lung_fraction: last.lung_fraction, flags: last.flags } : null,
    };
  });
  if (item.screenshot) await page.screenshot({ path: item.screenshot, fullPage: true });
  out.name = item.name;
  out.consoleErrors = errors;
  await page.close();
  return out;
}

/** Progress on stderr (the test shows it when the driver fails or times out): phase names only. */
function step(name) {
  process.stderr.write(`[driver ${new Date().toISOString().slice(11, 19)}] ${name}\n`);
}

async function main() {
  const config = JSON.parse(await readFile(process.argv[2], 'utf8'));
  const t0 = Date.now();
  let server = await startServer({ mounts: config.mounts, isolate: config.isolate ?? true });
  const stop = async () => {
    if (server) {
      await server.close();
      server = null;
    }
  };
  const browser = await launch();
  const result = { golden: [], ui: null, chromium: null };
  try {
    result.chromium = browser.context.browser()?.version() ?? null;
    // One harness page per thread count (LiteRT.js loads once per page).
    const groups = new Map();
    for (const g of config.golden ?? []) {
      const t = g.threads ?? config.threads ?? 1;
      if (!groups.has(t)) groups.set(t, []);
      groups.get(t).push(g);
    }
    result.harnessErrors = [];
    result.runtimes = {};
    for (const [threads, items] of groups) {
      const page = await browser.context.newPage();
      const errors = watch(page);
      step(`harness, ${threads} thread(s)`);
      await page.goto(`${server.url}test/harness.html`);
      await page.waitForFunction(() => Boolean(window.harness));
      result.runtimes[threads] = await page.evaluate((t) => window.harness.init({ threads: t }), threads);
      for (const g of items) {
        const t = Date.now();
        step(`golden ${g.name}`);
        const out = await page.evaluate((args) => window.harness.golden(args), g);
        result.golden.push({ name: g.name, threads, seconds: (Date.now() - t) / 1000, ...out });
      }
      result.harnessErrors.push(...errors);
      await page.close();
    }
    result.bundles = [];
    for (const item of config.bundles ?? []) result.bundles.push(await bundleScenario(browser.context, server.url, item));
    if (config.missingRuntime) {
      // The app served without LiteRT.js (a node_modules-less copy): the page must say so, not wait.
      step('missing runtime');
      const bare = await startServer({ mounts: { ...config.mounts, '/node_modules/@litertjs/': config.missingRuntime }, isolate: true });
      const page = await browser.context.newPage();
      await page.goto(`${bare.url}?sw=0`);
      await page.waitForFunction(() => document.body.dataset.state === 'error', null, { timeout: 30_000 });
      result.missingRuntime = { state: await page.evaluate(() => document.body.dataset.state), runtime: await page.textContent('#runtime') };
      await page.close();
      await bare.close();
    }
    step('ui');
    if (config.ui) result.ui = await uiScenario(browser.context, server.url, config.ui, stop);
  } finally {
    await browser.close();
    await stop();
  }
  result.seconds = (Date.now() - t0) / 1000;
  process.stdout.write(JSON.stringify(result));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
