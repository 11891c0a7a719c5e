"""Combiners: vote tie rule, weighted rules fitted on validation, stacking with grouped CV, temperature."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxr_edge.bundle.manifest import EnsembleConfig
from cxr_edge.config import from_dict, to_dict
from cxr_edge.errors import SpecError
from cxr_edge.ops.ensemble import (
    Stacker,
    accuracy_weights,
    apply_temperature,
    combine,
    fit_stacker,
    logloss_weights,
)

RNG = np.random.default_rng(0)


def noisy_members(y, k, strengths, n_models=None, seed=0):
    """Members whose logits favour the true class with the given strengths (0 = pure noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for s in strengths:
        logits = rng.normal(size=(len(y), k)) + s * np.eye(k)[y]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        out.append(e / e.sum(axis=1, keepdims=True))
    return np.stack(out)


def test_mean_and_weighted():
    p = np.array([[0.6, 0.4], [0.2, 0.8]])
    np.testing.assert_allclose(combine(p, "mean"), [0.4, 0.6])
    np.testing.assert_allclose(combine(p, "weighted", [3, 1]), [0.5, 0.5])
    with pytest.raises(SpecError, match="weights"):
        combine(p, "weighted", [1, -1])


def test_vote_majority_and_tie_rule():
    # Two of three vote class 0.
    p = np.array([[0.6, 0.4, 0.0], [0.55, 0.45, 0.0], [0.1, 0.9, 0.0]])
    assert combine(p, "vote").argmax() == 0
    # One vote each for classes 0 and 1: the higher mean probability (class 1: 0.65 vs 0.35) wins.
    tie = np.array([[0.51, 0.49], [0.19, 0.81]])
    out = combine(tie, "vote")
    assert out.argmax() == 1 and out.sum() == pytest.approx(1.0)
    assert out[0] == pytest.approx(0.5, abs=1e-5)  # vote shares, not probabilities


def test_vote_on_batches_matches_single_images():
    probs = RNG.dirichlet(np.ones(3), size=(5, 20))
    batch = combine(probs, "vote")
    for i in range(20):
        np.testing.assert_allclose(batch[i], combine(probs[:, i], "vote"))


def test_accuracy_weights_follow_the_papers_rule():
    y = np.array([0, 1, 1, 0])
    p = np.array([np.eye(2)[[0, 1, 1, 0]], np.eye(2)[[0, 1, 0, 1]]])  # accuracies 1.0 and 0.5
    assert accuracy_weights(p, y) == pytest.approx((2 / 3, 1 / 3))


def test_logloss_weights_prefer_the_informative_member_and_lower_the_loss():
    y = RNG.integers(0, 3, 600)
    p = noisy_members(y, 3, strengths=[3.0, 0.0])
    w = logloss_weights(p, y)
    assert sum(w) == pytest.approx(1.0) and min(w) >= 0 and w[0] > 0.9

    def nll(probs):
        return -np.mean(np.log(probs[np.arange(len(y)), y]))

    assert nll(combine(p, "weighted", w)) < nll(combine(p, "mean"))


def test_stacking_beats_the_mean_when_members_differ_and_round_trips():
    y = RNG.integers(0, 3, 900)
    p = noisy_members(y, 3, strengths=[2.5, 0.0, 0.0])
    train, test = slice(0, 600), slice(600, None)
    stacker = fit_stacker(p[:, train], y[train], groups=np.arange(600) // 3, hidden=9)
    assert np.array(stacker.w1).shape == (9, 9) and np.array(stacker.w2).shape == (9, 3)
    acc_stack = (stacker.forward(p[:, test]).argmax(1) == y[test]).mean()
    acc_mean = (combine(p[:, test], "mean").argmax(1) == y[test]).mean()
    assert acc_stack > acc_mean
    single = stacker.forward(p[:, 700])
    np.testing.assert_allclose(single, stacker.forward(p[:, test])[100])
    assert single.sum() == pytest.approx(1.0)
    again = from_dict(Stacker, json.loads(json.dumps(to_dict(stacker))))
    np.testing.assert_allclose(again.forward(p[:, test]), stacker.forward(p[:, test]))


def test_stacking_cross_validation_regularises_noise():
    y = RNG.integers(0, 2, 200)
    pure_noise = noisy_members(y, 2, strengths=[0.0, 0.0], seed=4)
    informative = noisy_members(y, 2, strengths=[3.0, 3.0], seed=4)
    assert fit_stacker(pure_noise, y).l2 >= fit_stacker(informative, y).l2


def test_temperature():
    p = np.array([[0.7, 0.2, 0.1]])
    soft = apply_temperature(p, 2.0)
    assert soft.argmax() == 0 and soft[0, 0] < 0.7 and soft.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p)
    with pytest.raises(SpecError):
        apply_temperature(p, 0.0)


def test_ensemble_config_validation():
    with pytest.raises(SpecError, match="meta-learner"):
        EnsembleConfig(method="stacking", members=("a",))
    with pytest.raises(SpecError, match="temperature"):
        EnsembleConfig(members=("a",), temperature=-1.0)
    with pytest.raises(SpecError, match="unknown ensemble method"):
        EnsembleConfig(method="median", members=("a",))
