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

Every decoded image is checked once, in :func:`decode_image`, whatever produced it: it has the size its
header declared, every value is finite and in [0, 1], and it is not a single intensity; otherwise a
typed error says what was found. DICOM attributes that drive the intensity mapping (Rescale
Slope/Intercept, Window Center/Width, the VOI LUT) are checked where they are read.
"""

from __future__ import annotations

import io
import logging
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from cxr_edge.errors import (
    CxrEdgeError,
    ImageDecodeError,
    ImageTooLargeError,
    InputError,
    UnsupportedImageError,
    one_line,
)
from cxr_edge.imaging.codestream import jpeg_size
from cxr_edge.imaging.intensity import check_attributes, minmax, to_unit, to_unit_by_table
from cxr_edge.imaging.intensity import window as window  # re-exported: read_image's callers apply windows too
from cxr_edge.imaging.pixels import (
    BIG_ENDIAN,
    DEFLATED,
    IMPLICIT_LE,
    KINDS,
    area_reduce,
    check_pixel_data,
    choose_reduction,
    decode_stored,
    inflate_part10,
    strict_jpeg8,
    transfer_syntax,
)

# Internal exception texts (a codec's, pydicom's) go here at debug level, never into error messages.
log = logging.getLogger("cxr_edge.imaging.reader")

#: Modalities a projection chest radiograph can carry. OT (other) covers secondary captures of
#: radiographs; an empty modality is accepted because many exported files omit it.
PROJECTION_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT", ""})

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
# Palette colour would need its LUT applied first; no radiograph uses it, so it is refused.
_SUPPORTED_PHOTOMETRIC = frozenset(
    {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}
)


@dataclass(frozen=True)
class ReadOptions:
    """How strict the reader is.

    Attributes:
        max_pixels: Decompression-bomb guard; images whose declared width x height exceeds it are
            refused before any pixel is decoded. 64 MP is far above any chest detector (~18 MP).
        max_bytes: Files larger than this are refused before being read.
        color: ``"convert"`` turns true colour images into grey (flagged in the info);
            ``"reject"`` refuses them.
        min_side: Allow reduced-resolution DICOM decoding that keeps at least this many pixels on
            the short side (a bundle sets it from its input size when its decode gate passed);
            None decodes at full resolution.
        decoder: ``"fast"`` (:mod:`cxr_edge.imaging.pixels`, pydicom where it does not apply) or
            ``"pydicom"`` (``pixel_array`` and float64 LUTs: the first release's path, kept for
            comparison and as the reference).
        threads: Threads a DICOM codec may use (OpenJPEG); ``cxr-edge --threads`` sets it.
        reductions: How a reduced decode may be made (:data:`cxr_edge.imaging.pixels.KINDS`: ``area``,
            ``jpeg_dct``, ``j2k_levels``...); a bundle allows the kinds its gate passed.
    """

    max_pixels: int = 64_000_000
    max_bytes: int = 512 * 1024 * 1024
    color: Literal["convert", "reject"] = "convert"
    min_side: int | None = None
    decoder: Literal["fast", "pydicom"] = "fast"
    threads: int = 1
    reductions: tuple[str, ...] = KINDS


@dataclass(frozen=True)
class ImageInfo:
    """How an image was read. Holds no patient identifiers.

    Attributes:
        source_file: The path the image was read from (as given by the caller).
        format: ``"png"``, ``"jpeg"`` or ``"dicom"``.
        width: Columns of the decoded image.
        height: Rows of the decoded image.
        bits_stored: Significant bits per sample of the stored pixels.
        photometric: Photometric interpretation (``MONOCHROME1``, ``MONOCHROME2``, ``RGB`` ...).
        modality: DICOM Modality, or ``None`` for PNG/JPEG.
        view_position: DICOM View Position (``PA``, ``AP``, ``LL`` ...) or ``None``.
        body_part: DICOM Body Part Examined or ``None``.
        transfer_syntax: DICOM transfer syntax name, or ``None``.
        intensity: How values were mapped to [0, 1]: ``scaled``, ``minmax``, ``window``, ``voi_lut``.
        inverted: Whether MONOCHROME1 inversion was applied.
        converted_from: ``"RGB"``/``"RGBA"`` when a true colour image was converted to grey, else None.
        reduction: Source pixels per decoded pixel along each side (1 = full resolution); width
            and height are those of the decoded image.
        decoder: The codec that produced the pixels (``numpy``, ``openjpeg-level/4``, ``pydicom``...).
    """

    source_file: str
    format: str
    width: int
    height: int
    bits_stored: int
    photometric: str
    modality: str | None = None
    view_position: str | None = None
    body_part: str | None = None
    transfer_syntax: str | None = None
    intensity: str = "scaled"
    inverted: bool = False
    converted_from: str | None = None
    reduction: int = 1
    decoder: str = ""

    def to_dict(self) -> dict:
        """Returns the info as a JSON-serialisable dict."""
        return asdict(self)


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
    kind = sniff_format(data, name)
    if kind == "png":
        decoded = _decode_raster(data, name, "png", _png_header(data), options)
    elif kind == "jpeg":
        decoded = _decode_raster(data, name, "jpeg", jpeg_size(data), options)
    elif kind == "dicom":
        decoded = _decode_dicom(data, name, options)
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


def _check_size(width: int, height: int, options: ReadOptions) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(
            "image has no pixels", expected="positive width and height", received=f"{width}x{height}"
        )
    if width * height > options.max_pixels:
        raise ImageTooLargeError(
            "image dimensions exceed the decompression-bomb guard",
            expected=f"at most {options.max_pixels} pixels",
            received=f"{width}x{height} = {width * height} pixels",
        )


def _decode_raster(data: bytes, name: str, fmt: str, header: tuple[int, int, int], options: ReadOptions):
    width, height, _ = header  # the decoder reports the sample depth it produced
    _check_size(width, height, options)
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


# --------------------------------------------------------------------------------------------- DICOM


def _decode_dicom(data: bytes, name: str, options: ReadOptions):
    import pydicom  # deferred: keeps `import cxr_edge` fast for PNG-only users

    force = data[128:132] != b"DICM"
    # A deflated dataset is inflated once, here, within the bounds its header sets (a deflate bomb
    # holds 1 GB in 1 MB); pydicom would inflate it in full, with any parse.
    syntax = None  # the file's own syntax, when the data parsed below is a rewritten copy
    if DEFLATED.encode() in data[:2048]:
        plain = inflate_part10(data, options.max_bytes, options.max_pixels)
        if plain is not None:
            data, syntax = plain, "Deflated Explicit VR Little Endian"

    def full_parse():
        return pydicom.dcmread(io.BytesIO(data), force=force)

    try:
        pixels = None
        if options.decoder == "fast":
            # Parse the header only and take the pixel data as a view of `data`: pydicom would copy
            # the 5-10 MB value, and the fast codecs read the view directly.
            stream = io.BytesIO(data)
            ds = pydicom.dcmread(stream, force=force, stop_before_pixels=True)
            pixels = _pixel_data_view(data, stream.tell(), ds)
        if pixels is None:  # big-endian, float pixels, unusual layouts: pydicom reads it all
            ds = full_parse()
        return _dicom_image(ds, name, options, pixels, full_parse, syntax)
    except CxrEdgeError:
        raise
    except Exception as exc:
        # pydicom parses elements lazily, so a corrupt file can fail with almost any exception type
        # (NotImplementedError for an unknown VR, struct.error, KeyError...) at any later access.
        log.debug("unreadable DICOM %s", one_line(name), exc_info=True)
        raise ImageDecodeError(
            "unreadable DICOM",
            expected="a valid DICOM file",
            received=f"data pydicom cannot parse ({type(exc).__name__})",
        ) from exc


def _pixel_data_view(data: bytes, pos: int, ds) -> memoryview | None:
    """The Pixel Data value at ``pos`` (where a header-only parse stopped), or None if not plainly there."""
    ts = transfer_syntax(ds)
    if not ts or ts == BIG_ENDIAN or pos + 12 > len(data):
        return None
    if struct.unpack_from("<HH", data, pos) != (0x7FE0, 0x0010):
        return None
    if ts == IMPLICIT_LE:
        length, start = struct.unpack_from("<I", data, pos + 4)[0], pos + 8
    elif data[pos + 4 : pos + 6] in (b"OB", b"OW", b"UN"):
        length, start = struct.unpack_from("<I", data, pos + 8)[0], pos + 12
    else:
        return None
    if length == 0xFFFFFFFF:  # encapsulated: items up to the sequence delimiter
        if data.rfind(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", start) < 0:
            raise ImageDecodeError(
                "truncated pixel data",
                expected="an encapsulated sequence delimiter (FFFE,E0DD)",
                received="end of file",
            )
        return memoryview(data)[start:]
    # Short pixel data stays a view too: the decoder says how many bytes are missing.
    return memoryview(data)[start : start + length]


@dataclass(frozen=True)
class _Layout:
    """The pixel description of a DICOM image (group 0028), checked before any pixel is decoded."""

    rows: int
    cols: int
    samples: int
    allocated: int
    stored: int
    photometric: str


def _layout(ds, options: ReadOptions) -> _Layout:
    """Reads and checks Rows, Columns, Samples per Pixel, Bits Allocated/Stored, Pixel Representation,
    Number of Frames and Photometric Interpretation (typed errors naming the attribute)."""
    frames = _int_attribute(ds, "NumberOfFrames", 1)
    if frames < 1:
        raise ImageDecodeError("invalid NumberOfFrames", expected="1 or more", received=str(frames))
    if frames > 1:
        raise UnsupportedImageError(
            "multi-frame DICOM", expected="a single frame", received=f"{frames} frames"
        )
    if "Rows" not in ds or "Columns" not in ds:
        raise ImageDecodeError(
            "DICOM lacks Rows/Columns", expected="image geometry", received="missing attributes"
        )
    rows, cols = _int_attribute(ds, "Rows", 0), _int_attribute(ds, "Columns", 0)
    _check_size(cols, rows, options)
    samples = _int_attribute(ds, "SamplesPerPixel", 1)
    allocated = _int_attribute(ds, "BitsAllocated", 8)
    stored = _int_attribute(ds, "BitsStored", allocated)
    representation = _int_attribute(ds, "PixelRepresentation", 0)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    if photometric not in _SUPPORTED_PHOTOMETRIC:
        raise UnsupportedImageError(
            "unsupported photometric interpretation",
            expected="MONOCHROME1, MONOCHROME2, RGB or YBR",
            received=photometric,
        )
    grey = photometric in ("MONOCHROME1", "MONOCHROME2")
    if samples != (1 if grey else 3):
        raise UnsupportedImageError(
            "SamplesPerPixel does not match the photometric interpretation",
            expected=f"{1 if grey else 3} for {photometric}",
            received=str(samples),
        )
    if allocated not in (1, 8, 16, 32) or not 1 <= stored <= allocated or representation not in (0, 1):
        raise UnsupportedImageError(
            "unsupported pixel encoding",
            expected="BitsAllocated 1/8/16/32, 1 <= BitsStored <= BitsAllocated, PixelRepresentation 0/1",
            received=f"BitsAllocated {allocated}, BitsStored {stored}, PixelRepresentation {representation}",
        )
    return _Layout(rows, cols, samples, allocated, stored, photometric)


def _int_attribute(ds, keyword: str, default: int) -> int:
    value = ds.get(keyword, default)
    if isinstance(value, list | tuple) or (hasattr(value, "__len__") and not isinstance(value, str | bytes)):
        value = value[0] if len(value) else default
    try:
        return default if value in (None, "") else int(value)
    except (TypeError, ValueError) as exc:
        raise ImageDecodeError(f"invalid {keyword}", expected="an integer", received=str(value)[:40]) from exc


def _dicom_image(ds, name: str, options: ReadOptions, pixels=None, full_parse=None, syntax=None):
    """Checks and decodes a parsed DICOM; ``pixels`` is the Pixel Data value when the header was parsed
    alone (``full_parse`` then re-reads the whole file for pydicom's fallback decode); ``syntax`` names
    the file's transfer syntax when ``ds`` was parsed from a rewritten copy (an inflated one)."""
    if pixels is None and not any(
        tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
    ):
        sop = getattr(ds.get("SOPClassUID"), "name", None) or "an object without a SOP Class"
        raise UnsupportedImageError(
            "DICOM object has no pixel data", expected="an image object (CR/DX)", received=str(sop)
        )
    modality = str(ds.get("Modality", "") or "").upper()
    if modality not in PROJECTION_MODALITIES:
        raise UnsupportedImageError(
            "modality is not a projection radiograph", expected="CR, DX, DR or RG", received=modality
        )
    layout = _layout(ds, options)
    photometric = layout.photometric
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        check_attributes(ds)
    arr, reduction, decoder = _stored_pixels(ds, layout, options, pixels, full_parse)
    if arr.ndim != 2 and not (arr.ndim == 3 and photometric not in ("MONOCHROME1", "MONOCHROME2")):
        raise UnsupportedImageError(
            "unexpected pixel array shape", expected="rows x columns", received=str(arr.shape)
        )
    ts = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
    view = ds.get("ViewPosition")
    body = ds.get("BodyPartExamined")
    common = dict(
        source_file=name,
        format="dicom",
        width=int(arr.shape[1]),
        height=int(arr.shape[0]),
        bits_stored=layout.stored,
        photometric=photometric,
        modality=modality or None,
        view_position=str(view) if view else None,
        body_part=str(body) if body else None,
        transfer_syntax=syntax or getattr(ts, "name", None),
        reduction=reduction,
        decoder=decoder,
    )
    declared = (layout.rows, layout.cols)
    if arr.ndim == 3:  # colour DICOM: pydicom already returns RGB
        if options.color == "reject":
            raise UnsupportedImageError(
                "colour DICOM", expected="a greyscale radiograph", received=photometric
            )
        full_scale = float(np.iinfo(arr.dtype).max) if np.issubdtype(arr.dtype, np.integer) else 1.0
        rgb = np.ascontiguousarray(arr[..., :3], dtype=np.float32) / full_scale
        image = np.clip(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 0.0, 1.0)
        return image, ImageInfo(**common, intensity="scaled", converted_from="RGB"), declared

    # pydicom >= 3 already keeps only Bits Stored (sign-extending signed data); a test pins this.
    inverted = photometric == "MONOCHROME1"
    if options.decoder == "pydicom":
        image, intensity = to_unit(arr, ds)
        image = (1.0 - image) if inverted else image
        info = ImageInfo(**common, intensity=intensity, inverted=inverted)
        return image.astype(np.float32), info, declared
    image, intensity = to_unit_by_table(arr, ds, inverted)
    return image, ImageInfo(**common, intensity=intensity, inverted=inverted), declared


def _stored_pixels(ds, layout: _Layout, options: ReadOptions, pixels=None, full_parse=None):
    """Stored values (fast codec path, else pydicom), reduced when the options allow it."""
    grey = layout.photometric in ("MONOCHROME1", "MONOCHROME2")
    reduction = choose_reduction(layout.rows, layout.cols, options.min_side) if grey else 1
    checked = False
    if options.decoder == "fast" and grey:
        try:
            fast = decode_stored(ds, reduction, options.threads, pixel_data=pixels, kinds=options.reductions)
        except CxrEdgeError:
            raise
        except Exception:  # a codec refused the data: pydicom decides (its frame was checked)
            log.debug("fast decode failed; trying pydicom", exc_info=True)
            fast, checked = None, True
        if fast is not None:
            return fast.values, fast.reduction, fast.decoder
    if not checked:  # what the fast path checks before decoding, for pydicom's decoders too
        check_pixel_data(ds, pixels)
    if pixels is not None and full_parse is not None:
        ds = full_parse()  # the header-only parse has no Pixel Data element for pydicom
    try:
        arr = ds.pixel_array
    except Exception as exc:  # decoders that refuse the data, or none for this syntax
        log.debug("pydicom could not decode the pixel data", exc_info=True)
        ts = transfer_syntax(ds)
        name = getattr(ds.file_meta.get("TransferSyntaxUID"), "name", ts) if ts else "an unknown syntax"
        raise ImageDecodeError(
            "DICOM pixel data cannot be decoded",
            expected=f"decodable pixel data in {name}",
            received=f"data its decoders refuse ({type(exc).__name__})",
        ) from exc
    if reduction > 1 and arr.ndim == 2 and "area" in options.reductions:
        return area_reduce(arr, reduction), reduction, f"pydicom+area/{reduction}"
    return arr, 1, "pydicom"


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
