"""Model bundles: a folder with ``manifest.json`` and the ``.tflite`` files it names.

``manifest.json`` is the contract between the converter and every runtime (Python, browser,
Android): label order, the preprocessing spec, one entry per model (file, sha256, tensor types and
quantisation, parameter count, parity results), the ensemble configuration and provenance (git
commit, hashes of the data manifest and split, metrics). Nothing about preprocessing or labels is
hard-coded in a runtime; everything is read from here. Checksums are verified on load, so a tampered
or incomplete bundle is refused before it classifies anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_edge.bundle.card import ModelCard
from cxr_edge.bundle.entries import (
    ModelEntry,
    SegmenterEntry,
    SelfTestEntry,
)
from cxr_edge.config import from_dict, json_schema, to_dict
from cxr_edge.errors import BundleError, SpecError
from cxr_edge.ops.ensemble import METHODS, Stacker, apply_temperature, combine
from cxr_edge.ops.preprocess import PreprocessSpec
from cxr_edge.ops.quality import ReferralBand, referral_reason
from cxr_edge.ops.site import SiteCalibration

FORMAT_VERSION = 3
#: Format of a site-calibrated bundle (``cxr-edge site calibrate``): a runtime that cannot apply the
#: ``site`` section refuses the bundle instead of silently predicting as its parent.
SITE_FORMAT_VERSION = 4
#: Versions this runtime reads. Version 2 added segmenters, feature outputs with CAM weights,
#: accuracy gates, fitted ensembles (weights, stacking, temperature) and pruning records. Version 3
#: added the label map, the referral band, the lung-evidence threshold and the model card. Version 4
#: added the site calibration. An older manifest is a valid newer one without the newer fields (and
#: may not use them).
READABLE_VERSIONS = (1, 2, 3, 4)
MANIFEST_NAME = "manifest.json"
SCHEMA_FILE = Path(__file__).resolve().parent / "schema" / "bundle-manifest.schema.json"


@dataclass(frozen=True)
class EnsembleConfig:
    """How member models' probabilities are combined (see :mod:`cxr_edge.ops.ensemble`).

    Attributes:
        method: ``vote``, ``mean``, ``weighted`` or ``stacking``.
        members: Names of the models that run by default, in the order weights/stacking expect.
        weights: One weight per member for ``weighted`` (fitted on validation).
        stacking: The fitted meta-learner for ``stacking``.
        temperature: Temperature applied to the combined probabilities (fitted on validation unless
            ``convert --temperature`` set it; provenance says which; 1 = none).
        abstain: Referral band applied to the tempered probabilities: below it a prediction carries a
            referral ("refer to a radiologist") instead of standing on its own; None = no band.
    """

    method: str = "mean"
    members: tuple[str, ...] = ()
    weights: tuple[float, ...] | None = None
    stacking: Stacker | None = None
    temperature: float = 1.0
    abstain: ReferralBand | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SpecError("unknown ensemble method", expected=" or ".join(METHODS), received=self.method)
        if self.method == "weighted" and (self.weights is None or len(self.weights) != len(self.members)):
            raise SpecError(
                "weighted ensemble needs one weight per member",
                expected=f"{len(self.members)} weights",
                received=str(self.weights),
            )
        if self.method == "stacking" and self.stacking is None:
            raise SpecError(
                "stacking ensemble needs its meta-learner", expected="a stacking object", received="none"
            )
        if not self.temperature > 0:
            raise SpecError(
                "invalid temperature", expected="a positive number", received=str(self.temperature)
            )

    def apply(self, member_probs: np.ndarray) -> np.ndarray:
        """What the runtime outputs for the members' probabilities: the combiner, then the temperature.

        Args:
            member_probs: ``(n_members, n_classes)`` or ``(n_members, n_images, n_classes)``, in
                ``members`` order.
        """
        probs = combine(member_probs, self.method, self.weights, self.stacking)
        return apply_temperature(probs, self.temperature) if self.temperature != 1.0 else probs

    def referral(self, labels: tuple[str, ...], probs: np.ndarray) -> str | None:
        """Why the tempered probabilities of one image fall in the referral band (None: they do not).

        Args:
            labels: Label order of ``probs``.
            probs: ``(n_classes,)`` output of :meth:`apply`.
        """
        if self.abstain is None:
            return None
        return referral_reason(dict(zip(labels, (float(p) for p in probs), strict=True)), self.abstain)


@dataclass(frozen=True)
class LungEvidence:
    """When a prediction's heat map lies too much outside the lungs (bundles with a segmenter).

    Attributes:
        min_fraction: Predictions whose lung fraction (:func:`cxr_edge.ops.cam.lung_fraction`) is below
            this are flagged "evidence outside the lungs".
        chosen_on: How ``min_fraction`` was chosen (``convert``: the 5th percentile over correctly
            classified validation images, see :func:`cxr_edge.ops.cam.choose_min_fraction`).
    """

    min_fraction: float
    chosen_on: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_fraction <= 1.0:
            raise SpecError(
                "invalid lung_evidence.min_fraction",
                expected="a fraction in [0, 1]",
                received=str(self.min_fraction),
            )


@dataclass(frozen=True)
class DecodeConfig:
    """Reduced-resolution DICOM decoding (:mod:`cxr_edge.imaging.pixels`) and the gate that allowed it.

    Attributes:
        min_side: Short side, in pixels, that a reduced decode keeps (twice what the model's resize
            needs, :func:`cxr_edge.evaluation.decode_gate.min_side_for`).
        reduced: Whether runtimes decode at reduced resolution (some kind passed the gate).
        kinds: The reduction kinds that passed (:data:`cxr_edge.imaging.pixels.KINDS`); a syntax whose
            kinds all failed is decoded at full resolution.
        gate: The parity gate's result per reduction kind: images, argmax agreement (overall and
            outside the referral band) and probability differences against full resolution.
    """

    min_side: int
    reduced: bool
    kinds: tuple[str, ...] = ()
    gate: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.min_side < 8:
            raise SpecError("invalid decode.min_side", expected=">= 8 pixels", received=str(self.min_side))


@dataclass(frozen=True)
class BundleManifest:
    """The parsed ``manifest.json``.

    Attributes:
        format_version: Bundle format version (one of :data:`READABLE_VERSIONS`).
        name: Human-readable bundle name.
        labels: Class labels in model output order (the task's labels).
        preprocess: The preprocessing spec every runtime applies.
        models: All classifiers in the bundle.
        ensemble: Which models run by default and how they are combined.
        provenance: Where the bundle came from (git commit, data hashes, metrics, commands).
        segmenter: The lung segmenter stage (decode -> segment -> crop -> classify), or None.
        label_map: Data-manifest label -> bundle label (e.g. ``bacterial -> pneumonia``) as the runs
            were trained; empty = identity. ``cxr-edge evaluate`` maps manifest rows through it.
        lung_evidence: The lung-fraction flag threshold (needs a segmenter), or None.
        card: The model card (:class:`cxr_edge.bundle.card.ModelCard`), or None (bundles before format 3).
        decode: Reduced-resolution decoding and its gate, or None (always full resolution).
        site: The site calibration (:class:`cxr_edge.ops.site.SiteCalibration`), or None.
        selftest: The self-test's golden inputs and outputs per stage, or None (older bundles).
    """

    format_version: int
    name: str
    labels: tuple[str, ...]
    preprocess: PreprocessSpec
    models: tuple[ModelEntry, ...]
    ensemble: EnsembleConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    segmenter: SegmenterEntry | None = None
    label_map: dict[str, str] = field(default_factory=dict)
    lung_evidence: LungEvidence | None = None
    card: ModelCard | None = None
    decode: DecodeConfig | None = None
    site: SiteCalibration | None = None
    selftest: SelfTestEntry | None = None

    def output(self, member_probs: np.ndarray) -> np.ndarray:
        """What the runtime outputs for the members' probabilities (in ``ensemble.members`` order):
        the combiner, the temperature, then the site calibration when there is one.

        Args:
            member_probs: ``(n_members, n_classes)`` or ``(n_members, n_images, n_classes)``; with a
                site calibration of method ``head``, the members' refitted-head probabilities.
        """
        probs = self.ensemble.apply(member_probs)
        return self.site.apply(probs) if self.site is not None else probs

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, *, schema: bool = True) -> BundleManifest:
        """Parses and checks a manifest dict (format version first, then every field).

        Args:
            data: The manifest's JSON object.
            schema: Validate against the committed JSON Schema first. The typed parse refuses the
                same documents (the schema is derived from these dataclasses), so :meth:`Bundle.load`
                skips it on the prediction path (a third of a cold start) and runs it only to name
                the offending field when the typed parse fails.
        """
        if not isinstance(data, dict):
            raise BundleError("bundle manifest is not a JSON object", received=type(data).__name__)
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            raise BundleError(
                "unsupported bundle format",
                expected=f"format_version in {READABLE_VERSIONS}",
                received=f"format_version {version!r}",
            )
        if schema:
            validate_schema(data)
        try:
            manifest = from_dict(cls, data, what="bundle manifest")
        except SpecError as exc:
            raise BundleError(f"invalid bundle manifest: {exc}") from exc
        manifest.check()
        return manifest

    def check(self) -> None:
        """Cross-field checks: unique labels and names, members exist, shapes agree with labels.

        A bundle holds classifiers, a segmenter, or both; a segmenter-only bundle (no models, labels or
        members) is what the lung-crop training data are made with.
        """
        self._check_version_fields()
        if self.segmenter is not None:
            self._check_segmenter(self.segmenter)
            if not self.models and not self.labels and not self.ensemble.members:
                return
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise BundleError("invalid label list", expected="unique labels", received=str(self.labels))
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise BundleError("duplicate model names", received=str(names))
        if not self.ensemble.members:
            raise BundleError("ensemble has no members", expected="at least one model name", received="[]")
        unknown = [m for m in self.ensemble.members if m not in names]
        if unknown:
            raise BundleError(
                "ensemble names unknown models", expected=f"names among {names}", received=str(unknown)
            )
        stacker = self.ensemble.stacking
        if stacker is not None:
            n_in, n_out = len(self.ensemble.members) * len(self.labels), len(self.labels)
            if (
                len(stacker.w1) != n_in
                or len(stacker.b2) != n_out
                or any(len(r) != n_out for r in stacker.w2)
            ):
                raise BundleError(
                    "stacking meta-learner does not fit the members and labels",
                    expected=f"{n_in} inputs and {n_out} outputs",
                    received=f"{len(stacker.w1)} inputs and {len(stacker.b2)} outputs",
                )
        for m in self.models:
            probs = m.outputs.get("probs")
            if probs is None or tuple(probs.shape) != (1, len(self.labels)):
                raise BundleError(
                    f"model {m.name} has no probability output matching the labels",
                    expected=f"outputs.probs of shape {(1, len(self.labels))}",
                    received=str(probs.shape if probs else sorted(m.outputs)),
                )
            # Channels may differ per model: the grey image is repeated to what each model takes.
            h, w = self.preprocess.input_size
            if tuple(m.input.shape[:3]) != (1, h, w) or m.input.shape[3] not in (1, 3):
                raise BundleError(
                    f"model {m.name} input does not match the preprocessing spec",
                    expected=f"(1, {h}, {w}, 1 or 3)",
                    received=str(m.input.shape),
                )

        strays = {k: v for k, v in self.label_map.items() if v not in self.labels}
        if strays:
            raise BundleError(
                "label map names labels the bundle does not have",
                expected=f"values among {list(self.labels)}",
                received=str(strays),
            )
        if self.lung_evidence is not None and self.segmenter is None:
            raise BundleError(
                "lung_evidence needs a segmenter", expected="a bundle with a segmenter", received="none"
            )
        if self.card is not None and tuple(self.card.task.labels) != tuple(self.labels):
            raise BundleError(
                "model card describes other labels",
                expected=str(list(self.labels)),
                received=str(list(self.card.task.labels)),
            )
        if self.site is not None:
            self._check_site(self.site)

    def _check_site(self, site: SiteCalibration) -> None:
        n = len(self.labels)
        if site.bias and len(site.bias) != n:
            raise BundleError(
                "site bias does not fit the labels", expected=f"{n} values", received=str(len(site.bias))
            )
        for name, head in site.heads.items():
            if name not in self.ensemble.members:
                raise BundleError(
                    "site head names a model that is not an ensemble member",
                    expected=f"one of {list(self.ensemble.members)}",
                    received=name,
                )
            features = self.model(name).outputs.get("features")
            channels = features.shape[-1] if features is not None else None
            if channels is None or len(head.weights) != channels or len(head.bias) != n:
                raise BundleError(
                    f"site head of {name} does not fit the model",
                    expected=f"({channels}, {n}) weights over its features output and {n} biases",
                    received=f"({len(head.weights)}, {len(head.weights[0]) if head.weights else 0}) "
                    f"weights, {len(head.bias)} biases",
                )
            if any(len(row) != n for row in head.weights):
                raise BundleError(f"site head of {name} has ragged weights", expected=f"{n} per row")
        if site.operating_point is not None and site.operating_point.normal_label not in self.labels:
            raise BundleError(
                "site operating point names an unknown label",
                expected=f"one of {list(self.labels)}",
                received=site.operating_point.normal_label,
            )

    def _check_version_fields(self) -> None:
        """Fields of a later format in an older manifest are refused (an older runtime would drop them)."""
        newer = {
            "label_map": bool(self.label_map),
            "ensemble.abstain": self.ensemble.abstain is not None,
            "lung_evidence": self.lung_evidence is not None,
            "card": self.card is not None,
        }
        used = [k for k, v in newer.items() if v]
        if self.format_version < 3 and used:
            raise BundleError(
                f"format {self.format_version} manifest uses format-3 fields",
                expected="format_version 3",
                received=", ".join(used),
            )
        # Both ways: a site section needs format 4, and format 4 means "calibrated", so that a runtime
        # which reads only up to format 3 refuses every bundle it could not apply in full.
        if (self.site is not None) != (self.format_version >= SITE_FORMAT_VERSION):
            raise BundleError(
                "site calibration and format version disagree",
                expected=f"a site section exactly when format_version is {SITE_FORMAT_VERSION}",
                received=f"format_version {self.format_version}, "
                f"{'a' if self.site is not None else 'no'} site section",
            )

    @staticmethod
    def _check_segmenter(seg: SegmenterEntry) -> None:
        mask = seg.outputs.get("mask")
        expected = (1, *seg.preprocess.input_size, 1)
        if mask is None or tuple(mask.shape) != expected:
            raise BundleError(
                f"segmenter {seg.name} has no mask output matching its input",
                expected=f"outputs.mask of shape {expected}",
                received=str(mask.shape if mask else sorted(seg.outputs)),
            )
        if tuple(seg.input.shape) != (1, *seg.preprocess.input_shape):
            raise BundleError(
                f"segmenter {seg.name} input does not match its preprocessing spec",
                expected=str((1, *seg.preprocess.input_shape)),
                received=str(seg.input.shape),
            )

    def model(self, name: str) -> ModelEntry:
        """Returns the entry called ``name``."""
        for m in self.models:
            if m.name == name:
                return m
        raise BundleError(
            "no such model in the bundle", expected=str([m.name for m in self.models]), received=name
        )


def manifest_schema() -> dict:
    """The JSON Schema of ``manifest.json``, derived from :class:`BundleManifest`."""
    return json_schema(BundleManifest, title="cxr-edge bundle manifest")


def validate_schema(data: dict) -> None:
    """Validates a manifest against the committed JSON Schema (what other runtimes validate with too)."""
    import jsonschema  # deferred: only loading a bundle needs it

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        # best_match descends into "anyOf" (optional parts such as the card), naming the innermost field.
        first = jsonschema.exceptions.best_match(errors)
        where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise BundleError(
            f"bundle manifest does not follow its schema at {where}: {first.message}",
            expected=f"a manifest valid against {SCHEMA_FILE.name}",
            received=f"{len(errors)} schema violation(s)",
        )
