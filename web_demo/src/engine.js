/**
 * One `.tflite` model on LiteRT.js (WASM/XNNPack on the CPU), float in, named float outputs out,
 * mirroring `cxr_edge/runtime/engine.py`:
 *
 * - the grey input is repeated to 3 channels for models that take three;
 * - quantised (int8/uint8) inputs are quantised here, `round_half_even(x / scale) + zero_point`
 *   clipped to the type's range, and quantised outputs dequantised `(q - zero_point) * scale`, in
 *   float32, with the scale and zero point from the (checksum-verified) manifest;
 * - outputs are told apart by shape (TFLite does not keep Keras output order) and checked against
 *   the manifest's roles, shapes and types;
 * - quantised probabilities are renormalised to sum to 1 ({@link normalise}).
 *
 * LiteRT.js's high-level `Tensor` API only knows float32/int32/uint8 tensors, so this module uses its
 * typed low-level bindings (`liteRtWasm.loadModel`, `compileModel`, `LiteRtTensorBuffer`), which
 * handle int8 too.
 *
 * @module engine
 */

import { getGlobalLiteRt, loadLiteRt, supportsFeature } from '@litertjs/core';
import { BundleError, ModelRuntimeError } from './errors.js';
import { f32, pairwiseSumF32, roundHalfEven } from './numeric.js';
import { repeatChannels } from './preprocess.js';

const ELEMENT_NAME = { 1: 'float32', 2: 'int32', 3: 'uint8', 9: 'int8', 10: 'float16' };
const RANGE = { int8: [-128, 127], uint8: [0, 255] };
const ARRAY = { float32: Float32Array, int8: Int8Array, uint8: Uint8Array };

/**
 * How LiteRT.js was loaded.
 * @typedef {{wasm: string, threads: number, relaxedSimd: boolean, crossOriginIsolated: boolean}} RuntimeInfo
 */

/** @type {RuntimeInfo|null} */
let runtime = null;

/**
 * Pthread workers held by live engines. The threaded build pre-loads `navigator.hardwareConcurrency`
 * workers; a compile that needs one more deadlocks (a new worker cannot load while the main thread
 * waits for it: seen with the three-member default bundle and its segmenter at 2 threads on 2 cores).
 * So engines share that pool: each counts its threads against it, and one that would overrun it
 * gets what is left (at least 1 thread, which needs no worker).
 */
let workersInUse = 0;

/**
 * Threads an engine may have now, given what live engines hold.
 * @param {number} wanted
 */
export function grantThreads(wanted) {
  if (!(wanted > 1) || !runtime || runtime.threads <= 1) return 1;
  const pool = globalThis.navigator?.hardwareConcurrency ?? 1;
  const free = pool - workersInUse;
  return free >= 2 ? Math.min(wanted, free) : 1;
}

/**
 * Loads LiteRT.js's WASM runtime once per page (served locally from node_modules, never a CDN).
 *
 * @param {object} [options]
 * @param {string} [options.wasmBase] folder URL of the WASM files
 * @param {number} [options.threads] > 1 loads the threaded build (needs cross-origin isolation and
 *     relaxed SIMD); 1 loads the single-threaded build
 * @returns {Promise<RuntimeInfo>}
 */
export async function initLiteRt({ wasmBase = new URL('../node_modules/@litertjs/core/wasm/', import.meta.url).href, threads = 1 } = {}) {
  if (runtime) return runtime;
  const relaxedSimd = await supportsFeature('relaxedSimd');
  const isolated = Boolean(globalThis.crossOriginIsolated);
  const useThreads = threads > 1 && relaxedSimd && isolated && (await supportsFeature('threads'));
  await loadLiteRt(wasmBase, useThreads ? { threads: true } : {});
  const wasm = !relaxedSimd ? 'litert_wasm_compat_internal' : useThreads ? 'litert_wasm_threaded_internal' : 'litert_wasm_internal';
  runtime = { wasm, threads: useThreads ? threads : 1, relaxedSimd, crossOriginIsolated: isolated };
  return runtime;
}

/** @returns {RuntimeInfo|null} */
export function runtimeInfo() {
  return runtime;
}

/**
 * Converts an emscripten vector to an array.
 * @param {{size(): number, get(i: number): any, delete?(): void}} v
 */
function toArray(v) {
  const out = [];
  for (let i = 0; i < v.size(); i++) out.push(v.get(i));
  v.delete?.();
  return out;
}

/**
 * Shape and element type of a LiteRT ranked tensor type (deleting it).
 * @param {any} type
 */
function describe(type) {
  const layout = type.layout();
  const shape = toArray(layout.dimensions());
  layout.delete();
  const element = type.elementType().value;
  type.delete();
  return { shape, dtype: ELEMENT_NAME[element] ?? `element type ${element}` };
}

/**
 * Float -> the tensor's storage type (round half to even, as TFLite's reference kernels).
 * @param {Float32Array} x
 * @param {import('./bundle.js').TensorSpec} spec
 */
export function quantize(x, spec) {
  if (spec.dtype === 'float32') return x;
  const [lo, hi] = RANGE[spec.dtype];
  const scale = f32(spec.scale);
  const out = new ARRAY[spec.dtype](x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.min(hi, Math.max(lo, roundHalfEven(f32(x[i] / scale)) + spec.zero_point));
  return out;
}

/**
 * The tensor's storage type -> float32.
 * @param {Int8Array|Uint8Array|Float32Array} q
 * @param {import('./bundle.js').TensorSpec} spec
 */
export function dequantize(q, spec) {
  if (spec.dtype === 'float32') return Float32Array.from(q);
  const scale = f32(spec.scale);
  return Float32Array.from(q, (v) => f32(f32(v - spec.zero_point) * scale));
}

/**
 * Renormalises quantised probabilities (no-op for float outputs), as `engine.normalise`.
 * @param {Float32Array} probs
 * @param {import('./bundle.js').TensorSpec} spec
 */
export function normalise(probs, spec) {
  if (spec.dtype === 'float32') return probs;
  const total = pairwiseSumF32(probs);
  if (!(total > 0)) return new Float32Array(probs.length).fill(f32(1 / probs.length));
  const t = f32(total);
  return Float32Array.from(probs, (p) => f32(p / t));
}

/**
 * A named model output without its batch axis.
 * @typedef {{shape: number[], data: Float32Array}} Output
 */

/** One compiled model. */
export class Engine {
  /**
   * @param {object} parts
   */
  constructor(parts) {
    Object.assign(this, parts);
  }

  /**
   * Compiles a model from its bytes and checks its tensors against the bundle entry.
   * @param {Uint8Array} bytes the `.tflite` file
   * @param {import('./bundle.js').ModelEntry|import('./bundle.js').SegmenterEntry} entry
   * @param {{threads?: number}} [options] XNNPack threads (needs the threaded build)
   * @returns {Promise<Engine>}
   */
  static async create(bytes, entry, { threads = runtime?.threads ?? 1 } = {}) {
    threads = grantThreads(threads);
    const liteRt = getGlobalLiteRt();
    const wasm = liteRt.liteRtWasm;
    const env = liteRt.getDefaultEnvironment();
    const ptr = wasm._malloc(bytes.byteLength);
    wasm.HEAPU8.set(bytes, ptr);
    let model;
    let compiled;
    try {
      model = wasm.loadModel(env.liteRtEnvironment, ptr, bytes.byteLength);
      compiled = await wasm.compileModel(env.liteRtEnvironment, model, {
        environment: env,
        accelerator: 'wasm',
        cpuOptions: { numThreads: threads },
        gpuOptions: {},
        webNNOptions: {},
      });
    } catch (err) {
      model?.delete();
      wasm._free(ptr);
      throw new ModelRuntimeError('LiteRT.js cannot load the model', { expected: 'a valid .tflite file', received: `${entry.file}: ${err?.message ?? err}` });
    }
    if (threads > 1) workersInUse += threads;
    const engine = new Engine({ entry, wasm, env, ptr, model, compiled, threads });
    try {
      const signature = model.getSignature(0);
      const nIn = toArray(signature.inputNames()).length;
      const nOut = toArray(signature.outputNames()).length;
      signature.delete();
      if (nIn !== 1) throw new BundleError(`model ${entry.name} has ${nIn} inputs`, { expected: '1 image input' });
      engine.input = describe(model.getInputTensorType(0, 0));
      engine.outputs = Array.from({ length: nOut }, (_, i) => describe(model.getOutputTensorType(0, i)));
      checkMatches(entry.name, 'input', entry.input, engine.input);
      engine.roles = matchOutputs(entry.name, engine.outputs, entry.outputs);
    } catch (err) {
      engine.delete(); // frees the model and returns its workers before the error reaches the caller
      throw err;
    }
    return engine;
  }

  /**
   * Runs one preprocessed input; every output dequantised, without its batch axis (`run_all`).
   * @param {import('./preprocess.js').InputTensor} x (H, W, C) float32
   * @returns {Promise<Record<string, Output>>}
   */
  async runAll(x) {
    const spec = this.entry.input;
    let data = x.data;
    const want = spec.shape[3];
    if (x.channels === 1 && want === 3) data = repeatChannels(data, 3); // grey repeated for 3-channel backbones
    else if (x.channels !== want) {
      throw new ModelRuntimeError('input tensor has the wrong shape', { expected: String(spec.shape), received: `${x.height},${x.width},${x.channels}` });
    }
    if (x.height !== spec.shape[1] || x.width !== spec.shape[2]) {
      throw new ModelRuntimeError('input tensor has the wrong shape', { expected: String(spec.shape), received: `${x.height},${x.width},${x.channels}` });
    }
    const q = quantize(data, spec);
    const { wasm, env } = this;
    const type = this.model.getInputTensorType(0, 0);
    const bytes = new Uint8Array(q.buffer, q.byteOffset, q.byteLength);
    const buffer = wasm.LiteRtTensorBuffer.createManaged(env.liteRtEnvironment, wasm.LiteRtTensorBufferType.HOST_MEMORY, type, bytes.byteLength);
    type.delete();
    let results;
    try {
      const p = buffer.lock(wasm.LiteRtTensorBufferLockMode.WRITE);
      wasm.HEAPU8.set(bytes, p);
      buffer.unlock();
      results = await this.compiled.run(0, [buffer]);
    } catch (err) {
      throw new ModelRuntimeError('LiteRT.js failed to run the model', { received: `${this.entry.name}: ${err?.message ?? err}` });
    } finally {
      buffer.delete();
    }
    /** @type {Record<string, Output>} */
    const out = {};
    results.forEach((tb, i) => {
      const role = this.roles[i];
      const { dtype, shape } = this.outputs[i];
      const p = tb.lock(wasm.LiteRtTensorBufferLockMode.READ);
      const raw = wasm.HEAPU8.slice(p, p + tb.packedSize());
      tb.unlock();
      tb.delete();
      const typed = new ARRAY[dtype](raw.buffer);
      if (role) out[role] = { shape: shape.slice(1), data: dequantize(typed, this.entry.outputs[role]) };
    });
    return out;
  }

  /** Frees the model's WASM memory. */
  delete() {
    if (this.compiled && this.threads > 1) workersInUse -= this.threads;
    this.compiled?.delete();
    this.model?.delete();
    this.wasm?._free(this.ptr);
    this.compiled = null;
    this.model = null;
  }
}

/**
 * @param {string} name
 * @param {string} which
 * @param {import('./bundle.js').TensorSpec} declared
 * @param {{shape: number[], dtype: string}} actual
 */
function checkMatches(name, which, declared, actual) {
  if (declared.shape.join() !== actual.shape.join() || declared.dtype !== actual.dtype) {
    throw new BundleError(`model ${name}: manifest ${which} does not match the model file`, {
      expected: `${actual.dtype} ${JSON.stringify(actual.shape)}`,
      received: `${declared.dtype} ${JSON.stringify(declared.shape)}`,
    });
  }
}

/**
 * Pairs the file's outputs with the manifest's roles by shape (then checks them).
 * @param {string} name
 * @param {{shape: number[], dtype: string}[]} actual
 * @param {Record<string, import('./bundle.js').TensorSpec>} declared
 * @returns {(string|undefined)[]} role of each file output
 */
function matchOutputs(name, actual, declared) {
  const roles = Object.keys(declared);
  if (roles.length !== actual.length) {
    throw new BundleError(`model ${name}: manifest and file disagree on outputs`, { expected: `${roles.length} outputs (${roles.join(', ')})`, received: String(actual.length) });
  }
  const assigned = new Array(actual.length);
  for (const role of roles) {
    const i = actual.findIndex((a, k) => assigned[k] === undefined && a.shape.join() === declared[role].shape.join());
    if (i < 0) {
      throw new BundleError(`model ${name}: no output of the declared ${role} shape`, { expected: String(declared[role].shape), received: JSON.stringify(actual.map((a) => a.shape)) });
    }
    checkMatches(name, `${role} output`, declared[role], actual[i]);
    assigned[i] = role;
  }
  return assigned;
}
