"""DICOM objects to images: header checks, the pixel description, pixel decoding and intensity mapping.

The file is parsed once without its pixel data (which is taken as a view of the file's bytes), the
group-0028 pixel description is checked (:func:`_layout`), the stored values decode through the fast
codecs of :mod:`cxr_edge.imaging.pixels` (pydicom where they do not apply), and
:mod:`cxr_edge.imaging.intensity` maps them to [0, 1]. A deflated dataset is inflated first, within the
bounds its header sets. Internal exception texts go to the debug log, never into error messages.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from cxr_edge.errors import CxrEdgeError, ImageDecodeError, UnsupportedImageError, one_line
from cxr_edge.imaging.image import ImageInfo, ReadOptions, check_size
from cxr_edge.imaging.intensity import check_attributes, to_unit, to_unit_by_table
from cxr_edge.imaging.pixels import (
    BIG_ENDIAN,
    DEFLATED,
    IMPLICIT_LE,
    area_reduce,
    check_pixel_data,
    choose_reduction,
    decode_stored,
    inflate_part10,
    transfer_syntax,
)
from cxr_edge.imaging.syntaxes import syntax_name

log = logging.getLogger(__name__)

#: Modalities a projection chest radiograph can carry. OT (other) covers secondary captures of
#: radiographs; an empty modality is accepted because many exported files omit it.
PROJECTION_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT", ""})

# Palette colour would need its LUT applied first; no radiograph uses it, so it is refused.
_SUPPORTED_PHOTOMETRIC = frozenset(
    {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"}
)


def decode_dicom(data: bytes, name: str, options: ReadOptions):
    import pydicom  # deferred: keeps `import cxr_edge` fast for PNG-only users

    force = data[128:132] != b"DICM"
    # A deflated dataset is inflated once, here, within the bounds its header sets (a deflate bomb
    # holds 1 GB in 1 MB); pydicom would inflate it in full, with any parse.
    syntax = None  # the file's own syntax, when the data parsed below is a rewritten copy
    if DEFLATED.encode() in data[:2048]:
        plain = inflate_part10(data, options.max_inflated_bytes, options.max_pixels)
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
    check_size(cols, rows, options)
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
        transfer_syntax=syntax or (syntax_name(ts) if ts else None),
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
        name = syntax_name(ds.file_meta.get("TransferSyntaxUID")) if ts else "an unknown syntax"
        raise ImageDecodeError(
            "DICOM pixel data cannot be decoded",
            expected=f"decodable pixel data in {name}",
            received=f"data its decoders refuse ({type(exc).__name__})",
        ) from exc
    if reduction > 1 and arr.ndim == 2 and "area" in options.reductions:
        return area_reduce(arr, reduction), reduction, f"pydicom+area/{reduction}"
    return arr, 1, "pydicom"
