"""The files a bundle holds, as its manifest describes them: classifiers, the segmenter, the self-test.

Each entry names a file inside the bundle and pins it by SHA-256 (checked on every load by
:mod:`cxr_edge.bundle.folder`); :mod:`cxr_edge.bundle.manifest` assembles them into the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from cxr_edge.ops.lungcrop import CropSpec
from cxr_edge.ops.preprocess import PreprocessSpec


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output tensor as stored in the ``.tflite`` file.

    Attributes:
        shape: Tensor shape including the batch dimension (always 1).
        dtype: ``float32``, ``int8`` or ``uint8``.
        scale: Quantisation scale (0 for float tensors).
        zero_point: Quantisation zero point.
    """

    shape: tuple[int, ...]
    dtype: Literal["float32", "int8", "uint8"]
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        """Whether values must be (de)quantised at the boundary."""
        return self.dtype != "float32"


@dataclass(frozen=True)
class ModelEntry:
    """One classifier in the bundle.

    Attributes:
        name: Unique name, e.g. ``custom_cnn-int8``.
        file: ``.tflite`` file name inside the bundle.
        sha256: Hex digest of that file.
        architecture: Model family (``custom_cnn``...).
        quant: Variant: ``fp32``, ``fp16``, ``dynamic_int8`` or ``int8``.
        input: Input tensor.
        outputs: Output tensors by role; ``probs`` (class probabilities, in label order) is required.
            Later formats add ``features`` (the last convolutional map, for heat maps).
        params: Parameter count of the source Keras model.
        parity: Agreement with the Keras model on the validation split.
        metrics: Validation/test metrics of this variant.
        params_unpruned: Parameters before APoZ pruning (equal to ``params`` when not pruned).
        macs: Multiply-accumulates per image.
        pruned_fraction: Fraction of the prunable channels removed (0 when not pruned).
        cam_weights: ``(K, n_classes)`` dense weights after global average pooling, with which the
            runtime turns the ``features`` output into class activation maps (= Grad-CAM).
        gate: The conversion's accuracy gate (thresholds, pass/fail, whether degraded was allowed).
    """

    name: str
    file: str
    sha256: str
    architecture: str
    quant: str
    input: TensorSpec
    outputs: dict[str, TensorSpec]
    params: int
    parity: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    params_unpruned: int | None = None
    macs: int | None = None
    pruned_fraction: float = 0.0
    cam_weights: tuple[tuple[float, ...], ...] | None = None
    gate: dict[str, Any] = field(default_factory=dict)


class SegmenterRole(StrEnum):
    """What a bundle's segmenter does to the classifiers' input.

    * ``crop`` -- the classifiers see the lung crop (the paper's system; they were trained on crops).
    * ``evidence`` -- the classifiers see the full image (they were trained on it); the segmenter's mask
      only checks where the heat map's evidence lies (``lung_fraction``, "evidence outside the lungs").
    """

    CROP = "crop"
    EVIDENCE = "evidence"


@dataclass(frozen=True)
class SegmenterEntry:
    """The lung segmenter stage: its model file, its own preprocessing and the crop rule.

    Attributes:
        name: Name, e.g. ``unet16-int8``.
        file: ``.tflite`` file name inside the bundle.
        sha256: Hex digest of that file.
        quant: Variant (``fp32``, ``int8``...).
        input: Input tensor.
        outputs: ``{"mask": (1, H, W, 1) lung probabilities}``.
        params: Parameter count of the source Keras model.
        macs: Multiply-accumulates per image.
        preprocess: How the image is prepared for the segmenter (no border crop).
        crop: Mask -> box rule and quality gate (:class:`cxr_edge.ops.lungcrop.CropSpec`).
        metrics: Dice/IoU of this variant on held-out patients.
        role: Whether the classifiers see the crop or the full image (:class:`SegmenterRole`).
    """

    name: str
    file: str
    sha256: str
    quant: str
    input: TensorSpec
    outputs: dict[str, TensorSpec]
    params: int
    macs: int
    preprocess: PreprocessSpec
    crop: CropSpec = field(default_factory=CropSpec)
    metrics: dict[str, Any] = field(default_factory=dict)
    role: SegmenterRole = SegmenterRole.CROP

    @property
    def crops(self) -> bool:
        """Whether the classifiers see the lung crop (else the full image, the mask checking evidence)."""
        return self.role == SegmenterRole.CROP


@dataclass(frozen=True)
class SelfTestEntry:
    """The bundle's self-test file (:mod:`cxr_edge.runtime.selftest`), pinned like a model file.

    Attributes:
        file: File name inside the bundle (``selftest.json``).
        sha256: Hex digest of that file.
    """

    file: str
    sha256: str
