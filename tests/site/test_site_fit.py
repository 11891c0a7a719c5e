"""Site calibration math: what every runtime applies (cxr_edge.ops.site) and how it is fitted
(cxr_edge.site.fit, cxr_edge.site.calibrate), on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_edge.bundle.manifest import EnsembleConfig
from cxr_edge.errors import CalibrationRefusedError, SpecError
from cxr_edge.ops.site import MemberHead, SiteCalibration, softmax
from cxr_edge.site.calibrate import calibrate
from cxr_edge.site.fit import SiteData, fit, group_folds, normal_shift, output, shipped_bias
from cxr_edge.site.metrics import balanced_accuracy, cases_for_width

LABELS = ("covid", "normal", "pneumonia")


def _site(n_per_class: int = 40, *, swap: bool = False, noise: float = 0.0, seed: int = 0) -> SiteData:
    """Two members whose pooled features separate normal from pneumonia along one direction.

    The shipped heads read that direction the right way round; with ``swap`` the site's labels are the
    other way round (a site where the shipped model is confidently wrong: only a head refit can fix it).
    """
    rng = np.random.default_rng(seed)
    y = np.array([1] * n_per_class + [2] * n_per_class)
    k = 16
    direction = rng.normal(size=k)
    sign = np.where(y == 2, 1.0, -1.0) * (-1.0 if swap else 1.0)
    pooled, shipped, probs = {}, {}, []
    for m in ("a", "b"):
        f = np.abs(rng.normal(1.0, 0.3, size=(len(y), k)) + 0.4 * sign[:, None] * direction[None, :])
        f += noise * rng.normal(size=f.shape)
        w = np.zeros((k, 3))
        w[:, 2], w[:, 1], w[:, 0] = direction, -direction, 0.1 * rng.normal(size=k)
        pooled[m], shipped[m] = f, w
        probs.append(softmax(f @ w + np.array([0.3, -0.2, 0.1])))
    groups = np.array([f"p{i // 2}" for i in range(len(y))], dtype=object)  # two images per patient
    ensemble = EnsembleConfig(method="mean", members=("a", "b"), temperature=2.0)
    return SiteData(LABELS, y, groups, np.stack(probs), ensemble, pooled, shipped)


def test_site_calibration_applies_temperature_then_bias():
    cal = SiteCalibration("s", "2026-01-01", "0" * 64, "prior", {}, 0, temperature=2.0, bias=(0.0, 1.0, -1.0))
    p = np.array([0.2, 0.3, 0.5])
    expected = np.exp(np.log(p) / 2.0 + np.array([0.0, 1.0, -1.0]))
    np.testing.assert_allclose(cal.apply(p), expected / expected.sum(), rtol=1e-12)
    np.testing.assert_allclose(cal.apply(np.stack([p, p])).sum(axis=1), 1.0, atol=1e-12)


def test_member_head_pools_the_feature_map_then_applies_the_dense_layer():
    rng = np.random.default_rng(1)
    fmap, w, b = rng.random((4, 4, 5)), rng.normal(size=(5, 3)), rng.normal(size=3)
    head = MemberHead(tuple(map(tuple, w)), tuple(b))
    np.testing.assert_allclose(head.probs(fmap), softmax(fmap.mean(axis=(0, 1)) @ w + b), rtol=1e-12)
    with pytest.raises(SpecError, match="does not fit"):
        head.probs(rng.random((4, 4, 6)))


def test_invalid_site_sections_are_refused():
    with pytest.raises(SpecError, match="method"):
        SiteCalibration("s", "d", "x", "magic", {}, 0)
    with pytest.raises(SpecError, match="temperature"):
        SiteCalibration("s", "d", "x", "prior", {}, 0, temperature=0.0)
    with pytest.raises(SpecError, match="bias"):
        SiteCalibration("s", "d", "x", "prior", {}, 0, bias=(0.0, float("nan"), 0.0))


def test_shipped_bias_is_recovered_from_the_members_probabilities():
    data = _site()
    for i, m in enumerate(data.members):
        b = shipped_bias(data.pooled[m], data.shipped[m], data.member_probs[i])
        true = np.array([0.3, -0.2, 0.1])
        np.testing.assert_allclose(b, true - true.mean(), atol=1e-4)


def test_prior_fit_recovers_a_prior_shift():
    # Posteriors of a calibrated model under equal priors; the site's truth has pneumonia 4x as likely.
    rng = np.random.default_rng(2)
    n = 4000
    y = rng.choice([1, 2], size=n, p=[0.2, 0.8])
    logits = np.zeros((n, 3))
    logits[:, 0] = -4.0
    logits[:, 1] = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0)
    probs = softmax(logits)
    data = SiteData(LABELS, y, np.arange(n).astype(object), probs[None], EnsembleConfig(members=("m",)))
    cal = fit(data, "prior")
    # The log prior ratio pneumonia/normal is log 4; the covid bias is not fitted (not labelled).
    assert cal.bias[0] == 0.0
    assert cal.bias[2] - cal.bias[1] == pytest.approx(np.log(4.0), abs=0.15)


def test_head_refit_fixes_a_site_where_the_shipped_model_is_inverted():
    train, test = _site(40, swap=True, seed=3), _site(60, swap=True, seed=3)
    parent = balanced_accuracy(test.y, output(test, None))
    cal = fit(train, "head")
    after = balanced_accuracy(test.y, output(test, cal))
    assert parent < 0.1 and after > 0.9
    # Columns of the unlabelled class keep the shipped weights (pulled toward them, never fitted).
    np.testing.assert_allclose(np.asarray(cal.heads["a"].weights)[:, 0], train.shipped["a"][:, 0])


def test_operating_point_reaches_the_target_sensitivity_on_its_own_data():
    rng = np.random.default_rng(4)
    y = np.array([1] * 100 + [2] * 100)
    probs = softmax(np.stack([np.full(200, -3.0), rng.normal(0, 1, 200), rng.normal(0, 1, 200)], axis=1))
    for target in (0.8, 0.95):
        shift = normal_shift(probs, y, 1, target)
        shifted = softmax(np.log(probs) + np.array([0.0, shift, 0.0]))
        sensitivity = np.mean(shifted[y == 2].argmax(axis=1) != 1)
        assert target <= sensitivity <= target + 0.02


def test_group_folds_keep_patients_whole_and_classes_spread():
    data = _site(30)
    folds = group_folds(data.y, data.groups, 5, seed=0)
    for g in np.unique(data.groups):
        assert len(set(folds[data.groups == g])) == 1
    for c in (1, 2):
        assert len(set(folds[data.y == c])) == 5


def test_calibrate_chooses_the_head_and_reports_the_gain_with_its_interval():
    result = calibrate(_site(30, swap=True, seed=5))
    assert result.method == "head"
    gain = result.metrics["gain"]
    assert gain["ci"][0] > 0.5 and set(result.metrics["methods"]) == {"prior", "head"}
    assert result.metrics["methods"]["head"]["balanced_accuracy"] > 0.9
    assert result.reference["n"] == 60 and len(result.reference["top_prob_histogram"]) == 10


def test_calibrate_refuses_too_few_images_per_class():
    data = _site(30)
    keep = np.concatenate([np.flatnonzero(data.y == 1), np.flatnonzero(data.y == 2)[:6]])
    with pytest.raises(CalibrationRefusedError, match="too few") as info:
        calibrate(data.take(keep))
    assert "pneumonia 6" in str(info.value)


def test_calibrate_refuses_when_the_gain_is_not_above_its_interval():
    # The shipped model is already right at this site: nothing to gain.
    with pytest.raises(CalibrationRefusedError, match="not above its interval") as info:
        calibrate(_site(20, seed=6))
    assert "gain" in str(info.value) and "patients" in str(info.value)


def test_calibrate_refuses_a_model_at_chance_at_the_site():
    data = _site(30, seed=7)
    rng = np.random.default_rng(7)
    noise = {m: rng.permutation(v) for m, v in data.pooled.items()}  # features unrelated to labels
    probs = np.stack(
        [softmax(noise[m] @ data.shipped[m] + np.array([3.0, -2.0, -2.0])) for m in data.members]
    )
    blind = SiteData(LABELS, data.y, data.groups, probs, data.ensemble, noise, data.shipped)
    with pytest.raises(CalibrationRefusedError, match="not above chance"):
        calibrate(blind)


def test_cases_for_width_matches_the_exact_interval():
    from cxr_edge.evaluation.stats import clopper_pearson

    n = cases_for_width(0.8, 0)
    lo, hi = clopper_pearson(round(0.8 * n), n)
    assert (hi - lo) / 2 <= 0.05
    lo, hi = clopper_pearson(round(0.8 * (n - 10)), n - 10)
    assert (hi - lo) / 2 > 0.05 - 1e-3
    assert cases_for_width(None, 10) is None


def test_a_bundle_without_features_can_only_shift_priors():
    data = _site(20, swap=True, seed=8)
    bare = SiteData(LABELS, data.y, data.groups, data.member_probs, data.ensemble)  # no pooled features
    with pytest.raises(CalibrationRefusedError, match="cannot be calibrated with method 'head'"):
        calibrate(bare, method="head")
