"""What reading an image is told (:class:`ReadOptions`: limits, colour policy, reduced decoding) and what
it tells back (:class:`ImageInfo`: how the pixels were obtained, never who the patient is)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Literal

from cxr_edge.errors import ImageDecodeError, ImageTooLargeError, SpecError
from cxr_edge.imaging.pixels import KINDS


@dataclass(frozen=True)
class ReadOptions:
    """How strict the reader is.

    Attributes:
        max_pixels: Decompression-bomb guard; images whose declared width x height exceeds it are
            refused before any pixel is decoded, whether the header (PNG IHDR, DICOM Rows x Columns)
            or the codestream (JPEG SOF, JPEG-LS SOF55, JPEG 2000 / HTJ2K SIZ) declares it. 36 MP
            (6000 x 6000) is twice the largest chest detector (~18 MP, 43 x 43 cm at 100 um).
        max_bytes: Files larger than this are refused before being read. 128 MiB holds a 36 MP
            image of 16-bit samples uncompressed (72 MB) with room to spare.
        max_inflated_bytes: Most bytes a deflated DICOM dataset may inflate to (also bounded by
            what its header says its pixels need, plus 1 MiB; :mod:`cxr_edge.imaging.deflate`).
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
        decode_timeout_s: When set, each input is decoded in a worker process
            (:mod:`cxr_edge.imaging.isolated`) that is killed when the decode takes longer: a
            pathological input is refused (:class:`~cxr_edge.errors.DecodeLimitError`) and a codec's
            crash or memory blow-up costs the worker, not the caller. None decodes in this process
            (no deadline). Default: ``CXR_EDGE_DECODE_TIMEOUT`` (seconds) when set, else None; the
            DICOM node sets it from its ``[limits]``.
        decode_memory_mb: Address-space ceiling of that worker (``RLIMIT_AS``); a decode that needs
            more fails with ``DecodeLimitError``. Unused without ``decode_timeout_s``.
    """

    max_pixels: int = 36_000_000
    max_bytes: int = 128 << 20
    max_inflated_bytes: int = 128 << 20
    color: Literal["convert", "reject"] = "convert"
    min_side: int | None = None
    decoder: Literal["fast", "pydicom"] = "fast"
    threads: int = 1
    reductions: tuple[str, ...] = KINDS
    decode_timeout_s: float | None = field(default_factory=lambda: _env_seconds(TIMEOUT_ENV))
    decode_memory_mb: int = 2048

    def __post_init__(self) -> None:
        if min(self.max_pixels, self.max_bytes, self.max_inflated_bytes, self.decode_memory_mb) < 1 or (
            self.decode_timeout_s is not None and not self.decode_timeout_s > 0
        ):
            raise SpecError(
                "invalid read limits",
                expected="positive max_pixels, max_bytes, max_inflated_bytes, decode_memory_mb and "
                "decode_timeout_s (or None)",
                received=f"{self.max_pixels}, {self.max_bytes}, {self.max_inflated_bytes}, "
                f"{self.decode_memory_mb}, {self.decode_timeout_s}",
            )


#: Seconds of the decode deadline for every reader that does not set one (``predict``, ``batch``...).
TIMEOUT_ENV = "CXR_EDGE_DECODE_TIMEOUT"


def _env_seconds(name: str) -> float | None:
    """A positive number of seconds from the environment; unset, empty or 0: None."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise SpecError(
            f"invalid {name}", expected="seconds (a number; 0: no deadline)", received=text
        ) from exc
    if value != value or value < 0:
        raise SpecError(f"invalid {name}", expected="seconds >= 0", received=text)
    return value or None


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
