"""Within-source signal of held-out predictions, and the selection score that counts it.

Recall over (source, class) cells rewards a model's operating point as much as its features: on the
kit's eight cells a constant "covid" or "normal" answer scores 0.375 and the first default 0.436. A
site can move an operating point with a few labelled images (``cxr-edge site calibrate``); only
training can give a model the signal to *rank* a held-out source's abnormal films above its normal
ones. This module measures that ranking where it can be measured, on held-out sources with two or
more labels:

* per such source, the one-vs-rest AUC of every class present and the **abnormal-vs-normal AUC**,
  each with a DeLong interval. The abnormal score is the probability of the source's own abnormal
  labels relative to them and normal, ``p(abnormal present) / (p(abnormal present) + p(normal))``:
  the ranking among the classes the source has. Mass on a label the source lacks (held-out NIH's
  normal adults called COVID-19) is an operating-point error, which the recall score and a site's
  prior shift see; counted here it would push NIH's AUC below 0.5 for every recipe (0.38-0.42 with
  ``1 - p(normal)``, kept as ``abnormal_any`` for reference);
* ``within_auc``: the mean over those sources of the abnormal-vs-normal AUC (the mean one-vs-rest AUC
  where a source has no normal class);
* the **selection score** (:data:`SCORE_DEFINITION`): the mean of the recall score and ``within_auc``,
  so that a recipe cannot win by shifting its operating point alone (chance: 0.375 recall with a
  constant answer, 0.5 AUC). With no multi-class held-out source it is the recall score.

Only numpy and scipy: it runs wherever ``cxr-edge loso report`` runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_edge.evaluation.metrics import roc_auc
from cxr_edge.evaluation.stats import delong_where_defined

NORMAL = "normal"
SCORE_DEFINITION = (
    "selection score = (recall score + within-source AUC) / 2; recall score = mean recall over "
    "(held-out source, class) cells; within-source AUC = mean over held-out sources with two or more "
    "labels of the abnormal-vs-normal AUC among the source's own labels (score p(abnormal present) / "
    "(p(abnormal present) + p(normal)))"
)


def multi_class_sources(sources: np.ndarray, y: np.ndarray) -> list[str]:
    """Held-out sources with images of two or more classes (where a ranking can be measured)."""
    return [s for s in sorted(set(sources.tolist())) if len(set(y[sources == s].tolist())) >= 2]


def source_auc(y: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> float | None:
    """The within-source AUC of one source: abnormal vs normal, or the mean one-vs-rest AUC without a
    normal class (None with fewer than two classes)."""
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        return None
    if NORMAL in labels and labels.index(NORMAL) in present:
        k = labels.index(NORMAL)
        return roc_auc(abnormal_score(probs, present, k), y != k)
    return float(np.mean([roc_auc(probs[:, c], y == c) for c in present]))


def abnormal_score(probs: np.ndarray, present: Sequence[int], normal: int) -> np.ndarray:
    """``p(abnormal labels present) / (that + p(normal))``: abnormal vs normal among a source's labels."""
    abnormal = probs[:, [c for c in present if c != normal]].sum(axis=1)
    return abnormal / np.maximum(abnormal + probs[:, normal], 1e-12)


def within_source(sources: np.ndarray, y: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> dict:
    """Per multi-class held-out source: images per class, one-vs-rest and abnormal-vs-normal AUCs
    with DeLong intervals (an AUC needs two images of each side; None otherwise)."""
    out = {}
    for src in multi_class_sources(sources, y):
        m = sources == src
        ys, ps = y[m], probs[m]
        present = sorted(set(ys.tolist()))
        block = {
            "n": {labels[c]: int((ys == c).sum()) for c in present},
            "one_vs_rest": {labels[c]: delong_where_defined(ps[:, c], ys == c) for c in present},
            "abnormal": None,
            "abnormal_any": None,
        }
        if NORMAL in labels and labels.index(NORMAL) in present:
            k = labels.index(NORMAL)
            block["abnormal"] = delong_where_defined(abnormal_score(ps, present, k), ys != k)
            block["abnormal_any"] = delong_where_defined(1.0 - ps[:, k], ys != k)
        block["auc"] = source_auc(ys, ps, labels)
        out[src] = block
    return out


def within_auc(sources: np.ndarray, y: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> float | None:
    """Mean within-source AUC over the multi-class held-out sources (None when there are none)."""
    values = [
        source_auc(y[sources == s], probs[sources == s], labels) for s in multi_class_sources(sources, y)
    ]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def recall_score(sources: np.ndarray, y: np.ndarray, probs: np.ndarray) -> float:
    """Mean recall over (source, class) cells with images (the first selection score)."""
    pred = probs.argmax(axis=1)
    values = [
        float(np.mean(pred[(sources == s) & (y == c)] == c))
        for s in sorted(set(sources.tolist()))
        for c in sorted(set(y[sources == s].tolist()))
    ]
    return float(np.mean(values)) if values else float("nan")


def combined(recall: float, auc: float | None) -> float:
    """The selection score of :data:`SCORE_DEFINITION`."""
    return recall if auc is None else (recall + auc) / 2.0


def selection(sources: np.ndarray, y: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> float:
    """The selection score of held-out predictions."""
    return combined(recall_score(sources, y, probs), within_auc(sources, y, probs, labels))
