"""Classification metrics in plain numpy (the statistics issue adds intervals and tests on top)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half).

    Args:
        scores: Scores, higher = more positive.
        positive: Boolean labels.

    Returns:
        The AUC, or None when one class is absent.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)  # average ranks over ties
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, macro AUC / sensitivity / precision / F1, MCC, per-class metrics, confusion matrix.

    Args:
        y_true: True class indices.
        probs: ``(n, n_classes)`` probabilities.
        labels: Class names in column order.

    Returns:
        ``{"n", "accuracy", "auc_macro", "sensitivity_macro", "precision_macro", "f1_macro", "mcc",
        "per_class": {label: {"n", "auc", "sensitivity", "specificity", "precision", "f1"}},
        "confusion": [[...]]}``. Macro averages run over the classes present in ``y_true``;
        ``auc_macro`` over the classes whose AUC is defined (None when none is).
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    y_pred = probs.argmax(axis=1)
    k = len(labels)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class = {}
    aucs = []
    for c, label in enumerate(labels):
        tp = confusion[c, c]
        fn = confusion[c].sum() - tp
        fp = confusion[:, c].sum() - tp
        tn = confusion.sum() - tp - fn - fp
        auc = roc_auc(probs[:, c], y_true == c)
        if auc is not None:
            aucs.append(auc)
        precision = float(tp / (tp + fp)) if tp + fp else None
        sensitivity = float(tp / (tp + fn)) if tp + fn else None
        f1 = (
            2 * precision * sensitivity / (precision + sensitivity)
            if precision is not None and sensitivity is not None and precision + sensitivity > 0
            else (0.0 if tp + fn else None)
        )
        per_class[label] = {
            "n": int(confusion[c].sum()),
            "auc": auc,
            "sensitivity": sensitivity,
            "specificity": float(tn / (tn + fp)) if tn + fp else None,
            "precision": precision,
            "f1": f1,
        }
    present = [v for v in per_class.values() if v["n"]]
    return {
        "n": len(y_true),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else None,
        "auc_macro": float(np.mean(aucs)) if aucs else None,
        "sensitivity_macro": _mean(v["sensitivity"] for v in present),
        "precision_macro": _mean(v["precision"] for v in present),
        "f1_macro": _mean(v["f1"] for v in present),
        "mcc": matthews(confusion),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def matthews(confusion: np.ndarray) -> float | None:
    """Matthews correlation coefficient for K classes (Gorodkin 2004; the usual MCC when K = 2).

    Returns None when it is undefined (a row or column total covers all samples).
    """
    c = np.asarray(confusion, dtype=np.float64)
    n = c.sum()
    t, p = c.sum(axis=1), c.sum(axis=0)  # true and predicted totals per class
    cov_tp = np.trace(c) * n - t @ p
    denom = np.sqrt((n * n - p @ p) * (n * n - t @ t))
    return float(cov_tp / denom) if denom > 0 else None


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None
