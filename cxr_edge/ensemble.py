"""Combining member models' probabilities (numpy only, so every runtime can mirror it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_edge.errors import SpecError


def combine(probs: np.ndarray, method: str = "mean", weights: Sequence[float] | None = None) -> np.ndarray:
    """Combines per-model class probabilities.

    Args:
        probs: ``(n_models, n_classes)`` probabilities, or ``(n_models, n_images, n_classes)``.
        method: ``mean`` (arithmetic average) or ``weighted`` (normalised weighted average).
        weights: One non-negative weight per model for ``weighted``.

    Returns:
        Combined probabilities with the model axis removed; rows sum to 1 when the inputs do.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim < 2 or probs.shape[0] == 0:
        raise SpecError(
            "nothing to combine",
            expected="(n_models, ..., n_classes) probabilities",
            received=str(probs.shape),
        )
    if method == "mean":
        return probs.mean(axis=0)
    if method == "weighted":
        w = np.asarray(weights if weights is not None else [], dtype=np.float64)
        if w.shape != (probs.shape[0],) or np.any(w < 0) or w.sum() <= 0:
            raise SpecError(
                "invalid ensemble weights",
                expected=f"{probs.shape[0]} non-negative weights",
                received=str(weights),
            )
        return np.tensordot(w / w.sum(), probs, axes=1)
    raise SpecError("unknown ensemble method", expected="mean or weighted", received=method)
