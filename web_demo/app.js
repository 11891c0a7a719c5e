/**
 * The web demo's UI: load a bundle, pick an image, show the prediction, the members' votes and
 * probabilities, the latency of every stage and the heat map, the referral band's referral and,
 * with a segmenter, the heat map's lung fraction and its flag; plus the bundle's model card (intended
 * use, disclaimer, leave-one-source-out results per source with intervals, failure modes). All
 * computation happens in this browser; nothing is uploaded, and no file names or pixel data are logged.
 *
 * Several files, or folders (a DICOMDIR-less export: the folder picker, or a drop read with
 * `webkitGetAsEntry`), are classified one after the other, as `cxr-edge predict` does: each file gets a
 * row with its label or its typed error (`InputRejectedError: view: view position LL is not frontal…`,
 * the CLI's `error` column), and one bad file never stops the others; files that are certainly not
 * images are skipped inside folders and counted (`src/inputs.js`). DICOM is read by `src/dicom/`,
 * imported with its codecs only when a DICOM arrives. The app shows no patient identifier (the reader
 * never returns one: only how the pixels were read) and keeps nothing: no storage, no logs; the only
 * name shown is the one the user opened the file under.
 *
 * URL parameters: `bundle` (bundle folder URL, default `bundle/`), `threads` (XNNPack threads; > 1
 * needs the server's cross-origin isolation headers).
 *
 * The bundle line says whether the bundle is signed and whether its signature matches its manifest under
 * the key it embeds, naming that key (`ed25519:...`, as `cxr-edge bundle info`): not a trust decision, as
 * the app holds no trusted keys (`src/bundle.js`, `checkSignature`).
 *
 * The page reports its state in `document.body.dataset.state` (`loading`, `ready`, `busy`, `done`,
 * `error`), which the browser tests wait on.
 *
 * @module app
 */

import { loadBundleFromFiles, loadBundleFromUrl } from './src/bundle.js';
import { overlay } from './src/cam.js';
import { initLiteRt } from './src/engine.js';
import { CxrEdgeError, InputError } from './src/errors.js';
import { entriesFromDrop, fromFolderPicker, selectInputs, skippedNote, walkEntries } from './src/inputs.js';
import { Predictor } from './src/pipeline.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { predictor: null, last: null, image: null, heat: null, runtime: null, notCached: new Set(), batch: null };

/**
 * @param {'loading'|'ready'|'busy'|'done'|'error'} s
 */
function setState(s) {
  document.body.dataset.state = s;
}

/**
 * Shows an error (one sentence plus expected/received) and hides stale results.
 * @param {unknown} err
 */
function showError(err) {
  const box = $('error');
  box.textContent = `Cannot classify this file: ${err?.message ?? String(err)}`;
  box.hidden = false;
  $('result').hidden = true;
  setState('error');
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

/**
 * @param {number} ms
 */
const fmtMs = (ms) => `${ms.toFixed(1)} ms`;

/**
 * Loads a bundle and compiles its models.
 * @param {() => Promise<import('./src/bundle.js').Bundle>} load
 */
async function useBundle(load) {
  setState('loading');
  $('bundle-name').textContent = 'loading…';
  const t0 = performance.now();
  const bundle = await load();
  const predictor = await Predictor.create(bundle);
  state.predictor?.delete();
  state.predictor = predictor;
  const m = bundle.manifest;
  const seg = m.segmenter ? ` + segmenter ${m.segmenter.name}${m.segmenter.role === 'evidence' ? ' (checks the evidence)' : ''}` : '';
  // A site-calibrated bundle (format 4) says for whom: its predictions are not its parent's.
  const site = m.site ? `; calibrated for ${m.site.name} on ${m.site.date}` : '';
  // Signed or not, and whether the signature matches the manifest (key id as Python's); never a trust decision.
  const signature = document.createElement('span');
  signature.id = 'bundle-signature';
  signature.dataset.status = bundle.signature.status;
  signature.textContent = bundle.signature.text;
  if (['invalid', 'malformed', 'unavailable'].includes(bundle.signature.status)) signature.className = 'flag';
  $('bundle-name').replaceChildren(`${m.name} (${m.ensemble.members.join(', ')}${seg}${site}); `, signature);
  // A 404 (a server that does not say whether signature.json exists) cannot go into the offline cache.
  if (bundle.signature.notFoundUrl) state.notCached.add(bundle.signature.notFoundUrl);
  renderCard(m);
  $('runtime').textContent =
    `LiteRT.js ${state.runtime.wasm}.wasm, ${state.runtime.threads} thread(s)` +
    `${state.runtime.crossOriginIsolated ? ', cross-origin isolated' : ''}; ` +
    `bundle verified (sha256) and compiled in ${fmtMs(performance.now() - t0)}`;
  setState('ready');
}

/**
 * The typed error of a failed file: a `CxrEdgeError` as it is; anything else (a codec that aborted, a
 * bug) as Python's `unexpected_failure` reports it, naming only the exception's type.
 * @param {unknown} err
 * @returns {CxrEdgeError}
 */
function typedError(err) {
  if (err instanceof CxrEdgeError) return err;
  const name = err?.constructor?.name ?? typeof err;
  return new InputError('unexpected failure', { expected: 'a readable image', received: `an internal ${name}` });
}

/**
 * Classifies a picked file and renders the result.
 * @param {File} file
 */
async function classify(file) {
  if (!state.predictor) return;
  clearError();
  setState('busy');
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const { prediction, image } = await state.predictor.predictBytes(bytes, file.name);
    show(prediction, image);
    setState('done');
  } catch (err) {
    state.last = null;
    showError(typedError(err));
  }
}

/**
 * Makes a prediction the one on screen (image, heat map, numbers).
 * @param {import('./src/pipeline.js').Prediction} prediction
 * @param {import('./src/resize.js').FloatImage} image
 */
function show(prediction, image) {
  state.last = prediction;
  state.image = image;
  state.heat = state.predictor.heatmap(prediction, [image.height, image.width]);
  render(prediction);
}

/**
 * What a batch row keeps of a prediction (no pixels: a folder of full-size DICOMs must not stay in memory).
 * @param {import('./src/pipeline.js').Prediction} p
 */
function summarise(p) {
  const info = p.info ?? {};
  return {
    label: p.label,
    probs: p.probs,
    referral: p.referral,
    flags: p.flags,
    crop: p.crop,
    timings_ms: p.timings_ms,
    info: {
      format: info.format,
      width: info.width,
      height: info.height,
      transfer_syntax: info.transfer_syntax ?? null,
      reduction: info.reduction ?? 1,
      decoder: info.decoder ?? null,
    },
  };
}

/**
 * Classifies several inputs one after the other, as `cxr-edge predict` does: every file gets a row with
 * its result or its typed error, and the first classified one is shown in full. A row's "show" button
 * classifies its file again and shows it.
 * @param {import('./src/inputs.js').Input[]} inputs
 * @param {string[]} [skipped] paths skipped inside folders (not images)
 */
async function classifyMany(inputs, skipped = []) {
  if (!state.predictor) return;
  clearError();
  setState('busy');
  const rows = [];
  state.batch = rows;
  const body = $('batch-table').tBodies[0];
  body.replaceChildren();
  $('batch').hidden = false;
  let shown = false;
  const summary = () => {
    const failed = rows.filter((r) => !r.ok).length;
    $('batch-summary').textContent =
      `${rows.length - failed} of ${inputs.length} images classified` +
      (failed ? `, ${failed} failed` : '') +
      (skipped.length ? `; ${skippedNote(skipped)}` : '') +
      (rows.length < inputs.length ? ` (${inputs.length - rows.length} to go…)` : '');
  };
  summary();
  for (const { file, path } of inputs) {
    let row;
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      const { prediction, image } = await state.predictor.predictBytes(bytes, path);
      row = { path, ok: true, error: null, ...summarise(prediction) };
      if (!shown) {
        show(prediction, image);
        shown = true;
      }
    } catch (err) {
      const e = typedError(err);
      row = { path, ok: false, error: `${e.name}: ${e.message}`, errorClass: e.name };
    }
    rows.push(row);
    body.append(batchRow(row, file));
    summary();
  }
  document.body.dataset.batch = `${rows.filter((r) => r.ok).length}/${rows.length}`;
  setState('done');
}

/**
 * One row of the batch table: the path the user opened, then the label (and referral) or the error.
 * @param {object} row
 * @param {File} file
 */
function batchRow(row, file) {
  const tr = document.createElement('tr');
  tr.dataset.status = row.ok ? 'ok' : 'error';
  const name = document.createElement('td');
  name.textContent = row.path;
  const result = document.createElement('td');
  if (row.ok) {
    const p = row.probs[row.label];
    const where = row.info.format === 'dicom' ? ` · DICOM ${row.info.transfer_syntax ?? ''}${row.info.reduction > 1 ? `, read at 1/${row.info.reduction}` : ''}` : '';
    result.textContent = `${row.label} (${(100 * p).toFixed(1)}%)${row.referral ? ` · refer: ${row.referral}` : ''}${where}`;
  } else {
    result.textContent = row.error;
    result.className = 'bad';
  }
  const action = document.createElement('td');
  if (row.ok) {
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = 'show';
    button.addEventListener('click', () => classify(file));
    action.append(button);
  }
  tr.append(name, result, action);
  return tr;
}

/**
 * Files opened together (picker or drop): one file on its own as before, several as a batch.
 * @param {import('./src/inputs.js').Input[]} inputs
 * @param {string[]} skipped
 * @param {boolean} folder whether any came from a folder
 */
function openInputs(inputs, skipped, folder) {
  if (inputs.length === 1 && !folder) {
    $('batch').hidden = true;
    state.batch = null;
    return classify(inputs[0].file);
  }
  return classifyMany(inputs, skipped);
}

/** Draws the radiograph (with the heat map when enabled). */
function draw() {
  const { image, heat } = state;
  if (!image) return;
  const canvas = $('view');
  canvas.width = image.width;
  canvas.height = image.height;
  const pic = overlay(image, $('show-heat').checked ? heat : null);
  canvas.getContext('2d').putImageData(new ImageData(pic.data, pic.width, pic.height), 0, 0);
}

/**
 * @param {import('./src/pipeline.js').Prediction} p
 */
function render(p) {
  const labels = state.predictor.labels;
  $('label').textContent = `${p.label} (${(100 * p.probs[p.label]).toFixed(1)}%)`;
  // A segmenter of role "evidence" does not crop: the classifiers see the full image (border crop).
  const why = state.predictor.manifest.segmenter ? 'full image; the lung mask only checks the heat map' : 'no segmenter in this bundle';
  $('crop').textContent =
    p.crop === 'none'
      ? `Crop: border (${why}). Image ${p.info?.width}×${p.info?.height}, ${p.info?.format}.`
      : `Crop: ${p.crop}${p.cropReason ? ` (${p.cropReason})` : ''}, box ${JSON.stringify(p.cropBox)}.`;
  // How a DICOM was read (never who it shows: the reader returns no patient identifier).
  const i = p.info ?? {};
  $('dicom-info').textContent =
    i.format === 'dicom'
      ? `DICOM: ${i.transfer_syntax}, ${i.photometric}, ${i.bits_stored} bits stored, intensity ${i.intensity}` +
        `${i.modality ? `, ${i.modality}` : ''}${i.view_position ? ` ${i.view_position}` : ''}` +
        `${i.reduction > 1 ? `; read at 1/${i.reduction} resolution` : ''} (${i.decoder}).`
      : '';
  const referral = $('referral');
  referral.hidden = !p.referral;
  referral.textContent = p.referral ? `Refer to a radiologist: ${p.referral}.` : '';
  $('evidence').innerHTML =
    p.lung_fraction === null || p.lung_fraction === undefined
      ? ''
      : `Lung fraction ${p.lung_fraction.toFixed(3)} (share of the heat map inside the predicted lung mask)` +
        p.flags.map((f) => ` <span class="flag">⚠ ${esc(f)}</span>`).join('');
  $('probs').tBodies[0].innerHTML = labels
    .map((l) => {
      const v = p.probs[l];
      return `<tr class="${l === p.label ? 'top' : ''}"><td>${esc(l)}</td><td><div class="bar"><span style="width:${(100 * v).toFixed(1)}%"></span></div></td><td>${v.toFixed(4)}</td></tr>`;
    })
    .join('');
  const t = state.predictor.ensemble.temperature;
  // The ensemble's probabilities are the members' combination softened by the temperature: members at
  // 0.93 can give 0.47 together, and without this note that reads like a bug.
  $('method').textContent = `${state.predictor.method}${t !== 1 ? `, tempered with T=${t.toFixed(3)}: the prediction above is softer than these votes` : ''}`;
  $('members').tHead.innerHTML = `<tr><th>model</th><th>vote</th>${labels.map((l) => `<th>${wrap(l)}</th>`).join('')}<th>latency</th></tr>`;
  $('members').tBodies[0].innerHTML = Object.entries(p.perModel)
    .map(([name, probs]) => `<tr><td>${wrap(name)}</td><td>${wrap(p.votes[name])}</td>${labels.map((l) => `<td>${probs[l].toFixed(4)}</td>`).join('')}<td>${fmtMs(p.timings_ms[name])}</td></tr>`)
    .join('');
  $('timings').tBodies[0].innerHTML = Object.entries(p.timings_ms)
    .map(([stage, ms]) => `<tr><td>${esc(stage)}</td><td>${fmtMs(ms)}</td></tr>`)
    .join('');
  $('result').hidden = false;
  draw();
}

/**
 * A rate `{value, ci}` of the LOSO report as `0.84 (0.78-0.89)` (as `cxr_edge.evaluation.loso.fmt_rate`).
 * @param {{value: number|null, ci: number[]|null}|undefined} r
 */
function fmtRate(r) {
  if (!r || r.value === null || r.value === undefined) return '–';
  return `${r.value.toFixed(2)}${r.ci ? ` (${r.ci[0].toFixed(2)}-${r.ci[1].toFixed(2)})` : ''}`;
}

/**
 * The model card panel: intended use, disclaimer, LOSO per held-out source with intervals, failure modes.
 * @param {import('./src/bundle.js').Manifest} m
 */
function renderCard(m) {
  const body = $('card-body');
  const card = m.card;
  if (!card) {
    body.textContent = `This bundle carries no model card (format ${m.format_version}).`;
    return;
  }
  const parts = [
    `<p class="disclaimer-strong">${esc(card.disclaimer)}</p>`,
    `<h4>Intended use</h4><p>${esc(card.intended_use)}</p>`,
    '<h4>Leave-one-source-out evaluation</h4>',
  ];
  const report = card.loso?.report;
  if (report) {
    const labels = report.labels;
    const rows = [...Object.entries(report.by_source), ['pooled', report.pooled]].map(
      ([src, b]) =>
        `<tr><td>${wrap(src)}</td><td>${b.n}</td><td>${fmtRate(b.accuracy)}</td>` +
        labels.map((l) => `<td>${fmtRate(b.per_class[l]?.sensitivity)}</td>`).join('') +
        '</tr>',
    );
    parts.push(
      `<p>Recipe ${esc(card.loso.recipe || '(unnamed)')}: ${esc(card.loso.note)}</p>`,
      `<table id="card-loso"><thead><tr><th>held-out source</th><th>n</th><th>accuracy (95% CI)</th>` +
        labels.map((l) => `<th>${wrap(l)} sensitivity</th>`).join('') +
        `</tr></thead><tbody>${rows.join('')}</tbody></table>`,
    );
  } else {
    parts.push(`<p><strong>${esc(card.loso?.note ?? 'no leave-one-source-out evaluation recorded')}</strong>: nothing says how the model does in a hospital it has not seen.</p>`);
  }
  const modes = card.failure_modes ?? [];
  parts.push(
    '<h4>Known failure modes</h4>',
    modes.length ? `<ul id="card-failures">${modes.map((f) => `<li>${esc(f)}</li>`).join('')}</ul>` : '<p>None recorded (which does not mean there are none).</p>',
  );
  body.innerHTML = parts.join('');
}

/**
 * @param {string} s
 */
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Escaped text that may break after `_` and `-` (long label and model names in narrow columns).
 * @param {string} s
 */
function wrap(s) {
  return esc(s).replace(/([_-])/g, '$1<wbr>');
}

/**
 * Registers the service worker and hands it every same-origin URL this page has fetched so far (the
 * WASM runtime and the bundle were fetched before the worker controlled the page).
 */
async function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) {
    $('offline').textContent = 'Offline: not available in this browser';
    return;
  }
  try {
    await navigator.serviceWorker.register('./sw.js');
    const registration = await navigator.serviceWorker.ready;
    const urls = performance
      .getEntriesByType('resource')
      .map((e) => e.name)
      .filter((u) => new URL(u).origin === location.origin && !state.notCached.has(u));
    const reply = await new Promise((resolve) => {
      const channel = new MessageChannel();
      channel.port1.onmessage = (e) => resolve(e.data);
      registration.active.postMessage({ type: 'cache', urls: [location.href.split('?')[0], ...urls] }, [channel.port2]);
    });
    if (reply.error) throw new Error(reply.error);
    const dicom = reply.dicomMissing
      ? `DICOM not available offline: ${reply.dicomMissing} of its files could not be cached`
      : 'the DICOM reader and its codecs too';
    $('offline').textContent = `Offline: ready (${reply.cached} files cached: app, LiteRT.js, this bundle; ${dicom})`;
    document.body.dataset.offline = 'ready';
  } catch (err) {
    $('offline').textContent = `Offline: service worker failed (${err.message})`;
  }
}

/**
 * The "Try a shipped sample" button: the samples the server mounts at `samples/` (their licences are in
 * `samples/samples.csv`), one after the other. Hidden where no samples are served.
 */
async function setUpSamples() {
  let files;
  try {
    const response = await fetch('samples/samples.csv');
    if (!response.ok) return;
    const [header, ...rows] = (await response.text()).trim().split(/\r?\n/);
    const column = header.split(',').indexOf('file');
    files = rows.map((r) => r.split(',')[column]).filter((f) => /\.(png|jpe?g)$/i.test(f ?? ''));
  } catch {
    return;
  }
  if (!files.length) return;
  let next = 0;
  const button = $('try-sample');
  button.hidden = false;
  button.addEventListener('click', async () => {
    const name = files[next++ % files.length];
    $('sample-name').textContent = `sample: ${name} (label in its name; samples/samples.csv has its source and licence)`;
    const blob = await (await fetch(`samples/${encodeURIComponent(name)}`)).blob();
    await classify(new File([blob], name, { type: blob.type }));
  });
}

async function main() {
  $('image-input').addEventListener('change', (e) => {
    const files = Array.from(e.target.files ?? []);
    e.target.value = ''; // picking the same file again fires `change` again
    if (files.length) openInputs(files.map((file) => ({ file, path: file.name })), [], false);
  });
  $('folder-input').addEventListener('change', (e) => {
    const { inputs, skipped } = fromFolderPicker(e.target.files ?? []);
    e.target.value = '';
    if (inputs.length || skipped.length) openInputs(inputs, skipped, true);
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    // The entries must be taken now: the browser empties the drop's items when this handler returns.
    const { entries, files } = entriesFromDrop(e.dataTransfer);
    if (entries.length) {
      walkEntries(entries).then(
        ({ inputs, skipped }) => openInputs(inputs, skipped, entries.some((x) => x.isDirectory)),
        (err) => showError(typedError(err)),
      );
    } else if (files.length) {
      const { inputs } = selectInputs(files.map((file) => ({ file, path: file.name })), []);
      openInputs(inputs, [], false);
    }
  });
  $('show-heat').addEventListener('change', draw);
  $('bundle-input').addEventListener('change', async (e) => {
    const files = Array.from(e.target.files ?? []);
    try {
      clearError();
      await useBundle(() => loadBundleFromFiles(files));
    } catch (err) {
      showError(err);
    }
  });
  try {
    state.runtime = await initLiteRt({ threads: Number(params.get('threads') ?? 1) });
    await useBundle(() => loadBundleFromUrl(params.get('bundle') ?? 'bundle/'));
    await setUpSamples();
  } catch (err) {
    $('bundle-name').textContent = 'none';
    showError(err);
  }
  if (params.get('sw') !== '0') await registerServiceWorker();
}

window.cxrEdgeApp = { state, ready: main(), walkEntries };
