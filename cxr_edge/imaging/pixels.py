"""DICOM pixel data to stored values, per transfer syntax, at full or reduced resolution.

``pydicom``'s ``pixel_array`` is correct for every syntax but slow on full-size radiographs (it picks
a plugin by availability, not speed, and makes several full-size copies). :func:`decode_stored`
decodes a single greyscale frame with the fastest well-kept codec measured per syntax
(``benchmarks/RESULTS.md``, "Full-size DICOM decode") and falls back to ``pixel_array`` for anything
it does not handle (colour, multi-bit-depth oddities, unknown syntaxes):

========================  ======================================  ===================================
syntax                    full resolution                         reduced (``reduce`` = 2, 4, 8)
========================  ======================================  ===================================
native (explicit,         ``numpy.frombuffer`` view               area average (OpenCV, integer)
implicit, deflated, BE)
RLE                       imagecodecs ``dicomrle``                area average
JPEG-LS                   imagecodecs (CharLS)                    area average
JPEG lossless (SV1/14)    imagecodecs ``jpeg8`` (libjpeg-turbo)   area average
JPEG extended (12 bit)    imagecodecs ``jpeg8`` (libjpeg-turbo)   area average
JPEG baseline (8 bit)     simplejpeg (libjpeg-turbo)              **DCT scaling** (libjpeg-turbo)
JPEG 2000                 imagecodecs (OpenJPEG)                  **resolution levels** (glymur)
HTJ2K                     imagecodecs (OpenJPH)                   **resolution levels** (``skipres``)
========================  ======================================  ===================================

Lossless full-resolution decodes equal pydicom's exactly (``tests/imaging/test_dicom_pixels.py``, one
golden test per syntax). Reduced decodes change pixels; a bundle uses them only when its decode
parity gate passed (:mod:`cxr_edge.evaluation.decode_gate`).

Damaged data is refused, not guessed at, wherever the codec can tell (docs/usage.md lists what no
codec can): before decoding, what a frame declares is checked against the header
(:mod:`cxr_edge.imaging.codestream`: size, JPEG 2000 tile-part lengths, RLE segments) and the output of RLE
is bounded by it; while decoding, libjpeg's warnings (premature end, corrupt data) are errors
(simplejpeg's strict mode) and OpenJPH's errors, which Cython reports only as "Exception ignored",
are caught. A deflated dataset is inflated only as far as its header says its pixels need.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxr_edge.errors import ImageDecodeError
from cxr_edge.imaging.codecs import decode_full, decode_reduced, glymur_available, run_codec, strict_jpeg8
from cxr_edge.imaging.codestream import (
    j2k_check_siz,
    j2k_check_tile_parts,
    j2k_size,
    jpeg_frame,
    rle_check_header,
)
from cxr_edge.imaging.deflate import inflate_part10
from cxr_edge.imaging.syntaxes import (
    BIG_ENDIAN,
    DEFLATED,
    EXPLICIT_LE,
    HTJ2K,
    IMPLICIT_LE,
    J2K,
    JPEG_BASELINE,
    NATIVE,
    RLE,
    transfer_syntax,
)

# Re-exported: the fast path's public names, wherever they are implemented.
__all__ = [
    "BIG_ENDIAN",
    "DEFLATED",
    "EXPLICIT_LE",
    "IMPLICIT_LE",
    "KINDS",
    "REDUCTIONS",
    "Stored",
    "area_reduce",
    "check_frame",
    "check_pixel_data",
    "choose_reduction",
    "decode_stored",
    "glymur_available",
    "inflate_part10",
    "strict_jpeg8",
    "transfer_syntax",
]

#: Reductions tried, largest first: powers of two, as JPEG DCT scaling and wavelet levels allow.
REDUCTIONS = (8, 4, 2)
#: Ways to reduce, each gated on its own (:mod:`cxr_edge.evaluation.decode_gate`):
#:   ``area``: full decode, then an integer box average (every syntax);
#:   ``jpeg_dct`` / ``j2k_levels``: the codec decodes at the reduced size itself (JPEG DCT scaling;
#:   JPEG 2000 and HTJ2K wavelet levels);
#:   ``jpeg_dct_half`` / ``j2k_levels_half``: the codec decodes at twice the reduced size, and a 2 x 2
#:   box average does the rest (closer to ``area`` than the codec's own low-pass, faster than it).
KINDS = ("area", "jpeg_dct", "jpeg_dct_half", "j2k_levels", "j2k_levels_half")


@dataclass(frozen=True)
class Stored:
    """Stored pixel values of one frame.

    Attributes:
        values: 2-D integer array (Bits Stored kept, signed data sign-extended), as pydicom returns.
        reduction: Source pixels per decoded pixel along each side (1 = full resolution).
        decoder: Which codec produced the values (reported in ``ImageInfo.decoder``).
    """

    values: np.ndarray
    reduction: int
    decoder: str


def choose_reduction(rows: int, cols: int, min_side: int | None) -> int:
    """The largest power-of-two reduction that keeps the short side at least ``min_side`` pixels.

    Args:
        rows: Image rows.
        cols: Image columns.
        min_side: Smallest acceptable short side after reduction, or None for full resolution.
    """
    if not min_side:
        return 1
    short = min(rows, cols)
    for factor in REDUCTIONS:
        if short // factor >= min_side:
            return factor
    return 1


def decode_stored(
    ds, reduction: int = 1, threads: int = 1, pixel_data=None, kinds: frozenset[str] | tuple = KINDS
) -> Stored | None:
    """Decodes the single greyscale frame of ``ds`` with the fast path, or None to use pydicom.

    Args:
        ds: A pydicom dataset with one frame of 1-sample pixel data.
        reduction: 1 (full resolution) or a value of :data:`REDUCTIONS`.
        threads: Decoder threads where the codec has them (OpenJPEG, OpenCV).
        pixel_data: The Pixel Data value (bytes or a memoryview of the file) when ``ds`` was parsed
            without it; default ``ds.PixelData``.
        kinds: The reduction kinds allowed (:data:`KINDS`; a bundle's gate decides); for a syntax none
            of whose kinds is allowed the decode is at full resolution.

    Returns:
        The stored values, or None when the fast path does not cover this file (the caller then
        decodes with ``ds.pixel_array``, which is always right).
    """
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or int(ds.get("NumberOfFrames", 1) or 1) != 1:
        return None
    allocated = int(ds.get("BitsAllocated", 0) or 0)
    stored_bits = int(ds.get("BitsStored", allocated) or allocated)
    if allocated not in (8, 16) or not 1 <= stored_bits <= allocated:
        return None
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    rows, cols = int(ds.Rows), int(ds.Columns)
    ts = transfer_syntax(ds)
    bits = _bits_rule(ts, stored_bits)
    data = pixel_data if pixel_data is not None else ds.get("PixelData")
    if data is None:
        return None
    if ts in NATIVE:
        values = _native(data, rows, cols, allocated, signed, ts == BIG_ENDIAN)
        decoder = "numpy"
    else:
        frame = _frame(data)
        if frame is None:
            return None
        check_frame(frame, ts, rows, cols, allocated // 8)
        family = "jpeg_dct" if ts == JPEG_BASELINE else "j2k_levels" if ts in J2K or ts in HTJ2K else None
        if reduction > 1 and family is not None:
            # The codec's own reduction, or half of it and a 2 x 2 average, as the gate allowed.
            native = reduction if family in kinds else reduction // 2 if f"{family}_half" in kinds else 1
            reduced = run_codec(decode_reduced, frame, ts, native, threads) if native > 1 else None
            if reduced is not None:
                values, decoder = reduced
                out = _checked(values, rows, cols, native, bits, signed, decoder)
                if out is None or native == reduction:
                    return out
                step = reduction // native
                return Stored(area_reduce(out.values, step), reduction, f"{decoder}+area/{step}")
        decoded = run_codec(decode_full, frame, ts, allocated, signed, rows, cols, threads)
        if decoded is None:
            return None
        values, decoder = decoded
    result = _checked(values, rows, cols, 1, bits, signed, decoder)
    if result is None or reduction == 1 or "area" not in kinds:
        return result
    return Stored(area_reduce(result.values, reduction), reduction, f"{decoder}+area/{reduction}")


def check_frame(frame: bytes, ts: str, rows: int, cols: int, bytes_per_sample: int, samples: int = 1) -> None:
    """Checks a compressed frame against the header before it is decoded (:mod:`cxr_edge.imaging.codestream`).

    Raises:
        ImageDecodeError: The frame declares another size or another number of components, lacks its
            end marker (JPEG, JPEG-LS, JPEG 2000, HTJ2K all end with FFD9: EOI / EOC), or is
            structurally incomplete.
    """
    if ts == RLE:
        rle_check_header(frame, samples * bytes_per_sample)
        return
    if b"\xff\xd9" not in frame[-16:]:
        # libjpeg-turbo and OpenJPH decode a truncated stream without an error (grey or blurred rest).
        raise ImageDecodeError(
            "truncated compressed frame", expected="an end-of-image marker", received="none"
        )
    j2k = ts in J2K or ts in HTJ2K
    if j2k:
        (width, height), components = j2k_size(frame), j2k_check_siz(frame)
        where = "SIZ marker"
    else:
        width, height, _, components = jpeg_frame(frame)
        where = "start-of-frame marker"
    if (height, width) != (rows, cols):
        raise ImageDecodeError(
            "compressed frame size differs from the DICOM header",
            expected=f"{cols}x{rows} (Columns x Rows)",
            received=f"{width}x{height} in the {where}",
        )
    if components != samples:  # each component is a plane of the declared size
        raise ImageDecodeError(
            "compressed frame components differ from the DICOM header",
            expected=f"{samples} (Samples per Pixel)",
            received=f"{components} in the {where}",
        )
    if j2k:
        j2k_check_tile_parts(frame)


def check_pixel_data(ds, pixel_data=None) -> None:
    """Checks the Pixel Data of a single-frame dataset before pydicom decodes it (what the fast path
    checks for itself): enough bytes for an uncompressed greyscale image, a sound first frame."""
    ts = transfer_syntax(ds)
    data = pixel_data if pixel_data is not None else ds.get("PixelData")
    if data is None or not ts:
        return
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    allocated = int(ds.get("BitsAllocated", 8) or 8)
    if ts in NATIVE:
        if samples == 1 and allocated in (8, 16, 32):  # colour may be subsampled (YBR_FULL_422)
            _check_length(len(data), rows * cols * allocated // 8)
        return
    frame = _frame(data)
    if frame is not None:
        check_frame(frame, ts, rows, cols, -(-allocated // 8), samples)


def _check_length(received: int, needed: int) -> None:
    if received < needed:
        raise ImageDecodeError(
            "truncated pixel data", expected=f"{needed} bytes", received=f"{received} bytes"
        )


def area_reduce(values: np.ndarray, factor: int) -> np.ndarray:
    """Box average of ``factor`` x ``factor`` blocks in the integer domain (rounded, OpenCV).

    The last ``rows % factor`` rows and ``cols % factor`` columns (under 8 of ~2500) are dropped, so
    OpenCV takes its exact integer-factor path, several times faster than a fractional one.
    """
    rows, cols = values.shape[0] // factor, values.shape[1] // factor
    if rows == 0 or cols == 0:
        return values
    block = np.ascontiguousarray(values[: rows * factor, : cols * factor])
    return cv2.resize(block, (cols, rows), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------------------- codecs


def _native(data, rows: int, cols: int, allocated: int, signed: bool, big_endian: bool) -> np.ndarray:
    dtype = np.dtype(f"{'>' if big_endian else '<'}{'i' if signed else 'u'}{allocated // 8}")
    _check_length(len(data), rows * cols * dtype.itemsize)  # (a memoryview's len is in bytes)
    values = np.frombuffer(data, dtype=dtype, count=rows * cols).reshape(rows, cols)
    return values.astype(dtype.newbyteorder("="), copy=False) if big_endian else values


def _frame(data) -> bytes | None:
    from pydicom.encaps import generate_frames

    try:
        return next(
            generate_frames(bytes(data) if isinstance(data, memoryview) else data, number_of_frames=1)
        )
    except Exception:  # malformed encapsulation: pydicom's own decode reports it properly
        return None


def _bits_rule(ts: str, stored_bits: int) -> int:
    """Bits to keep: Bits Stored, except for JPEG 2000 whose samples pydicom leaves as decoded.

    A lossy JPEG 2000 decode can overshoot the stored range (4104 in a 12-bit image); pydicom keeps
    that value, masking would turn the brightest pixels black.
    """
    return 16 if ts in J2K or ts in HTJ2K else stored_bits


def _checked(
    values, rows: int, cols: int, reduction: int, bits: int, signed: bool, decoder: str
) -> Stored | None:
    """Shape and type checks, then pydicom's Bits Stored rule (mask, or sign-extend signed data)."""
    if values is None or values.ndim != 2 or values.dtype.kind not in "ui":
        return None
    expected = (-(-rows // reduction), -(-cols // reduction))
    if values.shape != expected:
        return None
    if values.dtype.kind == "u" and signed:
        values = values.view(np.dtype(f"i{values.dtype.itemsize}"))
    elif values.dtype.kind == "i" and not signed:
        values = values.view(np.dtype(f"u{values.dtype.itemsize}"))
    return Stored(_keep_bits(values, bits), reduction, decoder)


def _keep_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Keeps the low ``bits`` bits (pydicom >= 3 does the same), without a copy when already clean."""
    width = values.dtype.itemsize * 8
    if bits >= width:
        return values
    lo, hi = cv2.minMaxLoc(values)[:2]  # 8- or 16-bit samples only (decode_stored checks)
    if values.dtype.kind == "u":
        if hi < (1 << bits):
            return values
        return values & np.array((1 << bits) - 1, dtype=values.dtype)
    if -(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1)):
        return values
    shift = width - bits
    return ((values << shift) >> shift).astype(values.dtype)
