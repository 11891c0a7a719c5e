#!/usr/bin/env node
/**
 * Drives headless Chromium through the browser's DICOM reader for `tests/ports/test_web_dicom.py`: the
 * harness page (dicom_harness.html) reads each served file in turn and reports the image, the info (or
 * the error) and which package files the page had fetched before and after, so the test can check that
 * every codec loads lazily. Results go to stdout as JSON.
 *
 * Usage: `node test/dicom_driver.mjs config.json`, the config holding `{dir, cases: [{name, file,
 * options?}]}` (`file` relative to `dir`, which is served at `/dicom/`).
 *
 * @module test/dicom_driver
 */

import { readFile } from 'node:fs/promises';
import { startServer } from '../serve.mjs';
import { launch } from './driver.mjs';

const config = JSON.parse(await readFile(process.argv[2], 'utf8'));
const server = await startServer({ mounts: { '/dicom/': config.dir }, isolate: true });
const browser = await launch();
const out = { chromium: browser.context.browser()?.version() ?? null, cases: [], errors: [] };
try {
  const page = await browser.context.newPage();
  page.on('pageerror', (e) => out.errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && out.errors.push(`console: ${m.text()}`));
  await page.goto(`${server.url}test/dicom_harness.html`);
  await page.waitForFunction(() => document.body.dataset.state === 'ready');
  out.fetchedAtStart = await page.evaluate(() => window.dicomHarness.fetchedPackages());
  for (const c of config.cases) {
    const result = await page.evaluate((args) => window.dicomHarness.read(args), { url: `/dicom/${c.file}`, options: c.options ?? {} });
    const fetched = await page.evaluate(() => window.dicomHarness.fetchedPackages());
    out.cases.push({ name: c.name, ...result, fetched });
  }
  out.loaded = await page.evaluate(() => window.dicomHarness.loaded());
  await page.close();
} finally {
  await browser.close();
  await server.close();
}
process.stdout.write(JSON.stringify(out));
