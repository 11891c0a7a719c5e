"""The statistics a model card holds, computed at conversion and evaluation: rates with Clopper-Pearson
intervals, in-distribution results per split and source, what the referral band does, training counts
and lung-evidence statistics (the fields are :mod:`cxr_edge.bundle.card`'s)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from cxr_edge.bundle.card import LungEvidenceStats, LungStats


def rate(k: int, n: int) -> dict:
    """``{"k", "n", "value", "ci"}`` with a 95% Clopper-Pearson interval (the LOSO report's rate form)."""
    from cxr_edge.evaluation.stats import clopper_pearson

    if n == 0:
        return {"k": 0, "n": 0, "value": None, "ci": None}
    lo, hi = clopper_pearson(int(k), int(n))
    return {"k": int(k), "n": int(n), "value": k / n, "ci": [lo, hi]}


def split_results(y: np.ndarray, probs: np.ndarray, sources: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy (with interval), macro AUC and per-class sensitivity, overall and per source."""
    from cxr_edge.evaluation.metrics import classification_metrics

    def block(mask: np.ndarray) -> dict:
        yy, pp = y[mask], probs[mask]
        pred = pp.argmax(axis=1)
        m = classification_metrics(yy, pp, labels)
        return {
            "n": int(mask.sum()),
            "accuracy": rate(int((pred == yy).sum()), int(mask.sum())),
            "auc_macro": m["auc_macro"],
            "sensitivity": {
                lab: rate(int((pred[yy == i] == i).sum()), int((yy == i).sum()))
                for i, lab in enumerate(labels)
            },
        }

    sources = np.asarray(sources)
    out = block(np.ones(len(y), dtype=bool))
    out["by_source"] = {s: block(sources == s) for s in sorted(set(sources.tolist()))}
    return out


def referral_results(y: np.ndarray, probs: np.ndarray, labels: Sequence[str], band: Any) -> dict:
    """What an referral band does on labelled data: share referred, accuracy of what is reported."""
    from cxr_edge.ops.quality import referral_reason

    referred = np.array(
        [referral_reason(dict(zip(labels, p, strict=True)), band) is not None for p in probs], bool
    )
    kept = ~referred
    correct = probs.argmax(axis=1) == y
    return {
        "min_top_prob": band.min_top_prob,
        "min_margin": band.min_margin,
        "referred": rate(int(referred.sum()), len(y)),
        "accuracy_reported": rate(int(correct[kept].sum()), int(kept.sum())),
    }


def training_data(records: Iterable[Any]) -> dict[str, dict[str, int]]:
    """``{source: {manifest label: images}}`` (records' ``manifest_label``, before the label map)."""
    counts: dict[str, Counter] = {}
    for r in records:
        counts.setdefault(r.source, Counter())[r.manifest_label] += 1
    return {s: dict(sorted(c.items())) for s, c in sorted(counts.items())}


def lung_stats(fractions: Sequence[float | None], min_fraction: float | None) -> LungStats:
    """Summary of lung fractions (None entries, where the crop fell back, are left out)."""
    values = np.array([f for f in fractions if f is not None], dtype=np.float64)
    if not len(values):
        return LungStats(n=0)
    flagged = None if min_fraction is None else float((values < min_fraction).mean())
    return LungStats(len(values), float(values.mean()), float(np.median(values)), flagged)


def lung_evidence_stats(
    fractions: Sequence[float | None], sources: Sequence[str], min_fraction: float | None, split: str
) -> LungEvidenceStats:
    """:class:`LungEvidenceStats` of one split, overall and per source."""
    by: dict[str, list] = {}
    for f, s in zip(fractions, sources, strict=True):
        by.setdefault(s, []).append(f)
    return LungEvidenceStats(
        split=split,
        min_fraction=min_fraction,
        overall=lung_stats(fractions, min_fraction),
        by_source={s: lung_stats(v, min_fraction) for s, v in sorted(by.items())},
    )
