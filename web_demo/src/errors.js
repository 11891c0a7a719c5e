/**
 * Typed errors with the Python runtime's message format (`cxr_edge/errors.py`):
 * `message; expected ...; received ...`. Messages never hold patient identifiers.
 *
 * @module errors
 */

/** Base class of every error raised on purpose by the web runtime. */
export class CxrEdgeError extends Error {
  /**
   * @param {string} message what went wrong, in one sentence
   * @param {{expected?: string, received?: string}} [details]
   */
  constructor(message, { expected, received } = {}) {
    const parts = [message];
    if (expected !== undefined) parts.push(`expected ${expected}`);
    if (received !== undefined) parts.push(`received ${received}`);
    super(parts.join('; '));
    this.name = new.target.name;
    this.short = message;
    this.expected = expected;
    this.received = received;
  }
}

/** An input file cannot be used: empty, truncated, not an image, unsupported. */
export class InputError extends CxrEdgeError {}
/** The file looked like an image but its pixels could not be decoded. */
export class ImageDecodeError extends InputError {}
/** A readable image the toolkit must not judge (or cannot decode in the browser). */
export class UnsupportedImageError extends InputError {}
/** The declared image size exceeds the decompression-bomb guard. */
export class ImageTooLargeError extends InputError {}
/**
 * A readable image that an input check refuses (`cxr_edge.errors.InputRejectedError`): not a frontal
 * chest radiograph, too small, blank... The message is `check: reason`.
 */
export class InputRejectedError extends InputError {
  /**
   * @param {string} check the check's name (`modality`, `body_part`, `view`, `colour`...)
   * @param {string} reason why, in one sentence (no patient identifiers)
   */
  constructor(check, reason) {
    super(`${check}: ${reason}`);
    this.check = check;
    this.reason = reason;
  }
}
/** A model bundle is missing, incomplete, tampered with, or of an unknown format. */
export class BundleError extends CxrEdgeError {}
/** LiteRT.js rejected a model or an input tensor. */
export class ModelRuntimeError extends CxrEdgeError {}
