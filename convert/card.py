"""What ``cxr-edge convert`` adds to a format-3 bundle after its models: lung evidence and the model card.

Both are computed with the runtime itself (:class:`cxr_edge.runtime.pipeline.Predictor` on the staged
bundle), so the threshold and the statistics describe exactly what ``cxr-edge predict`` will report.
Nothing here needs TensorFlow.

**Lung-evidence threshold** (bundles with a segmenter): every validation image goes through the
staged bundle's pipeline; ``min_fraction`` is the 5th percentile of the lung fraction over the
correctly classified validation images that have one (:func:`cxr_edge.ops.cam.choose_min_fraction`).
The test split is never used to choose it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxr_edge.bundle.card import (
    CardTask,
    LosoRecord,
    LungEvidenceStats,
    ModelCard,
    load_card_input,
    read_audit,
    read_loso,
)
from cxr_edge.bundle.folder import Bundle
from cxr_edge.bundle.manifest import EnsembleConfig, LungEvidence
from cxr_edge.dataset.manifest import Record
from cxr_edge.errors import SpecError
from cxr_edge.evaluation.card_stats import lung_evidence_stats, referral_results, split_results, training_data
from cxr_edge.ops.cam import MIN_FRACTION_PERCENTILE, choose_min_fraction
from cxr_edge.runtime.pipeline import Predictor

#: Intended use written into cards built without ``--card``.
DEFAULT_INTENDED_USE = (
    "Research and teaching: studying how chest X-ray classifiers behave on devices and in hospitals "
    "they were not trained on. Not for the care of patients."
)


def lung_evidence_on_validation(
    bundle_dir: str | Path,
    images: Sequence[np.ndarray],
    records: Sequence[Record],
    y: np.ndarray,
    progress: bool = False,
) -> tuple[LungEvidence | None, LungEvidenceStats, dict]:
    """Runs the staged bundle on validation images and chooses the lung-evidence threshold.

    Returns:
        ``(lung_evidence or None, statistics per source on validation, provenance entry)``; the
        threshold is None when no correctly classified validation image has a lung fraction.
    """
    from tqdm import tqdm

    predictor = Predictor(Bundle.load(bundle_dir))
    labels = predictor.labels
    fractions, correct = [], []
    for image, truth in tqdm(list(zip(images, y, strict=True)), desc="lung evidence", disable=not progress):
        pred = predictor.predict_image(image)
        fractions.append(pred.lung_fraction)
        correct.append(labels.index(pred.label) == int(truth))
    sources = [r.source for r in records]
    rule = (
        f"{MIN_FRACTION_PERCENTILE:g}th percentile (linear interpolation) of the lung fraction over the "
        "correctly classified validation images with a lung crop"
    )
    info: dict[str, Any] = {
        "rule": rule,
        "n_validation": len(fractions),
        "n_with_fraction": sum(f is not None for f in fractions),
        "n_correct": int(sum(correct)),
    }
    chosen = choose_min_fraction(fractions, correct)
    if chosen is None:
        info["threshold"] = "none: no correctly classified validation image has a lung fraction"
        return None, lung_evidence_stats(fractions, sources, None, "validation"), info
    min_fraction, used = chosen
    info["n_used"] = used
    evidence = LungEvidence(
        min_fraction=min_fraction,
        chosen_on=f"validation split: {MIN_FRACTION_PERCENTILE:g}th percentile of the lung fraction over "
        f"{used} correctly classified images",
    )
    return evidence, lung_evidence_stats(fractions, sources, min_fraction, "validation"), info


def in_distribution(
    ensemble: EnsembleConfig,
    temperature_source: str,
    probs: Mapping[str, np.ndarray],
    y: Mapping[str, np.ndarray],
    records: Mapping[str, Sequence[Record]],
    labels: Sequence[str],
) -> dict:
    """The card's in-distribution block: the ensemble on validation and test, overall and per source.

    ``{"ensemble": {"method", "members", "temperature", "temperature_source"}, "val": {...}, "test":
    {...}, "abstain": {...}}``; each split holds ``n``, ``accuracy`` (rate with a 95% Clopper-Pearson
    interval), ``auc_macro``, ``sensitivity`` per label and ``by_source``; ``abstain`` (bundles with a
    band) is measured on validation.
    """
    out: dict[str, Any] = {
        "ensemble": {
            "method": ensemble.method,
            "members": list(ensemble.members),
            "temperature": float(ensemble.temperature),
            "temperature_source": temperature_source,
        }
    }
    for part in ("val", "test"):
        if len(y[part]):
            out[part] = split_results(y[part], probs[part], [r.source for r in records[part]], labels)
    if ensemble.abstain is not None and len(y["val"]):
        out["abstain"] = referral_results(y["val"], probs["val"], labels, ensemble.abstain)
    return out


def make_card(
    card_file: str | Path | None,
    labels: Sequence[str],
    label_map: Mapping[str, str],
    train_records: Sequence[Record],
    in_dist: dict,
    lung_stats: LungEvidenceStats | None,
    warnings: Sequence[str] = (),
) -> tuple[ModelCard, dict]:
    """The bundle's model card: the human parts from ``card_file`` (optional), the rest from the build.

    ``warnings`` (:func:`cxr_edge.convert.gates.usefulness`) become the first failure modes.

    Returns:
        ``(card, provenance entry)``.

    Raises:
        SpecError: The card file is invalid, or its LOSO report is about other labels.
    """
    info: dict[str, Any] = {"card_file": str(card_file) if card_file else None}
    intended, failure_modes, loso, audit = DEFAULT_INTENDED_USE, (), LosoRecord(), None
    if card_file is not None:
        given, base = load_card_input(card_file)
        intended, failure_modes = given.intended_use, given.failure_modes
        if given.loso:
            loso = read_loso(base / given.loso, given.recipe, given.loso_command)
            if tuple(loso.report["labels"]) != tuple(labels):
                raise SpecError(
                    "the LOSO report is about other labels",
                    expected=str(list(labels)),
                    received=f"{loso.report['labels']} in {given.loso}",
                )
            info["loso"] = str(base / given.loso)
        if given.audit:
            audit = read_audit(base / given.audit)
            info["audit"] = str(base / given.audit)
    card = ModelCard(
        intended_use=intended,
        task=CardTask(labels=tuple(labels), label_map=dict(label_map)),
        training_data=training_data(train_records),
        loso=loso,
        in_distribution=in_dist,
        shortcut_audit=audit,
        failure_modes=(
            *(f"This bundle looks useless on validation: {w}." for w in warnings),
            *failure_modes,
        ),
        lung_evidence=lung_stats,
    )
    return card, info
