"""What reading an image is told (:class:`ReadOptions`: limits, colour policy, reduced decoding) and what
it tells back (:class:`ImageInfo`: how the pixels were obtained, never who the patient is)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from cxr_edge.errors import ImageDecodeError, ImageTooLargeError
from cxr_edge.imaging.pixels import KINDS


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


def check_size(width: int, height: int, options: ReadOptions) -> None:
    """Refuses a declared size of no pixels or above ``options.max_pixels`` (before anything is decoded)."""
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
