"""Parity of a converted model with its Keras source, measured on the validation split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_edge.metrics import classification_metrics


def parity(
    reference: np.ndarray, converted: np.ndarray, y_true: Sequence[int], labels: Sequence[str]
) -> dict:
    """Compares class probabilities of a converted model with the Keras reference.

    Args:
        reference: ``(n, k)`` Keras probabilities.
        converted: ``(n, k)`` TFLite probabilities on the same inputs.
        y_true: True class indices (for the macro-AUC difference).
        labels: Class labels.

    Returns:
        ``{"n", "argmax_agreement", "max_abs_diff", "mean_abs_diff", "auc_macro_reference",
        "auc_macro_converted", "auc_macro_drop"}``.
    """
    reference, converted = np.asarray(reference, np.float64), np.asarray(converted, np.float64)
    diff = np.abs(reference - converted)
    auc_ref = classification_metrics(y_true, reference, labels)["auc_macro"]
    auc_conv = classification_metrics(y_true, converted, labels)["auc_macro"]
    return {
        "n": len(reference),
        "argmax_agreement": float(np.mean(reference.argmax(1) == converted.argmax(1))),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "auc_macro_reference": auc_ref,
        "auc_macro_converted": auc_conv,
        "auc_macro_drop": None if auc_ref is None or auc_conv is None else auc_ref - auc_conv,
    }
