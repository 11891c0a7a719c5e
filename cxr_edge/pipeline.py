"""decode -> preprocess -> classify (each member) -> combine, with timings per stage.

The segmentation and heat-map stages join this pipeline in later issues; every stage is timed so
``cxr-edge bench`` and the prediction output report the same numbers.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxr_edge.bundle import Bundle, EnsembleConfig
from cxr_edge.cam import average_maps, class_activation_map, place
from cxr_edge.engine import Engine, normalise
from cxr_edge.errors import BundleError, CxrEdgeError, InputError
from cxr_edge.imaging import ImageInfo, ReadOptions, read_image
from cxr_edge.preprocess import crop_region, preprocess
from cxr_edge.segmenter import Segmenter


@dataclass(frozen=True)
class Prediction:
    """The result for one image.

    Attributes:
        label: Predicted label (argmax of the combined probabilities).
        probs: Combined probability per label.
        per_model: Probabilities of each member model.
        timings_ms: Milliseconds per stage (``decode``, ``segment``, ``preprocess``, one per model,
            ``combine``, ``total``).
        info: How the image was read (no patient identifiers).
        crop: ``lung`` (segmenter box), ``fallback`` (implausible mask: default crop) or ``none``
            (the bundle has no segmenter).
        crop_reason: Why the fallback was used.
        crop_box: ``(x0, y0, x1, y1)`` in source pixels, when a segmenter ran.
        cam: Class activation map (= Grad-CAM) of the predicted label at the feature-map resolution,
            averaged over the members that export features; None when none does.
        cam_region: The source-image region the classifiers saw (where ``cam`` belongs).
    """

    label: str
    probs: dict[str, float]
    per_model: dict[str, dict[str, float]]
    timings_ms: dict[str, float]
    info: ImageInfo | None = None
    crop: str = "none"
    crop_reason: str = ""
    crop_box: tuple[int, int, int, int] | None = None
    cam: np.ndarray | None = field(default=None, repr=False, compare=False)
    cam_region: tuple[int, int, int, int] | None = None

    def heatmap(self, image_shape: tuple[int, int]) -> np.ndarray | None:
        """The heat map in source-image pixels (zero outside the region the classifiers saw)."""
        return None if self.cam is None else place(self.cam, image_shape, self.cam_region)


@dataclass(frozen=True)
class Outcome:
    """One input of a batch: either a prediction or the error that stopped it."""

    path: str
    prediction: Prediction | None = None
    error: CxrEdgeError | None = None

    @property
    def ok(self) -> bool:
        """Whether the input was classified."""
        return self.prediction is not None


@dataclass
class Predictor:
    """Classifies images with a bundle's ensemble.

    Args:
        bundle: A loaded bundle (default: the shipped one).
        members: Model names to run instead of the bundle's ensemble members.
        threads: LiteRT threads per model.
        read_options: Image reader limits.
    """

    bundle: Bundle = field(default_factory=Bundle.load)
    members: Sequence[str] | None = None
    threads: int = 1
    read_options: ReadOptions = field(default_factory=ReadOptions)

    def __post_init__(self) -> None:
        ensemble = self.bundle.manifest.ensemble
        names = tuple(self.members) if self.members else ensemble.members
        if not names:
            raise BundleError(
                "bundle holds no classifiers",
                expected="a bundle with models",
                received=f"{self.bundle.root} (segmenter only)",
            )
        entries = [self.bundle.manifest.model(n) for n in names]
        # A chosen subset of members cannot use weights, a stacker or a temperature fitted for the full
        # ensemble: it is averaged instead (and says so in its method).
        same = not self.members or tuple(self.members) == ensemble.members
        self._ensemble = ensemble if same else EnsembleConfig(method="mean", members=names)
        self._engines = {e.name: Engine(self.bundle.path_of(e), e, threads=self.threads) for e in entries}
        self._cam_weights = {
            e.name: None if e.cam_weights is None else np.asarray(e.cam_weights) for e in entries
        }
        self._segmenter = Segmenter(self.bundle, self.threads) if self.bundle.manifest.segmenter else None

    @property
    def member_names(self) -> tuple[str, ...]:
        """Names of the models this predictor runs."""
        return tuple(self._engines)

    @property
    def method(self) -> str:
        """The combiner this predictor uses (``mean`` for a chosen subset of members)."""
        return self._ensemble.method

    @property
    def labels(self) -> tuple[str, ...]:
        """Class labels in output order."""
        return self.bundle.labels

    def predict_image(self, image: np.ndarray, info: ImageInfo | None = None) -> Prediction:
        """Classifies a decoded image (2-D float in [0, 1])."""
        timings: dict[str, float] = {}
        crop = None
        if self._segmenter is not None:
            t = time.perf_counter()
            crop = self._segmenter(image)
            timings["segment"] = _ms(t)
        t0 = time.perf_counter()
        box = crop.box if crop else None
        x = preprocess(image, self.bundle.spec, crop_box=box)
        timings["preprocess"] = _ms(t0)
        per_model, features = [], {}
        for name, engine in self._engines.items():
            t = time.perf_counter()
            outputs = engine.run_all(x)
            per_model.append(normalise(outputs["probs"], engine.output_specs["probs"]))
            if "features" in outputs and self._cam_weights.get(name) is not None:
                features[name] = outputs["features"]
            timings[name] = _ms(t)
        t = time.perf_counter()
        probs = self._ensemble.apply(np.stack(per_model))
        timings["combine"] = _ms(t)
        labels = self.labels
        cam = None
        if features:
            t = time.perf_counter()
            index = int(np.argmax(probs))
            cam = average_maps(
                [class_activation_map(f, self._cam_weights[n], index) for n, f in features.items()]
            )
            timings["heatmap"] = _ms(t)
        return Prediction(
            label=labels[int(np.argmax(probs))],
            probs=_named(labels, probs),
            per_model={n: _named(labels, p) for n, p in zip(self._engines, per_model, strict=True)},
            timings_ms=timings,
            info=info,
            crop=crop.status if crop else "none",
            crop_reason=crop.reason if crop else "",
            crop_box=box,
            cam=cam,
            cam_region=crop_region(image.shape, self.bundle.spec, box) if cam is not None else None,
        )

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        """Reads and classifies one file; raises :class:`CxrEdgeError` subclasses on bad input."""
        t0 = time.perf_counter()
        image, info = read_image(path, self.read_options)
        decode_ms = _ms(t0)
        pred = self.predict_image(image, info)
        timings = {"decode": decode_ms, **pred.timings_ms, "total": _ms(t0)}
        return dataclasses.replace(pred, timings_ms=timings)

    def predict_many(self, paths: Iterable[str | os.PathLike]) -> Iterator[Outcome]:
        """Classifies many files; a bad file yields an error outcome and the rest go on."""
        for path in paths:
            try:
                yield Outcome(str(path), prediction=self.predict_file(path))
            except CxrEdgeError as exc:
                yield Outcome(str(path), error=exc)
            except Exception as exc:  # a decoder bug must not end the batch; report it on this file
                error = InputError(
                    "unexpected failure",
                    expected="a readable image",
                    received=f"{type(exc).__name__}: {str(exc)[:200]}",
                )
                yield Outcome(str(path), error=error)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded recursively (sorted; hidden files and folders skipped).

    Every non-hidden file in a folder is returned, not just known suffixes: DICOM files often have no
    suffix, and a stray file should be reported as an error rather than silently ignored.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
        else:
            out.append(p)  # missing files are kept so they get an error row
    return out


def _named(labels: Sequence[str], probs: np.ndarray) -> dict[str, float]:
    return {label: float(p) for label, p in zip(labels, probs, strict=True)}


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
