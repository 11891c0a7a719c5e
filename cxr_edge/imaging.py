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
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from cxr_edge.dicom_pixels import (
    BIG_ENDIAN,
    DEFLATED,
    IMPLICIT_LE,
    KINDS,
    area_reduce,
    choose_reduction,
    decode_stored,
    inflate_part10,
    transfer_syntax,
)
from cxr_edge.errors import (
    CxrEdgeError,
    ImageDecodeError,
    ImageTooLargeError,
    InputError,
    UnsupportedImageError,
)

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
        decoder: ``"fast"`` (:mod:`cxr_edge.dicom_pixels`, pydicom where it does not apply) or
            ``"pydicom"`` (``pixel_array`` and float64 LUTs: the first release's path, kept for
            comparison and as the reference).
        threads: Threads a DICOM codec may use (OpenJPEG); ``cxr-edge --threads`` sets it.
        reductions: How a reduced decode may be made (:data:`cxr_edge.dicom_pixels.KINDS`: ``area``,
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
        return _decode_raster(data, name, "png", _png_header(data), options)
    if kind == "jpeg":
        return _decode_raster(data, name, "jpeg", _jpeg_header(data), options)
    if kind == "dicom":
        return _decode_dicom(data, name, options)
    raise InputError("not an image", expected="PNG, JPEG or DICOM data", received=_describe_unknown(data))


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


def _jpeg_header(data: bytes) -> tuple[int, int, int]:
    """Returns (width, height, precision) from the first SOF marker without decoding pixels."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        seg_len = struct.unpack(">H", data[i + 2 : i + 4])[0]
        is_sof = 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)
        if is_sof and i + 9 <= n:
            precision = data[i + 4]
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height, precision
        i += 2 + seg_len
    raise ImageDecodeError("truncated or corrupt JPEG", expected="a SOF marker", received="none found")


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
        image, intensity, bits = _minmax(arr.astype(np.float32)), "minmax", 16
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
    return image, info


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


def _minmax(values: np.ndarray) -> np.ndarray:
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


# --------------------------------------------------------------------------------------------- DICOM


def _decode_dicom(data: bytes, name: str, options: ReadOptions):
    import pydicom  # deferred: keeps `import cxr_edge` fast for PNG-only users

    force = data[128:132] != b"DICM"
    # A deflated dataset is inflated by any pydicom parse, header-only too: the fast path inflates it
    # once itself (libdeflate) into a plain file; otherwise pydicom parses it once, in full.
    deflated = DEFLATED.encode() in data[:2048]
    if deflated and options.decoder == "fast":
        plain = inflate_part10(data)
        if plain is not None:
            data, deflated = plain, False

    def full_parse():
        return pydicom.dcmread(io.BytesIO(data), force=force)

    try:
        pixels = None
        if options.decoder == "fast" and not deflated:
            # Parse the header only and take the pixel data as a view of `data`: pydicom would copy
            # the 5-10 MB value, and the fast codecs read the view directly.
            stream = io.BytesIO(data)
            ds = pydicom.dcmread(stream, force=force, stop_before_pixels=True)
            pixels = _pixel_data_view(data, stream.tell(), ds)
        if pixels is None:  # deflated, big-endian, float pixels, unusual layouts: pydicom reads it all
            ds = full_parse()
        return _dicom_image(ds, name, options, pixels, full_parse)
    except CxrEdgeError:
        raise
    except Exception as exc:
        # pydicom parses elements lazily, so a corrupt file can fail with almost any exception type
        # (NotImplementedError for an unknown VR, struct.error, KeyError...) at any later access.
        raise ImageDecodeError(
            "unreadable DICOM",
            expected="a valid DICOM file",
            received=f"{type(exc).__name__}: {str(exc)[:120]}",
        ) from exc


def _pixel_data_view(data: bytes, pos: int, ds) -> memoryview | None:
    """The Pixel Data value at ``pos`` (where a header-only parse stopped), or None if not plainly there."""
    ts = transfer_syntax(ds)  # deflated files never get here (parsed whole, see _decode_dicom)
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
    if start + length > len(data):
        return None  # short pixel data: pydicom's full parse reports it
    return memoryview(data)[start : start + length]


def _dicom_image(ds, name: str, options: ReadOptions, pixels=None, full_parse=None):
    """Checks and decodes a parsed DICOM; ``pixels`` is the Pixel Data value when the header was parsed
    alone (``full_parse`` then re-reads the whole file for pydicom's fallback decode)."""
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
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise UnsupportedImageError(
            "multi-frame DICOM", expected="a single frame", received=f"{frames} frames"
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageDecodeError(
            "DICOM lacks Rows/Columns", expected="image geometry", received="missing attributes"
        ) from exc
    _check_size(cols, rows, options)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in _SUPPORTED_PHOTOMETRIC:
        raise UnsupportedImageError(
            "unsupported photometric interpretation",
            expected="MONOCHROME1, MONOCHROME2, RGB or YBR",
            received=photometric,
        )
    arr, reduction, decoder = _stored_pixels(ds, rows, cols, photometric, options, pixels, full_parse)
    if arr.ndim != 2 and not (arr.ndim == 3 and photometric not in ("MONOCHROME1", "MONOCHROME2")):
        raise UnsupportedImageError(
            "unexpected pixel array shape", expected="rows x columns", received=str(arr.shape)
        )
    ts = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    view = ds.get("ViewPosition")
    body = ds.get("BodyPartExamined")
    common = dict(
        source_file=name,
        format="dicom",
        width=int(arr.shape[1]),
        height=int(arr.shape[0]),
        bits_stored=bits_stored,
        photometric=photometric,
        modality=modality or None,
        view_position=str(view) if view else None,
        body_part=str(body) if body else None,
        transfer_syntax=getattr(ts, "name", None),
        reduction=reduction,
        decoder=decoder,
    )
    if arr.ndim == 3:  # colour DICOM: pydicom already returns RGB
        if options.color == "reject":
            raise UnsupportedImageError(
                "colour DICOM", expected="a greyscale radiograph", received=photometric
            )
        full_scale = float(np.iinfo(arr.dtype).max) if np.issubdtype(arr.dtype, np.integer) else 1.0
        rgb = np.ascontiguousarray(arr[..., :3], dtype=np.float32) / full_scale
        image = np.clip(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 0.0, 1.0)
        return image, ImageInfo(**common, intensity="scaled", converted_from="RGB")

    # pydicom >= 3 already keeps only Bits Stored (sign-extending signed data); a test pins this.
    inverted = photometric == "MONOCHROME1"
    if options.decoder == "pydicom":
        image, intensity = _dicom_to_unit(arr, ds)
        image = (1.0 - image) if inverted else image
        return image.astype(np.float32), ImageInfo(**common, intensity=intensity, inverted=inverted)
    image, intensity = _unit_by_table(arr, ds, inverted)
    return image, ImageInfo(**common, intensity=intensity, inverted=inverted)


def _stored_pixels(ds, rows, cols, photometric, options: ReadOptions, pixels=None, full_parse=None):
    """Stored values (fast codec path, else pydicom), reduced when the options allow it."""
    grey = photometric in ("MONOCHROME1", "MONOCHROME2")
    reduction = choose_reduction(rows, cols, options.min_side) if grey else 1
    if options.decoder == "fast" and grey:
        try:
            fast = decode_stored(ds, reduction, options.threads, pixel_data=pixels, kinds=options.reductions)
        except CxrEdgeError:
            raise
        except Exception:  # a codec refused the data: pydicom decides, and its message is reported
            fast = None
        if fast is not None:
            return fast.values, fast.reduction, fast.decoder
    if pixels is not None and full_parse is not None:
        ds = full_parse()  # the header-only parse has no Pixel Data element for pydicom
    try:
        arr = ds.pixel_array
    except Exception as exc:  # bad/absent decoders and short data; named apart from other corruption
        raise ImageDecodeError(
            "DICOM pixel data cannot be decoded",
            expected="complete, decodable pixel data",
            received=f"{type(exc).__name__}: {str(exc)[:160]}",
        ) from exc
    if reduction > 1 and arr.ndim == 2 and "area" in options.reductions:
        return area_reduce(arr, reduction), reduction, f"pydicom+area/{reduction}"
    return arr, 1, "pydicom"


def _unit_by_table(values: np.ndarray, ds, inverted: bool) -> tuple[np.ndarray, str]:
    """Modality LUT, VOI and MONOCHROME1 inversion as one lookup table over the stored values present.

    The table is computed with exactly the float64 steps of :func:`_dicom_to_unit` (so every value
    equals the first release's), once per distinct stored value instead of once per pixel, then
    applied in one gather to float32. Values wider than 16 bits, and the rare minmax image with a
    Modality LUT Sequence, take the per-pixel path.
    """
    if (
        values.dtype.kind not in "ui"
        or values.dtype.itemsize > 2
        or ("ModalityLUTSequence" in ds and not _has_voi(ds))
    ):
        image, intensity = _dicom_to_unit(values, ds)
        return ((1.0 - image) if inverted else image).astype(np.float32), intensity
    lo, hi = (int(v) for v in cv2.minMaxLoc(values)[:2])
    entries = np.arange(lo, hi + 1, dtype=np.int64)
    table, intensity = _dicom_to_unit(entries, ds)
    table = ((1.0 - table) if inverted else table).astype(np.float32)
    # Index by the unsigned view, so signed data needs no offset pass over the image.
    unsigned = np.dtype(f"u{values.dtype.itemsize}")
    full = np.zeros(1 << (8 * values.dtype.itemsize), dtype=np.float32)
    full[entries.astype(unsigned)] = table
    return full[values.view(unsigned)], intensity


def _has_voi(ds) -> bool:
    """Whether a VOI LUT or window decides the mapping (the minmax fallback then does not apply)."""
    if ds.get("VOILUTSequence"):
        return True
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    return center is not None and width is not None and width > 0


def _dicom_to_unit(values: np.ndarray, ds) -> tuple[np.ndarray, str]:
    """Modality LUT then VOI (LUT sequence, window, or min-max), mapped to [0, 1]."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(values, ds).astype(np.float64)
    voi_seq = ds.get("VOILUTSequence")
    if voi_seq:
        # LUT inputs are integers by definition; rounding avoids pydicom's float-input caveat.
        out = apply_voi_lut(np.round(values).astype(np.int64), ds, index=0, prefer_lut=True).astype(
            np.float64
        )
        # The LUT's own output range maps to [0, 1]: run every LUT entry through pydicom (which knows
        # how LUT Data is packed) instead of trusting the descriptor's nominal bit depth.
        n_entries, first, _ = (int(v) for v in voi_seq[0].LUTDescriptor)
        entries = first + np.arange(n_entries or 65536, dtype=np.int64)
        lut = apply_voi_lut(entries, ds, index=0, prefer_lut=True).astype(np.float64)
        lo, hi = float(lut.min()), float(lut.max())
        if hi <= lo:
            return np.zeros_like(out, dtype=np.float32), "voi_lut"
        return np.clip((out - lo) / (hi - lo), 0.0, 1.0), "voi_lut"
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        return window(values, center, width, function), "window"
    return _minmax(values), "minmax"


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Applies a DICOM VOI window (PS3.3 C.11.2.1.2), returning values in [0, 1].

    Args:
        values: Modality values (after Rescale Slope/Intercept).
        center: Window Center.
        width: Window Width (> 0; >= 1 for LINEAR).
        function: ``LINEAR``, ``LINEAR_EXACT`` or ``SIGMOID``.
    """
    values = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width < 1:
        raise UnsupportedImageError(
            "invalid window", expected="Window Width >= 1 for LINEAR", received=str(width)
        )
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _first(value) -> float | None:
    """First value of a possibly multi-valued DICOM number, or None when absent or malformed."""
    if value is not None and not isinstance(value, str | bytes) and hasattr(value, "__len__"):
        value = value[0] if len(value) else None
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


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
