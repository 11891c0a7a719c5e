"""Classification metrics in plain numpy (the statistics issue adds intervals and tests on top)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties.
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, per-class one-vs-rest AUC, sensitivity and specificity, macro AUC, confusion matrix.

    Args:
        y_true: True class indices.
        probs: ``(n, n_classes)`` probabilities.
        labels: Class names in column order.

    Returns:
        ``{"n", "accuracy", "auc_macro", "per_class": {label: {...}}, "confusion": [[...]]}``;
        ``auc_macro`` averages the classes whose AUC is defined (None when none is).
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
        per_class[label] = {
            "n": int(confusion[c].sum()),
            "auc": auc,
            "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
            "specificity": float(tn / (tn + fp)) if tn + fp else None,
        }
    return {
        "n": len(y_true),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else None,
        "auc_macro": float(np.mean(aucs)) if aucs else None,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }
