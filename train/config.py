"""Training configuration: a frozen dataclass read from TOML (``configs/*.toml``)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cxr_edge.config import from_dict, to_dict
from cxr_edge.dataset.manifest import KNOWN_LABELS
from cxr_edge.errors import SpecError
from cxr_edge.ops.preprocess import PreprocessSpec


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (hashable into provenance).

    Attributes:
        task: ``classify`` (the zoo's classifiers) or ``segment`` (the lung U-Net, ``model = "unet"``).
        model: Architecture name in :data:`cxr_edge.train.zoo.PRESETS` (or ``unet`` for segmentation).
        labels: The task's label set, in model output order (manifest label strings, or the task
            labels that ``label_map`` maps manifest labels to).
        label_map: Manifest label -> task label, e.g. the triage task's
            ``{bacterial = "pneumonia", viral = "pneumonia", pneumonia_unknown = "pneumonia"}``.
            Manifest labels that map to no task label are left out of the task.
        preprocess: The preprocessing spec (stored in the bundle later).
        model_args: Keyword arguments for the architecture builder.
        epochs: Maximum epochs.
        batch_size: Images per step.
        learning_rate: Initial SGD learning rate.
        optimizer: ``sgd`` (with momentum, the paper's) or ``adam``.
        momentum: SGD momentum.
        weight_decay: L2 penalty on kernels.
        class_weights: Weight the loss by inverse class frequency (the kit is imbalanced).
        augment: Apply the CXR augmentation of :mod:`cxr_edge.train.augment` to training images.
        augment_strength: ``mild`` (positioning, exposure, some blur) or ``acquisition`` (also
            detector and processing differences: strong gamma/contrast, aspect, resolution loss,
            JPEG, noise, edge enhancement, burned-in markers), ``noise`` (mild plus Gaussian, Poisson,
            speckle or salt-and-pepper noise) or ``decode`` (mild plus reduced-decode resampling,
            DCT scaling, JPEG and JPEG 2000 round trips).
        sampling: ``shuffle`` (every image once per epoch) or ``balanced`` (draw classes equally and,
            within a class, sources equally: :func:`cxr_edge.train.data.balanced_weights`; class weights are
            then not applied).
        source_adversary: Strength of the gradient-reversal source adversary (0 = off). A head on the
            pooled features predicts each image's source *within its class* (conditional, since
            source and class are confounded) and its gradient is reversed into the features
            (:mod:`cxr_edge.train.adversary`); the saved model has no adversary.
        patience: Early-stopping patience (epochs without validation-loss improvement).
        lr_schedule: ``cosine`` (decay to 1% of the initial rate over ``epochs``) or ``plateau``
            (divide by 10 after ``lr_patience`` epochs without validation-loss improvement).
        lr_patience: Patience of the ``plateau`` schedule.
        seed: Seed for weights, shuffling and augmentation.
        weights: Local weights file for a backbone (``include_top=False``); None = random init.
        init_from: Run directory of a stage-1 model to transfer from (modality-specific transfer).
        mixed_precision: Train with ``mixed_bfloat16`` (about 5x faster for VGG-16 on AMX/AVX-512
            CPUs); the saved model is float32.
        crops: Crop table (``cxr-edge segment --manifest ... --out DIR`` writes ``DIR/crops.csv``) for
            a lung-crop model: every image is cropped to its segmenter box instead of the border crop.
        holdout_sources: Sources left out of train/val/test entirely and reported as a
            cross-source check (e.g. ``["montreal"]``: covid learned from Hannover only).
    """

    task: Literal["classify", "segment"] = "classify"
    model: str = "custom_cnn"
    labels: tuple[str, ...] = ("covid", "normal", "pneumonia_unknown")
    label_map: dict[str, str] = field(default_factory=dict)
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    model_args: dict[str, Any] = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 16
    learning_rate: float = 0.01
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    class_weights: bool = True
    augment: bool = True
    augment_strength: Literal["mild", "acquisition", "noise", "decode"] = "mild"
    sampling: Literal["shuffle", "balanced"] = "shuffle"
    source_adversary: float = 0.0
    patience: int = 10
    lr_schedule: Literal["cosine", "plateau"] = "cosine"
    lr_patience: int = 4
    seed: int = 0
    weights: str | None = None
    init_from: str | None = None
    mixed_precision: bool = False
    holdout_sources: tuple[str, ...] = ()
    crops: str | None = None

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise SpecError(
                "invalid label set", expected="two or more distinct labels", received=str(self.labels)
            )
        strays = {k: v for k, v in self.label_map.items() if v not in self.labels or k not in KNOWN_LABELS}
        if strays:
            raise SpecError(
                "invalid label map",
                expected=f"manifest labels among {list(KNOWN_LABELS)} mapped to {list(self.labels)}",
                received=str(strays),
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise SpecError(
                "invalid budget",
                expected="epochs >= 1 and batch_size >= 1",
                received=f"epochs={self.epochs}, batch_size={self.batch_size}",
            )
        if not (0 < self.learning_rate < 1 and 0 <= self.momentum < 1 and self.weight_decay >= 0):
            raise SpecError(
                "invalid optimiser settings",
                expected="0<lr<1, 0<=momentum<1, weight_decay>=0",
                received=f"lr={self.learning_rate}, momentum={self.momentum}, wd={self.weight_decay}",
            )

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Reads a ``.toml`` config or a run directory's ``config.json``; unknown keys are errors."""
        path = Path(path)
        if not path.is_file():
            raise SpecError("config not found", expected="a .toml or .json file", received=str(path))
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise SpecError(f"invalid config file {path}", received=str(exc)) from exc
        return from_dict(cls, data, what=f"config {path.name}")

    def to_dict(self) -> dict:
        """JSON-ready form (written to the run directory)."""
        return to_dict(self)
