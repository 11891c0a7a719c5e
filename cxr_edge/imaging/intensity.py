"""DICOM stored values to intensities in [0, 1]: Modality LUT, VOI (LUT, window or min-max), MONOCHROME1.

The steps (PS3.3 C.11): stored value -> Modality LUT (Rescale Slope/Intercept, or a Modality LUT
Sequence) -> VOI LUT Sequence, else Window Center/Width (LINEAR, LINEAR_EXACT or SIGMOID), else min-max
over the image -> MONOCHROME1 inverted last, so that bone is always bright.

The attributes are checked before they are used (:func:`check_attributes`): a NaN or infinite Rescale
Slope, Intercept or window, a zero slope, or a VOI LUT whose descriptor and data disagree is refused
with a typed error naming the attribute, instead of mapping every pixel to NaN or to one value. (A
window width of 0 or below is not an error: as before, such a window is ignored and min-max applies.)
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from cxr_edge.errors import UnsupportedImageError

log = logging.getLogger("cxr_edge.imaging.reader")


def check_attributes(ds) -> None:
    """Checks the attributes that map stored values to intensities.

    Raises:
        UnsupportedImageError: Rescale Slope or Intercept not a finite number (or a zero slope), Window
            Center or Width not finite, or a VOI / Modality LUT Sequence item without a 3-value LUT
            Descriptor and LUT Data.
    """
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if keyword not in ds or ds[keyword].value in (None, ""):
            continue
        value = first_number(ds[keyword].value)
        if value is None or not math.isfinite(value) or (keyword == "RescaleSlope" and value == 0.0):
            raise UnsupportedImageError(
                f"invalid {keyword}",
                expected="a finite number" + (", not 0" if keyword == "RescaleSlope" else ""),
                received=_shown(ds[keyword].value),
            )
    for keyword in ("VOILUTSequence", "ModalityLUTSequence"):
        items = ds.get(keyword)
        if not items:
            continue
        item = items[0]
        descriptor = item.get("LUTDescriptor")
        if descriptor is None or len(descriptor) != 3 or "LUTData" not in item:
            raise UnsupportedImageError(
                f"invalid {keyword}",
                expected="an item with a 3-value LUT Descriptor and LUT Data",
                received="LUT Descriptor "
                + ("missing" if descriptor is None else _shown(descriptor))
                + ("" if "LUTData" in item else ", no LUT Data"),
            )


def to_unit_by_table(values: np.ndarray, ds, inverted: bool) -> tuple[np.ndarray, str]:
    """Modality LUT, VOI and MONOCHROME1 inversion as one lookup table over the stored values present.

    The table is computed with exactly the float64 steps of :func:`to_unit` (so every value equals the
    first release's), once per distinct stored value instead of once per pixel, then applied in one
    gather to float32. Values wider than 16 bits, and the rare minmax image with a Modality LUT
    Sequence, take the per-pixel path.
    """
    if (
        values.dtype.kind not in "ui"
        or values.dtype.itemsize > 2
        or ("ModalityLUTSequence" in ds and not has_voi(ds))
    ):
        image, intensity = to_unit(values, ds)
        return ((1.0 - image) if inverted else image).astype(np.float32), intensity
    lo, hi = (int(v) for v in cv2.minMaxLoc(values)[:2])
    entries = np.arange(lo, hi + 1, dtype=np.int64)
    table, intensity = to_unit(entries, ds)
    table = ((1.0 - table) if inverted else table).astype(np.float32)
    # Index by the unsigned view, so signed data needs no offset pass over the image.
    unsigned = np.dtype(f"u{values.dtype.itemsize}")
    full = np.zeros(1 << (8 * values.dtype.itemsize), dtype=np.float32)
    full[entries.astype(unsigned)] = table
    return full[values.view(unsigned)], intensity


def has_voi(ds) -> bool:
    """Whether a VOI LUT or window decides the mapping (the minmax fallback then does not apply)."""
    if ds.get("VOILUTSequence"):
        return True
    center, width = first_number(ds.get("WindowCenter")), first_number(ds.get("WindowWidth"))
    return center is not None and width is not None and width > 0


def to_unit(values: np.ndarray, ds) -> tuple[np.ndarray, str]:
    """Modality LUT then VOI (LUT sequence, window, or min-max), mapped to [0, 1].

    Raises:
        UnsupportedImageError: A LUT pydicom cannot apply (descriptor and data disagree).
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        values = apply_modality_lut(values, ds).astype(np.float64)
    except Exception as exc:
        raise _lut_error("ModalityLUTSequence", exc) from exc
    if not np.isfinite(values).all():  # e.g. a Rescale Slope of 1e308: finite, but its products are not
        slope, intercept = _shown(ds.get("RescaleSlope", 1)), _shown(ds.get("RescaleIntercept", 0))
        raise UnsupportedImageError(
            "the Modality LUT gives values beyond floating point",
            expected="Rescale Slope and Intercept that keep stored values finite",
            received=f"slope {slope}, intercept {intercept}",
        )
    voi_seq = ds.get("VOILUTSequence")
    if voi_seq:
        try:
            # LUT inputs are integers by definition; rounding avoids pydicom's float-input caveat.
            out = apply_voi_lut(np.round(values).astype(np.int64), ds, index=0, prefer_lut=True).astype(
                np.float64
            )
            # The LUT's own output range maps to [0, 1]: run every LUT entry through pydicom (which
            # knows how LUT Data is packed) instead of trusting the descriptor's nominal bit depth.
            n_entries, first, _ = (int(v) for v in voi_seq[0].LUTDescriptor)
            entries = first + np.arange(n_entries or 65536, dtype=np.int64)
            lut = apply_voi_lut(entries, ds, index=0, prefer_lut=True).astype(np.float64)
        except Exception as exc:
            raise _lut_error("VOILUTSequence", exc) from exc
        lo, hi = float(lut.min()), float(lut.max())
        if hi <= lo:
            return np.zeros_like(out, dtype=np.float32), "voi_lut"
        return np.clip((out - lo) / (hi - lo), 0.0, 1.0), "voi_lut"
    center, width = first_number(ds.get("WindowCenter")), first_number(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        return window(values, center, width, function), "window"
    return minmax(values), "minmax"


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


def minmax(values: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] over their own range (all zeros for a constant array)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


def first_number(value) -> float | None:
    """First value of a possibly multi-valued DICOM number, or None when absent or malformed."""
    if value is not None and not isinstance(value, str | bytes) and hasattr(value, "__len__"):
        value = value[0] if len(value) else None
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _shown(value) -> str:
    """An attribute value for an error message (numbers only reach here: no identifiers)."""
    return str(value)[:60]


def _lut_error(keyword: str, exc: Exception) -> UnsupportedImageError:
    log.debug("%s could not be applied", keyword, exc_info=exc)
    return UnsupportedImageError(
        f"invalid {keyword}",
        expected="a LUT Descriptor and LUT Data that agree",
        received=f"a LUT pydicom cannot apply ({type(exc).__name__})",
    )
