"""What a bundle is built from and how: one frozen recipe, checked before minutes of conversion.

:func:`cxr_edge.convert.build.build_bundle` takes a :class:`BundleRecipe` and runs its stages;
``cxr-edge convert`` is a recipe written as options. A recipe holds no images and no models, so an
inconsistent one (a member variant that is not converted, a combiner the member count cannot fit)
fails here, at once, with a typed error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from cxr_edge.convert.gates import GateThresholds
from cxr_edge.convert.tflite import Quant
from cxr_edge.errors import SpecError
from cxr_edge.ops.ensemble import METHODS, WEIGHT_RULES
from cxr_edge.ops.quality import ReferralBand

#: Training images used to calibrate full-integer variants (spread over the split).
DEFAULT_CALIBRATION = 200


@dataclass(frozen=True)
class BundleRecipe:
    """A bundle's sources and settings (everything ``cxr-edge convert`` records in provenance).

    Attributes:
        runs: Training run folders (same labels and preprocessing); two or more make an ensemble.
        manifest: The data manifest CSV.
        split: The split the runs were trained on.
        root: Image root (default: beside the data manifest).
        name: Bundle name.
        quants: Variants to convert (``fp32``, ``fp16``, ``dynamic_int8``, ``int8``, ``uint8``).
        member_quant: Which variant the ensemble runs by default.
        member_fallback: Variant a member runs when its ``member_quant`` variant fails the gate ("int8
            where the gate passes"); the failed variant is left out of the bundle and provenance
            records the fallback with the gate's failures. None: a failed gate stops the conversion.
        method: The default combiner (:data:`cxr_edge.ops.ensemble.METHODS`); with two or more runs,
            weights and the stacker are fitted on validation and stored whatever the method.
        weight_rule: :data:`cxr_edge.ops.ensemble.WEIGHT_RULES`: ``logloss`` (optimised on the
            simplex) or ``accuracy`` (the paper's rule).
        segmenter: Segmenter bundle (``cxr-edge convert-segmenter``) for lung-crop runs; it must be the
            one that made the runs' crop table.
        thresholds: Accuracy gate applied to every converted variant (on validation).
        allow_degraded: Keep variants that fail the gate (recorded in the manifest) instead of stopping.
        referral: Referral band stored in the ensemble (applied after the temperature), or None.
        temperature: Ensemble temperature overriding the one fitted on validation (e.g. one fitted on
            leave-one-source-out predictions); provenance records which was used.
        card: Card input file (TOML/JSON: intended use, failure modes, recipe, LOSO and audit paths);
            without it the card says that no LOSO evaluation was recorded.
        n_calibration: Training images used to calibrate int8.
        decode_gate_images: Validation images for the decode parity gate (reduced-resolution DICOM
            decoding, :mod:`cxr_edge.evaluation.decode_gate`); 0 skips it (the bundle then always
            decodes at full resolution).
        max_per_part: Cap images per split part (quick runs and tests).
    """

    runs: tuple[Path, ...]
    manifest: Path
    split: Path
    root: Path | None = None
    name: str = "cxr-edge"
    quants: tuple[Quant, ...] = (Quant.FP32, Quant.INT8)
    member_quant: Quant = Quant.INT8
    member_fallback: Quant | None = None
    method: str = "mean"
    weight_rule: str = "logloss"
    segmenter: Path | None = None
    thresholds: GateThresholds = dataclasses.field(default_factory=GateThresholds)
    allow_degraded: bool = False
    referral: ReferralBand | None = None
    temperature: float | None = None
    card: Path | None = None
    n_calibration: int = DEFAULT_CALIBRATION
    decode_gate_images: int = 0
    max_per_part: int | None = None

    def __post_init__(self) -> None:
        # Accept what a caller naturally has (strings, lists) and store one type per field.
        def put(field: str, value) -> None:
            object.__setattr__(self, field, value)

        put("runs", tuple(Path(r) for r in self.runs))
        put("manifest", Path(self.manifest))
        put("split", Path(self.split))
        for field in ("root", "segmenter", "card"):
            if getattr(self, field) is not None:
                put(field, Path(getattr(self, field)))
        put("quants", tuple(_quant(q) for q in self.quants))
        put("member_quant", _quant(self.member_quant))
        if self.member_fallback is not None:
            put("member_fallback", _quant(self.member_fallback))
        self._check()

    def _check(self) -> None:
        if not self.runs:
            raise SpecError("no training runs", expected="one or more run folders", received="none")
        if self.member_quant not in self.quants:
            raise SpecError(
                "member variant not converted (--member must be one of --quant)",
                expected=f"one of {', '.join(q.value for q in self.quants)}",
                received=self.member_quant.value,
            )
        fallback = self.member_fallback
        if fallback is not None and (fallback not in self.quants or fallback == self.member_quant):
            raise SpecError(
                "member fallback not converted",
                expected=f"another of {[q.value for q in self.quants]}",
                received=fallback.value,
            )
        check_method(self.method, len(self.runs))  # before minutes of conversion, not after
        if self.weight_rule not in WEIGHT_RULES:
            raise SpecError(
                "unknown weight rule", expected=" or ".join(WEIGHT_RULES), received=self.weight_rule
            )
        if self.n_calibration < 1 or self.decode_gate_images < 0:
            raise SpecError(
                "invalid image counts",
                expected="n_calibration >= 1, decode_gate_images >= 0",
                received=f"{self.n_calibration}, {self.decode_gate_images}",
            )


def check_method(method: str, n_members: int) -> None:
    """Raises :class:`SpecError` for an unknown combiner or one the member count cannot fit."""
    if method not in METHODS:
        raise SpecError("unknown ensemble method", expected=" or ".join(METHODS), received=method)
    if method in ("weighted", "stacking") and n_members < 2:
        raise SpecError(
            f"{method} needs two or more members", expected="several runs", received=f"{n_members}"
        )


def _quant(value: str | Quant) -> Quant:
    try:
        return Quant(value)
    except ValueError:
        raise SpecError(
            "unknown variant", expected=", ".join(q.value for q in Quant), received=str(value)
        ) from None
