"""Numbers for people: one way to write a value with its interval, everywhere (reports, cards, LOSO)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def interval(
    value: float | Mapping[str, Any] | None,
    ci: Sequence[float] | None = None,
    digits: int = 2,
    missing: str = "-",
) -> str:
    """``0.84 (0.78-0.89)``: a value and its interval (``0.84`` without one; ``missing`` without a value).

    Args:
        value: The value, or a rate ``{"value", "ci"}`` (as :func:`cxr_edge.evaluation.loso.score` and the
            model card store them).
        ci: ``(low, high)``, when ``value`` is a number.
        digits: Decimals.
        missing: What an undefined value reads as.
    """
    if isinstance(value, Mapping):
        value, ci = value.get("value"), value.get("ci")
    if value is None:
        return missing
    text = f"{value:.{digits}f}"
    return text + (f" ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})" if ci else "")
