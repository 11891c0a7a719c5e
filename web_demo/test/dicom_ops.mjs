#!/usr/bin/env node
/**
 * Runs the browser's DICOM reader (`src/dicom/`) in Node on files named in JSON cases read from stdin,
 * and writes the results as JSON to stdout, for `tests/ports/test_web_dicom.py`.
 *
 * Request: `{"cases": [{"op": "read"|"checked_read"|"stored"|"loaded", ...}]}`:
 *
 * - `read`: `{path, name?, options?, image?}` -> `{image, info}` (`readDicom`; `options` as
 *   `ReadOptions`: `minSide`, `reductions`...; `image: false` leaves the image out, for timings);
 * - `stored`: `{path}` -> the stored values at full resolution (int32) with the decoder's name;
 * - `checked_read`: `read`, then the input checks on the header (`requireHeader`), as the Python
 *   predictor reads a file;
 * - `loaded`: the packages loaded so far (lazy loading).
 *
 * An error is `{ok: false, error: "Name: message", class}`.
 *
 * @module test/dicom_ops
 */

import { readFile } from 'node:fs/promises';
import { decodeDicom } from '../src/dicom/dicom.js';
import { readOptions } from '../src/dicom/image.js';
import { loadedPackages } from '../src/dicom/loader.js';
import { requireHeader } from '../src/quality.js';
import { readDicom } from '../src/dicom/reader.js';
import { encodeArray } from './arrays.mjs';
import { runCases } from './ops.mjs';

const OPS = {
  read: async (c) => {
    const { image, info } = await readDicom(new Uint8Array(await readFile(c.path)), c.name ?? c.path, c.options ?? {});
    return { image: c.image === false ? null : encodeArray(image.data, [image.height, image.width]), info };
  },
  checked_read: async (c) => {
    const result = await OPS.read(c);
    requireHeader(result.info);
    return result;
  },
  stored: async (c) => {
    const { stored } = await decodeDicom(new Uint8Array(await readFile(c.path)), c.path, readOptions());
    return { values: encodeArray(Int32Array.from(stored.values), [stored.rows, stored.cols]), decoder: stored.decoder };
  },
  loaded: async () => loadedPackages(),
};

await runCases(OPS);
