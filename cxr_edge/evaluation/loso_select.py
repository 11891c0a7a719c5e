"""Choices made by leave-one-source-out: ensembles of LOSO experiments, their weights, temperature, referral.

Every LOSO experiment predicts each kit image once, with the fold model that never saw the image's
source. Experiments run on the same folds can therefore be combined image by image: the ensemble of
the fold-``s`` models of several recipes is exactly what an ensemble trained without source ``s``
would output. This module scores such ensembles and fits what an ensemble needs *across folds*:

* weights (the paper's weighted averaging) and the temperature are fitted **leave-one-fold-out**:
  the parameters applied to source ``s`` are fitted on the held-out predictions of the other
  sources only, so the score of a fitted ensemble is not optimistic about its own fold;
* the referral threshold (referral) is read off the pooled held-out predictions as the coverage /
  accuracy trade-off on sources the models never saw, the situation the band exists for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_edge.errors import SpecError
from cxr_edge.evaluation import loso_signal
from cxr_edge.evaluation.loso import HeldOut, score, selection_score
from cxr_edge.evaluation.stats import clopper_pearson, fit_temperature
from cxr_edge.ops.ensemble import apply_temperature, combine, logloss_weights


def align(experiments: Sequence[HeldOut]) -> list[HeldOut]:
    """The experiments restricted to the images all of them predicted, in one order.

    Raises:
        SpecError: The experiments disagree on labels or on an image's label/source.
    """
    if not experiments:
        raise SpecError("no experiments", expected="at least one LOSO experiment", received="none")
    first = experiments[0]
    common = set(first.paths)
    for e in experiments[1:]:
        if e.labels != first.labels:
            raise SpecError(
                "experiments disagree on labels", expected=str(first.labels), received=str(e.labels)
            )
        common &= set(e.paths)
    order = sorted(common)
    out = []
    for e in experiments:
        index = {p: i for i, p in enumerate(e.paths)}
        rows = np.array([index[p] for p in order], dtype=np.int64)
        out.append(
            HeldOut(e.labels, tuple(order), e.sources[rows], e.y[rows], e.raw_labels[rows], e.probs[rows])
        )
    for e in out[1:]:
        if not (np.array_equal(e.y, out[0].y) and np.array_equal(e.sources, out[0].sources)):
            raise SpecError(
                "experiments disagree on images",
                expected="same labels and sources per path",
                received="a mismatch",
            )
    return out


def ensemble(experiments: Sequence[HeldOut], method: str = "mean") -> HeldOut:
    """The image-wise ensemble of aligned experiments with an unfitted combiner (``mean`` or ``vote``)."""
    aligned = align(experiments)
    stacked = np.stack([e.probs for e in aligned])
    return aligned[0].with_probs(combine(stacked, method))


#: How a temperature is fitted on held-out sources: ``pooled`` minimises the log-loss of every held-out
#: image together; ``source_median`` takes the median of each held-out source's own optimum, so that one
#: source on which the models are confidently wrong (its optimum is "flatten everything") does not set
#: the temperature for every hospital.
TEMPERATURE_RULES = ("pooled", "source_median")
#: Combiners fitted leave-one-fold-out (a stacking meta-learner per fold is not implemented).
METHODS = ("mean", "vote", "weighted")


def fitted_ensemble(
    experiments: Sequence[HeldOut],
    *,
    weighted: bool = True,
    temperature: bool = True,
    temperature_rule: str = "pooled",
) -> dict:
    """Leave-one-fold-out weighted averaging and temperature; the parameters for deployment too.

    Args:
        experiments: Aligned LOSO experiments (the members).
        weighted: Fit log-loss weights (else equal weights).
        temperature: Fit a temperature (else 1).
        temperature_rule: One of :data:`TEMPERATURE_RULES`.

    Returns:
        ``{"held": HeldOut of the fitted ensemble (honest per fold), "weights": final weights fitted on
        all folds, "temperature": final temperature, "per_fold": {source: {"weights", "temperature"}}}``.
    """
    if temperature_rule not in TEMPERATURE_RULES:
        raise SpecError(
            "unknown temperature rule", expected=" or ".join(TEMPERATURE_RULES), received=temperature_rule
        )
    aligned = align(experiments)
    stacked = np.stack([e.probs for e in aligned])
    y, sources = aligned[0].y, aligned[0].sources
    out = np.zeros_like(aligned[0].probs)
    per_fold = {}
    fit = {"weighted": weighted, "temperature": temperature, "rule": temperature_rule}
    for src in sorted(set(sources.tolist())):
        test, train = sources == src, sources != src
        w, t = _fit(stacked[:, train], y[train], sources[train], **fit)
        out[test] = _apply(stacked[:, test], w, t)
        per_fold[src] = {"weights": w, "temperature": t}
    w, t = _fit(stacked, y, sources, **fit)
    by_source = _source_temperatures(_apply(stacked, w, 1.0), y, sources)
    return {
        "held": aligned[0].with_probs(out),
        "weights": w,
        "temperature": t,
        "temperature_rule": temperature_rule,
        "temperature_by_source": by_source,
        "per_fold": per_fold,
    }


def _fit(
    stacked: np.ndarray, y: np.ndarray, sources: np.ndarray, *, weighted: bool, temperature: bool, rule: str
) -> tuple[list[float], float]:
    n = stacked.shape[0]
    weights = logloss_weights(stacked, y) if weighted and n > 1 else np.full(n, 1.0 / n)
    probs = combine(stacked, "weighted", tuple(float(v) for v in weights))
    if not temperature:
        t = 1.0
    elif rule == "source_median":
        t = float(np.median(list(_source_temperatures(probs, y, sources).values())))
    else:
        t = fit_temperature(probs, y)
    return [float(v) for v in weights], float(t)


def _source_temperatures(probs: np.ndarray, y: np.ndarray, sources: np.ndarray) -> dict[str, float]:
    """Each held-out source's own log-loss optimal temperature."""
    return {
        str(src): float(fit_temperature(probs[sources == src], y[sources == src]))
        for src in sorted(set(sources.tolist()))
    }


def _apply(stacked: np.ndarray, weights: Sequence[float], t: float) -> np.ndarray:
    probs = combine(stacked, "weighted", tuple(weights))
    return apply_temperature(probs, t) if t != 1.0 else probs


def referral_curve(
    held: HeldOut, thresholds: Sequence[float] = tuple(np.round(np.arange(0.34, 0.96, 0.02), 2))
) -> list[dict]:
    """Coverage and accuracy of reported images for each minimum top probability (the referral band).

    Each row: ``threshold``, ``reported`` (share of images not referred), accuracy of the reported
    images (with a Clopper-Pearson interval), accuracy of the referred ones, and the selection score
    over the reported images.
    """
    top = held.probs.max(axis=1)
    correct = held.probs.argmax(axis=1) == held.y
    rows = []
    for t in thresholds:
        keep = top >= t
        n_keep, n_ref = int(keep.sum()), int((~keep).sum())
        rows.append(
            {
                "threshold": float(t),
                "reported": n_keep / len(held),
                "accuracy_reported": float(correct[keep].mean()) if n_keep else None,
                "accuracy_reported_ci": list(clopper_pearson(int(correct[keep].sum()), n_keep))
                if n_keep
                else None,
                "accuracy_referred": float(correct[~keep].mean()) if n_ref else None,
                "score_reported": selection_score(held.subset(keep)) if n_keep else None,
            }
        )
    return rows


def choose_referral(curve: Sequence[dict], max_referred: float = 0.2) -> dict:
    """The highest threshold that refers at most ``max_referred`` of the held-out images.

    Rationale: a cart in an unseen hospital should refer the least confident images to a radiologist,
    but a band that refers most images is no triage. The threshold is read from held-out sources.
    """
    ok = [r for r in curve if 1.0 - r["reported"] <= max_referred + 1e-12]
    if not ok:
        raise SpecError(
            "no threshold refers few enough images",
            expected=f"<= {max_referred:.0%} referred",
            received="none",
        )
    return max(ok, key=lambda r: r["threshold"])


def summary(held: HeldOut) -> dict:
    """:func:`cxr_edge.evaluation.loso.score` of a (combined) experiment."""
    return score(held)


def paired_difference(a: HeldOut, b: HeldOut, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Selection-score difference ``a - b`` on the same images, with a paired bootstrap interval.

    Images are resampled within each (source, class) cell, so every cell keeps its size and the
    score keeps its meaning; both terms of the score (recall and within-source AUC,
    :data:`~cxr_edge.evaluation.loso_signal.SCORE_DEFINITION`) are recomputed on every replicate. The
    interval covers the uncertainty from *which images* were held out, not from training randomness
    (one training run per fold and recipe).

    Returns:
        ``{"difference", "ci": [lo, hi], "n_boot"}``.
    """
    a, b = align([a, b])
    cells = [
        np.flatnonzero((a.sources == s) & (a.y == c))
        for s in sorted(set(a.sources.tolist()))
        for c in range(len(a.labels))
    ]
    cells = [c for c in cells if len(c)]

    def score_of(held: HeldOut, rows: np.ndarray) -> float:
        return loso_signal.selection(held.sources[rows], held.y[rows], held.probs[rows], held.labels)

    every = np.concatenate(cells)
    diff = score_of(a, every) - score_of(b, every)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for i in range(n_boot):
        rows = np.concatenate([rng.choice(c, len(c)) for c in cells])
        boots[i] = score_of(a, rows) - score_of(b, rows)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"difference": float(diff), "ci": [float(lo), float(hi)], "n_boot": n_boot}
