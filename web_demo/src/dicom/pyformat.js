/**
 * Numbers printed as the Python runtime prints them in its error messages (`str(float)`, `f"{x:.4g}"`),
 * so that a message of the browser reader equals the Python reader's.
 *
 * @module dicom/pyformat
 */

/**
 * `str(x)` of a Python float: the shortest round-trip digits (as JavaScript's), in fixed notation for
 * exponents -4 to 15 (`1.0`, `0.0001`) and scientific otherwise (`1e-05`, `1.5e+16`).
 * @param {number} x
 * @returns {string}
 */
export function pyFloat(x) {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, exp] = x.toExponential().split('e');
  const e = Number(exp);
  if (e < -4 || e >= 16) return `${mantissa}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  const digits = mantissa.replace('-', '').replace('.', '');
  const sign = x < 0 ? '-' : '';
  if (e < 0) return `${sign}0.${'0'.repeat(-e - 1)}${digits}`;
  const whole = digits.slice(0, e + 1).padEnd(e + 1, '0');
  const frac = digits.slice(e + 1);
  return `${sign}${whole}.${frac || '0'}`;
}

/**
 * `format(x, '.{precision}g')`: `precision` significant digits, trailing zeros dropped, scientific
 * when the exponent is below -4 or at least `precision`.
 * @param {number} x
 * @param {number} [precision]
 * @returns {string}
 */
export function pyG(x, precision = 4) {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const [mantissa, exp] = x.toExponential(precision - 1).split('e');
  const e = Number(exp);
  const strip = (s) => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (e < -4 || e >= precision) return `${strip(mantissa)}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  return strip(x.toFixed(Math.max(0, precision - 1 - e)));
}
