/**
 * Combining member models' probabilities, mirroring `cxr_edge/ops/ensemble.py` (float64 throughout, as
 * numpy does):
 *
 * - `vote`: majority vote of argmax labels; ties go to the highest mean probability (then the lowest
 *   label index); the result is the vote shares plus a 1e-6 bonus on the winner, renormalised;
 * - `mean`: arithmetic mean;
 * - `weighted`: weighted mean with the manifest's (validation-fitted) weights, normalised to sum 1;
 * - `stacking`: the manifest's meta-learner `softmax(relu(x @ w1 + b1) @ w2 + b2)` over the
 *   member-major concatenation of the members' probabilities;
 *
 * then temperature scaling `softmax(log(clip(p, 1e-12, 1)) / T)` when `T != 1`, and the referral
 * band (`referral`, `cxr_edge.ops.quality.referral_reason`) on the tempered probabilities.
 *
 * @module ensemble
 */

import { pyFixed2 } from './lungcrop.js';

export const METHODS = Object.freeze(['vote', 'mean', 'weighted', 'stacking']);
const EPS = 1e-12;

/**
 * The fitted stacking meta-learner stored in the manifest.
 * @typedef {{w1: number[][], b1: number[], w2: number[][], b2: number[], l2?: number}} Stacker
 */

/**
 * The manifest's `ensemble` entry.
 * @typedef {{method: string, members: string[], weights: number[]|null, stacking: Stacker|null,
 *   temperature: number, abstain?: AbstainBand|null}} EnsembleConfig
 * @typedef {{min_top_prob: number, min_margin: number}} AbstainBand
 */

/**
 * Softmax of a vector (max subtracted first, as numpy's `_softmax`).
 * @param {number[]} z
 * @returns {number[]}
 */
export function softmax(z) {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  let s = 0;
  for (const v of e) s += v;
  return e.map((v) => v / s);
}

/**
 * Index of the largest value, first on ties (np.argmax).
 * @param {number[]} a
 */
function argmax(a) {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/**
 * Combines per-model probabilities.
 * @param {ArrayLike<number>[]} probs one row of class probabilities per member, in `members` order
 * @param {string} [method]
 * @param {number[]|null} [weights]
 * @param {Stacker|null} [stacker]
 * @returns {number[]} combined probabilities (rows sum to 1)
 */
export function combine(probs, method = 'mean', weights = null, stacker = null) {
  const rows = probs.map((p) => Array.from(p, Number));
  const n = rows.length;
  if (n === 0) throw new Error('nothing to combine: no member probabilities');
  const k = rows[0].length;
  if (method === 'mean') {
    const out = new Array(k).fill(0);
    for (const r of rows) for (let j = 0; j < k; j++) out[j] += r[j];
    return out.map((v) => v / n);
  }
  if (method === 'weighted') {
    const w = weights ?? [];
    let total = 0;
    for (const v of w) total += v;
    if (w.length !== n || w.some((v) => v < 0) || !(total > 0)) {
      throw new Error(`invalid ensemble weights: expected ${n} non-negative weights, got ${JSON.stringify(weights)}`);
    }
    const out = new Array(k).fill(0);
    rows.forEach((r, i) => {
      const wi = w[i] / total;
      for (let j = 0; j < k; j++) out[j] += wi * r[j];
    });
    return out;
  }
  if (method === 'vote') return vote(rows);
  if (method === 'stacking') {
    if (!stacker) throw new Error('stacking needs a fitted meta-learner');
    return stack(rows, stacker);
  }
  throw new Error(`unknown ensemble method ${method}: expected one of ${METHODS.join(', ')}`);
}

/**
 * Majority vote with the documented tie rule.
 * @param {number[][]} rows
 */
function vote(rows) {
  const n = rows.length;
  const k = rows[0].length;
  const votes = new Array(k).fill(0);
  for (const r of rows) votes[argmax(r)] += 1;
  const mean = new Array(k).fill(0);
  for (const r of rows) for (let j = 0; j < k; j++) mean[j] += r[j];
  const score = votes.map((v, j) => v + (mean[j] / n) * 0.5);
  const winner = argmax(score);
  return votes.map((v, j) => (v / n + (j === winner ? 1e-6 : 0)) / (1 + 1e-6));
}

/**
 * The stacking meta-learner's forward pass.
 * @param {number[][]} rows
 * @param {Stacker} s
 */
function stack(rows, s) {
  const x = rows.flat(); // member-major, as stored in manifests
  if (x.length !== s.w1.length) {
    throw new Error(`stacker input size mismatch: expected ${s.w1.length} features, got ${x.length}`);
  }
  const hidden = s.b1.length;
  const h = new Array(hidden).fill(0);
  for (let j = 0; j < hidden; j++) {
    let acc = 0;
    for (let i = 0; i < x.length; i++) acc += x[i] * s.w1[i][j];
    h[j] = Math.max(acc + s.b1[j], 0);
  }
  const z = s.b2.map((b, c) => {
    let acc = 0;
    for (let j = 0; j < hidden; j++) acc += h[j] * s.w2[j][c];
    return acc + b;
  });
  return softmax(z);
}

/**
 * Temperature scaling.
 * @param {number[]} probs
 * @param {number} temperature
 */
export function applyTemperature(probs, temperature) {
  if (!(Number.isFinite(temperature) && temperature > 0)) throw new Error(`invalid temperature ${temperature}`);
  return softmax(probs.map((p) => Math.log(Math.min(Math.max(p, EPS), 1)) / temperature));
}

/**
 * What the runtime outputs for the members' probabilities: the combiner, then the temperature
 * (`EnsembleConfig.apply`).
 * @param {EnsembleConfig} config
 * @param {ArrayLike<number>[]} memberProbs
 */
export function applyEnsemble(config, memberProbs) {
  const probs = combine(memberProbs, config.method, config.weights, config.stacking);
  const t = config.temperature ?? 1;
  return t !== 1 ? applyTemperature(probs, t) : probs;
}

/**
 * Why tempered probabilities fall in the referral band (the text of `cxr_edge.ops.quality.referral_reason`),
 * or null when they do not (or there is no band).
 * @param {ArrayLike<number>} probs
 * @param {AbstainBand|null|undefined} band
 * @returns {string|null}
 */
export function referral(probs, band) {
  if (!band) return null;
  const ranked = Array.from(probs).sort((a, b) => b - a);
  const top = ranked[0];
  const second = ranked.length > 1 ? ranked[1] : 0;
  if (top < band.min_top_prob) return `top probability ${pyFixed2(top)} below ${pyFixed2(band.min_top_prob)}`;
  if (top - second < band.min_margin) {
    return `margin ${pyFixed2(top - second)} between the two most likely labels below ${pyFixed2(band.min_margin)}`;
  }
  return null;
}
