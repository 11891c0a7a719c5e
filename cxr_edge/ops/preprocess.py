"""The one preprocessing implementation: image in [0, 1] -> model input tensor.

Training, conversion (calibration data, parity checks) and every runtime call :func:`preprocess`
with the :class:`PreprocessSpec` stored in the bundle, so a deployed model sees exactly the pixels it
was trained on. The browser and Android ports mirror these steps and are checked against golden
vectors.

Steps, in order:

1. **Crop** to ``crop_box`` (e.g. the lung box) when given, else remove ``border`` of each side.
   Burned-in text and markers sit at the image borders and give away the source hospital.
2. **Resize** (stretch) to ``input_size`` in float32: area averaging when shrinking, bilinear when
   enlarging. Resizing before quantising keeps the precision of 12/16-bit DICOMs.
3. Optional training **augmentation** hook (float image in [0, 1]); ``None`` at inference.
4. **Quantise** to 8 bits (round half up), which every runtime can reproduce exactly.
   Optionally **equalise** the histogram globally (``equalize``: OpenCV's ``equalizeHist``, an exact
   integer lookup table): every image then has about the same intensity distribution, whatever the
   detector, exposure or processing of the source hospital.
5. **CLAHE** (contrast-limited adaptive histogram equalisation), when enabled: equalises exposure
   differences between sources, the confound that lets models recognise the hospital.
6. **Median filter** (``median`` = odd kernel size; 0 or 1 disables it) against noise.
7. **Normalise**: ``standardize`` (per-image zero mean, unit variance) or ``unit`` ([0, 1]).
8. Repeat to ``channels`` (1 or 3) and return ``(H, W, C)`` float32.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from cxr_edge.config import from_dict, to_dict
from cxr_edge.errors import InputError, SpecError

#: A crop box in pixel coordinates of the source image: (x0, y0, x1, y1), end exclusive.
CropBox = tuple[int, int, int, int]

_STD_FLOOR = 1e-6


@dataclass(frozen=True)
class PreprocessSpec:
    """Parameters of :func:`preprocess`; stored in every bundle as ``manifest["preprocess"]``.

    Attributes:
        input_size: Model input ``(height, width)``.
        channels: 1 (grey) or 3 (grey repeated, for ImageNet-shaped backbones).
        border: Fraction of width/height removed from each side when no crop box is given.
        equalize: Global histogram equalisation after quantisation (before CLAHE).
        clahe: Apply CLAHE after quantisation.
        clahe_clip: CLAHE clip limit.
        clahe_tiles: CLAHE tile grid (tiles per side).
        median: Median filter kernel size (odd; 0 or 1 = off).
        normalize: ``standardize`` (per-image z-score) or ``unit`` (values in [0, 1]).
        version: Spec format version; bump when a step's meaning changes.
    """

    input_size: tuple[int, int] = (256, 256)
    channels: int = 1
    border: float = 0.0
    equalize: bool = False
    clahe: bool = True
    clahe_clip: float = 2.0
    clahe_tiles: int = 8
    median: int = 3
    normalize: Literal["standardize", "unit"] = "standardize"
    version: int = 1

    def __post_init__(self) -> None:
        h, w = self.input_size
        if not (8 <= h <= 4096 and 8 <= w <= 4096):
            raise SpecError(
                "invalid input_size", expected="8..4096 pixels per side", received=str(self.input_size)
            )
        if self.channels not in (1, 3):
            raise SpecError("invalid channels", expected="1 or 3", received=str(self.channels))
        if not 0.0 <= self.border < 0.4:
            raise SpecError("invalid border", expected="a fraction in [0, 0.4)", received=str(self.border))
        if self.clahe_clip <= 0 or not 1 <= self.clahe_tiles <= 64:
            raise SpecError(
                "invalid CLAHE parameters",
                expected="clip > 0 and 1..64 tiles",
                received=f"clip={self.clahe_clip}, tiles={self.clahe_tiles}",
            )
        if self.median < 0 or (self.median > 1 and self.median % 2 == 0):
            raise SpecError(
                "invalid median kernel", expected="0, 1 or an odd size", received=str(self.median)
            )
        if self.version != 1:
            raise SpecError("unsupported preprocessing version", expected="1", received=str(self.version))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one model input, ``(H, W, C)``."""
        return (*self.input_size, self.channels)

    def to_dict(self) -> dict:
        """Returns the JSON-ready form stored in bundle manifests."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessSpec:
        """Builds a spec from its JSON form, refusing unknown keys and bad values."""
        return from_dict(cls, data, what="preprocess spec")

    def to_json(self) -> str:
        """Returns the spec as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)


Augment = Callable[[np.ndarray], np.ndarray]


def preprocess(
    image: np.ndarray,
    spec: PreprocessSpec,
    crop_box: CropBox | None = None,
    augment: Augment | None = None,
) -> np.ndarray:
    """Turns a decoded image into one model input.

    Args:
        image: 2-D float image in [0, 1] as returned by :func:`cxr_edge.imaging.reader.read_image`.
        spec: The preprocessing parameters (from the bundle).
        crop_box: ``(x0, y0, x1, y1)`` in source pixels (e.g. the lung box); overrides ``spec.border``.
        augment: Training-only hook applied to the resized float image before quantisation.

    Returns:
        float32 array of shape ``spec.input_shape``.

    Raises:
        InputError: The image is not 2-D or the crop box lies outside it.
    """
    return normalize(preprocess_u8(image, spec, crop_box, augment), spec)


def preprocess_u8(
    image: np.ndarray,
    spec: PreprocessSpec,
    crop_box: CropBox | None = None,
    augment: Augment | None = None,
) -> np.ndarray:
    """Steps 1-6: the 8-bit image after crop, resize, quantisation, equalisation, CLAHE and median filter.

    Every runtime must reproduce this array exactly (golden vectors check it); only step 7-8 are
    floating point.
    """
    resized = resize(crop(image, spec, crop_box), spec.input_size)
    if augment is not None:
        resized = np.clip(augment(resized), 0.0, 1.0).astype(np.float32)
    return enhance(quantize(resized), spec)


def crop_region(shape: tuple[int, int], spec: PreprocessSpec, crop_box: CropBox | None = None) -> CropBox:
    """The region step 1 keeps, ``(x0, y0, x1, y1)`` in source pixels (heat maps are placed back there).

    Raises:
        InputError: The crop box lies outside the image.
    """
    h, w = shape
    if crop_box is not None:
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise InputError("crop box outside the image", expected=f"inside {w}x{h}", received=str(crop_box))
        return (x0, y0, x1, y1)
    dy, dx = round(h * spec.border), round(w * spec.border)
    return (dx, dy, w - dx, h - dy)


def crop(image: np.ndarray, spec: PreprocessSpec, crop_box: CropBox | None = None) -> np.ndarray:
    """Step 1: crops to ``crop_box`` or removes ``spec.border`` of each side."""
    if image.ndim != 2:
        raise InputError("image must be 2-D", expected="a greyscale (H, W) array", received=str(image.shape))
    x0, y0, x1, y1 = crop_region(image.shape, spec, crop_box)
    return image[y0:y1, x0:x1]


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Step 2: stretches a float image to ``size`` = (height, width)."""
    h, w = size
    shrinking = image.shape[0] >= h and image.shape[1] >= w
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image, dtype=np.float32), (w, h), interpolation=interpolation)


def quantize(image: np.ndarray) -> np.ndarray:
    """Step 4: float [0, 1] -> uint8 with round-half-up (reproducible in every language)."""
    return np.floor(np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def enhance(u8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Steps 4b-6: histogram equalisation, CLAHE and median filter on the 8-bit image."""
    if spec.equalize:
        u8 = cv2.equalizeHist(u8)
    if spec.clahe:
        clahe = cv2.createCLAHE(clipLimit=spec.clahe_clip, tileGridSize=(spec.clahe_tiles, spec.clahe_tiles))
        u8 = clahe.apply(u8)
    if spec.median > 1:
        u8 = cv2.medianBlur(u8, spec.median)
    return u8


def normalize(u8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Steps 7-8: intensity normalisation and channel layout."""
    x = u8.astype(np.float32) / 255.0
    if spec.normalize == "standardize":
        x = (x - x.mean()) / max(float(x.std()), _STD_FLOOR)
    x = x[..., None]
    if spec.channels == 3:
        x = np.repeat(x, 3, axis=-1)
    return x.astype(np.float32)
