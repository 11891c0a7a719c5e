"""Choosing and checking a site calibration: cross-validation over the site's patients, then a fit on all.

:func:`calibrate` measures every method the bundle allows (:mod:`cxr_edge.site.fit`) with grouped
k-fold cross-validation (whole patients per fold, stratified by label), picks the one with the best
cross-validated balanced accuracy (or the one asked for), and refuses -- with the numbers -- when a
labelled class has too few images or when the paired bootstrap interval of the gain over the parent
(balanced accuracy, patients resampled within labels) does not lie above zero. Only then is the
chosen method fitted on every labelled image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxr_edge.bundle.folder import Bundle
from cxr_edge.errors import CalibrationRefusedError
from cxr_edge.evaluation.stats import bootstrap_ci
from cxr_edge.ops.site import SiteCalibration
from cxr_edge.site.fit import (
    SiteData,
    cross_validate,
    fewest_patients,
    fit,
    group_folds,
    methods_for,
    output,
)
from cxr_edge.site.metrics import balanced_accuracy, site_metrics
from cxr_edge.site.observe import Observations

#: Fewest labelled images per labelled class (below it the cross-validated numbers mean little).
MIN_PER_CLASS = 10
#: Bins of the top-probability histogram kept as the drift reference.
REFERENCE_BINS = 10
AUTO = "auto"


@dataclass(frozen=True)
class CalibrationResult:
    """A fitted, checked site calibration and the evidence for it.

    Attributes:
        calibration: The fitted parameters (metadata is added when the bundle is written).
        method: The method chosen.
        metrics: ``{"folds", "chosen_by", "parent", "methods": {name: cross-validated metrics},
            "gain": paired bootstrap of the chosen method's balanced-accuracy gain}``.
        reference: The calibrated outputs' class mix and top-probability histogram on the site's images.
    """

    calibration: SiteCalibration
    method: str
    metrics: dict
    reference: dict


def calibrate(
    data: SiteData,
    *,
    method: str = AUTO,
    normal: str | None = "normal",
    target_sensitivity: float | None = None,
    min_per_class: int = MIN_PER_CLASS,
    n_folds: int = 5,
    seed: int = 0,
) -> CalibrationResult:
    """Cross-validates, chooses, checks and fits a site calibration.

    Args:
        data: The site's labelled images as the parent bundle sees them.
        method: ``auto`` (best cross-validated balanced accuracy), ``prior`` or ``head``.
        normal: The normal label (for the operating point and the abnormal-vs-normal numbers).
        target_sensitivity: Abnormal sensitivity the operating point aims at; None: no operating point.
        min_per_class: Fewest images a labelled class may have.
        n_folds: Cross-validation folds (fewer when a class has fewer patients).
        seed: Seed of the folds and the bootstrap.

    Raises:
        CalibrationRefusedError: Fewer than two labelled classes, a class below ``min_per_class``, a
            method the bundle cannot do, or no gain above its interval. The message has the numbers.
    """
    counts = dict(zip(data.labels, np.bincount(data.y, minlength=len(data.labels)).tolist(), strict=True))
    labelled = {k: v for k, v in counts.items() if v}
    if len(labelled) < 2:
        raise CalibrationRefusedError(
            "a site calibration needs labelled images of at least two classes",
            expected=f"two or more of {list(data.labels)}",
            received=_counts(labelled),
        )
    short = {k: v for k, v in labelled.items() if v < min_per_class}
    if short:
        raise CalibrationRefusedError(
            "too few labelled images to calibrate",
            expected=f"at least {min_per_class} images per labelled class",
            received=_counts(labelled),
        )
    allowed = methods_for(data)
    if method != AUTO and method not in allowed:
        raise CalibrationRefusedError(
            f"this bundle cannot be calibrated with method {method!r}",
            expected=" or ".join(allowed) + " (head needs every member's features output and dense weights)",
            received=method,
        )
    if normal is None or normal not in labelled or len(labelled) == 1:
        target_sensitivity = None  # no normal images (or only normal ones): no operating point
    folds = group_folds(data.y, data.groups, _n_folds(data, n_folds), seed)
    parent = output(data, None)
    candidates = allowed if method == AUTO else (method,)
    oof = {
        m: cross_validate(
            data, m, folds=folds, normal=normal, target_sensitivity=target_sensitivity, seed=seed
        )
        for m in candidates
    }
    scores = {m: balanced_accuracy(data.y, p) for m, p in oof.items()}
    chosen = max(candidates, key=lambda m: (scores[m], m == candidates[0]))
    gain = bootstrap_ci(
        lambda idx: (
            balanced_accuracy(data.y[idx], oof[chosen][idx]) - balanced_accuracy(data.y[idx], parent[idx])
        ),
        len(data),
        groups=data.groups,
        strata=data.y,
        n_boot=1000,
        seed=seed,
    )
    chance = 1.0 / len(labelled)
    level = bootstrap_ci(
        lambda idx: balanced_accuracy(data.y[idx], oof[chosen][idx]),
        len(data),
        groups=data.groups,
        strata=data.y,
        n_boot=1000,
        seed=seed,
    )
    metrics = {
        "folds": len(np.unique(folds)),
        "images": counts,
        "patients": len(set(np.asarray(data.groups).astype(str))),
        "chosen_by": "best cross-validated balanced accuracy" if method == AUTO else "asked for",
        "chosen": chosen,
        "target_sensitivity": target_sensitivity,
        "parent": site_metrics(data.y, parent, data.labels, normal=normal),
        "methods": {m: site_metrics(data.y, p, data.labels, normal=normal) for m, p in oof.items()},
        "gain": {"metric": "balanced accuracy", **gain},
        "balanced_accuracy": {"chance": chance, **level},
    }
    numbers = (
        f"{chosen}: balanced accuracy {scores[chosen]:.3f} ({_ci(level)}; chance {chance:.3f}) vs parent "
        f"{balanced_accuracy(data.y, parent):.3f}, gain {gain['estimate']:+.3f} ({_ci(gain)}) over "
        f"{len(data)} images, {metrics['patients']} patients, {metrics['folds']} folds"
    )
    # A gain over a parent that is worse than chance at the site (it calls everything one class) can be
    # real and still useless: the calibrated model must also beat chance, or only retraining can help.
    if level["ci"][0] is None or level["ci"][0] <= chance:
        raise CalibrationRefusedError(
            "after calibration the model is not above chance at this site: its features do not separate "
            "the site's classes, which no threshold or prior can fix (only training can); nothing written",
            expected=f"a cross-validated balanced accuracy whose 95% interval lies above {chance:.3f}",
            received=numbers,
        )
    if gain["ci"][0] is None or gain["ci"][0] <= 0:
        raise CalibrationRefusedError(
            "the calibration's cross-validated gain is not above its interval; nothing written",
            expected="a balanced-accuracy gain whose 95% interval lies above 0",
            received=numbers,
        )
    final = fit(data, chosen, normal=normal, target_sensitivity=target_sensitivity, seed=seed)
    return CalibrationResult(final, chosen, metrics, reference(output(data, final), data.labels))


def reference(probs: np.ndarray, labels: Sequence[str]) -> dict:
    """The drift reference of a set of outputs: predicted class mix, mean probabilities and the
    histogram of the top probability (:data:`REFERENCE_BINS` equal bins over [0, 1])."""
    probs = np.asarray(probs, dtype=np.float64)
    mix = np.bincount(probs.argmax(axis=1), minlength=len(labels)) / len(probs)
    hist = np.histogram(probs.max(axis=1), bins=REFERENCE_BINS, range=(0.0, 1.0))[0] / len(probs)
    return {
        "n": len(probs),
        "class_mix": dict(zip(labels, mix.tolist(), strict=True)),
        "mean_probs": dict(zip(labels, probs.mean(axis=0).tolist(), strict=True)),
        "top_prob_histogram": hist.tolist(),
    }


def _n_folds(data: SiteData, wanted: int) -> int:
    return max(2, min(wanted, fewest_patients(data)))


def _ci(block: dict) -> str:
    lo, hi = block["ci"]
    return "no interval" if lo is None else f"{lo:+.3f} to {hi:+.3f}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def site_data(bundle: Bundle, obs: Observations) -> SiteData:
    """The fitting arrays of a bundle's observations (its members' CAM weights are the shipped heads)."""
    m = bundle.manifest
    shipped = {
        name: np.asarray(m.model(name).cam_weights, dtype=np.float64)
        for name in m.ensemble.members
        if m.model(name).cam_weights is not None
    }
    return SiteData(m.labels, obs.y, obs.groups, obs.member_probs, m.ensemble, obs.pooled, shipped)
