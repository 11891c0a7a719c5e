"""Input checks before classification: what the model must not judge, and when it must not guess.

A classifier trained on frontal chest radiographs returns a confident-looking probability for any
picture it is given. :func:`check` refuses, with a reason, the inputs it was never meant to see:

* **header checks** (DICOM only, cheap, reliable): Modality not a projection radiograph (CR, DX, DR,
  RG by default), Body Part Examined present and not a chest term, View Position present and not
  frontal (PA/AP; lateral LL/RL/LATERAL and everything else is refused), colour images;
* **pixel checks** (every format): too small (shorter side below ``min_side``), blank or nearly
  constant (standard deviation below ``min_std``), and **no frontal chest pattern**.

The frontal-pattern heuristic. On a frontal chest film the mean brightness of the columns across the
lung band (rows 20-70 % of the height, after an 8 % border crop, on a 128 x 128 thumbnail) has a
bright peak in the middle (spine and mediastinum) with darker lung fields on *both* sides. The score is
``max over axes within +-8 % of the centre of min(centre - left flank, centre - right flank)`` on the
z-scored profile (centre: +-5 % of the width; flanks: 10-30 % of the width away from the axis). A
lateral view has one lung field with the spine at one side, so one flank is bright; an inverted image
has a dark centre; a non-chest picture has no such pattern. Images scoring below ``min_frontal_score``
are refused. Measured on the data kit (``python -m cxr_edge.benchmarks.quality``; see docs/serve.md): the
threshold keeps the false-rejection rate of frontal kit images around 1 %; its detection rate on real
lateral films is unmeasured (the kit holds none).

The referral band (:class:`ReferralBand`, :func:`referral_reason`) turns a low-confidence calibrated
prediction into "refer to a radiologist" instead of a guess. (Bundle manifests, metrics.json, model
cards and audit records store it under the key ``abstain``, the format's name since format 3.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from cxr_edge.errors import SpecError
from cxr_edge.imaging.reader import ImageInfo

_THUMB = 128
_BORDER = 0.08
_BAND = (0.20, 0.70)
_AXIS_RANGE = 0.08
_CENTRE_HALF = 0.05
_FLANK = (0.10, 0.30)


@dataclass(frozen=True)
class QualityConfig:
    """Which inputs are refused before classification.

    Attributes:
        modalities: DICOM Modality values accepted (an absent Modality, as in PNG/JPEG, passes).
        body_parts: Body Part Examined values accepted when the attribute is present (upper case).
        frontal_views: View Position values accepted when present; anything else (LL, RL, LATERAL,
            oblique...) is refused as not frontal.
        min_side: Smallest accepted shorter side in pixels: the default models' input side (128); below
            it, pixels are invented. The kit holds 224-px paediatric re-saves (Kermany) that 256 refused.
        min_std: Smallest accepted standard deviation of intensities in [0, 1] (blank images).
        min_frontal_score: Threshold of the frontal-pattern heuristic; ``-inf`` switches it off.
        allow_colour: Accept colour images converted to grey (screenshots, photographs) instead of
            refusing them.
    """

    modalities: tuple[str, ...] = ("CR", "DX", "DR", "RG")
    body_parts: tuple[str, ...] = ("CHEST", "THORAX", "LUNG", "TORSO")
    frontal_views: tuple[str, ...] = ("PA", "AP")
    min_side: int = 128
    min_std: float = 0.02
    min_frontal_score: float = 0.0
    allow_colour: bool = False

    def __post_init__(self) -> None:
        if self.min_side < 1:
            raise SpecError(
                "invalid quality.min_side", expected="a positive integer", received=str(self.min_side)
            )
        if not 0.0 <= self.min_std < 0.5:
            raise SpecError(
                "invalid quality.min_std", expected="0 <= min_std < 0.5", received=str(self.min_std)
            )
        for name in ("modalities", "body_parts", "frontal_views"):
            values = getattr(self, name)
            object.__setattr__(self, name, tuple(str(v).strip().upper() for v in values))


@dataclass(frozen=True)
class ReferralBand:
    """The referral band: when a calibrated prediction is too uncertain to report (refer it instead).

    Attributes:
        min_top_prob: Refer when the highest calibrated probability is below this (0 disables).
        min_margin: Refer when the highest minus the second-highest probability is below this.
    """

    min_top_prob: float = 0.6
    min_margin: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_top_prob <= 1.0 or not 0.0 <= self.min_margin <= 1.0:
            raise SpecError(
                "invalid referral band",
                expected="min_top_prob and min_margin in [0, 1]",
                received=f"{self.min_top_prob}, {self.min_margin}",
            )


@dataclass(frozen=True)
class Rejection:
    """Why an input was refused.

    Attributes:
        check: Short name of the failed check (``modality``, ``body_part``, ``view``, ``colour``,
            ``resolution``, ``blank``, ``frontal_pattern``).
        reason: One sentence for people (no patient identifiers).
    """

    check: str
    reason: str


def check_header(info: ImageInfo, config: QualityConfig) -> Rejection | None:
    """Checks the DICOM header facts in ``info`` (never the pixels); returns the first failure or None."""
    modality = (info.modality or "").upper()
    if info.format == "dicom" and modality not in config.modalities:
        return Rejection(
            "modality",
            f"modality {modality or '(absent)'} is not a projection radiograph "
            f"(accepted: {', '.join(config.modalities)})",
        )
    body = (info.body_part or "").strip().upper()
    if body and body not in config.body_parts:
        return Rejection(
            "body_part",
            f"body part examined is {body}, not a chest (accepted: {', '.join(config.body_parts)})",
        )
    view = (info.view_position or "").strip().upper()
    if view and view not in config.frontal_views:
        return Rejection(
            "view", f"view position {view} is not frontal (accepted: {', '.join(config.frontal_views)})"
        )
    if info.converted_from and not config.allow_colour:
        return Rejection("colour", f"{info.converted_from} colour image, not a greyscale radiograph")
    return None


def check_pixels(image: np.ndarray, config: QualityConfig) -> Rejection | None:
    """Checks the decoded image (2-D float in [0, 1]); returns the first failure or None."""
    short = int(min(image.shape[:2]))
    if short < config.min_side:
        return Rejection(
            "resolution",
            f"image is {image.shape[1]}x{image.shape[0]} pixels; shorter side below {config.min_side}",
        )
    thumb = _thumbnail(image)
    std = float(thumb.std())
    if std < config.min_std:
        return Rejection("blank", f"nearly constant image (standard deviation {std:.4f} < {config.min_std})")
    if np.isfinite(config.min_frontal_score):
        score = frontal_score(image)
        if score < config.min_frontal_score:
            return Rejection(
                "frontal_pattern",
                f"no frontal chest pattern (score {score:.2f} < {config.min_frontal_score}): "
                "lateral view, inverted or not a chest radiograph?",
            )
    return None


def check(image: np.ndarray, info: ImageInfo, config: QualityConfig) -> Rejection | None:
    """Header checks, then pixel checks; the first failure or None when the image may be classified."""
    return check_header(info, config) or check_pixels(image, config)


def frontal_score(image: np.ndarray) -> float:
    """The frontal-pattern score of an image (see the module docstring); higher is more frontal-like.

    Returns:
        A z-score difference, typically 1-2.5 for frontal chest films and below 0 for images without a
        bright centre between two darker sides.
    """
    profile = column_profile(image)
    n = len(profile)
    std = float(profile.std())
    if std < 1e-6:
        return float("-inf")
    p = (profile - profile.mean()) / std
    half = max(2, int(_CENTRE_HALF * n))
    near, far = int(_FLANK[0] * n), int(_FLANK[1] * n)
    best = float("-inf")
    for axis in range(int((0.5 - _AXIS_RANGE) * n), int((0.5 + _AXIS_RANGE) * n) + 1):
        centre = p[axis - half : axis + half + 1].mean()
        left = p[max(0, axis - far) : axis - near].mean()
        right = p[axis + near : axis + far].mean()
        best = max(best, float(min(centre - left, centre - right)))
    return best


def column_profile(image: np.ndarray) -> np.ndarray:
    """Mean brightness per column over the lung band of the border-cropped thumbnail (smoothed)."""
    thumb = _thumbnail(image)
    b = round(_BORDER * _THUMB)
    inner = thumb[b:-b, b:-b]
    h = inner.shape[0]
    band = inner[int(_BAND[0] * h) : int(_BAND[1] * h)]
    return np.convolve(band.mean(axis=0), np.ones(5) / 5.0, mode="same")


def referral_reason(probs: Mapping[str, float], band: ReferralBand) -> str | None:
    """Why a calibrated prediction should be referred instead of reported; None when it may be reported.

    Args:
        probs: Calibrated probability per label.
        band: The referral band.
    """
    ranked = sorted(probs.values(), reverse=True)
    top = ranked[0]
    second = ranked[1] if len(ranked) > 1 else 0.0
    if top < band.min_top_prob:
        return f"top probability {top:.2f} below {band.min_top_prob:.2f}"
    if top - second < band.min_margin:
        return f"margin {top - second:.2f} between the two most likely labels below {band.min_margin:.2f}"
    return None


def _thumbnail(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise SpecError("quality checks need a 2-D image", expected="rows x columns", received=str(img.shape))
    return cv2.resize(img, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA)
