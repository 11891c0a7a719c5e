"""Fitting a site calibration from a few labelled images (numpy + scipy, no TensorFlow).

Three ways to adapt a bundle to a hospital, all expressed as a :class:`cxr_edge.ops.site.SiteCalibration`
so that what is measured here is exactly what every runtime applies:

* **prior** -- a temperature and a per-class bias on the combined log-probabilities (a prior shift:
  the site's class mix and the model's over- or under-confidence there). Three numbers.
* **head** -- each member's dense head refitted on its pooled features (multinomial logistic
  regression with an L2 pull toward the shipped weights, whose strength is chosen by grouped
  cross-validation inside the site's images), then a temperature on the combined output fitted on
  those inner out-of-fold predictions. It can change the ranking, which a prior shift cannot.
* **operating point** -- on top of either, a shift of the normal class's log-odds so that
  "abnormal" (any other label) reaches a target sensitivity; chosen on out-of-sample predictions.

Labels the site did not label keep the parent's behaviour: their bias stays 0 and their head
columns stay the shipped ones (a site without COVID-19 images cannot teach the model about COVID-19).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special

from cxr_edge.bundle.manifest import EnsembleConfig
from cxr_edge.errors import SpecError
from cxr_edge.ops.site import MemberHead, OperatingPoint, SiteCalibration, SiteMethod

#: L2 strengths tried for the head refit (per image, on the mean cross-entropy).
HEAD_L2 = (0.003, 0.03, 0.3, 3.0)
_EPS = 1e-12


@dataclass(frozen=True)
class SiteData:
    """The arrays a fit needs (from :class:`cxr_edge.site.observe.Observations` or from LOSO folds).

    Attributes:
        labels: Bundle labels.
        y: ``(n,)`` label indices.
        groups: ``(n,)`` patient keys.
        member_probs: ``(n_members, n, n_classes)`` members' own probabilities.
        ensemble: The parent's combiner and temperature (members in ``member_probs`` order).
        pooled: Per member name, ``(n, K)`` pooled features (needed for ``head``).
        shipped: Per member name, ``(K, n_classes)`` shipped dense weights (the bundle's CAM weights).
    """

    labels: tuple[str, ...]
    y: np.ndarray
    groups: np.ndarray
    member_probs: np.ndarray
    ensemble: EnsembleConfig
    pooled: dict[str, np.ndarray] = field(default_factory=dict)
    shipped: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def members(self) -> tuple[str, ...]:
        """Member names in ``member_probs`` order."""
        return self.ensemble.members

    @property
    def can_refit_heads(self) -> bool:
        """Whether every member has pooled features and shipped head weights."""
        return all(m in self.pooled and m in self.shipped for m in self.members)

    @property
    def present(self) -> np.ndarray:
        """Boolean mask of the labels the site labelled."""
        return np.bincount(self.y, minlength=len(self.labels)) > 0

    def take(self, rows: np.ndarray) -> SiteData:
        """The data of ``rows`` only."""
        return SiteData(
            self.labels,
            self.y[rows],
            self.groups[rows],
            self.member_probs[:, rows],
            self.ensemble,
            {k: v[rows] for k, v in self.pooled.items()},
            self.shipped,
        )


def calibration(method: str, **params) -> SiteCalibration:
    """A :class:`SiteCalibration` holding only fitted parameters (metadata added when it is written)."""
    return SiteCalibration(name="", date="", parent_sha256="", method=method, images={}, patients=0, **params)


def output(data: SiteData, cal: SiteCalibration | None) -> np.ndarray:
    """``(n, n_classes)`` what a runtime outputs for ``data`` with ``cal`` (None: the parent)."""
    member = data.member_probs
    if cal is not None and cal.heads:
        member = np.stack([cal.heads[m].probs(data.pooled[m]) for m in data.members])
    probs = data.ensemble.apply(member)
    return cal.apply(probs) if cal is not None else probs


def fit(
    data: SiteData,
    method: str,
    *,
    normal: str | None = None,
    target_sensitivity: float | None = None,
    seed: int = 0,
) -> SiteCalibration:
    """Fits one method on all of ``data``.

    Args:
        data: The site's labelled images.
        method: ``prior`` or ``head``.
        normal: The normal label, for an operating point.
        target_sensitivity: Sensitivity for abnormal to reach (None: no operating point).
        seed: Seed of the inner cross-validation folds (``head``).
    """
    if method == SiteMethod.PRIOR:
        cal = _fit_prior(data)
        scored = output(data, cal)  # three parameters: in-sample is close to out-of-sample
    elif method == SiteMethod.HEAD:
        cal, scored = _fit_heads(data, seed)
    else:
        raise SpecError(
            "unknown site calibration method",
            expected=" or ".join(m.value for m in SiteMethod),
            received=method,
        )
    if target_sensitivity is None or normal is None:
        return cal
    shift = normal_shift(scored, data.y, data.labels.index(normal), target_sensitivity)
    bias = np.asarray(cal.bias or np.zeros(len(data.labels)), dtype=np.float64).copy()
    bias[data.labels.index(normal)] += shift
    point = OperatingPoint(normal, float(target_sensitivity), float(shift))
    return calibration(
        cal.method, temperature=cal.temperature, bias=tuple(bias), heads=cal.heads, operating_point=point
    )


def cross_validate(
    data: SiteData,
    method: str,
    *,
    folds: np.ndarray,
    normal: str | None = None,
    target_sensitivity: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """``(n, n_classes)`` out-of-fold outputs: each fold predicted by a fit on the other folds."""
    out = np.zeros((len(data), len(data.labels)))
    for k in np.unique(folds):
        train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        cal = fit(data.take(train), method, normal=normal, target_sensitivity=target_sensitivity, seed=seed)
        out[test] = output(data.take(test), cal)
    return out


def group_folds(y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold of each row: whole patients per fold, stratified by the label of each patient's first image."""
    rng = np.random.default_rng(seed)
    keys, first = np.unique(np.asarray(groups).astype(str), return_index=True)
    fold_of_group = np.zeros(len(keys), dtype=int)
    for label in np.unique(y):
        members = np.flatnonzero(y[first] == label)
        members = members[rng.permutation(len(members))]
        fold_of_group[members] = (np.arange(len(members)) + rng.integers(n_folds)) % n_folds
    index = {k: i for i, k in enumerate(keys)}
    return np.array([fold_of_group[index[g]] for g in np.asarray(groups).astype(str)])


def normal_shift(probs: np.ndarray, y: np.ndarray, normal: int, target: float) -> float:
    """The largest shift of the normal log-odds at which the argmax still calls at least ``target`` of
    the abnormal images abnormal (the most specific point meeting the target sensitivity).

    An abnormal image is called abnormal while the shift is below ``log(max abnormal p) - log(p_normal)``;
    the shift is set halfway between the k-th and (k+1)-th largest of these, k = ceil(target * n).
    """
    abnormal = y != normal
    if not abnormal.any():
        return 0.0
    logp = np.log(np.clip(probs[abnormal], _EPS, 1.0))
    others = np.delete(logp, normal, axis=1).max(axis=1)
    flips = np.sort(others - logp[:, normal])[::-1]
    k = int(np.ceil(target * len(flips) - 1e-9))
    if k <= 0:
        return float(flips[0] + 1.0)
    if k >= len(flips):
        return float(flips[-1] - 1e-3)
    return float((flips[k - 1] + flips[k]) / 2.0)


def _fit_prior(data: SiteData) -> SiteCalibration:
    """Temperature and bias of the labelled classes, by maximum likelihood (a tiny L2 keeps a bias
    finite when a class is perfectly separated)."""
    z = np.log(np.clip(output(data, None), _EPS, 1.0))
    present = np.flatnonzero(data.present)
    onehot = np.eye(len(data.labels))[data.y]
    n, l2 = len(data), 1e-3

    def loss(theta):
        t = np.exp(theta[0])
        bias = np.zeros(len(data.labels))
        bias[present] = theta[1:]
        logits = z / t + bias
        nll = np.mean(special.logsumexp(logits, axis=1) - logits[np.arange(n), data.y])
        p = special.softmax(logits, axis=1)
        g_logits = (p - onehot) / n
        g_t = -np.sum(g_logits * z / t)  # d/dlog T of (z / T) = -z / T
        return nll + l2 * np.sum(theta[1:] ** 2), np.concatenate(
            [[g_t], g_logits.sum(axis=0)[present] + 2 * l2 * theta[1:]]
        )

    theta0 = np.zeros(1 + len(present))
    res = optimize.minimize(
        loss, theta0, jac=True, method="L-BFGS-B", bounds=[(-3, 3)] + [(-20, 20)] * len(present)
    )
    bias = np.zeros(len(data.labels))
    bias[present] = res.x[1:]
    return calibration(SiteMethod.PRIOR.value, temperature=float(np.exp(res.x[0])), bias=tuple(bias))


def _fit_heads(data: SiteData, seed: int) -> tuple[SiteCalibration, np.ndarray]:
    """Refits every member's head (L2 toward the shipped head, strength by inner grouped CV), then a
    temperature on the inner out-of-fold outputs. Returns the calibration and those outputs."""
    shipped = {
        m: (data.shipped[m], shipped_bias(data.pooled[m], data.shipped[m], p))
        for m, p in zip(data.members, data.member_probs, strict=True)
    }
    n_folds = _inner_folds(data)
    folds = group_folds(data.y, data.groups, n_folds, seed + 1) if n_folds >= 2 else None
    best, best_loss, best_oof = HEAD_L2[-1], np.inf, None
    if folds is not None:
        for l2 in HEAD_L2:
            oof = np.zeros((len(data), len(data.labels)))
            for k in range(n_folds):
                train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
                heads = {m: _fit_head(data.take(train), m, *shipped[m], l2) for m in data.members}
                oof[test] = output(data.take(test), calibration(SiteMethod.HEAD.value, heads=heads))
            loss = -np.mean(np.log(np.clip(oof[np.arange(len(data)), data.y], _EPS, 1.0)))
            if loss < best_loss:
                best, best_loss, best_oof = l2, loss, oof
    heads = {m: _fit_head(data, m, *shipped[m], best) for m in data.members}
    scored = (
        best_oof if best_oof is not None else output(data, calibration(SiteMethod.HEAD.value, heads=heads))
    )
    # The temperature (no bias: the heads' own biases hold the site's priors) on out-of-fold outputs.
    logp = np.log(np.clip(scored, _EPS, 1.0))
    t = _temperature(logp, data.y)
    tempered = special.softmax(logp / t, axis=1)
    return calibration(SiteMethod.HEAD.value, temperature=t, heads=heads), tempered


def shipped_bias(pooled: np.ndarray, weights: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The shipped head's bias, which bundles do not store: the ``b`` for which
    ``softmax(pooled @ weights + b)`` best matches the member's own probabilities (cross-entropy;
    robust to 8-bit outputs, unlike solving ``log p`` exactly)."""
    base = pooled @ weights

    def loss(b):
        logits = base + b
        q = special.softmax(logits, axis=1)
        return float(np.mean(special.logsumexp(logits, axis=1) - np.sum(probs * logits, axis=1))), (
            q - probs
        ).mean(axis=0)

    b = optimize.minimize(loss, np.zeros(weights.shape[1]), jac=True, method="L-BFGS-B").x
    return b - b.mean()


def _fit_head(data: SiteData, member: str, w0: np.ndarray, b0: np.ndarray, l2: float) -> MemberHead:
    """Multinomial logistic regression on one member's pooled features, pulled toward ``(w0, b0)``;
    the columns of labels the site did not label stay the shipped ones."""
    f = data.pooled[member]
    n, (k, c) = len(data), w0.shape
    present = np.flatnonzero(data.present)
    onehot = np.eye(c)[data.y]

    def unpack(theta):
        w, b = w0.copy(), b0.copy()
        w[:, present] = theta[: k * len(present)].reshape(k, len(present))
        b[present] = theta[k * len(present) :]
        return w, b

    def loss(theta):
        w, b = unpack(theta)
        logits = f @ w + b
        nll = np.mean(special.logsumexp(logits, axis=1) - logits[np.arange(n), data.y])
        g = (special.softmax(logits, axis=1) - onehot) / n
        dw, db = w - w0, b - b0
        value = nll + 0.5 * l2 * (np.sum(dw**2) + np.sum(db**2))
        gw = f.T @ g + l2 * dw
        gb = g.sum(axis=0) + l2 * db
        return value, np.concatenate([gw[:, present].ravel(), gb[present]])

    theta0 = np.concatenate([w0[:, present].ravel(), b0[present]])
    res = optimize.minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 300})
    w, b = unpack(res.x)
    return MemberHead(tuple(map(tuple, w.tolist())), tuple(b.tolist()))


def _temperature(logp: np.ndarray, y: np.ndarray) -> float:
    true = logp[np.arange(len(y)), y]

    def nll(log_t):
        t = np.exp(log_t)
        return float(np.mean(special.logsumexp(logp / t, axis=1) - true / t))

    return float(np.exp(optimize.minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def fewest_patients(data: SiteData) -> int:
    """Patients of the labelled class with the fewest (a patient counts for the label of its first image)."""
    first: dict[str, int] = {}
    for g, label in zip(np.asarray(data.groups).astype(str), data.y, strict=True):
        first.setdefault(g, int(label))
    per_class = np.bincount(list(first.values()), minlength=len(data.labels))
    return int(per_class[per_class > 0].min())


def _inner_folds(data: SiteData) -> int:
    """Inner folds: 3, or fewer when a labelled class has fewer patients."""
    return min(3, fewest_patients(data))


def methods_for(data: SiteData) -> Sequence[str]:
    """The methods ``data`` allows (``head`` needs every member's features and shipped head)."""
    return (
        (SiteMethod.PRIOR.value, SiteMethod.HEAD.value) if data.can_refit_heads else (SiteMethod.PRIOR.value,)
    )
