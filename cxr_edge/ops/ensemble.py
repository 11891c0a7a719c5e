"""Combining member models' probabilities (numpy only, so every runtime can mirror it).

Four combiners, as in Rajaraman et al. (2020):

* ``vote`` -- majority vote of the members' argmax labels. **Tie rule**: among the labels with the
  most votes, the one with the highest mean probability wins (then the lowest label index). The
  combined "probabilities" are the vote shares, with the tie broken by a tiny mean-probability term.
* ``mean`` -- arithmetic mean of the probabilities.
* ``weighted`` -- weighted mean; weights are fitted on the *validation* split, either with the paper's
  rule (weights proportional to each member's validation accuracy, :func:`accuracy_weights`) or by
  minimising the validation log-loss over the simplex (:func:`logloss_weights`).
* ``stacking`` -- the paper's meta-learner: one hidden layer (9 ReLU units) and a softmax over the
  concatenated member probabilities, trained on validation predictions with its L2 strength chosen by
  grouped cross-validation (:func:`fit_stacker`); its weights live in the bundle manifest and
  :meth:`Stacker.forward` evaluates them with numpy at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxr_edge.errors import SpecError

#: The combiners a bundle may name (``ensemble.method``).
METHODS = ("vote", "mean", "weighted", "stacking")
_EPS = 1e-12


@dataclass(frozen=True)
class Stacker:
    """A fitted stacking meta-learner: ``softmax(relu(x @ w1 + b1) @ w2 + b2)``.

    Attributes:
        w1: ``(n_models * n_classes, hidden)`` first-layer weights.
        b1: ``(hidden,)`` first-layer biases.
        w2: ``(hidden, n_classes)`` output weights.
        b2: ``(n_classes,)`` output biases.
        l2: The L2 strength chosen by cross-validation (kept for provenance).
    """

    w1: tuple[tuple[float, ...], ...]
    b1: tuple[float, ...]
    w2: tuple[tuple[float, ...], ...]
    b2: tuple[float, ...]
    l2: float = 0.0

    def forward(self, member_probs: np.ndarray) -> np.ndarray:
        """Combines ``(n_models, n_classes)`` or ``(n_models, n_images, n_classes)`` probabilities."""
        x = _stack_features(np.asarray(member_probs, dtype=np.float64))
        single = x.ndim == 1
        x = np.atleast_2d(x)
        w1, b1, w2, b2 = (np.asarray(a, dtype=np.float64) for a in (self.w1, self.b1, self.w2, self.b2))
        if x.shape[1] != w1.shape[0]:
            raise SpecError(
                "stacker input size mismatch",
                expected=f"{w1.shape[0]} features",
                received=f"{x.shape[1]} (models x classes)",
            )
        out = _softmax(np.maximum(x @ w1 + b1, 0.0) @ w2 + b2)
        return out[0] if single else out


def combine(
    probs: np.ndarray,
    method: str = "mean",
    weights: Sequence[float] | None = None,
    stacker: Stacker | None = None,
) -> np.ndarray:
    """Combines per-model class probabilities.

    Args:
        probs: ``(n_models, n_classes)`` probabilities, or ``(n_models, n_images, n_classes)``.
        method: One of :data:`METHODS`.
        weights: One non-negative weight per model for ``weighted``.
        stacker: The fitted meta-learner for ``stacking``.

    Returns:
        Combined probabilities with the model axis removed; rows sum to 1.
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
    if method == "vote":
        return _vote(probs)
    if method == "stacking":
        if stacker is None:
            raise SpecError("stacking needs a fitted meta-learner", expected="a Stacker", received="None")
        return stacker.forward(probs)
    raise SpecError("unknown ensemble method", expected=" or ".join(METHODS), received=method)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of probabilities: ``softmax(log(p) / T)`` (T > 1 softens, T < 1 sharpens)."""
    if not (np.isfinite(temperature) and temperature > 0):
        raise SpecError("invalid temperature", expected="a finite T > 0", received=repr(temperature))
    return _softmax(np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0)) / temperature)


def _vote(probs: np.ndarray) -> np.ndarray:
    k = probs.shape[-1]
    votes = np.eye(k)[probs.argmax(axis=-1)].sum(axis=0)  # (..., k) vote counts
    # The mean-probability term is below 1/n_models, so it only decides between tied vote counts.
    score = votes + probs.mean(axis=0) * 0.5
    shares = votes / probs.shape[0]
    winner = score.argmax(axis=-1)
    # Shift a sliver of mass so that argmax(shares) is the tie-broken winner and rows still sum to 1.
    bonus = np.eye(k)[winner] * 1e-6
    return (shares + bonus) / (1.0 + 1e-6)


def accuracy_weights(member_probs: np.ndarray, y_true: np.ndarray) -> tuple[float, ...]:
    """The paper's rule: weights proportional to each member's accuracy on the given (validation) data."""
    member_probs = np.asarray(member_probs)
    acc = (member_probs.argmax(axis=-1) == np.asarray(y_true)[None]).mean(axis=1)
    if acc.sum() <= 0:
        raise SpecError("no member is ever right", expected="some accuracy > 0", received=str(acc.tolist()))
    return tuple(float(a) for a in acc / acc.sum())


def logloss_weights(member_probs: np.ndarray, y_true: np.ndarray) -> tuple[float, ...]:
    """Weights on the simplex that minimise the log-loss of the weighted mean (on validation data).

    The problem is convex in the weights; a softmax parametrisation keeps them on the simplex.
    """
    from scipy.optimize import minimize

    p = np.asarray(member_probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=int)
    picked = p[:, np.arange(p.shape[1]), y]  # (n_models, n) probability of the true class

    def loss(z):
        w = _softmax(z)
        return -np.mean(np.log(w @ picked + _EPS))

    result = minimize(loss, np.zeros(p.shape[0]), method="L-BFGS-B")
    return tuple(float(v) for v in _softmax(result.x))


#: How member weights are fitted on validation, by rule name (``convert --weight-rule``).
WEIGHT_FITS = {"logloss": logloss_weights, "accuracy": accuracy_weights}
WEIGHT_RULES = tuple(WEIGHT_FITS)


def fit_stacker(
    member_probs: np.ndarray,
    y_true: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    hidden: int = 9,
    l2_grid: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    folds: int = 5,
    seed: int = 0,
) -> Stacker:
    """Trains the stacking meta-learner on validation predictions.

    The L2 strength is chosen by ``folds``-fold cross-validation over *groups* (patients), so images of
    one patient never sit on both sides of a fold; the final model is refitted on all data.

    Args:
        member_probs: ``(n_models, n, n_classes)`` validation probabilities of the members.
        y_true: ``(n,)`` true class indices.
        groups: ``(n,)`` patient ids (default: each image its own group).
        hidden: Hidden units (the paper: 9).
        l2_grid: Candidate L2 strengths.
        folds: Cross-validation folds.
        seed: Seed of initialisation and fold assignment.
    """
    x = _stack_features(np.asarray(member_probs, dtype=np.float64))
    y = np.asarray(y_true, dtype=int)
    k = np.asarray(member_probs).shape[-1]
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    fold_of_group = dict(
        zip(unique, rng.permutation(len(unique)) % max(2, min(folds, len(unique))), strict=True)
    )
    fold = np.array([fold_of_group[g] for g in groups])
    best_l2, best_loss = None, np.inf
    for l2 in l2_grid:
        losses = []
        for f in np.unique(fold):
            train, test = fold != f, fold == f
            params = _fit_mlp(x[train], y[train], k, hidden, l2, seed)
            losses.append(_nll(_mlp(params, x[test]), y[test]) * test.sum())
        mean_loss = sum(losses) / len(y)
        if mean_loss < best_loss:
            best_l2, best_loss = l2, mean_loss
    w1, b1, w2, b2 = _fit_mlp(x, y, k, hidden, best_l2, seed)
    return Stacker(_as_tuple(w1), _as_tuple(b1), _as_tuple(w2), _as_tuple(b2), float(best_l2))


def _as_tuple(a: np.ndarray) -> tuple:
    """Nested tuples of floats (frozen, JSON-ready) from a 1-D or 2-D array."""
    return tuple(map(tuple, a.tolist())) if a.ndim == 2 else tuple(a.tolist())


def _fit_mlp(x, y, k, hidden, l2, seed):
    from scipy.optimize import minimize

    d = x.shape[1]
    rng = np.random.default_rng(seed)
    shapes = [(d, hidden), (hidden,), (hidden, k), (k,)]
    sizes = [int(np.prod(s)) for s in shapes]
    init = np.concatenate(
        [
            rng.normal(0, np.sqrt(2.0 / d), sizes[0]),
            np.full(sizes[1], 0.1),
            rng.normal(0, np.sqrt(1.0 / hidden), sizes[2]),
            np.zeros(sizes[3]),
        ]
    )
    onehot = np.eye(k)[y]

    def unpack(theta):
        out, i = [], 0
        for shape, size in zip(shapes, sizes, strict=True):
            out.append(theta[i : i + size].reshape(shape))
            i += size
        return out

    def loss_and_grad(theta):
        w1, b1, w2, b2 = unpack(theta)
        h_pre = x @ w1 + b1
        h = np.maximum(h_pre, 0.0)
        p = _softmax(h @ w2 + b2)
        n = len(y)
        loss = -np.sum(onehot * np.log(p + _EPS)) / n + 0.5 * l2 * (np.sum(w1 * w1) + np.sum(w2 * w2))
        d_logits = (p - onehot) / n
        g_w2 = h.T @ d_logits + l2 * w2
        g_b2 = d_logits.sum(axis=0)
        d_h = (d_logits @ w2.T) * (h_pre > 0)
        g_w1 = x.T @ d_h + l2 * w1
        g_b1 = d_h.sum(axis=0)
        return loss, np.concatenate([g.ravel() for g in (g_w1, g_b1, g_w2, g_b2)])

    result = minimize(loss_and_grad, init, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return unpack(result.x)


def _mlp(params, x):
    w1, b1, w2, b2 = params
    return _softmax(np.maximum(x @ w1 + b1, 0.0) @ w2 + b2)


def _nll(p, y):
    return float(-np.mean(np.log(p[np.arange(len(y)), y] + _EPS)))


def _stack_features(probs: np.ndarray) -> np.ndarray:
    """``(M, K)`` -> ``(M*K,)``; ``(M, N, K)`` -> ``(N, M*K)`` (member-major, as stored in manifests)."""
    if probs.ndim == 2:
        return probs.reshape(-1)
    return np.transpose(probs, (1, 0, 2)).reshape(probs.shape[1], -1)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
