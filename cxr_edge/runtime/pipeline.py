"""decode -> (segment -> crop) -> preprocess -> classify (each member) -> combine -> heat map, timed.

After the combiner (and its temperature) come two judgements that never change the label:

* the **referral band** of the bundle (``ensemble.abstain``): a tempered prediction below it
  carries a ``referral`` (why it should go to a radiologist);
* with a segmenter, the **lung fraction** of the heat map (:func:`cxr_edge.ops.cam.lung_fraction`) and,
  below the bundle's ``lung_evidence.min_fraction``, the flag "evidence outside the lungs".

Every stage is timed so ``cxr-edge bench`` and the prediction output report the same numbers.
:meth:`Predictor.prepare` and :meth:`Predictor.classify` are the two halves of
:meth:`Predictor.predict_image`, for callers that run more models on the same input (``evaluate``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cxr_edge.bundle.folder import Bundle
from cxr_edge.bundle.manifest import EnsembleConfig
from cxr_edge.bundle.signature import TRUSTED_KEYS_ENV, TrustPolicy
from cxr_edge.errors import BundleError, CxrEdgeError, InputError, InputRejectedError
from cxr_edge.imaging.reader import ImageInfo, ReadOptions, read_image
from cxr_edge.ops.cam import (
    FLAG_OUTSIDE_LUNGS,
    LUNG_THRESHOLD,
    average_maps,
    class_activation_map,
    lung_fraction,
    place,
)
from cxr_edge.ops.lungcrop import CropResult, clean_mask, lung_crop
from cxr_edge.ops.preprocess import CropBox, crop_region, preprocess
from cxr_edge.ops.quality import QualityConfig, check
from cxr_edge.runtime.engine import Engine, normalise
from cxr_edge.runtime.segmenter import Segmenter

log = logging.getLogger("cxr_edge.runtime.pipeline")


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
            (no segmenter, or one whose role is ``evidence``: the classifiers saw the full image).
        crop_reason: Why the fallback was used.
        crop_box: ``(x0, y0, x1, y1)`` in pixels of the decoded image (``info.reduction`` says how
            many source pixels each stands for), when a segmenter ran.
        cam: Class activation map (= Grad-CAM) of the predicted label at the feature-map resolution,
            averaged over the members that export features; None when none does.
        cam_region: The source-image region the classifiers saw (where ``cam`` belongs).
        referral: Why the prediction falls in the bundle's referral band (e.g. "top probability
            0.48 below 0.55"), or None (no band, or outside it).
        lung_fraction: Share of the heat map inside the predicted lung mask; None without a
            segmenter, a heat map, or when the crop fell back.
        flags: Warnings about this prediction (``"evidence outside the lungs"``).
        lung_mask: The segmenter's lung mask (uint8, non-zero = lung) over ``lung_region``, when the
            crop used it (for drawing the lung outline on heat maps).
        lung_region: The source-image region the segmenter saw.
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
    referral: str | None = None
    lung_fraction: float | None = None
    flags: tuple[str, ...] = ()
    lung_mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    lung_region: tuple[int, int, int, int] | None = None

    def lungs(self, image_shape: tuple[int, int]) -> np.ndarray | None:
        """The lung mask (uint8, 255 = lung) in pixels of an image of ``image_shape``, or None."""
        if self.lung_mask is None or self.lung_region is None:
            return None
        x0, y0, x1, y1 = self._scaled(self.lung_region, image_shape)
        canvas = np.zeros(image_shape[:2], dtype=np.uint8)
        if x1 > x0 and y1 > y0:
            mask = (np.asarray(self.lung_mask) > 0).astype(np.uint8) * 255
            canvas[y0:y1, x0:x1] = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        return canvas

    def _scaled(self, region: tuple[int, int, int, int], image_shape: tuple[int, int]):
        """A region of the decoded image, in pixels of an image of another size (the same file in full)."""
        decoded = (self.info.height, self.info.width) if self.info is not None else None
        if decoded is None or decoded == tuple(image_shape[:2]):
            return region
        sy, sx = image_shape[0] / decoded[0], image_shape[1] / decoded[1]
        x0, y0, x1, y1 = region
        return (
            round(x0 * sx),
            round(y0 * sy),
            min(round(x1 * sx), image_shape[1]),
            min(round(y1 * sy), image_shape[0]),
        )

    def heatmap(self, image_shape: tuple[int, int]) -> np.ndarray | None:
        """The heat map in pixels of an image of ``image_shape`` (zero outside the region seen).

        ``crop_box`` and ``cam_region`` are in pixels of the image as decoded for the prediction
        (``info.reduction`` > 1 for a reduced-resolution DICOM decode); for an image of another size
        (the same file decoded in full) the region is scaled to it.
        """
        if self.cam is None:
            return None
        region = self.cam_region
        if region is not None:
            region = self._scaled(region, image_shape)
        return place(self.cam, image_shape, region)


@dataclass(frozen=True)
class Prepared:
    """An image made ready for the classifiers (the first half of :meth:`Predictor.predict_image`).

    Attributes:
        x: The model input (``spec.input_shape``).
        image_shape: ``(H, W)`` of the decoded image.
        crop: The segmenter's crop decision (its mask's quality verdict), or None without a segmenter.
        lung_mask: The lung mask at the segmenter's resolution (:data:`cxr_edge.ops.cam.LUNG_THRESHOLD`),
            when a segmenter ran.
        timings_ms: ``segment`` and ``preprocess`` milliseconds.
        cropped: Whether the classifiers' input is the crop (False for a segmenter of role ``evidence``).
    """

    x: np.ndarray = field(repr=False)
    image_shape: tuple[int, int]
    crop: CropResult | None = None
    lung_mask: np.ndarray | None = field(default=None, repr=False)
    timings_ms: dict[str, float] = field(default_factory=dict)
    cropped: bool = True

    @property
    def box(self) -> CropBox | None:
        """The crop box in source pixels the classifiers saw, when a segmenter cropped."""
        return self.crop.box if self.crop and self.cropped else None


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
        threads: LiteRT threads per model, and DICOM decoder threads.
        read_options: Image reader limits. Without a ``min_side`` of their own, the bundle's decode
            gate decides: a bundle whose gate passed decodes full-size DICOMs at reduced resolution.
        checks: The input checks a file must pass before it is classified (:mod:`cxr_edge.ops.quality`:
            modality, body part, view, colour, resolution, blank, frontal pattern), the same the DICOM
            node runs; None classifies every readable image.
    """

    bundle: Bundle = field(default_factory=Bundle.load)
    members: Sequence[str] | None = None
    threads: int = 1
    read_options: ReadOptions = field(default_factory=ReadOptions)
    checks: QualityConfig | None = field(default_factory=QualityConfig)

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
        # The referral band stays: referring too often is safer than never referring.
        same = not self.members or tuple(self.members) == ensemble.members
        self._ensemble = (
            ensemble if same else EnsembleConfig(method="mean", members=names, abstain=ensemble.abstain)
        )
        # A site calibration's heads belong to their members; its temperature and bias were fitted on
        # the full ensemble's output, so a chosen subset drops them (as it drops the ensemble's own).
        site = self.bundle.manifest.site
        self._site = site if same else None
        self._heads = site if site is not None and site.heads else None
        self._engines = {e.name: Engine(self.bundle.path_of(e), e, threads=self.threads) for e in entries}
        self._cam_weights = {
            e.name: None if e.cam_weights is None else np.asarray(e.cam_weights) for e in entries
        }
        self._segmenter = Segmenter(self.bundle, self.threads) if self.bundle.manifest.segmenter else None
        decode = self.bundle.manifest.decode
        options = self.read_options
        if options.min_side is None and decode is not None and decode.reduced:
            options = dataclasses.replace(options, min_side=decode.min_side, reductions=decode.kinds)
        self.read_options = dataclasses.replace(options, threads=max(options.threads, self.threads))

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

    @property
    def ensemble(self) -> EnsembleConfig:
        """The combiner, temperature and referral band this predictor applies."""
        return self._ensemble

    def prepare(self, image: np.ndarray) -> Prepared:
        """Segment and crop (with a segmenter), then preprocess: the input every classifier takes."""
        timings: dict[str, float] = {}
        crop = mask = None
        cropped = self._segmenter is not None and self._segmenter.entry.crops
        if self._segmenter is not None:
            t = time.perf_counter()
            prob = self._segmenter.probabilities(image)
            rule = self._segmenter.entry.crop
            crop = lung_crop(prob, image.shape, rule)
            # The crop's own cleaned mask when it used the same threshold (always, by default).
            mask = crop.mask if rule.threshold == LUNG_THRESHOLD else clean_mask(prob, LUNG_THRESHOLD)[0]
            timings["segment"] = _ms(t)
        t0 = time.perf_counter()
        x = preprocess(image, self.bundle.spec, crop_box=crop.box if crop and cropped else None)
        timings["preprocess"] = _ms(t0)
        return Prepared(x, tuple(image.shape[:2]), crop, mask, timings, cropped)

    def run_members(self, x: np.ndarray, timings: dict[str, float] | None = None) -> dict[str, dict]:
        """Every member's outputs on one model input (``probs`` renormalised, ``features`` when the
        model has them), by member name; milliseconds per member go into ``timings`` when given."""
        out = {}
        for name, engine in self._engines.items():
            t = time.perf_counter()
            outputs = engine.run_all(x)
            outputs["probs"] = normalise(outputs["probs"], engine.output_specs["probs"])
            out[name] = outputs
            if timings is not None:
                timings[name] = _ms(t)
        return out

    def combine(self, outputs: dict[str, dict]) -> tuple[np.ndarray, np.ndarray]:
        """Member probabilities (site heads applied) and the output probabilities, from :meth:`run_members`.

        Returns:
            ``(member probabilities (n_members, n_classes), output probabilities (n_classes,))``.
        """
        per_model = []
        for name, out in outputs.items():
            probs = out["probs"]
            if self._heads is not None:
                probs = self._heads.member_probs(name, probs, out.get("features"))
            per_model.append(probs)
        stacked = np.stack(per_model)
        probs = self._ensemble.apply(stacked)
        return stacked, self._site.apply(probs) if self._site is not None else probs

    def classify(self, prepared: Prepared, info: ImageInfo | None = None) -> Prediction:
        """Runs the members on a prepared input, combines them, and judges the result."""
        timings = dict(prepared.timings_ms)
        box = prepared.box
        outputs = self.run_members(prepared.x, timings)
        features = {
            name: out["features"]
            for name, out in outputs.items()
            if "features" in out and self._cam_weights.get(name) is not None
        }
        t = time.perf_counter()
        per_model, probs = self.combine(outputs)
        referral = self._ensemble.referral(self.labels, probs)
        timings["combine"] = _ms(t)
        labels = self.labels
        cam = region = fraction = None
        if features:
            t = time.perf_counter()
            index = int(np.argmax(probs))
            cam = average_maps(
                [class_activation_map(f, self._cam_weights[n], index) for n, f in features.items()]
            )
            region = crop_region(prepared.image_shape, self.bundle.spec, box)
            timings["heatmap"] = _ms(t)
            crop = prepared.crop
            if crop is not None and crop.status == "lung" and prepared.lung_mask is not None:
                t = time.perf_counter()
                seg_region = crop_region(prepared.image_shape, self._segmenter.entry.preprocess)
                fraction = lung_fraction(
                    cam, region, prepared.lung_mask, seg_region, self.bundle.spec.input_size
                )
                timings["lung_fraction"] = _ms(t)
        evidence = self.bundle.manifest.lung_evidence
        flags = (
            (FLAG_OUTSIDE_LUNGS,)
            if evidence and fraction is not None and fraction < evidence.min_fraction
            else ()
        )
        crop = prepared.crop
        lungs = crop is not None and crop.status == "lung" and prepared.lung_mask is not None
        lung_region = crop_region(prepared.image_shape, self._segmenter.entry.preprocess) if lungs else None
        return Prediction(
            label=labels[int(np.argmax(probs))],
            probs=_named(labels, probs),
            per_model={n: _named(labels, p) for n, p in zip(self._engines, per_model, strict=True)},
            timings_ms=timings,
            info=info,
            crop=crop.status if crop and prepared.cropped else "none",
            crop_reason=crop.reason if crop and prepared.cropped else "",
            crop_box=box,
            cam=cam,
            cam_region=region,
            referral=referral,
            lung_fraction=fraction,
            flags=flags,
            lung_mask=prepared.lung_mask if lungs else None,
            lung_region=lung_region,
        )

    def predict_image(self, image: np.ndarray, info: ImageInfo | None = None) -> Prediction:
        """Classifies a decoded image (2-D float in [0, 1])."""
        return self.classify(self.prepare(image), info)

    def check_input(self, image: np.ndarray, info: ImageInfo) -> None:
        """Runs the input checks on a decoded image.

        Raises:
            InputRejectedError: A check refused it (none when ``checks`` is None).
        """
        if self.checks is not None:
            rejection = check(image, info, self.checks)
            if rejection is not None:
                raise InputRejectedError(rejection.check, rejection.reason)

    def read(self, path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo, float]:
        """Reads one file with this predictor's read options and runs the input checks.

        Returns:
            ``(image, info, decode milliseconds)``.

        Raises:
            CxrEdgeError: The file cannot be read, or an input check refused it
                (:class:`~cxr_edge.errors.InputRejectedError`).
        """
        t0 = time.perf_counter()
        image, info = read_image(path, self.read_options)
        decode_ms = _ms(t0)
        self.check_input(image, info)
        return image, info, decode_ms

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        """Reads, checks and classifies one file; raises :class:`CxrEdgeError` subclasses on bad input
        (:class:`~cxr_edge.errors.InputRejectedError` when an input check refuses it)."""
        t0 = time.perf_counter()
        image, info, decode_ms = self.read(path)
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
                yield Outcome(str(path), error=unexpected_failure(exc))


@dataclass(frozen=True)
class PredictorSpec:
    """How to build a predictor from command-line choices (picklable: batch workers load the bundle
    themselves).

    Attributes:
        bundle_dir: Bundle folder, or None for the shipped bundle.
        members: Models to run instead of the ensemble members (None: the ensemble).
        threads: LiteRT and decoder threads per worker.
        checks: Run the input checks (``--no-checks`` turns them off).
        trusted_keys: The trust policy's keys (:mod:`cxr_edge.bundle.signature`), read from
            ``CXR_EDGE_TRUSTED_KEYS`` where the spec is made, so that batch workers apply the
            caller's policy whatever their own environment.
    """

    bundle_dir: str | None = None
    members: tuple[str, ...] | None = None
    threads: int = 1
    checks: bool = True
    trusted_keys: str | None = field(default_factory=lambda: os.environ.get(TRUSTED_KEYS_ENV) or None)

    def build(self) -> Predictor:
        """Loads the bundle (checking every model's sha256, and its signature under a trust policy)
        and makes the predictor."""
        trust = TrustPolicy.from_path(self.trusted_keys) if self.trusted_keys else False
        return Predictor(
            Bundle.load(self.bundle_dir, trust=trust),
            members=self.members,
            threads=self.threads,
            checks=QualityConfig() if self.checks else None,
        )


def unexpected_failure(exc: Exception) -> InputError:
    """An exception no reader meant to raise, as the typed error of the one input it hit.

    A codec bug must not end a batch. The row names the exception's type; its text (a library's
    internals, possibly several lines) goes to the debug log of ``cxr_edge.runtime.pipeline`` only.
    """
    log.debug("unexpected failure", exc_info=exc)
    return InputError(
        "unexpected failure",
        expected="a readable image",
        received=f"an internal {type(exc).__name__} (details: cxr-edge --verbose)",
    )


#: Suffixes that are certainly not images, skipped inside folders (documents, tables, archives, code).
#: Never a guess at DICOM: DICOM files often have no suffix, or .dat, .img, .bin, and are all read.
NOT_IMAGES = frozenset(
    {
        *(".md", ".txt", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".xml", ".html", ".htm"),
        *(".pdf", ".doc", ".docx", ".xls", ".xlsx", ".odt", ".ods", ".rtf"),
        *(".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".tar"),
        *(".py", ".sh", ".log", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".parquet", ".sqlite", ".db"),
        *(".mp4", ".avi", ".mov", ".mp3", ".wav"),
    }
)


def expand_inputs(inputs: Iterable[str | os.PathLike], skipped: list[Path] | None = None) -> list[Path]:
    """Files as given, folders expanded recursively (sorted; hidden files and folders skipped).

    Inside a folder every file is returned except those whose suffix is in :data:`NOT_IMAGES`
    (appended to ``skipped`` when given): DICOM files often have no suffix, and a stray file of unknown
    kind should be reported as an error rather than silently ignored. A file named explicitly is always
    returned, whatever its suffix, so it gets its row.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(f for f in files if not f.startswith(".")):
                    target = skipped if Path(name).suffix.lower() in NOT_IMAGES else out
                    if target is not None:
                        target.append(Path(root) / name)
        else:
            out.append(p)  # missing files are kept so they get an error row
    return out


def _named(labels: Sequence[str], probs: np.ndarray) -> dict[str, float]:
    return {label: float(p) for label, p in zip(labels, probs, strict=True)}


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
