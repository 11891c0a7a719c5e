"""One frame through one codec: libjpeg-turbo (strict for 8-bit), CharLS, OpenJPEG, OpenJPH, RLE, glymur.

What a codec raises on data of a syntax it covers becomes a typed error; a missing codec gives None
(pydicom decodes). libjpeg's warnings are errors for 8-bit JPEG (simplejpeg's strict mode), and
OpenJPH's errors, which Cython can only print as "Exception ignored", are caught and raised.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading

import numpy as np

from cxr_edge.errors import ImageDecodeError
from cxr_edge.imaging.syntaxes import (
    HTJ2K,
    J2K,
    JPEG_BASELINE,
    JPEG_LIBJPEG_TURBO,
    JPEG_LS,
    RLE,
    SYNTAX_NAMES,
)

log = logging.getLogger(__name__)


def run_codec(decode, frame: bytes, ts: str, *args):
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
            expected=f"a frame the {SYNTAX_NAMES.get(ts, ts)} codec can decode",
            received=f"codec errors ({type(exc).__name__})",
        ) from exc


def decode_full(frame: bytes, ts: str, allocated: int, signed: bool, rows: int, cols: int, threads: int):
    import imagecodecs

    if ts == RLE:
        dtype = np.dtype(f">{'i' if signed else 'u'}{allocated // 8}")
        # A buffer of the declared size bounds the output: PackBits expands up to 64x.
        out = np.empty(rows * cols * dtype.itemsize, dtype=np.uint8)
        raw = imagecodecs.dicomrle_decode(frame, dtype, out=out)
        if len(raw) != out.size:
            return None
        return out.view(dtype).reshape(rows, cols).astype(dtype.newbyteorder("=")), "rle"
    if ts == JPEG_BASELINE:
        return strict_jpeg8(frame), "simplejpeg"
    if ts in JPEG_LIBJPEG_TURBO:
        return imagecodecs.jpeg8_decode(frame), "libjpeg-turbo"
    if ts in JPEG_LS:
        return imagecodecs.jpegls_decode(frame), "charls"
    if ts in J2K:
        return imagecodecs.jpeg2k_decode(frame, numthreads=threads), "openjpeg"
    if ts in HTJ2K:
        return openjph(frame), "openjph"
    return None


def decode_reduced(frame: bytes, ts: str, reduction: int, threads: int):
    """A codec's own reduced decode, or None where it has none."""
    levels = reduction.bit_length() - 1
    if ts == JPEG_BASELINE:
        return strict_jpeg8(frame, reduction), f"simplejpeg-dct/{reduction}"
    if ts in HTJ2K:
        return openjph(frame, skipres=levels), f"openjph-level/{reduction}"
    if ts in J2K and glymur_available():
        return glymur_reduced(frame, levels, threads), f"openjpeg-level/{reduction}"
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


def openjph(frame: bytes, **kwargs) -> np.ndarray:
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


def glymur_reduced(frame: bytes, levels: int, threads: int) -> np.ndarray:
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
