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
JPEG baseline (8 bit)     OpenCV (libjpeg-turbo)                  **DCT scaling** (OpenCV reduced)
JPEG 2000                 imagecodecs (OpenJPEG)                  **resolution levels** (glymur)
HTJ2K                     imagecodecs (OpenJPH)                   **resolution levels** (``skipres``)
========================  ======================================  ===================================

Lossless full-resolution decodes equal pydicom's exactly (``tests/test_dicom_pixels.py``, one
golden test per syntax). Reduced decodes change pixels; a bundle uses them only when its decode
parity gate passed (:mod:`cxr_edge.decode_gate`).
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from cxr_edge.errors import ImageDecodeError

_NATIVE = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian (pydicom inflated it)
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
    }
)
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
_RLE = "1.2.840.10008.1.2.5"
_JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
_JPEG_LIBJPEG_TURBO = frozenset(
    {
        "1.2.840.10008.1.2.4.51",  # JPEG Extended (12 bit)
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless, process 14
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    }
)
_JPEG_LS = frozenset({"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"})
_J2K = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
_HTJ2K = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"})

#: Reductions tried, largest first: powers of two, as JPEG DCT scaling and wavelet levels allow.
REDUCTIONS = (8, 4, 2)
#: Ways to reduce, each gated on its own (:mod:`cxr_edge.decode_gate`):
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


def transfer_syntax(ds) -> str:
    """The dataset's Transfer Syntax UID, or "" when it has no file meta."""
    meta = ds.get("file_meta")
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


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
    if ts in _NATIVE:
        values = _native(data, rows, cols, allocated, signed, ts == BIG_ENDIAN)
        decoder = "numpy"
    else:
        frame = _frame(data)
        if frame is None:
            return None
        if ts != _RLE and b"\xff\xd9" not in frame[-16:]:
            # JPEG, JPEG-LS, JPEG 2000 and HTJ2K all end with FFD9 (EOI / EOC). libjpeg-turbo and
            # OpenJPH decode a truncated stream without an error (grey or blurred remainder).
            raise ImageDecodeError(
                "truncated compressed frame", expected="an end-of-image marker", received="none"
            )
        family = "jpeg_dct" if ts == _JPEG_BASELINE else "j2k_levels" if ts in _J2K or ts in _HTJ2K else None
        if reduction > 1 and family is not None:
            # The codec's own reduction, or half of it and a 2 x 2 average, as the gate allowed.
            native = reduction if family in kinds else reduction // 2 if f"{family}_half" in kinds else 1
            reduced = _decode_reduced(frame, ts, native, threads) if native > 1 else None
            if reduced is not None:
                values, decoder = reduced
                out = _checked(values, rows, cols, native, bits, signed, decoder)
                if out is None or native == reduction:
                    return out
                step = reduction // native
                return Stored(area_reduce(out.values, step), reduction, f"{decoder}+area/{step}")
        decoded = _decode_full(frame, ts, allocated, signed, rows, cols, threads)
        if decoded is None:
            return None
        values, decoder = decoded
    result = _checked(values, rows, cols, 1, bits, signed, decoder)
    if result is None or reduction == 1 or "area" not in kinds:
        return result
    return Stored(area_reduce(result.values, reduction), reduction, f"{decoder}+area/{reduction}")


def inflate_part10(data: bytes) -> bytes | None:
    """A Deflated Explicit VR Little Endian Part 10 file rewritten as plain Explicit VR Little Endian.

    The dataset is inflated with libdeflate (imagecodecs; about twice as fast as zlib, which pydicom
    uses) and the file meta's Transfer Syntax UID and group length are patched, so the header-only
    parse and the zero-copy pixel view of the plain path apply. None when ``data`` is not a deflated
    Part 10 file with a well-formed meta group (the caller then lets pydicom read it).

    Raises:
        ImageDecodeError: The deflate stream is corrupt.
    """
    if data[128:132] != b"DICM" or data[132:140] != b"\x02\x00\x00\x00UL\x04\x00":
        return None
    meta_end = 144 + struct.unpack_from("<I", data, 140)[0]
    at = data.find(b"\x02\x00\x10\x00UI", 144, meta_end)
    if at < 0 or meta_end > len(data):
        return None
    length = struct.unpack_from("<H", data, at + 6)[0]
    if data[at + 8 : at + 8 + length].rstrip(b"\x00 ") != DEFLATED.encode():
        return None
    uid = EXPLICIT_LE.encode() + b"\x00"  # even length, NUL-padded as UIDs are
    body = memoryview(data)[meta_end:]
    try:
        import imagecodecs

        # libdeflate needs a bound on the output: radiographs inflate 1.5-3x; 4x plus 1 MiB (a
        # larger buffer costs page faults), else (mostly blank images, a bomb) zlib, which grows
        # its buffer as it goes.
        inflated = imagecodecs.deflate_decode(body, raw=True, out=4 * len(body) + (1 << 20))
    except Exception:  # DeflateError for "no space", ImportError without imagecodecs
        try:
            inflated = zlib.decompress(body, -15)
        except zlib.error as exc:
            raise ImageDecodeError(
                "corrupt deflated dataset", expected="a valid deflate stream", received=str(exc)[:80]
            ) from exc
    group = struct.pack("<I", meta_end - 144 - length + len(uid))
    element = data[at : at + 6] + struct.pack("<H", len(uid)) + uid
    return b"".join((data[:140], group, data[144:at], element, data[at + 8 + length : meta_end], inflated))


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


def _native(data, rows: int, cols: int, allocated: int, signed: bool, big_endian: bool) -> np.ndarray | None:
    dtype = np.dtype(f"{'>' if big_endian else '<'}{'i' if signed else 'u'}{allocated // 8}")
    needed = rows * cols * dtype.itemsize
    if len(data) < needed:  # (len of a memoryview is in bytes: its format is unsigned char)
        return None  # short pixel data: pydicom's error message says what is missing
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


def _decode_full(frame: bytes, ts: str, allocated: int, signed: bool, rows: int, cols: int, threads: int):
    import imagecodecs

    if ts == _RLE:
        dtype = np.dtype(f">{'i' if signed else 'u'}{allocated // 8}")
        raw = imagecodecs.dicomrle_decode(frame, dtype)
        if len(raw) != rows * cols * dtype.itemsize:
            return None
        return np.frombuffer(raw, dtype=dtype).reshape(rows, cols).astype(dtype.newbyteorder("=")), "rle"
    if ts == _JPEG_BASELINE:
        arr = cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_GRAYSCALE)
        return (arr, "opencv-jpeg") if arr is not None else None
    if ts in _JPEG_LIBJPEG_TURBO:
        return imagecodecs.jpeg8_decode(frame), "libjpeg-turbo"
    if ts in _JPEG_LS:
        return imagecodecs.jpegls_decode(frame), "charls"
    if ts in _J2K:
        return imagecodecs.jpeg2k_decode(frame, numthreads=threads), "openjpeg"
    if ts in _HTJ2K:
        return imagecodecs.htj2k_decode(frame), "openjph"
    return None


def _decode_reduced(frame: bytes, ts: str, reduction: int, threads: int):
    """A codec's own reduced decode, or None where it has none."""
    levels = reduction.bit_length() - 1
    if ts == _JPEG_BASELINE:
        flag = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[reduction]  # fmt: skip
        arr = cv2.imdecode(np.frombuffer(frame, np.uint8), flag)
        return (arr, f"opencv-jpeg-dct/{reduction}") if arr is not None else None
    if ts in _HTJ2K:
        import imagecodecs

        return imagecodecs.htj2k_decode(frame, skipres=levels), f"openjph-level/{reduction}"
    if ts in _J2K and glymur_available():
        return _glymur_reduced(frame, levels, threads), f"openjpeg-level/{reduction}"
    return None


def glymur_available() -> bool:
    """glymur loads the system's OpenJPEG (Debian: libopenjp2-7); without it JPEG 2000 decodes in full
    through imagecodecs and is then averaged (slower, same gate)."""
    try:
        import glymur
    except ImportError:
        return False
    return glymur.version.openjpeg_version not in (None, "", "0.0.0")


def _glymur_reduced(frame: bytes, levels: int, threads: int) -> np.ndarray:
    """JPEG 2000 at 1/2**levels resolution: only the wavelet levels needed are decoded.

    glymur (OpenJPEG's reduce parameter) reads files, not buffers; the codestream is written to a
    private temporary file (in memory where /dev/shm exists), which costs well under a millisecond.
    """
    import glymur

    glymur.set_option("lib.num_threads", max(1, threads))
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.NamedTemporaryFile(suffix=".j2k", dir=folder) as fh:
        fh.write(frame)
        fh.flush()
        step = 1 << levels
        return glymur.Jp2k(fh.name)[::step, ::step]


def _bits_rule(ts: str, stored_bits: int) -> int:
    """Bits to keep: Bits Stored, except for JPEG 2000 whose samples pydicom leaves as decoded.

    A lossy JPEG 2000 decode can overshoot the stored range (4104 in a 12-bit image); pydicom keeps
    that value, masking would turn the brightest pixels black.
    """
    return 16 if ts in _J2K or ts in _HTJ2K else stored_bits


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
