"""Lung mask -> cleaned mask -> crop box, with a quality gate and a documented fallback.

Steps (numpy/opencv only, identical in every runtime):

1. threshold the segmenter's lung probability at ``threshold``;
2. keep the two largest connected components (the two lungs; the kit's masks include the heart, so
   often they are one component) and fill holes;
3. bounding box of what is kept, widened by ``margin`` of its width/height on each side, scaled to
   the source image's pixels.

**Quality gate**: the mask is implausible when nothing is found, when the kept area is outside
``[min_area, max_area]`` of the image, when the mask is fragmented into more than
``max_components`` significant pieces, or when the box's width/height ratio is outside
``[min_aspect, max_aspect]``. Then the crop falls back to the default crop -- ``fallback_border`` of
each side removed, the same border crop the classifiers without segmentation use -- and the
prediction says ``crop=fallback`` with the reason. It never fails silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxr_edge.config import from_dict, to_dict
from cxr_edge.errors import SpecError
from cxr_edge.ops.preprocess import CropBox

_SIGNIFICANT = 0.01  # components below 1% of the image are speckle, not lung


@dataclass(frozen=True)
class CropSpec:
    """Crop parameters, stored in the bundle with the segmenter.

    Attributes:
        threshold: Lung probability threshold.
        margin: Fraction of the box's width/height added on each side.
        min_area: Smallest plausible kept-mask area (fraction of the image).
        max_area: Largest plausible kept-mask area.
        max_components: Most significant (>= 1% of the image) components a plausible mask has.
        min_aspect: Smallest plausible box width/height.
        max_aspect: Largest plausible box width/height.
        fallback_border: Border removed on each side by the fallback crop.
    """

    threshold: float = 0.5
    margin: float = 0.05
    min_area: float = 0.08
    max_area: float = 0.8
    max_components: int = 4
    min_aspect: float = 0.6
    max_aspect: float = 2.2
    fallback_border: float = 0.08

    def __post_init__(self) -> None:
        if not (0 < self.threshold < 1 and 0 <= self.margin < 0.5 and 0 <= self.fallback_border < 0.4):
            raise SpecError(
                "invalid crop spec",
                expected="0<threshold<1, 0<=margin<0.5, 0<=fallback_border<0.4",
                received=str(self),
            )
        if not (0 <= self.min_area < self.max_area <= 1 and 0 < self.min_aspect < self.max_aspect):
            raise SpecError(
                "invalid crop gate",
                expected="min_area < max_area, min_aspect < max_aspect",
                received=str(self),
            )

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CropSpec:
        """Parses and validates the JSON form."""
        return from_dict(cls, data, what="crop spec")


@dataclass(frozen=True)
class CropResult:
    """The crop decided for one image.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in source-image pixels (end exclusive).
        status: ``lung`` (the mask passed the gate) or ``fallback``.
        reason: Why the fallback was used ("" for ``lung``).
        mask: The cleaned binary mask (uint8 0/255) at the segmenter's resolution.
    """

    box: CropBox
    status: str
    reason: str
    mask: np.ndarray


def clean_mask(prob: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """Thresholds, keeps the two largest components, fills holes; returns (mask 0/255, significant parts)."""
    binary = (np.asarray(prob) >= threshold).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    significant = int((areas >= _SIGNIFICANT * binary.size).sum())
    keep = np.argsort(areas, kind="stable")[::-1][:2] + 1
    mask = np.isin(labels, keep).astype(np.uint8) * 255
    # Fill holes: flood the background from the border; what stays unreached inside is a hole.
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 255)
    holes = cv2.bitwise_not(flood)[1:-1, 1:-1]
    return cv2.bitwise_or(mask, holes), significant


def fallback_box(height: int, width: int, border: float) -> CropBox:
    """The default crop: ``border`` of each side removed."""
    dy, dx = round(height * border), round(width * border)
    return (dx, dy, width - dx, height - dy)


def lung_crop(prob: np.ndarray, image_shape: tuple[int, int], spec: CropSpec) -> CropResult:
    """Decides the crop box of one image from its lung-probability map.

    Args:
        prob: ``(h, w)`` lung probabilities at the segmenter's resolution.
        image_shape: ``(H, W)`` of the source image the box refers to.
        spec: Crop parameters and gate.
    """
    prob = np.asarray(prob, dtype=np.float32).squeeze()
    mask, significant = clean_mask(prob, spec.threshold)
    h, w = mask.shape
    height, width = image_shape

    def fallback(reason: str) -> CropResult:
        return CropResult(fallback_box(height, width, spec.fallback_border), "fallback", reason, mask)

    area = float((mask > 0).mean())
    if area == 0:
        return fallback("no lung found")
    if not spec.min_area <= area <= spec.max_area:
        return fallback(f"lung area {area:.2f} of the image outside [{spec.min_area}, {spec.max_area}]")
    if significant > spec.max_components:
        return fallback(f"mask fragmented into {significant} pieces")
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    aspect = (x1 - x0) / (y1 - y0)
    if not spec.min_aspect <= aspect <= spec.max_aspect:
        return fallback(f"box width/height {aspect:.2f} outside [{spec.min_aspect}, {spec.max_aspect}]")
    mx, my = spec.margin * (x1 - x0), spec.margin * (y1 - y0)
    sx, sy = width / w, height / h
    box = (
        max(0, int(np.floor((x0 - mx) * sx))),
        max(0, int(np.floor((y0 - my) * sy))),
        min(width, int(np.ceil((x1 + mx) * sx))),
        min(height, int(np.ceil((y1 + my) * sy))),
    )
    return CropResult(box, "lung", "", mask)


def overlay(image: np.ndarray, result: CropResult) -> np.ndarray:
    """An 8-bit BGR picture: the image, the mask outline in green, the crop box (red when fallback)."""
    base = cv2.cvtColor(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    mask = cv2.resize(result.mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(base, contours, -1, (0, 200, 0), 2)
    x0, y0, x1, y1 = result.box
    colour = (0, 0, 230) if result.status == "fallback" else (230, 160, 0)
    cv2.rectangle(base, (x0, y0), (x1 - 1, y1 - 1), colour, 2)
    label = "fallback: " + result.reason if result.status == "fallback" else "lung crop"
    cv2.putText(base, label[:60], (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, 2, cv2.LINE_AA)
    return base
