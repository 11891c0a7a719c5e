#!/usr/bin/env node
/**
 * Full-size DICOMs in the browser, per transfer syntax, beside the Python CLI on the same corpus in the
 * same run: decode / prepare (segment + preprocess) / model (members + combine + heat map) / end to end,
 * p50 and p95, in headless Chromium with 1 and 2 threads.
 *
 *     node web_demo/bench_dicom.mjs --corpus DIR [--bundle DIR|PRESET] [--threads 1,2] [--runs 5]
 *         [--files N] [--syntax a,b] [--variant m2_window_12] [--python PATH | --no-python]
 *         [--out benchmarks/results/web_dicom.json] [--markdown FILE.md] [--results-md benchmarks/RESULTS.md]
 *
 * The corpus comes from `python -m cxr_edge.benchmarks.dicom_corpus --out DIR` (2560 x 2130, 10-16 bit;
 * its `corpus.csv` names each file's syntax and variant). For every syntax (its first `--files` files of
 * `--variant`):
 *
 * - **browser**: for each thread count a fresh page of `test/harness.html` (cross-origin isolated, so the
 *   threaded LiteRT.js build loads for N > 1) runs the app's pipeline (`Predictor.predictBytes`: the
 *   bundle's decode gate, the input checks, the models) once over the files untimed (codec and model
 *   warm-up), then `--runs` timed passes;
 * - **python**: `python -m cxr_edge.benchmarks.decode --child` (the `fast` path: `Predictor.predict_file`
 *   as `cxr-edge predict` runs it, with the bundle's decode gate) in a fresh interpreter per syntax and
 *   thread count, one warm-up pass and `--runs` timed passes, on the same files.
 *
 * Both runtimes make every reduction kind the gate allows (the browser's DCT scaling is
 * `src/dicom/jpegscaled.js`); the `reduction, decoder` columns say what each did. 12-bit JPEG (JPEG Extended) has no
 * browser decoder and is refused there (Python's number is still given).
 *
 * Writes the JSON (`--out`) and a Markdown table (stdout, `--markdown`, and with `--results-md` the
 * `web_dicom` section of benchmarks/RESULTS.md). Targets (issue 28): the browser's end to end within 2x
 * of Python's per syntax; JPEG 2000 lossless at most 1 s on one thread.
 *
 * @module bench_dicom
 */

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_BUNDLE, PRESETS, resolveBundle, startServer } from './serve.mjs';
import { launch } from './test/driver.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..');
const SECTION = 'web_dicom';
const E2E_RATIO_TARGET = 2;
const J2K_TARGET_MS = 1000;
const PACKAGES = ['dicom-parser', 'fflate', 'jpeg-lossless-decoder-js', '@cornerstonejs/codec-openjpeg', '@cornerstonejs/codec-openjph', '@cornerstonejs/codec-charls', '@cornerstonejs/codec-libjpeg-turbo-8bit', '@litertjs/core'];

/**
 * @param {string[]} argv
 */
function parseArgs(argv) {
  const venv = path.join(REPO, '.venv', 'bin', 'python');
  const o = {
    corpus: null,
    bundle: DEFAULT_BUNDLE,
    bundleArg: null,
    threads: [1, 2],
    runs: 5,
    files: 2,
    syntaxes: null,
    variant: 'm2_window_12',
    python: existsSync(venv) ? venv : 'python3',
    noPython: false,
    out: null,
    markdown: null,
    resultsMd: null,
  };
  const usage =
    `usage: node bench_dicom.mjs --corpus DIR [--bundle DIR|${Object.keys(PRESETS).join('|')}] [--threads 1,2] [--runs 5] [--files 2]\n` +
    '    [--syntax a,b] [--variant m2_window_12|all] [--python PATH | --no-python] [--out FILE.json] [--markdown FILE.md]\n' +
    '    [--results-md benchmarks/RESULTS.md]';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--corpus') o.corpus = path.resolve(argv[++i]);
    else if (a === '--bundle') {
      o.bundleArg = argv[++i];
      o.bundle = resolveBundle(o.bundleArg);
    } else if (a === '--threads') o.threads = argv[++i].split(',').map(Number);
    else if (a === '--runs') o.runs = Number(argv[++i]);
    else if (a === '--files') o.files = Number(argv[++i]);
    else if (a === '--syntax') o.syntaxes = argv[++i].split(',');
    else if (a === '--variant') o.variant = argv[++i];
    else if (a === '--python') o.python = argv[++i].includes('/') ? path.resolve(argv[i]) : argv[i];
    else if (a === '--no-python') o.noPython = true;
    else if (a === '--out') o.out = path.resolve(argv[++i]);
    else if (a === '--markdown') o.markdown = path.resolve(argv[++i]);
    else if (a === '--results-md') o.resultsMd = path.resolve(argv[++i]);
    else if (a === '--help' || a === '-h') {
      console.log(usage);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}\n${usage}`);
  }
  if (!o.corpus) throw new Error(`--corpus is required (make one with python -m cxr_edge.benchmarks.dicom_corpus --out DIR)\n${usage}`);
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
 * The percentiles `cxr_edge.benchmarks.measure.percentiles` gives.
 * @param {number[]} v milliseconds
 */
function summary(v) {
  return { p50_ms: percentile(v, 50), p95_ms: percentile(v, 95), mean_ms: v.reduce((s, x) => s + x, 0) / v.length, n: v.length };
}

/**
 * The corpus's files per syntax (`corpus.csv`), pydicom's own files left out.
 * @param {string} corpus
 * @param {string} variant a variant name, or `all`
 */
async function corpusFiles(corpus, variant) {
  const [header, ...lines] = (await readFile(path.join(corpus, 'corpus.csv'), 'utf8')).trim().split(/\r?\n/);
  const cols = header.split(',');
  const at = (name) => cols.indexOf(name);
  /** @type {Map<string, string[]>} */
  const bySyntax = new Map();
  const sizes = new Set();
  for (const line of lines) {
    const row = line.split(',');
    const syntax = row[at('syntax')];
    if (syntax.startsWith('pydicom:') || (variant !== 'all' && row[at('variant')] !== variant)) continue;
    if (!bySyntax.has(syntax)) bySyntax.set(syntax, []);
    bySyntax.get(syntax).push(row[at('path')]);
    sizes.add(`${row[at('columns')]} x ${row[at('rows')]}`);
  }
  return { bySyntax, size: [...sizes].join(', ') };
}

/**
 * The app's per-file stages grouped as `benchmarks/decode.py` groups Python's.
 * @param {Record<string, number[]>} samples stage -> milliseconds (one per file and pass)
 * @param {string[]} members
 */
function stages(samples, members) {
  const n = samples.total.length;
  const sum = (names) => Array.from({ length: n }, (_, i) => names.reduce((s, k) => s + (samples[k]?.[i] ?? 0), 0));
  return {
    decode: summary(samples.decode),
    prepare: summary(sum(['segment', 'preprocess'])),
    model: summary(sum([...members, 'combine', 'heatmap'])),
    total: summary(samples.total),
  };
}

/**
 * Python's `fast` path on the files in a fresh interpreter (`benchmarks/decode.py --child`).
 * @param {object} o options
 * @param {string[]} files absolute paths
 * @param {number} threads
 */
function python(o, files, threads) {
  const payload = { path: 'fast', bundle: o.bundleArg ? o.bundle : null, files, threads, runs: o.runs };
  const proc = spawnSync(o.python, ['-m', 'cxr_edge.benchmarks.decode', '--child', JSON.stringify(payload)], {
    cwd: REPO,
    encoding: 'utf8',
    env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '2' },
    maxBuffer: 64 << 20,
  });
  if (proc.status !== 0) return { error: (proc.stderr || proc.error?.message || '').trim().split('\n').slice(-3).join(' ') };
  return JSON.parse(proc.stdout.trim().split('\n').pop());
}

/** CPU model and core count. */
async function machine() {
  const os = await import('node:os');
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    const name = (await readFile('/proc/cpuinfo', 'utf8')).split('\n').find((l) => l.startsWith('model name'));
    if (name) cpu = name.split(':')[1].trim();
  } catch {
    // not Linux
  }
  return { cpu, cores: os.cpus().length, platform: `${os.type()}-${os.release()}-${os.arch()}` };
}

/** Versions of the packages that decode and classify. */
async function versions() {
  const out = { node: process.versions.node };
  for (const p of PACKAGES) {
    try {
      out[p] = JSON.parse(await readFile(path.join(HERE, 'node_modules', p, 'package.json'), 'utf8')).version;
    } catch {
      out[p] = null;
    }
  }
  return out;
}

const fmt = (x) => (x === null || x === undefined ? '–' : x.toFixed(x >= 100 ? 0 : 1));

/**
 * The Markdown table: one row per syntax, browser beside Python, the targets.
 * @param {object} result
 */
export function render(result) {
  const [t1, t2] = result.threads;
  const lines = [
    `<!-- ${SECTION}:begin -->`,
    '## Full-size DICOM in the browser, per transfer syntax, beside the Python CLI',
    '',
    `${result.machine.cpu}, ${result.machine.cores} cores; Chromium ${result.versions.chromium}; bundle \`${result.bundle}\`; corpus ` +
      `\`${result.corpus}\` (variant ${result.variant}, ${result.files_per_syntax} file(s) per syntax, ${result.size ?? '2560 x 2130'}); ` +
      `${result.runs} timed pass(es) after a warm-up, both runtimes in the same run (${result.created.slice(0, 10)}). ` +
      'Milliseconds, p50: decode / prepare (segment + preprocess) / model (members + combine + heat map) / end to end. ' +
      'Browser: `web_demo/bench_dicom.mjs` (headless Chromium, `Predictor.predictBytes` as the app runs it); Python: ' +
      '`Predictor.predict_file` as `cxr-edge predict` runs it, both with the bundle\'s decode gate.',
    '',
    `| syntax | MiB | browser ${t1}T: decode / prepare / model / e2e | browser ${t2 ?? '–'}T e2e | Python ${t1}T: decode / prepare / model / e2e | Python ${t2 ?? '–'}T e2e | browser / Python (${t1}T) | reduction, decoder: browser; Python | target |`,
    '|---|---:|---|---:|---|---:|---:|---|---|',
  ];
  for (const [syntax, r] of Object.entries(result.syntaxes)) {
    const b1 = r.browser[t1];
    const b2 = t2 ? r.browser[t2] : null;
    const p1 = r.python?.[t1];
    const p2 = t2 ? r.python?.[t2] : null;
    const four = (s) => (s?.stages ? `${fmt(s.stages.decode.p50_ms)} / ${fmt(s.stages.prepare.p50_ms)} / ${fmt(s.stages.model.p50_ms)} / **${fmt(s.stages.total.p50_ms)}**` : s?.error ? `refused: ${s.error.split(';')[0]}` : '–');
    const e2e = (s) => (s?.stages ? fmt(s.stages.total.p50_ms) : '–');
    const how = (s) => (s?.stages ? `1/${(s.reduction ?? []).join('/')} ${(s.decoder ?? []).join(', ')}` : '–');
    const ratio = r.ratio_1 ? `${r.ratio_1.toFixed(2)}x` : '–';
    const targets = [];
    if (r.ratio_1) targets.push(`<= ${E2E_RATIO_TARGET}x ${r.ratio_1 <= E2E_RATIO_TARGET ? 'met' : 'missed'}`);
    if (syntax === 'j2k_lossless' && b1?.stages) targets.push(`<= 1 s ${b1.stages.total.p50_ms <= J2K_TARGET_MS ? 'met' : 'missed'}`);
    lines.push(
      `| ${syntax} | ${r.mean_mib.toFixed(1)} | ${four(b1)} | ${e2e(b2)} | ${four(p1)} | ${e2e(p2)} | ${ratio} | ${how(b1)}; ${how(p1)} | ${targets.join(', ') || '–'} |`,
    );
  }
  lines.push('', `Command: \`${result.command}\``, `<!-- ${SECTION}:end -->`);
  return `${lines.join('\n')}\n`;
}

/**
 * Replaces (or appends) this benchmark's section of a RESULTS.md (`benchmarks/results_md.py`'s format).
 * @param {string} file
 * @param {string} section
 */
async function writeSection(file, section) {
  const begin = `<!-- ${SECTION}:begin -->`;
  const end = `<!-- ${SECTION}:end -->`;
  let text = existsSync(file) ? await readFile(file, 'utf8') : '# Benchmark results\n';
  if (text.includes(begin) && text.includes(end)) {
    const [head, rest] = text.split(begin);
    text = head + section + rest.split(end)[1].replace(/^\n+/, '');
  } else text = `${text.replace(/\n+$/, '')}\n\n${section}`;
  await writeFile(file, text);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const { bySyntax, size } = await corpusFiles(o.corpus, o.variant);
  const chosen = [...bySyntax.keys()].filter((s) => !o.syntaxes || o.syntaxes.includes(s));
  if (!chosen.length) throw new Error(`no files of variant ${o.variant} in ${o.corpus}/corpus.csv${o.syntaxes ? ` for ${o.syntaxes}` : ''}`);
  const files = Object.fromEntries(chosen.map((s) => [s, bySyntax.get(s).slice(0, o.files)]));
  const result = {
    created: new Date().toISOString().replace(/\.\d+Z$/, '+00:00'),
    runtime: 'browser+python',
    machine: await machine(),
    versions: await versions(),
    corpus: path.relative(REPO, o.corpus).startsWith('..') ? o.corpus : path.relative(REPO, o.corpus),
    bundle: path.relative(REPO, o.bundle).startsWith('..') ? o.bundle : path.relative(REPO, o.bundle),
    variant: o.variant,
    size,
    files_per_syntax: o.files,
    runs: o.runs,
    threads: o.threads,
    syntaxes: {},
    command: ['node', 'web_demo/bench_dicom.mjs', ...process.argv.slice(2)].join(' '),
  };
  for (const s of chosen) {
    let bytes = 0;
    for (const f of files[s]) bytes += (await stat(path.join(o.corpus, f))).size;
    result.syntaxes[s] = { files: files[s].length, mean_mib: bytes / files[s].length / 2 ** 20, browser: {}, python: o.noPython ? null : {} };
  }
  const server = await startServer({ mounts: { '/bundle/': o.bundle, '/corpus/': o.corpus }, isolate: true });
  const browser = await launch();
  result.versions.chromium = browser.context.browser()?.version() ?? null;
  try {
    for (const threads of o.threads) {
      const page = await browser.context.newPage();
      await page.goto(`${server.url}test/harness.html`);
      await page.waitForFunction(() => Boolean(window.harness));
      const runtime = await page.evaluate((t) => window.harness.init({ threads: t }), threads);
      for (const s of chosen) {
        const urls = files[s].map((f) => `/corpus/${f.split(path.sep).join('/')}`);
        let entry;
        try {
          const r = await page.evaluate((args) => window.harness.bench(args), { bundleUrl: '/bundle/', imageUrls: urls, warmup: urls.length, runs: o.runs * urls.length });
          entry = { wasm: runtime.wasm, threads: runtime.threads, stages: stages(r.samples, r.members), reduction: r.reduction, decoder: r.decoder };
        } catch (err) {
          entry = { error: String(err?.message ?? err).split('\n')[0].replace(/^.*?Error: /, '') };
        }
        result.syntaxes[s].browser[threads] = entry;
        console.error(`browser ${threads}T ${s.padEnd(18)} ${entry.stages ? `e2e p50 ${fmt(entry.stages.total.p50_ms)} ms (decode ${fmt(entry.stages.decode.p50_ms)})` : `refused: ${entry.error}`}`);
      }
      await page.close();
    }
  } finally {
    await browser.close();
    await server.close();
  }
  if (!o.noPython) {
    for (const threads of o.threads) {
      for (const s of chosen) {
        const r = python(o, files[s].map((f) => path.join(o.corpus, f)), threads);
        result.syntaxes[s].python[threads] = r;
        console.error(`python  ${threads}T ${s.padEnd(18)} ${r.stages ? `e2e p50 ${fmt(r.stages.total.p50_ms)} ms (decode ${fmt(r.stages.decode.p50_ms)})` : `failed: ${r.error}`}`);
      }
    }
  }
  for (const r of Object.values(result.syntaxes)) {
    const b = r.browser[o.threads[0]]?.stages?.total.p50_ms;
    const p = r.python?.[o.threads[0]]?.stages?.total.p50_ms;
    r.ratio_1 = b && p ? b / p : null;
  }
  const table = render(result);
  const text = JSON.stringify(result, null, 2);
  if (o.out) {
    await mkdir(path.dirname(o.out), { recursive: true });
    await writeFile(o.out, `${text}\n`);
  }
  if (o.markdown) await writeFile(o.markdown, table);
  if (o.resultsMd) await writeSection(o.resultsMd, table);
  process.stdout.write(table);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(err?.stack ?? err);
    process.exit(1);
  });
}
