"""Honest statistics for classifier evaluation: intervals, paired tests, calibration (numpy + statsmodels).

Point metrics live in :mod:`cxr_edge.evaluation.metrics`; this module says how much to trust them.

* :func:`clopper_pearson` -- exact binomial interval for a proportion (accuracy, sensitivity...).
* :func:`delong` / :func:`delong_paired` -- AUC variance and the paired test for two AUCs on the same
  cases (DeLong et al. 1988, fast midrank algorithm of Sun & Xu 2014).
* :func:`auc_ci_clopper_pearson` -- the *invalid* "AUC as a proportion" interval, kept only to
  reproduce and compare with published numbers.
* :func:`mcnemar` -- paired test of two classifiers' accuracies on the same cases.
* :func:`bootstrap_ci` -- percentile bootstrap that resamples *patients*, not images, because images
  of one patient are correlated and row-level resampling understates the uncertainty.
* :func:`expected_calibration_error`, :func:`brier_score`, :func:`reliability_curve` -- calibration.
* :func:`fit_temperature` -- temperature scaling (Guo et al. 2017), applied at run time by
  :func:`cxr_edge.ops.ensemble.apply_temperature`.

Every function returns plain Python floats, ints, bools, lists, tuples or dicts so results can be
written to JSON as they are, and raises :class:`~cxr_edge.errors.SpecError` for invalid inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import optimize, special
from scipy import stats as sps
from statsmodels.stats import contingency_tables
from statsmodels.stats.proportion import proportion_confint

from cxr_edge.errors import SpecError

_EPS = 1e-12
# Below this many discordant pairs the chi-square approximation of McNemar's test is poor.
_MCNEMAR_EXACT_BELOW = 25
#: The temperature search range of :func:`fit_temperature`; a fit at either end means the optimum lies
#: beyond it (a model whose outputs carry no information gets the upper end).
TEMPERATURE_BOUNDS = (0.05, 20.0)
_LOG_T_BOUNDS = (float(np.log(TEMPERATURE_BOUNDS[0])), float(np.log(TEMPERATURE_BOUNDS[1])))


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided confidence interval for a binomial proportion ``k / n``.

    Args:
        k: Number of successes, ``0 <= k <= n``.
        n: Number of trials, at least 1.
        alpha: One minus the confidence level.

    Returns:
        ``(lower, upper)``; the lower bound is 0 when ``k == 0`` and the upper 1 when ``k == n``.

    Raises:
        SpecError: If ``n < 1``, ``k`` is not a whole number in ``[0, n]`` or ``alpha`` not in ``(0, 1)``.
    """
    _check_alpha(alpha)
    if not (_is_whole(n) and n >= 1):
        raise SpecError("a proportion needs at least one trial", expected="n >= 1", received=repr(n))
    if not (_is_whole(k) and 0 <= k <= n):
        raise SpecError("invalid number of successes", expected=f"an integer in [0, {n}]", received=repr(k))
    lo, hi = proportion_confint(int(k), int(n), alpha=alpha, method="beta")
    return float(lo), float(hi)


def auc_ci_clopper_pearson(auc: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson interval that treats an AUC as if it were a proportion of ``n`` cases.

    **This is NOT a valid confidence interval for an AUC.** The AUC is a U statistic over
    positive-negative *pairs*, not a count of independent successes among ``n`` cases: its variance
    depends on the class balance and the score distributions, and this interval can be far too wide
    or too narrow. Use :func:`delong` (or :func:`bootstrap_ci` when cases are grouped by patient) for
    real intervals. This function exists only to reproduce and compare with the intervals reported by
    Rajaraman et al. (2020), which were computed this way.

    The "number of successes" ``auc * n`` is not rounded (the beta quantiles accept non-integers).

    Args:
        auc: The AUC, in ``[0, 1]``.
        n: The number of cases it was computed on, at least 1.
        alpha: One minus the confidence level.

    Returns:
        ``(lower, upper)``.

    Raises:
        SpecError: If ``auc`` is not in ``[0, 1]``, ``n < 1`` or ``alpha`` not in ``(0, 1)``.
    """
    _check_alpha(alpha)
    if not (np.isfinite(auc) and 0.0 <= auc <= 1.0):
        raise SpecError("invalid AUC", expected="a number in [0, 1]", received=repr(auc))
    if not (_is_whole(n) and n >= 1):
        raise SpecError("an AUC needs at least one case", expected="n >= 1", received=repr(n))
    lo, hi = proportion_confint(float(auc) * int(n), int(n), alpha=alpha, method="beta")
    return float(lo), float(hi)


def delong(scores: np.ndarray, positive: np.ndarray, alpha: float = 0.05) -> dict:
    """AUC with its DeLong (1988) variance and a normal-approximation confidence interval.

    The structural components (placement values) come from the midrank algorithm of Sun & Xu
    (2014), which needs three sorts instead of the ``m * n`` comparisons of the original definition.
    Ties count one half, so the AUC equals :func:`cxr_edge.evaluation.metrics.roc_auc`.

    Args:
        scores: ``(n,)`` scores, higher = more positive.
        positive: ``(n,)`` labels, boolean or 0/1.
        alpha: One minus the confidence level.

    Returns:
        ``{"auc", "variance", "ci": [lower, upper]}``; the interval is ``auc +- z * sqrt(variance)``
        clipped to ``[0, 1]``. With perfectly separated classes the estimated variance is 0 and the
        interval collapses to a point: the normal approximation is useless there.

    Raises:
        SpecError: If lengths differ, scores are not finite, labels are not binary, or either class
            has fewer than 2 cases (the variance needs a sample variance within each class).
    """
    _check_alpha(alpha)
    scores, positive = _check_scores(scores, positive)
    v10, v01 = _placements(scores[None, :], positive)
    auc = float(v10[0].mean())
    variance = float(v10[0].var(ddof=1) / v10.shape[1] + v01[0].var(ddof=1) / v01.shape[1])
    half = float(sps.norm.ppf(1.0 - alpha / 2.0)) * np.sqrt(variance)
    return {
        "auc": auc,
        "variance": variance,
        "ci": [float(max(0.0, auc - half)), float(min(1.0, auc + half))],
    }


def delong_where_defined(scores: np.ndarray, positive: np.ndarray, alpha: float = 0.05) -> dict | None:
    """:func:`delong`, or None when either side has fewer than 2 cases (reports then show "-")."""
    positive = np.asarray(positive, dtype=bool)
    return None if positive.sum() < 2 or (~positive).sum() < 2 else delong(scores, positive, alpha)


def delong_paired(scores_a: np.ndarray, scores_b: np.ndarray, positive: np.ndarray) -> dict:
    """DeLong's two-sided test that two correlated AUCs (same cases, two scorers) are equal.

    Args:
        scores_a: ``(n,)`` scores of the first classifier.
        scores_b: ``(n,)`` scores of the second classifier on the same cases, in the same order.
        positive: ``(n,)`` labels, boolean or 0/1.

    Returns:
        ``{"auc_a", "auc_b", "difference", "z", "p_value"}`` with ``difference = auc_a - auc_b``.
        When the estimated variance of the difference is 0 the normal approximation breaks down:
        if the difference is also 0 (e.g. identical scorers) ``z`` is 0 and ``p_value`` 1; otherwise
        (e.g. a perfect scorer against a constant one) ``z`` and ``p_value`` are None rather than an
        infinite statistic and a p-value of exactly 0 that the data cannot support.

    Raises:
        SpecError: As :func:`delong`, or if the two score vectors differ in length.
    """
    scores_a, positive_a = _check_scores(scores_a, positive)
    scores_b, _ = _check_scores(scores_b, positive)
    v10, v01 = _placements(np.stack([scores_a, scores_b]), positive_a)
    auc_a, auc_b = float(v10[0].mean()), float(v10[1].mean())
    # Var(A - B) = L S L' with L = (1, -1) and S the covariance of the structural components; taking
    # the sample variance of the differenced components is the same quantity, and it is exactly 0
    # (not a rounding residue that could even be negative) when the two scorers agree.
    d10, d01 = v10[0] - v10[1], v01[0] - v01[1]
    variance = float(d10.var(ddof=1) / len(d10) + d01.var(ddof=1) / len(d01))
    difference = auc_a - auc_b
    if variance > 0:
        z = difference / np.sqrt(variance)
        z_out, p_value = float(z), float(2.0 * sps.norm.sf(abs(z)))
    elif difference == 0:
        z_out, p_value = 0.0, 1.0
    else:
        z_out, p_value = None, None
    return {"auc_a": auc_a, "auc_b": auc_b, "difference": float(difference), "z": z_out, "p_value": p_value}


def _placements(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong structural components by midranks (Sun & Xu 2014), for ``(r, n)`` scores of r scorers.

    Returns:
        ``(v10, v01)``: ``v10[r, i]`` is the fraction of negatives that positive ``i`` outranks (ties
        one half) and ``v01[r, j]`` the fraction of positives that outrank negative ``j``.
    """
    x, y = scores[:, positive], scores[:, ~positive]
    m, n = x.shape[1], y.shape[1]
    tx = sps.rankdata(x, axis=1)
    ty = sps.rankdata(y, axis=1)
    tz = sps.rankdata(np.concatenate([x, y], axis=1), axis=1)
    # A positive's rank among all cases minus its rank among positives = negatives below it (midranks
    # make a tied negative count one half).
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return v10, v01


def _check_scores(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    positive = _as_binary(positive)
    if scores.ndim != 1 or scores.shape != positive.shape:
        raise SpecError("scores and labels differ", expected=f"{positive.shape}", received=f"{scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise SpecError("scores must be finite", expected="no NaN or infinity", received="non-finite scores")
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos < 2 or n_neg < 2:
        raise SpecError("DeLong needs both classes", expected=">= 2 each", received=f"{n_pos}+, {n_neg}-")
    return scores, positive


def _as_binary(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels
    # Casting any other labels with astype(bool) would silently turn classes {1, 2} into one class.
    if labels.size and not np.all(np.isin(labels, (0, 1))):
        raise SpecError("labels must be binary", expected="bool or 0/1", received=str(np.unique(labels)[:5]))
    return labels.astype(bool)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's test that two classifiers are equally accurate on the same cases.

    Only the discordant cases carry information: ``b`` (A right, B wrong) and ``c`` (A wrong,
    B right). With fewer than 25 of them the exact binomial test is used (statistic ``min(b, c)``),
    otherwise the chi-square test with continuity correction (statistic ``(|b - c| - 1)^2 / (b + c)``).

    Args:
        correct_a: ``(n,)`` booleans (or 0/1), whether classifier A got each case right.
        correct_b: ``(n,)`` the same for classifier B, same cases in the same order.

    Returns:
        ``{"b", "c", "statistic", "p_value", "exact"}``; p-values are two-sided and the p-value is 1
        when there are no discordant cases.

    Raises:
        SpecError: If the arrays are empty, not 1-D, of different lengths, or not binary.
    """
    a, b_ = _as_binary(correct_a), _as_binary(correct_b)
    if a.ndim != 1 or a.shape != b_.shape or a.size == 0:
        raise SpecError(
            "McNemar needs equal 1-D arrays", expected=f"{a.shape}, n >= 1", received=f"{b_.shape}"
        )
    table = np.array([[np.sum(a & b_), np.sum(a & ~b_)], [np.sum(~a & b_), np.sum(~a & ~b_)]])
    b, c = int(table[0, 1]), int(table[1, 0])
    exact = b + c < _MCNEMAR_EXACT_BELOW
    res = contingency_tables.mcnemar(table, exact=exact, correction=True)
    return {"b": b, "c": c, "statistic": float(res.statistic), "p_value": float(res.pvalue), "exact": exact}


def bootstrap_ci(
    metric: Callable[[np.ndarray], float | None],
    n: int,
    groups: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap interval of any metric, resampling whole groups (patients).

    Each replicate draws, within every stratum, as many groups as the stratum holds, with
    replacement, and passes the row indices of all drawn groups (repeats included) to ``metric``.
    Resampling patients rather than images keeps the within-patient correlation, which row-level
    resampling would hide behind a too-narrow interval. Stratifying keeps each class's share of
    groups fixed, so that replicates cannot lose a class that the metric needs.

    Args:
        metric: Maps an array of row indices into the evaluation data to the statistic, or to None
            (or NaN) when it is undefined on that replicate, e.g. an AUC with one class; such
            replicates are skipped and not counted in ``n_boot`` of the result.
        n: Number of rows.
        groups: ``(n,)`` group id of each row (any sortable values); None = each row is a group.
        strata: ``(n,)`` stratum of each row, typically its label; a group's stratum is that of its
            first row. None = no stratification.
        n_boot: Number of replicates to draw.
        alpha: One minus the confidence level.
        seed: Seed of the random generator, for reproducible intervals.

    Returns:
        ``{"estimate": metric(arange(n)), "ci": [lower, upper], "n_boot": valid replicates}``;
        ``ci`` is ``[None, None]`` when no replicate was valid.

    Raises:
        SpecError: If ``n < 1``, ``groups`` or ``strata`` do not have ``n`` entries, ``n_boot < 1``
            or ``alpha`` is outside ``(0, 1)``.
    """
    _check_alpha(alpha)
    if not (_is_whole(n) and n >= 1):
        raise SpecError("the bootstrap needs data", expected="n >= 1", received=repr(n))
    if not (_is_whole(n_boot) and n_boot >= 1):
        raise SpecError("invalid number of replicates", expected="n_boot >= 1", received=repr(n_boot))
    n = int(n)
    group_of_row = _codes(groups, n, "groups") if groups is not None else np.arange(n)
    n_groups = int(group_of_row.max()) + 1
    # Rows ordered by group, with each group's first position and size, so that a replicate's row
    # indices come from one vectorised gather instead of a Python loop over groups.
    rows_by_group = np.argsort(group_of_row, kind="stable")
    sizes = np.bincount(group_of_row, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    if strata is None:
        pools = [np.arange(n_groups)]
    else:
        stratum_of_row = _codes(strata, n, "strata")
        stratum_of_group = stratum_of_row[rows_by_group[starts]]  # the stratum of each group's first row
        pools = [np.flatnonzero(stratum_of_group == s) for s in np.unique(stratum_of_group)]

    rng = np.random.default_rng(seed)
    estimate = metric(np.arange(n))
    values = []
    for _ in range(int(n_boot)):
        drawn = np.concatenate([rng.choice(pool, size=len(pool), replace=True) for pool in pools])
        lengths = sizes[drawn]
        offsets = np.repeat(starts[drawn] - np.cumsum(lengths) + lengths, lengths)
        value = metric(rows_by_group[offsets + np.arange(lengths.sum())])
        if value is not None and np.isfinite(value):
            values.append(float(value))
    if values:
        lo, hi = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
        ci = [float(lo), float(hi)]
    else:
        ci = [None, None]
    return {"estimate": None if estimate is None else float(estimate), "ci": ci, "n_boot": len(values)}


def _codes(values: np.ndarray, n: int, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n,):
        raise SpecError(f"{name} needs one entry per row", expected=f"({n},)", received=f"{values.shape}")
    return np.unique(values, return_inverse=True)[1].reshape(-1)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error with equal-width confidence bins (Guo et al. 2017).

    ``ECE = sum_b (n_b / n) * |accuracy_b - confidence_b|``, where the confidence of a case is its
    largest probability and it is correct when that class is the true one. Bin ``b`` holds
    confidences in ``((b - 1) / B, b / B]`` (the first bin also holds 0). Expect a small positive
    bias on small samples: noise alone makes ``|accuracy_b - confidence_b|`` greater than 0.

    Args:
        probs: ``(n, k)`` probabilities, rows summing to 1.
        y_true: ``(n,)`` true class indices in ``[0, k)``.
        n_bins: Number of bins.

    Returns:
        The ECE, in ``[0, 1]``.

    Raises:
        SpecError: On malformed probabilities or labels (see :func:`brier_score`) or ``n_bins < 1``.
    """
    conf, acc, count = _bin_stats(probs, y_true, n_bins)
    filled = count > 0
    return float(np.sum(count[filled] * np.abs(acc[filled] - conf[filled])) / count.sum())


def reliability_curve(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> dict:
    """Per-bin mean confidence and accuracy of the top label, for a reliability diagram.

    Args:
        probs: ``(n, k)`` probabilities, rows summing to 1.
        y_true: ``(n,)`` true class indices.
        n_bins: Number of equal-width bins on ``[0, 1]`` (as in :func:`expected_calibration_error`).

    Returns:
        ``{"confidence": [...], "accuracy": [...], "count": [...], "edges": [...]}`` with one entry
        per bin (``n_bins + 1`` edges); empty bins have None for confidence and accuracy.

    Raises:
        SpecError: On malformed inputs, as :func:`expected_calibration_error`.
    """
    conf, acc, count = _bin_stats(probs, y_true, n_bins)
    return {
        "confidence": [float(c) if k else None for c, k in zip(conf, count, strict=True)],
        "accuracy": [float(a) if k else None for a, k in zip(acc, count, strict=True)],
        "count": [int(k) for k in count],
        "edges": [float(e) for e in np.linspace(0.0, 1.0, int(n_bins) + 1)],
    }


def brier_score(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Multi-class Brier score: mean over cases of the summed squared error against the one-hot label.

    It ranges from 0 (perfect) to 2; uniform predictions over k classes score ``(k - 1) / k``.

    Args:
        probs: ``(n, k)`` probabilities, rows summing to 1 (within 1e-3), values in ``[0, 1]``.
        y_true: ``(n,)`` true class indices in ``[0, k)``.

    Returns:
        The Brier score.

    Raises:
        SpecError: If ``probs`` is not a non-empty ``(n, k >= 2)`` array of probabilities or
            ``y_true`` is not ``n`` class indices.
    """
    probs, y = _check_probs(probs, y_true)
    onehot = np.eye(probs.shape[1])[y]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def _bin_stats(probs: np.ndarray, y_true: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Mean confidence, accuracy and count of the top label per equal-width bin (0/0 gives 0)."""
    if not (_is_whole(n_bins) and n_bins >= 1):
        raise SpecError("invalid number of bins", expected="n_bins >= 1", received=repr(n_bins))
    probs, y = _check_probs(probs, y_true)
    n_bins = int(n_bins)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    # Right-closed bins, as in Guo et al.: a confidence of exactly 1 belongs to the last bin.
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    safe = np.maximum(count, 1)
    return (
        np.bincount(idx, weights=conf, minlength=n_bins) / safe,
        np.bincount(idx, weights=correct, minlength=n_bins) / safe,
        count,
    )


def _check_probs(probs: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = _matrix(probs, "probabilities")
    if probs.min() < 0.0 or probs.max() > 1.0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise SpecError("invalid probabilities", expected="values in [0, 1], rows summing to 1")
    return probs, _check_labels(y_true, probs.shape)


def _matrix(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2:
        raise SpecError(f"invalid {what}", expected="a (n >= 1, k >= 2) array", received=f"shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise SpecError(f"invalid {what}", expected="finite values", received="NaN or infinity")
    return a


def _check_labels(y_true: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    y = np.asarray(y_true)
    n, k = shape
    if y.shape != (n,):
        raise SpecError("one label per row is needed", expected=f"shape ({n},)", received=f"shape {y.shape}")
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and np.all(y == y // 1)
    )
    if not integral:
        raise SpecError("labels must be class indices", expected="integers", received=f"dtype {y.dtype}")
    y = y.astype(int)
    if y.min() < 0 or y.max() >= k:
        raise SpecError("label out of range", expected=f"[0, {k})", received=f"[{y.min()}, {y.max()}]")
    return y


def fit_temperature(logits_or_probs: np.ndarray, y_true: np.ndarray, from_probs: bool = True) -> float:
    """Temperature ``T > 0`` minimising the negative log-likelihood of ``softmax(logits / T)``.

    Fit it on validation data and apply it to test data: fitted on the test set it would make the
    test calibration look better than it is. Probabilities are turned into logits with ``log(p)``
    (clipped at 1e-12), which differs from the model's logits only by a per-row constant that the
    softmax ignores, so both inputs give the same temperature unless probabilities underflowed.

    Args:
        logits_or_probs: ``(n, k)`` probabilities (``from_probs=True``) or logits.
        y_true: ``(n,)`` true class indices in ``[0, k)``.
        from_probs: Whether the input holds probabilities rather than logits.

    Returns:
        The temperature, searched over ``[0.05, 20]`` on a log scale (a result at either end means
        the optimum lies beyond it). ``T > 1`` softens overconfident predictions.

    Raises:
        SpecError: On malformed probabilities, logits or labels.
    """
    if from_probs:
        probs, y = _check_probs(logits_or_probs, y_true)
        logits = np.log(np.clip(probs, _EPS, 1.0))
    else:
        logits = _matrix(logits_or_probs, "logits")
        y = _check_labels(y_true, logits.shape)
    true_logit = logits[np.arange(len(y)), y]

    def nll(log_t: float) -> float:
        t = np.exp(log_t)
        return float(np.mean(special.logsumexp(logits / t, axis=1) - true_logit / t))

    # Searching log T makes the bracket symmetric in "sharpen" and "soften" and keeps T positive.
    result = optimize.minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def _check_alpha(alpha: float) -> None:
    if not (np.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise SpecError("invalid alpha", expected="a number in (0, 1)", received=repr(alpha))


def _is_whole(x: object) -> bool:
    # Accepts numpy integers and integral floats (counts often come out of sums as floats) but not
    # booleans, which are ints in Python and almost always a mistake here.
    if isinstance(x, bool | np.bool_):
        return False
    try:
        return float(x) == int(x)
    except (TypeError, ValueError, OverflowError):
        return False
