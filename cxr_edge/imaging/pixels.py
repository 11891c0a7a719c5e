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

Lossless full-resolution decodes equal pydicom's exactly (``tests/test_dicom_pixels.py``, one
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

import io
import logging
import os
import struct
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from cxr_edge.errors import ImageDecodeError, ImageTooLargeError
from cxr_edge.imaging.codestream import j2k_check_tile_parts, j2k_size, jpeg_size, rle_check_header

log = logging.getLogger("cxr_edge.imaging.reader")

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

_SYNTAX_NAMES = {
    _RLE: "RLE",
    _JPEG_BASELINE: "JPEG baseline",
    **dict.fromkeys(_JPEG_LIBJPEG_TURBO, "JPEG extended/lossless"),
    **dict.fromkeys(_JPEG_LS, "JPEG-LS"),
    **dict.fromkeys(_J2K, "JPEG 2000"),
    **dict.fromkeys(_HTJ2K, "HTJ2K"),
}

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
        check_frame(frame, ts, rows, cols, allocated // 8)
        family = "jpeg_dct" if ts == _JPEG_BASELINE else "j2k_levels" if ts in _J2K or ts in _HTJ2K else None
        if reduction > 1 and family is not None:
            # The codec's own reduction, or half of it and a 2 x 2 average, as the gate allowed.
            native = reduction if family in kinds else reduction // 2 if f"{family}_half" in kinds else 1
            reduced = _codec(_decode_reduced, frame, ts, native, threads) if native > 1 else None
            if reduced is not None:
                values, decoder = reduced
                out = _checked(values, rows, cols, native, bits, signed, decoder)
                if out is None or native == reduction:
                    return out
                step = reduction // native
                return Stored(area_reduce(out.values, step), reduction, f"{decoder}+area/{step}")
        decoded = _codec(_decode_full, frame, ts, allocated, signed, rows, cols, threads)
        if decoded is None:
            return None
        values, decoder = decoded
    result = _checked(values, rows, cols, 1, bits, signed, decoder)
    if result is None or reduction == 1 or "area" not in kinds:
        return result
    return Stored(area_reduce(result.values, reduction), reduction, f"{decoder}+area/{reduction}")


def inflate_part10(data: bytes, max_bytes: int = 512 << 20, max_pixels: int = 64_000_000) -> bytes | None:
    """A Deflated Explicit VR Little Endian Part 10 file rewritten as plain Explicit VR Little Endian.

    The dataset is inflated with libdeflate (imagecodecs; about twice as fast as zlib, which pydicom
    uses) and the file meta's Transfer Syntax UID and group length are patched, so the header-only
    parse and the zero-copy pixel view of the plain path apply.

    Deflate compresses up to ~1000:1, so a 1 MB file may hold a 1 GB dataset. The dataset is inflated
    in two steps: its first 256 KiB, where the image header is (:func:`_inflated_bound` reads Rows,
    Columns, samples and bits there), then the rest up to what those pixels need plus 1 MiB; beyond
    that bound, or ``max_bytes``, or ``max_pixels`` declared, the file is refused.

    Args:
        data: The file's content.
        max_bytes: Most bytes the inflated dataset may hold.
        max_pixels: Most pixels (Rows x Columns) the header may declare.

    Returns:
        The plain file, or None when the file meta is well formed and its syntax is not deflated.

    Raises:
        ImageDecodeError: A corrupt or truncated deflate stream, or a deflated file whose file meta
            is malformed (pydicom would inflate it without a bound).
        ImageTooLargeError: The dataset inflates beyond its bound.
    """
    malformed = ImageDecodeError(
        "deflated DICOM with a malformed file meta",
        expected="a Part 10 file meta group with its group length",
        received="other bytes",
    )
    if data[128:132] != b"DICM" or data[132:140] != b"\x02\x00\x00\x00UL\x04\x00":
        raise malformed
    meta_end = 144 + struct.unpack_from("<I", data, 140)[0]
    at = data.find(b"\x02\x00\x10\x00UI", 144, meta_end)
    if at < 0 or meta_end > len(data):
        raise malformed
    length = struct.unpack_from("<H", data, at + 6)[0]
    if data[at + 8 : at + 8 + length].rstrip(b"\x00 ") != DEFLATED.encode():
        return None
    uid = EXPLICIT_LE.encode() + b"\x00"  # even length, NUL-padded as UIDs are
    group = struct.pack("<I", meta_end - 144 - length + len(uid))
    element = data[at : at + 6] + struct.pack("<H", len(uid)) + uid
    meta = b"".join((data[:140], group, data[144:at], element, data[at + 8 + length : meta_end]))
    body = memoryview(data)[meta_end:]
    head = zlib.decompressobj(-15)
    try:
        start = head.decompress(body, _INFLATE_HEAD)
    except zlib.error as exc:
        raise _corrupt_deflate(exc) from exc
    bound = min(max_bytes, _inflated_bound(meta, start, max_pixels))
    inflated = _inflate(body, bound, start if head.eof else None)
    return meta + inflated


#: Inflated bytes read first to find the image header (Rows, Columns...) of a deflated dataset.
_INFLATE_HEAD = 256 << 10


def _inflated_bound(meta: bytes, start: bytes, max_pixels: int) -> int:
    """Most bytes a deflated dataset may inflate to: its header, its pixels as declared, 1 MiB more."""
    import pydicom

    stream = io.BytesIO(meta + start)
    try:
        ds = pydicom.dcmread(stream, force=True, stop_before_pixels=True)
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        allocated = int(ds.get("BitsAllocated", 16) or 16)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as exc:  # cut off in the middle of an element, or no image header
        log.debug("deflated DICOM: no image header in the first %d bytes", len(start), exc_info=True)
        raise ImageTooLargeError(
            "deflated DICOM without an image header near its start",
            expected=f"Rows and Columns within the first {_INFLATE_HEAD >> 10} KiB of the dataset",
            received="none",
        ) from exc
    if min(rows, cols, samples, allocated, frames) < 1 or rows * cols > max_pixels:
        raise ImageTooLargeError(
            "image dimensions exceed the decompression-bomb guard",
            expected=f"at most {max_pixels} pixels",
            received=f"{cols}x{rows}",
        )
    pixels = rows * cols * samples * frames * -(-allocated // 8)
    return stream.tell() - len(meta) + pixels + (1 << 20)


def _inflate(body, bound: int, whole: bytes | None) -> bytes:
    """The inflated dataset, at most ``bound`` bytes (``whole``: already inflated in full)."""
    if whole is not None:
        return whole
    try:
        import imagecodecs

        # libdeflate writes into a buffer of the bound's size and fails when the data needs more.
        return imagecodecs.deflate_decode(body, raw=True, out=bound)
    except ImportError:
        pass
    except Exception:  # no space left in the bound, or a corrupt stream: zlib tells which
        pass
    stream = zlib.decompressobj(-15)
    try:
        out = stream.decompress(body, bound + 1)
    except zlib.error as exc:
        raise _corrupt_deflate(exc) from exc
    if len(out) > bound:
        raise ImageTooLargeError(
            "deflated dataset larger than its image needs (a decompression bomb?)",
            expected=f"at most {bound} bytes inflated",
            received=f"more than {bound}",
        )
    if not stream.eof:
        raise ImageDecodeError(
            "truncated deflated dataset", expected="a complete deflate stream", received="end of data"
        )
    return out


def _corrupt_deflate(exc: Exception) -> ImageDecodeError:
    log.debug("corrupt deflate stream", exc_info=exc)
    return ImageDecodeError(
        "corrupt deflated dataset", expected="a valid deflate stream", received="zlib errors"
    )


def check_frame(frame: bytes, ts: str, rows: int, cols: int, bytes_per_sample: int, samples: int = 1) -> None:
    """Checks a compressed frame against the header before it is decoded (:mod:`cxr_edge.imaging.codestream`).

    Raises:
        ImageDecodeError: The frame declares another size, lacks its end marker (JPEG, JPEG-LS, JPEG
            2000, HTJ2K all end with FFD9: EOI / EOC), or is structurally incomplete.
    """
    if ts == _RLE:
        rle_check_header(frame, samples * bytes_per_sample)
        return
    if b"\xff\xd9" not in frame[-16:]:
        # libjpeg-turbo and OpenJPH decode a truncated stream without an error (grey or blurred rest).
        raise ImageDecodeError(
            "truncated compressed frame", expected="an end-of-image marker", received="none"
        )
    j2k = ts in _J2K or ts in _HTJ2K
    if j2k:
        width, height = j2k_size(frame)
        where = "SIZ marker"
    else:
        width, height, _ = jpeg_size(frame)
        where = "start-of-frame marker"
    if (height, width) != (rows, cols):
        raise ImageDecodeError(
            "compressed frame size differs from the DICOM header",
            expected=f"{cols}x{rows} (Columns x Rows)",
            received=f"{width}x{height} in the {where}",
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
    if ts in _NATIVE:
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


def _codec(decode, frame: bytes, ts: str, *args):
    """Runs a codec; what it raises on data of a syntax it covers is a typed error, not a retry.

    A more tolerant decoder must not get a second try at data the codec refused: pydicom's JPEG-LS
    plugin returns an image from a stream CharLS rejects as corrupt. A codec that is missing
    (ImportError) or does not cover the variant (NotImplementedError) gives None: pydicom decodes.
    """
    try:
        return decode(frame, ts, *args)
    except ImageDecodeError:
        raise
    except (ImportError, NotImplementedError):
        log.debug("fast codec unavailable for %s", ts, exc_info=True)
        return None
    except Exception as exc:
        log.debug("codec error", exc_info=True)
        raise ImageDecodeError(
            "corrupt compressed pixel data",
            expected=f"a frame the {_SYNTAX_NAMES.get(ts, ts)} codec can decode",
            received=f"codec errors ({type(exc).__name__})",
        ) from exc


def _decode_full(frame: bytes, ts: str, allocated: int, signed: bool, rows: int, cols: int, threads: int):
    import imagecodecs

    if ts == _RLE:
        dtype = np.dtype(f">{'i' if signed else 'u'}{allocated // 8}")
        # A buffer of the declared size bounds the output: PackBits expands up to 64x.
        out = np.empty(rows * cols * dtype.itemsize, dtype=np.uint8)
        raw = imagecodecs.dicomrle_decode(frame, dtype, out=out)
        if len(raw) != out.size:
            return None
        return out.view(dtype).reshape(rows, cols).astype(dtype.newbyteorder("=")), "rle"
    if ts == _JPEG_BASELINE:
        return strict_jpeg8(frame), "simplejpeg"
    if ts in _JPEG_LIBJPEG_TURBO:
        return imagecodecs.jpeg8_decode(frame), "libjpeg-turbo"
    if ts in _JPEG_LS:
        return imagecodecs.jpegls_decode(frame), "charls"
    if ts in _J2K:
        return imagecodecs.jpeg2k_decode(frame, numthreads=threads), "openjpeg"
    if ts in _HTJ2K:
        return _openjph(frame), "openjph"
    return None


def _decode_reduced(frame: bytes, ts: str, reduction: int, threads: int):
    """A codec's own reduced decode, or None where it has none."""
    levels = reduction.bit_length() - 1
    if ts == _JPEG_BASELINE:
        return strict_jpeg8(frame, reduction), f"simplejpeg-dct/{reduction}"
    if ts in _HTJ2K:
        return _openjph(frame, skipres=levels), f"openjph-level/{reduction}"
    if ts in _J2K and glymur_available():
        return _glymur_reduced(frame, levels, threads), f"openjpeg-level/{reduction}"
    return None


def strict_jpeg8(data: bytes, reduction: int = 1, colour: str = "GRAY") -> np.ndarray:
    """An 8-bit JPEG decoded by libjpeg-turbo with its warnings as errors (simplejpeg, strict mode).

    libjpeg fills what a damaged or truncated stream lacks with grey and only warns ("premature end of
    data segment", "corrupt JPEG data"); OpenCV prints that warning and returns the image. The pixels
    equal OpenCV's (both libjpeg-turbo, slow integer DCT), DCT-scaled ones included.

    Args:
        data: The JPEG stream.
        reduction: 1, or 2, 4, 8 for libjpeg's DCT scaling (the decoded size rounds up).
        colour: simplejpeg's output colour space (``GRAY``, ``BGR``...).

    Returns:
        A 2-D array for ``GRAY``, else rows x cols x channels.

    Raises:
        ImageDecodeError: libjpeg reported an error or a warning.
    """
    import simplejpeg

    kwargs = {}
    if reduction > 1:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        kwargs = {"min_height": -(-height // reduction), "min_width": -(-width // reduction)}
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace=colour, strict=True, **kwargs)
    except ValueError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageDecodeError(
            "corrupt JPEG data", expected="a complete, undamaged JPEG stream", received=f"libjpeg: {message}"
        ) from exc
    return arr[..., 0] if colour == "GRAY" else arr


_UNRAISABLE = threading.Lock()


def _openjph(frame: bytes, **kwargs) -> np.ndarray:
    """HTJ2K decoded by OpenJPH (imagecodecs), its errors raised instead of printed.

    OpenJPH reports a corrupt code-block from inside a Cython callback, where Python can only print
    "Exception ignored in ... _copy_from_codestream" and go on: the pixels come back damaged. Those
    exceptions are caught here (``sys.unraisablehook``, one HTJ2K decode at a time) and turned into a
    typed error; unrelated ones go to the previous hook.
    """
    import imagecodecs

    caught: list[BaseException] = []
    with _UNRAISABLE:
        previous = sys.unraisablehook

        def hook(unraisable) -> None:
            if "htj2k" in repr(unraisable.object):
                caught.append(unraisable.exc_value)
            else:
                previous(unraisable)

        sys.unraisablehook = hook
        try:
            values = imagecodecs.htj2k_decode(frame, **kwargs)
        finally:
            sys.unraisablehook = previous
    if caught:
        log.debug("OpenJPH errors while decoding: %r", caught[:3])
        raise ImageDecodeError(
            "corrupt HTJ2K data", expected="a decodable codestream", received=f"{len(caught)} OpenJPH errors"
        )
    return values


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
