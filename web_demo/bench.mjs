#!/usr/bin/env node
/**
 * Browser latency of a bundle, stage by stage, in headless Chromium: single-threaded WASM
 * (`litert_wasm_internal`, 1 thread) and threaded WASM (`litert_wasm_threaded_internal`, N XNNPack
 * threads; the server sends COOP/COEP so the page is cross-origin isolated).
 *
 *     node bench.mjs [--bundle DIR|PRESET] [--images DIR] [--threads 1,2] [--runs 5] [--rounds 2] [--out FILE.json]
 *
 * Each thread count runs in a fresh page (LiteRT.js loads once per page): one untimed warm-up pass
 * over the images, then `runs` timed passes. The thread counts take turns for `rounds` rounds (a fresh
 * page each time) and their samples are pooled, so a shared, busy machine biases none of them. The JSON has the shape `cxr-edge bench --out` writes
 * (`by_threads`, `end_to_end`, `stages` with p50/p90/p95/p99/mean ms), so `cxr_edge.benchmarks.report` can
 * tabulate it next to the Python runtime's numbers. `peak_rss_mb` is the page's JS heap plus the WASM
 * memory (a browser cannot see its process RSS).
 *
 * @module bench
 */

import { readdir, readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_BUNDLE, PRESETS, resolveBundle, startServer } from './serve.mjs';
import { launch } from './test/driver.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SAMPLES = path.resolve(HERE, '..', 'cxr_edge', 'data', 'samples');

/**
 * @param {string[]} argv
 */
function parseArgs(argv) {
  const o = { bundle: DEFAULT_BUNDLE, threads: [1, 2], runs: 5, rounds: 2, out: null, images: SAMPLES };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--bundle') o.bundle = resolveBundle(argv[++i]);
    else if (a === '--threads') o.threads = argv[++i].split(',').map(Number);
    else if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a === '--rounds') o.rounds = Number(argv[++i]);
    else if (a === '--out') o.out = path.resolve(argv[++i]);
    else if (a === '--images') o.images = path.resolve(argv[++i]);
    else if (a === '--help' || a === '-h') {
      console.log(`usage: node bench.mjs [--bundle DIR|${Object.keys(PRESETS).join('|')}] [--images DIR] [--threads 1,2] [--runs 5] [--rounds 2] [--out FILE.json]`);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

/**
 * Linear-interpolated percentile (numpy's default).
 * @param {number[]} values
 * @param {number} q 0..100
 */
function percentile(values, q) {
  const a = [...values].sort((x, y) => x - y);
  const pos = ((a.length - 1) * q) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return a[lo] + (a[hi] - a[lo]) * (pos - lo);
}

/**
 * @param {number[]} v milliseconds
 */
function summary(v) {
  return {
    p50_ms: percentile(v, 50),
    p90_ms: percentile(v, 90),
    p95_ms: percentile(v, 95),
    p99_ms: percentile(v, 99),
    mean_ms: v.reduce((s, x) => s + x, 0) / v.length,
    n: v.length,
  };
}

/** CPU model and ISA flags (as `cxr_edge.benchmarks.latency.machine`). */
async function machine() {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  let isa = [];
  try {
    const info = await readFile('/proc/cpuinfo', 'utf8');
    const flags = info.split('\n').find((l) => l.startsWith('flags'));
    if (flags) isa = [...new Set(flags.split(':')[1].trim().split(/\s+/))].filter((f) => /^(avx512|amx|avx2|fma)/.test(f)).sort();
    const name = info.split('\n').find((l) => l.startsWith('model name'));
    if (name) cpu = name.split(':')[1].trim();
  } catch {
    // not Linux
  }
  return { cpu, isa, cores: os.cpus().length, platform: `${os.type()}-${os.release()}-${os.arch()}` };
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const manifest = JSON.parse(await readFile(path.join(o.bundle, 'manifest.json'), 'utf8'));
  const names = (await readdir(o.images)).filter((f) => /\.(png|jpe?g)$/i.test(f)).sort();
  let bundleBytes = 0;
  const models = {};
  for (const m of manifest.models) {
    const size = (await stat(path.join(o.bundle, m.file))).size;
    bundleBytes += size;
    models[m.name] = { quant: m.quant, file_mb: size / 2 ** 20, params: m.params, params_unpruned: m.params_unpruned ?? null, macs: m.macs ?? null };
  }
  if (manifest.segmenter) bundleBytes += (await stat(path.join(o.bundle, manifest.segmenter.file))).size;
  const server = await startServer({ mounts: { '/bundle/': o.bundle, '/images/': o.images }, isolate: true });
  const browser = await launch();
  const version = browser.context.browser()?.version() ?? (await browser.context.newPage().then((p) => p.evaluate(() => navigator.userAgent)));
  const pooled = {};
  try {
    for (let round = 0; round < o.rounds; round++) {
      for (const threads of o.threads) {
        const page = await browser.context.newPage();
        await page.goto(`${server.url}test/harness.html`);
        await page.waitForFunction(() => Boolean(window.harness));
        const runtime = await page.evaluate((t) => window.harness.init({ threads: t }), threads);
        const r = await page.evaluate(
          (args) => window.harness.bench(args),
          { bundleUrl: '/bundle/', imageUrls: names.map((n) => `/images/${n}`), warmup: names.length, runs: o.runs * names.length },
        );
        const heapMb = await page.evaluate(() => (performance.memory?.usedJSHeapSize ?? 0) / 2 ** 20);
        await page.close();
        const p = (pooled[threads] ??= { runtime, members: r.members, init: [], memory: [], samples: {} });
        p.init.push(r.load_ms);
        p.memory.push(heapMb + r.wasm_heap_mb);
        for (const [stage, v] of Object.entries(r.samples)) (p.samples[stage] ??= []).push(...v);
      }
    }
  } finally {
    await browser.close();
    await server.close();
  }
  const byThreads = {};
  for (const threads of o.threads) {
    const { runtime, members, init, memory, samples } = pooled[threads];
    const total = samples.total;
    const wallS = total.reduce((sum, x) => sum + x, 0) / 1000;
    byThreads[String(threads)] = {
      threads: runtime.threads,
      requested_threads: threads,
      wasm: runtime.wasm,
      relaxed_simd: runtime.relaxedSimd,
      cross_origin_isolated: runtime.crossOriginIsolated,
      members,
      init_ms: percentile(init, 50),
      peak_rss_mb: Math.max(...memory),
      end_to_end: { ...summary(total), throughput_img_s: total.length / wallS },
      stages: Object.fromEntries(Object.entries(samples).filter(([k]) => k !== 'total').map(([k, v]) => [k, summary(v)])),
    };
    const e = byThreads[threads].end_to_end;
    console.error(`threads=${threads} (${runtime.wasm}, ${runtime.threads} thread(s)): end to end p50 ${e.p50_ms.toFixed(1)} ms, p90 ${e.p90_ms.toFixed(1)} ms`);
  }
  const first = byThreads[String(o.threads[0])];
  const pkg = JSON.parse(await readFile(path.join(HERE, 'node_modules', '@litertjs', 'core', 'package.json'), 'utf8'));
  const result = {
    created: new Date().toISOString().replace(/\.\d+Z$/, '+00:00'),
    runtime: 'browser',
    machine: await machine(),
    versions: { chromium: version, '@litertjs/core': pkg.version, node: process.versions.node },
    bundle: path.relative(path.resolve(HERE, '..'), o.bundle).startsWith('..') ? o.bundle : path.relative(path.resolve(HERE, '..'), o.bundle),
    bundle_mb: bundleBytes / 2 ** 20,
    images: names.length,
    runs: o.runs,
    rounds: o.rounds,
    models,
    segmenter: manifest.segmenter ? { name: manifest.segmenter.name, macs: manifest.segmenter.macs } : null,
    by_threads: byThreads,
    peak_rss_mb: first.peak_rss_mb,
    end_to_end: first.end_to_end,
    stages: first.stages,
    command: ['node', 'web_demo/bench.mjs', ...process.argv.slice(2)].join(' '),
  };
  const text = JSON.stringify(result, null, 2);
  if (o.out) {
    await mkdir(path.dirname(o.out), { recursive: true });
    await writeFile(o.out, `${text}\n`);
  } else process.stdout.write(`${text}\n`);
}

main().catch((err) => {
  console.error(err?.stack ?? err);
  process.exit(1);
});
