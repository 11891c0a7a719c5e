"""What a site measures on its labelled images, each number with its interval.

* per label: sensitivity and specificity (exact Clopper-Pearson intervals);
* within-site AUC, one-vs-rest per labelled class and abnormal-vs-normal (score ``1 - p(normal)``),
  with DeLong intervals: the ranking, which no threshold or prior can repair;
* abnormal-vs-normal sensitivity and specificity of the predicted label;
* accuracy, balanced accuracy (mean recall over the labelled classes), expected calibration error,
  log-loss, the referral rate, the confusion matrix;
* how many cases would narrow each proportion's interval to +-0.05 (:func:`cases_for_width`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_edge.errors import SpecError
from cxr_edge.evaluation.card_stats import rate
from cxr_edge.evaluation.stats import clopper_pearson, delong_where_defined, expected_calibration_error

#: The interval half-width a site study aims for.
TARGET_HALF_WIDTH = 0.05
_EPS = 1e-12


def site_metrics(
    y: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    *,
    normal: str | None = "normal",
    referred: np.ndarray | None = None,
) -> dict:
    """Every site metric of one set of outputs (JSON-ready).

    Args:
        y: ``(n,)`` true label indices.
        probs: ``(n, n_classes)`` outputs.
        labels: Label order.
        normal: The normal label (abnormal = every other); None or absent from ``labels``: no
            abnormal-vs-normal block.
        referred: ``(n,)`` whether each output was referred, for the referral rate.
    """
    y = np.asarray(y, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(axis=1)
    counts = np.bincount(y, minlength=len(labels))
    present = [i for i in range(len(labels)) if counts[i] > 0]
    per_class, auc = {}, {}
    for i, label in enumerate(labels):
        pos = y == i
        per_class[label] = {
            "n": int(pos.sum()),
            "sensitivity": rate(int((pred[pos] == i).sum()), int(pos.sum())),
            "specificity": rate(int((pred[~pos] != i).sum()), int((~pos).sum())),
        }
        auc[label] = delong_where_defined(probs[:, i], pos)
    recalls = [per_class[labels[i]]["sensitivity"]["value"] for i in present]
    out = {
        "n": len(y),
        "labels": list(labels),
        "accuracy": rate(int((pred == y).sum()), len(y)),
        "balanced_accuracy": float(np.mean(recalls)),
        "per_class": per_class,
        "auc_one_vs_rest": auc,
        "ece": expected_calibration_error(probs, y) if len(y) else None,
        "log_loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], _EPS, 1.0)))),
        "confusion": np.array(
            [[int(((y == t) & (pred == p)).sum()) for p in range(len(labels))] for t in range(len(labels))]
        ).tolist(),
    }
    if normal is not None and normal in labels:
        k = list(labels).index(normal)
        abnormal = y != k
        called = pred != k
        out["abnormal"] = {
            "normal_label": normal,
            "auc": delong_where_defined(1.0 - probs[:, k], abnormal),
            "sensitivity": rate(int((called & abnormal).sum()), int(abnormal.sum())),
            "specificity": rate(int((~called & ~abnormal).sum()), int((~abnormal).sum())),
        }
    if referred is not None:
        out["referral_rate"] = rate(int(np.sum(referred)), len(y))
    return out


def balanced_accuracy(y: np.ndarray, probs: np.ndarray) -> float | None:
    """Mean recall over the classes present in ``y`` (None when ``y`` is empty)."""
    y = np.asarray(y, dtype=int)
    if not len(y):
        return None
    pred = np.asarray(probs).argmax(axis=1)
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def cases_for_width(p: float | None, n: int, half_width: float = TARGET_HALF_WIDTH) -> int | None:
    """Cases needed for a 95% Clopper-Pearson interval no wider than ``+-half_width`` at proportion ``p``.

    Starts from the normal approximation and walks up until the exact interval is narrow enough.
    Returns None when ``p`` is unknown. The answer is a total; subtract ``n`` for "how many more".
    """
    if p is None:
        return None
    if not 0 < half_width < 0.5:
        raise SpecError("invalid interval half-width", expected="in (0, 0.5)", received=str(half_width))
    m = max(1, int(np.floor(1.96**2 * p * (1 - p) / half_width**2 * 0.8)))
    while True:
        lo, hi = clopper_pearson(round(p * m), m)
        if (hi - lo) / 2 <= half_width or m > 100_000:
            return m
        m = int(np.ceil(m * 1.05)) + 1


def more_cases(metrics: dict) -> dict:
    """Per proportion of :func:`site_metrics`: current cases, total needed for +-0.05, and more needed."""
    out = {}

    def add(name: str, r: dict) -> None:
        need = cases_for_width(r["value"], r["n"])
        if need is not None:
            out[name] = {"n": r["n"], "needed": need, "more": max(0, need - r["n"])}

    add("accuracy", metrics["accuracy"])
    for label, block in metrics["per_class"].items():
        if block["n"]:
            add(f"sensitivity {label}", block["sensitivity"])
    if "abnormal" in metrics:
        add("abnormal sensitivity", metrics["abnormal"]["sensitivity"])
        add("abnormal specificity", metrics["abnormal"]["specificity"])
    return out
