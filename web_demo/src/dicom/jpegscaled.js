/**
 * 8-bit baseline JPEG decoded straight to 1/2, 1/4 or 1/8 of its size: libjpeg's DCT scaling, as
 * `simplejpeg.decode_jpeg(..., min_height=..., min_width=...)` does it for the Python reader's
 * `jpeg_dct` and `jpeg_dct_half` kinds (`cxr_edge/imaging/codecs.py`, `strict_jpeg8`).
 *
 * Why here and not in a package: libjpeg-turbo's WebAssembly build (`@cornerstonejs/codec-libjpeg-turbo-8bit`)
 * exposes no scaling, and no JavaScript JPEG decoder on npm has it (jpeg-js, pdf.js's decoder); decoding
 * a full-size 8-bit JPEG radiograph in full and then reducing it made the browser 11.7x slower than the
 * Python CLI (`benchmarks/RESULTS.md`, "Full-size DICOM in the browser"). Each 8 x 8 block's entropy
 * data must still be decoded, but its inverse DCT produces 4 x 4, 2 x 2 or 1 x 1 pixels, and everything
 * after the decode works on a 16th of the pixels.
 *
 * The reduced inverse DCTs are libjpeg's (`jidctred.c`: the LL&M 8-point IDCT folded into averages of
 * adjacent outputs; 13-bit fixed-point constants, 2 extra bits between the passes), so the pixels equal
 * libjpeg-turbo's, which the parity tests check against the Python reader. The output is clamped to
 * 0-255 as libjpeg-turbo's SSE2 code clamps it (its C range-limit table wraps values far out of range,
 * which only corrupt data produce).
 *
 * Only what a greyscale DICOM JPEG baseline frame holds is decoded: one component, 8-bit samples, a
 * sequential Huffman scan (SOF0 / SOF1), restart intervals. Anything else, and anything libjpeg would
 * warn about (a marker inside the entropy data, a bad Huffman code, bytes between the scan and the next
 * marker, a wrong restart marker), returns null: the caller then decodes the frame in full with
 * libjpeg-turbo, which reports damage as the Python reader does.
 *
 * @module dicom/jpegscaled
 */

/** Zig-zag position -> natural (row-major) position, with libjpeg's 16 safety entries for corrupt runs. */
const NATURAL = Int32Array.from([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50,
  43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, ...new Array(16).fill(63),
]);

/** libjpeg's FIX(x) for CONST_BITS = 13. */
const fix = (x) => Math.round(x * 8192);
const C0_211 = fix(0.211164243);
const C0_509 = fix(0.509795579);
const C0_601 = fix(0.601344887);
const C0_720 = fix(0.720959822);
const C0_765 = fix(0.765366865);
const C0_850 = fix(0.850430095);
const C0_899 = fix(0.899976223);
const C1_061 = fix(1.061594337);
const C1_272 = fix(1.27275858);
const C1_451 = fix(1.451774981);
const C1_847 = fix(1.847759065);
const C2_172 = fix(2.172734803);
const C2_562 = fix(2.562915447);
const C3_624 = fix(3.624509785);
const CONST_BITS = 13;
const PASS1_BITS = 2;

/** `DESCALE(x, n)`: x / 2**n rounded half up, in doubles (the products exceed 32 bits). */
const descale = (x, n) => Math.floor((x + 2 ** (n - 1)) / 2 ** n);
const clamp = (x) => (x < -128 ? 0 : x > 127 ? 255 : x + 128);

/** Stops the decode: the caller decodes the frame in full instead. */
class Refused extends Error {}

/**
 * Decodes an 8-bit greyscale baseline JPEG at 1/`reduction` of its size (sides rounded up).
 * @param {Uint8Array} data the JPEG stream (one DICOM frame)
 * @param {2|4|8} reduction
 * @returns {{data: Uint8Array, rows: number, cols: number, components: number, decoder: string}|null}
 *     null where this decoder does not take the stream (see the module's description)
 */
export function decodeScaled(data, reduction) {
  try {
    return decode(data, reduction);
  } catch (err) {
    // RangeError: an output buffer the frame's declared size cannot have (checked against the header
    // before, so only a forged stream): the full decode reports it.
    if (err instanceof Refused || err instanceof RangeError) return null;
    throw err;
  }
}

/**
 * @param {Uint8Array} buf
 * @param {number} reduction
 */
function decode(buf, reduction) {
  if (buf[0] !== 0xff || buf[1] !== 0xd8) throw new Refused();
  const quant = new Array(4).fill(null);
  const dc = new Array(4).fill(null);
  const ac = new Array(4).fill(null);
  let frame = null;
  let restart = 0;
  let p = 2;
  for (;;) {
    if (buf[p] !== 0xff) throw new Refused(); // bytes between segments: libjpeg warns
    while (buf[p] === 0xff) p++;
    const marker = buf[p++];
    if (marker === undefined) throw new Refused();
    const length = (buf[p] << 8) | buf[p + 1];
    const end = p + length;
    if (length < 2 || end > buf.length) throw new Refused();
    if (marker === 0xc0 || marker === 0xc1) {
      frame = readFrame(buf, p + 2, end);
    } else if (marker === 0xdb) {
      readQuant(buf, p + 2, end, quant);
    } else if (marker === 0xc4) {
      readHuffman(buf, p + 2, end, dc, ac);
    } else if (marker === 0xdd) {
      restart = (buf[p + 2] << 8) | buf[p + 3];
    } else if (marker === 0xda) {
      if (frame === null || buf[p + 2] !== 1 || buf[p + 3] !== frame.id) throw new Refused();
      const tables = buf[p + 4];
      const [q, d, a] = [quant[frame.tq], dc[tables >> 4], ac[tables & 15]];
      // Spectral selection 0-63, no successive approximation: a sequential scan.
      if (!q || !d || !a || buf[p + 5] !== 0 || buf[p + 6] !== 63 || buf[p + 7] !== 0) throw new Refused();
      return scan(buf, end, frame, q, d, a, restart, reduction);
    } else if ((marker >= 0xe0 && marker <= 0xef) || marker === 0xfe) {
      // application data and comments
    } else {
      throw new Refused(); // another process (progressive, lossless, arithmetic), DNL, a second SOI...
    }
    p = end;
  }
}

/** SOF0/SOF1: 8-bit, one component. */
function readFrame(buf, p, end) {
  if (end - p < 9 || buf[p] !== 8 || buf[p + 5] !== 1) throw new Refused();
  const height = (buf[p + 1] << 8) | buf[p + 2];
  const width = (buf[p + 3] << 8) | buf[p + 4];
  if (!height || !width) throw new Refused();
  return { height, width, id: buf[p + 6], tq: buf[p + 8] & 3 };
}

/** DQT: tables in natural order (8- or 16-bit entries). */
function readQuant(buf, p, end, quant) {
  while (p < end) {
    const wide = buf[p] >> 4;
    const id = buf[p] & 3;
    const table = new Int32Array(64);
    p++;
    if (p + (wide ? 128 : 64) > end) throw new Refused();
    for (let k = 0; k < 64; k++, p += wide ? 2 : 1) table[NATURAL[k]] = wide ? (buf[p] << 8) | buf[p + 1] : buf[p];
    quant[id] = table;
  }
}

/**
 * DHT: each table as a 16-bit look-up (next 16 bits of the stream -> code length << 8 | symbol; 0 for
 * no code, which libjpeg reports as a bad Huffman code).
 */
function readHuffman(buf, p, end, dc, ac) {
  while (p < end) {
    const cls = buf[p] >> 4;
    const id = buf[p] & 3;
    const counts = buf.subarray(p + 1, p + 17);
    let n = 0;
    for (const c of counts) n += c;
    let v = p + 17;
    if (v + n > end) throw new Refused();
    const lookup = new Uint16Array(1 << 16);
    let code = 0;
    for (let len = 1; len <= 16; len++) {
      for (let i = 0; i < counts[len - 1]; i++, code++, v++) {
        if (code >= 1 << len) throw new Refused(); // over-subscribed
        const span = 1 << (16 - len);
        lookup.fill((len << 8) | buf[v], code * span, (code + 1) * span);
      }
      code <<= 1;
    }
    (cls ? ac : dc)[id] = lookup;
    p = v;
  }
}

/**
 * The entropy-coded data without its byte stuffing (FF 00 -> FF), split where its markers are: restart
 * markers between segments, and the marker that ends the scan.
 * @param {Uint8Array} buf
 * @param {number} start
 * @returns {{clean: Uint8Array, ends: number[], markers: number[]}} `ends[i]`: the bit offset in `clean`
 *     where segment i ends; `markers[i]`: the marker after it (-1: the data ended without one)
 */
function unstuff(buf, start) {
  const clean = new Uint8Array(buf.length - start + 8); // zero padding: reads past the end see zeros
  const ends = [];
  const markers = [];
  let n = 0;
  let p = start;
  for (;;) {
    if (p >= buf.length) {
      ends.push(n * 8);
      markers.push(-1);
      break;
    }
    const b = buf[p];
    if (b !== 0xff) {
      clean[n++] = b;
      p++;
    } else if (buf[p + 1] === 0x00) {
      clean[n++] = 0xff;
      p += 2;
    } else if (buf[p + 1] === 0xff) {
      p++; // fill byte before a marker
    } else {
      ends.push(n * 8);
      markers.push(buf[p + 1] ?? -1);
      if (buf[p + 1] < 0xd0 || buf[p + 1] > 0xd7) break; // not a restart marker: the scan ends
      p += 2;
    }
  }
  return { clean, ends, markers };
}

/**
 * The entropy-coded segment(s), each block's reduced IDCT written as it is decoded.
 * @returns {{data: Uint8Array, rows: number, cols: number, components: number, decoder: string}}
 */
function scan(buf, start, frame, quant, dcTable, acTable, restart, reduction) {
  const size = 8 / reduction; // output pixels per block side
  const bw = Math.ceil(frame.width / 8);
  const bh = Math.ceil(frame.height / 8);
  const stride = bw * size;
  const full = new Uint8Array(stride * bh * size);
  const idct = size === 4 ? idct4 : size === 2 ? idct2 : idct1;
  const coef = new Int32Array(64);
  const work = new Int32Array(32);
  const { clean, ends, markers } = unstuff(buf, start);
  // `bp`: the next bit to read. A segment's bits beyond its end are not data: libjpeg supplies zeros
  // there and warns, so a block that reads past `end` refuses the stream.
  let bp = 0;
  let segment = 0;
  let end = ends[0];
  // The next 24 bits from byte `i`; a code of up to 16 bits and its up to 15 extra bits fit from any bit.
  const window = (i) => (clean[i] << 16) | (clean[i + 1] << 8) | clean[i + 2];
  // Whatever is left of the segment must be the last byte's padding.
  const segmentEnd = () => {
    if (bp > end || end - bp >= 8) throw new Refused();
    bp = end;
    const marker = markers[segment++];
    end = ends[segment];
    return marker;
  };
  let pred = 0;
  let blocks = 0;
  let rst = 0;
  for (let by = 0; by < bh; by++) {
    for (let bx = 0; bx < bw; bx++) {
      if (restart && blocks && blocks % restart === 0) {
        if (segmentEnd() !== (0xd0 | rst)) throw new Refused();
        rst = (rst + 1) & 7;
        pred = 0;
      }
      blocks++;
      coef.fill(0);
      let e = dcTable[(window(bp >>> 3) >>> (8 - (bp & 7))) & 0xffff];
      if (e === 0) throw new Refused(); // no such code
      bp += e >> 8;
      const t = e & 0xff;
      if (t > 15) throw new Refused();
      if (t) {
        const r = (window(bp >>> 3) >>> (24 - (bp & 7) - t)) & ((1 << t) - 1);
        bp += t;
        pred += r < 1 << (t - 1) ? r - (1 << t) + 1 : r; // HUFF_EXTEND
      }
      coef[0] = (pred << 16) >> 16; // JCOEF is 16 bits
      for (let k = 1; k < 64; k++) {
        e = acTable[(window(bp >>> 3) >>> (8 - (bp & 7))) & 0xffff];
        if (e === 0) throw new Refused();
        bp += e >> 8;
        const r = (e & 0xff) >> 4;
        const s = e & 15;
        if (s) {
          k += r;
          const v = (window(bp >>> 3) >>> (24 - (bp & 7) - s)) & ((1 << s) - 1);
          bp += s;
          coef[NATURAL[k]] = v < 1 << (s - 1) ? v - (1 << s) + 1 : v;
        } else if (r === 15) k += 15;
        else break;
      }
      if (bp > end) throw new Refused(); // the data ended inside this block
      idct(coef, quant, work, full, by * size * stride + bx * size, stride);
    }
  }
  if (segmentEnd() !== 0xd9) throw new Refused(); // EOI
  const rows = Math.ceil(frame.height / reduction);
  const cols = Math.ceil(frame.width / reduction);
  const data = new Uint8Array(rows * cols);
  for (let y = 0; y < rows; y++) data.set(full.subarray(y * stride, y * stride + cols), y * cols);
  return { data, rows, cols, components: 1, decoder: `jpeg-dct/${reduction}` };
}

/** libjpeg's `jpeg_idct_4x4`. */
function idct4(c, q, ws, out, o, stride) {
  for (let col = 0; col < 8; col++) {
    if (col === 4) continue; // the second pass does not read it
    const w = col;
    if (!c[8 + col] && !c[16 + col] && !c[24 + col] && !c[40 + col] && !c[48 + col] && !c[56 + col]) {
      const dcval = c[col] * q[col] * 4;
      ws[w] = ws[8 + w] = ws[16 + w] = ws[24 + w] = dcval;
      continue;
    }
    let tmp0 = c[col] * q[col] * 2 ** (CONST_BITS + 1);
    const z2e = c[16 + col] * q[16 + col];
    const z3e = c[48 + col] * q[48 + col];
    let tmp2 = z2e * C1_847 - z3e * C0_765;
    const tmp10 = tmp0 + tmp2;
    const tmp12 = tmp0 - tmp2;
    const z1 = c[56 + col] * q[56 + col];
    const z2 = c[40 + col] * q[40 + col];
    const z3 = c[24 + col] * q[24 + col];
    const z4 = c[8 + col] * q[8 + col];
    tmp0 = -z1 * C0_211 + z2 * C1_451 - z3 * C2_172 + z4 * C1_061;
    tmp2 = -z1 * C0_509 - z2 * C0_601 + z3 * C0_899 + z4 * C2_562;
    const n = CONST_BITS - PASS1_BITS + 1;
    ws[w] = descale(tmp10 + tmp2, n);
    ws[24 + w] = descale(tmp10 - tmp2, n);
    ws[8 + w] = descale(tmp12 + tmp0, n);
    ws[16 + w] = descale(tmp12 - tmp0, n);
  }
  for (let row = 0; row < 4; row++) {
    const r = row * 8;
    const d = o + row * stride;
    if (!ws[r + 1] && !ws[r + 2] && !ws[r + 3] && !ws[r + 5] && !ws[r + 6] && !ws[r + 7]) {
      out.fill(clamp(descale(ws[r], PASS1_BITS + 3)), d, d + 4);
      continue;
    }
    let tmp0 = ws[r] * 2 ** (CONST_BITS + 1);
    let tmp2 = ws[r + 2] * C1_847 - ws[r + 6] * C0_765;
    const tmp10 = tmp0 + tmp2;
    const tmp12 = tmp0 - tmp2;
    const [z1, z2, z3, z4] = [ws[r + 7], ws[r + 5], ws[r + 3], ws[r + 1]];
    tmp0 = -z1 * C0_211 + z2 * C1_451 - z3 * C2_172 + z4 * C1_061;
    tmp2 = -z1 * C0_509 - z2 * C0_601 + z3 * C0_899 + z4 * C2_562;
    const n = CONST_BITS + PASS1_BITS + 3 + 1;
    out[d] = clamp(descale(tmp10 + tmp2, n));
    out[d + 3] = clamp(descale(tmp10 - tmp2, n));
    out[d + 1] = clamp(descale(tmp12 + tmp0, n));
    out[d + 2] = clamp(descale(tmp12 - tmp0, n));
  }
}

/** libjpeg's `jpeg_idct_2x2`. */
function idct2(c, q, ws, out, o, stride) {
  for (let col = 0; col < 8; col++) {
    if (col === 2 || col === 4 || col === 6) continue; // the second pass does not read them
    if (!c[8 + col] && !c[24 + col] && !c[40 + col] && !c[56 + col]) {
      ws[col] = ws[8 + col] = c[col] * q[col] * 4;
      continue;
    }
    const tmp10 = c[col] * q[col] * 2 ** (CONST_BITS + 2);
    const tmp0 =
      -(c[56 + col] * q[56 + col]) * C0_720 +
      c[40 + col] * q[40 + col] * C0_850 -
      c[24 + col] * q[24 + col] * C1_272 +
      c[8 + col] * q[8 + col] * C3_624;
    const n = CONST_BITS - PASS1_BITS + 2;
    ws[col] = descale(tmp10 + tmp0, n);
    ws[8 + col] = descale(tmp10 - tmp0, n);
  }
  for (let row = 0; row < 2; row++) {
    const r = row * 8;
    const d = o + row * stride;
    if (!ws[r + 1] && !ws[r + 3] && !ws[r + 5] && !ws[r + 7]) {
      out[d] = out[d + 1] = clamp(descale(ws[r], PASS1_BITS + 3));
      continue;
    }
    const tmp10 = ws[r] * 2 ** (CONST_BITS + 2);
    const tmp0 = -ws[r + 7] * C0_720 + ws[r + 5] * C0_850 - ws[r + 3] * C1_272 + ws[r + 1] * C3_624;
    const n = CONST_BITS + PASS1_BITS + 3 + 2;
    out[d] = clamp(descale(tmp10 + tmp0, n));
    out[d + 1] = clamp(descale(tmp10 - tmp0, n));
  }
}

/** libjpeg's `jpeg_idct_1x1`: the block's mean. */
function idct1(c, q, ws, out, o) {
  out[o] = clamp(descale(c[0] * q[0], 3));
}
