"""Reading chest X-rays: PNG, JPEG and DICOM into one float32 image in [0, 1].

Every runtime and the training code read pixels through :func:`read_image`, so an image decodes the
same way wherever it is used. The returned :class:`ImageInfo` describes how the pixels were obtained
and never holds patient identifiers (no names, IDs, dates or UIDs).

Intensity conventions (documented because they change what a model sees):

* 8-bit PNG/JPEG: ``value / 255``.
* 16-bit PNG: min-max scaled over the image, as the data kit was built from 16-bit sources.
* DICOM: stored value -> Bits Stored mask -> Modality LUT (Rescale Slope/Intercept) -> VOI LUT
  sequence, else Window Center/Width (LINEAR, LINEAR_EXACT or SIGMOID), else min-max over the image;
  MONOCHROME1 is inverted last so that bone is always bright.
* Colour images are never used by accident: an RGB image whose channels are equal is read as grey;
  a true colour image is converted with ITU-R BT.601 luma weights and flagged in
  ``ImageInfo.converted_from`` (or refused with ``ReadOptions(color="reject")``).

Limits (:class:`ReadOptions`) come before any pixel: file size, inflated size, pixels declared by a
header or a codestream, one frame; with ``decode_timeout_s`` the decode runs in a worker process with a
deadline and a memory ceiling (:mod:`cxr_edge.imaging.isolated`).

Every decoded image is checked once, in :func:`decode_image`, whatever produced it: it has the size its
header declared, every value is finite and in [0, 1], and it is not a single intensity; otherwise a
typed error says what was found. DICOM attributes that drive the intensity mapping (Rescale
Slope/Intercept, Window Center/Width, the VOI LUT) are checked where they are read.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import cv2
import numpy as np

from cxr_edge.errors import ImageDecodeError, ImageTooLargeError, InputError, UnsupportedImageError
from cxr_edge.imaging import isolated
from cxr_edge.imaging.codestream import jpeg_size
from cxr_edge.imaging.dicom import PROJECTION_MODALITIES, decode_dicom
from cxr_edge.imaging.image import ImageInfo, ReadOptions, check_size
from cxr_edge.imaging.intensity import minmax
from cxr_edge.imaging.pixels import strict_jpeg8

__all__ = [
    "PROJECTION_MODALITIES",
    "ImageInfo",
    "ReadOptions",
    "checked_image",
    "decode_image",
    "read_image",
    "sniff_format",
]

# Internal exception texts (a codec's, pydicom's) go here at debug level, never into error messages.
log = logging.getLogger(__name__)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})


def read_image(path: str | os.PathLike, options: ReadOptions | None = None) -> tuple[np.ndarray, ImageInfo]:
    """Reads a PNG, JPEG or DICOM chest X-ray.

    Args:
        path: File to read.
        options: Reader limits and colour policy; defaults to :class:`ReadOptions`.

    Returns:
        ``(image, info)``: a 2-D float32 array in [0, 1] (bright = dense) and its :class:`ImageInfo`.

    Raises:
        InputError: The file is missing, empty, not a supported image, or too large.
        ImageDecodeError: The pixels cannot be decoded (truncated or corrupt data).
        UnsupportedImageError: A DICOM the toolkit must not judge (no pixels, CT/MR, multi-frame...).
    """
    options = options or ReadOptions()
    p = Path(path)
    if not p.exists():
        raise InputError("file not found", expected="an existing file", received=str(p))
    if not p.is_file():
        raise InputError("not a regular file", expected="a file", received=f"a directory or device: {p}")
    size = p.stat().st_size
    if size == 0:
        raise InputError("empty file", expected="image data", received="0 bytes")
    if size > options.max_bytes:
        raise ImageTooLargeError(
            "file too large", expected=f"at most {options.max_bytes} bytes", received=f"{size} bytes"
        )
    if options.decode_timeout_s is not None and isolated.posix():
        return isolated.read_isolated(path, options)
    return decode_image(p.read_bytes(), name=str(path), options=options)


def decode_image(data: bytes, name: str = "<bytes>", options: ReadOptions | None = None):
    """Decodes image bytes; see :func:`read_image` for the contract.

    Args:
        data: The file's content.
        name: What to call the source in errors and in ``ImageInfo.source_file``.
        options: Reader limits and colour policy.

    Returns:
        ``(image, info)`` as for :func:`read_image`.
    """
    options = options or ReadOptions()
    if not data:
        raise InputError("empty file", expected="image data", received="0 bytes")
    if len(data) > options.max_bytes:
        raise ImageTooLargeError(
            "file too large", expected=f"at most {options.max_bytes} bytes", received=f"{len(data)} bytes"
        )
    if options.decode_timeout_s is not None and isolated.posix():
        return isolated.decode_isolated(data, name, options)
    kind = sniff_format(data, name)
    if kind == "png":
        decoded = _decode_raster(data, name, "png", _png_header(data), options)
    elif kind == "jpeg":
        decoded = _decode_raster(data, name, "jpeg", jpeg_size(data), options)
    elif kind == "dicom":
        decoded = decode_dicom(data, name, options)
    else:
        raise InputError("not an image", expected="PNG, JPEG or DICOM data", received=_describe_unknown(data))
    return checked_image(*decoded)


def checked_image(
    image: np.ndarray, info: ImageInfo, declared: tuple[int, int]
) -> tuple[np.ndarray, ImageInfo]:
    """The one check every decoded image passes: its size, finite values in [0, 1], not one intensity.

    Args:
        image: The decoded image.
        info: How it was read.
        declared: ``(rows, columns)`` the file's header declared (before any reduction).

    Returns:
        ``(image, info)`` unchanged.

    Raises:
        ImageDecodeError: Another size than declared, or values that are not finite or outside [0, 1].
        UnsupportedImageError: Every pixel has the same value (nothing to judge).
    """
    rows, cols = declared
    r = info.reduction
    allowed_rows, allowed_cols = {rows // r, -(-rows // r)}, {cols // r, -(-cols // r)}
    if image.ndim != 2 or image.shape[0] not in allowed_rows or image.shape[1] not in allowed_cols:
        raise ImageDecodeError(
            "decoded image differs from its declared size",
            expected=f"{cols}x{rows}" + (f" reduced {r}x" if r > 1 else ""),
            received="x".join(str(n) for n in image.shape[::-1]),
        )
    lo, hi = float(image.min()), float(image.max())  # NaN propagates through both
    if not (0.0 <= lo <= hi <= 1.0):
        finite = np.isfinite(image)
        bad = int(image.size - np.count_nonzero(finite))
        found = f"{bad} of {image.size} pixels NaN or infinite" if bad else f"values {lo:.4g} to {hi:.4g}"
        raise ImageDecodeError(
            "decoded intensities are not finite values in [0, 1]",
            expected="finite values in [0, 1]",
            received=found,
        )
    if lo == hi:
        raise UnsupportedImageError(
            "image has a single intensity",
            expected="a radiograph (varying intensities)",
            received=f"every pixel {lo:.4g}",
        )
    return image, info


def sniff_format(data: bytes, name: str = "") -> str | None:
    """Recognises a file by its first bytes (and a DICOM by its suffix when it has no preamble).

    Returns:
        ``"png"``, ``"jpeg"``, ``"dicom"`` or ``None``.
    """
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if Path(name).suffix.lower() in _DICOM_SUFFIXES and not _looks_like_text(data):
        return "dicom"  # raw DICOM without the 128-byte preamble; pydicom decides below
    return None


# --------------------------------------------------------------------------------------------- PNG / JPEG


def _png_header(data: bytes) -> tuple[int, int, int]:
    """Returns (width, height, bit_depth) from the IHDR chunk without decoding pixels."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageDecodeError("truncated PNG", expected="an IHDR chunk", received=f"{len(data)} bytes")
    width, height = struct.unpack(">II", data[16:24])
    return width, height, data[24]


def _decode_raster(data: bytes, name: str, fmt: str, header: tuple[int, int, int], options: ReadOptions):
    width, height, _ = header  # the decoder reports the sample depth it produced
    check_size(width, height, options)
    # libjpeg fills a truncated JPEG with grey and only warns; refuse it instead of judging grey pixels.
    if fmt == "jpeg" and b"\xff\xd9" not in data[-64:]:
        raise ImageDecodeError("truncated JPEG", expected="an end-of-image marker", received="none")
    if fmt == "png" and b"IEND" not in data[-32:]:
        raise ImageDecodeError("truncated PNG", expected="an IEND chunk", received="none")
    arr = _strict_jpeg(data) if fmt == "jpeg" and header[2] == 8 else None
    if arr is None:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageDecodeError(
            f"corrupt {fmt.upper()} data", expected="decodable pixels", received="decoder error"
        )
    arr, converted = _to_gray(arr, options, name)
    if arr.dtype == np.uint8:
        image = arr.astype(np.float32) / 255.0
        intensity, bits = "scaled", 8
    elif arr.dtype == np.uint16:
        image, intensity, bits = minmax(arr.astype(np.float32)), "minmax", 16
    else:
        raise UnsupportedImageError(
            "unsupported sample type", expected="8- or 16-bit samples", received=str(arr.dtype)
        )
    info = ImageInfo(
        source_file=name,
        format=fmt,
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        bits_stored=bits,
        photometric="RGB" if converted else "MONOCHROME2",
        intensity=intensity,
        converted_from=converted,
    )
    return image, info, (height, width)


def _strict_jpeg(data: bytes) -> np.ndarray | None:
    """An 8-bit JPEG as OpenCV would decode it (grey, or BGR), but with libjpeg's warnings as errors.

    None for CMYK/YCCK streams, which OpenCV converts and simplejpeg does not (no radiograph is CMYK).
    """
    import simplejpeg

    try:
        colourspace = simplejpeg.decode_jpeg_header(data)[2]
    except ValueError as exc:
        log.debug("JPEG header", exc_info=True)
        raise ImageDecodeError(
            "corrupt JPEG header", expected="a decodable JPEG", received="libjpeg errors"
        ) from exc
    if colourspace in ("CMYK", "YCCK"):
        return None
    return strict_jpeg8(data, colour="GRAY" if colourspace == "Gray" else "BGR")


def _to_gray(arr: np.ndarray, options: ReadOptions, name: str) -> tuple[np.ndarray, str | None]:
    """Returns a 2-D array; true colour is converted (and reported) or refused, per the options."""
    if arr.ndim == 2:
        return arr, None
    channels = arr.shape[2]
    converted = None
    if channels == 4:
        # Composite on black, as the kit did, so transparent padding becomes background.
        alpha = arr[..., 3:4].astype(np.float32) / np.iinfo(arr.dtype).max
        arr = (arr[..., :3].astype(np.float32) * alpha).round().astype(arr.dtype)
        converted = "RGBA"
    elif channels == 2:  # grey + alpha (OpenCV normally expands this, kept for safety)
        alpha = arr[..., 1].astype(np.float32) / np.iinfo(arr.dtype).max
        return (arr[..., 0].astype(np.float32) * alpha).round().astype(arr.dtype), "GA"
    if channels >= 3:
        bgr = arr[..., :3]
        if np.array_equal(bgr[..., 0], bgr[..., 1]) and np.array_equal(bgr[..., 1], bgr[..., 2]):
            return bgr[..., 0].copy(), converted  # grey stored as RGB: nothing to convert
        if options.color == "reject":
            raise UnsupportedImageError(
                "colour image",
                expected="a greyscale radiograph",
                received=f"{channels}-channel colour data in {Path(name).name}",
            )
        return cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2GRAY), "RGB"
    raise UnsupportedImageError(
        "unsupported channel count", expected="1, 3 or 4 channels", received=f"{channels}"
    )


# --------------------------------------------------------------------------------------------- helpers


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    if not head:
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable / len(head) > 0.95


def _describe_unknown(data: bytes) -> str:
    if _looks_like_text(data):
        return "text data"
    return f"unrecognised binary data starting {data[:8].hex()}"
