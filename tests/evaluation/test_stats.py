"""Statistics of cxr_edge.evaluation.stats, each checked against an independent reference (brute force, scipy,
published values, hand computation or simulated coverage)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as sps

from cxr_edge.errors import SpecError
from cxr_edge.evaluation.metrics import roc_auc
from cxr_edge.evaluation.stats import (
    auc_ci_clopper_pearson,
    bootstrap_ci,
    brier_score,
    clopper_pearson,
    delong,
    delong_paired,
    expected_calibration_error,
    fit_temperature,
    mcnemar,
    reliability_curve,
)
from cxr_edge.ops.ensemble import apply_temperature

# Small case with ties inside each class and across the classes.
SMALL_POS = np.array([0.9, 0.7, 0.7, 0.4, 0.2])
SMALL_NEG = np.array([0.7, 0.5, 0.4, 0.4, 0.1, 0.05])
SMALL_B_POS = np.array([0.3, 0.8, 0.6, 0.6, 0.9])
SMALL_B_NEG = np.array([0.2, 0.6, 0.5, 0.1, 0.7, 0.3])


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _brute_components(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's V10 / V01 from their definition, with explicit double loops."""
    m, n = len(pos), len(neg)
    v10 = np.zeros(m)
    v01 = np.zeros(n)
    for i in range(m):
        for j in range(n):
            v10[i] += _psi(pos[i], neg[j]) / n
            v01[j] += _psi(pos[i], neg[j]) / m
    return v10, v01


def _brute_variance(pos: np.ndarray, neg: np.ndarray) -> float:
    v10, v01 = _brute_components(pos, neg)
    auc = v10.mean()
    m, n = len(pos), len(neg)
    s10 = sum((v - auc) ** 2 for v in v10) / (m - 1)
    s01 = sum((v - auc) ** 2 for v in v01) / (n - 1)
    return s10 / m + s01 / n


def _as_data(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([pos, neg]), np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]


def _binormal(rng: np.random.Generator, m: int, n: int, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores N(d, 1) for positives and N(0, 1) for negatives: true AUC = Phi(d / sqrt 2)."""
    return _as_data(rng.normal(d, 1.0, m), rng.normal(0.0, 1.0, n))


# --- DeLong -----------------------------------------------------------------------------------------


def test_delong_auc_matches_mann_whitney_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(5):
        scores = rng.integers(0, 8, size=120).astype(float)  # few distinct values = many ties
        positive = rng.random(120) < 0.4
        assert delong(scores, positive)["auc"] == pytest.approx(roc_auc(scores, positive), abs=1e-12)


def test_delong_variance_matches_brute_force_structural_components():
    scores, positive = _as_data(SMALL_POS, SMALL_NEG)
    out = delong(scores, positive)
    assert out["variance"] == pytest.approx(_brute_variance(SMALL_POS, SMALL_NEG), rel=1e-12)
    # Shuffling the cases must not change anything.
    perm = np.random.default_rng(0).permutation(len(scores))
    assert delong(scores[perm], positive[perm].astype(int))["variance"] == pytest.approx(out["variance"])
    rng = np.random.default_rng(2)
    pos, neg = rng.integers(0, 5, 7).astype(float), rng.integers(0, 5, 9).astype(float)
    assert delong(*_as_data(pos, neg))["variance"] == pytest.approx(_brute_variance(pos, neg), rel=1e-12)


def test_placement_values_match_their_definition():
    from cxr_edge.evaluation.stats import _placements

    scores, positive = _as_data(SMALL_POS, SMALL_NEG)
    v10, v01 = _placements(scores[None, :], positive)
    ref10, ref01 = _brute_components(SMALL_POS, SMALL_NEG)
    np.testing.assert_allclose(v10[0], ref10, atol=1e-12)
    np.testing.assert_allclose(v01[0], ref01, atol=1e-12)


def test_delong_ci_is_normal_interval_and_shrinks_with_n():
    rng = np.random.default_rng(3)
    small = delong(*_binormal(rng, 25, 25, 1.0))
    large = delong(*_binormal(rng, 1000, 1000, 1.0))
    assert large["variance"] < small["variance"] / 10
    half = sps.norm.ppf(0.975) * np.sqrt(small["variance"])
    np.testing.assert_allclose(small["ci"], [small["auc"] - half, small["auc"] + half], atol=1e-12)
    narrow = delong(*_binormal(rng, 25, 25, 1.0), alpha=0.5)
    assert narrow["ci"][1] - narrow["ci"][0] < small["ci"][1] - small["ci"][0]


def test_delong_ci_is_clipped_and_perfect_separation_has_zero_variance():
    out = delong(*_as_data(np.array([2.0, 3.0, 4.0]), np.array([0.0, 1.0, 1.5])))
    assert out == {"auc": 1.0, "variance": 0.0, "ci": [1.0, 1.0]}
    out = delong(*_as_data(np.array([2.0, 3.0, 0.5]), np.array([0.0, 1.0, 1.5])))
    assert out["ci"][1] == 1.0 and out["ci"][0] < out["auc"]


def test_delong_ci_coverage_binormal():
    d = 1.0
    true_auc = sps.norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(4)
    covered = [
        lo <= true_auc <= hi for lo, hi in (delong(*_binormal(rng, 60, 90, d))["ci"] for _ in range(300))
    ]
    assert 0.90 <= np.mean(covered) <= 0.99


def test_delong_paired_identical_scorers():
    rng = np.random.default_rng(5)
    scores, positive = _binormal(rng, 50, 50, 0.8)
    out = delong_paired(scores, scores.copy(), positive)
    assert out["difference"] == 0.0 and out["z"] == 0.0 and out["p_value"] == 1.0
    assert out["auc_a"] == out["auc_b"] == pytest.approx(roc_auc(scores, positive))


def test_delong_paired_detects_clearly_better_scorer():
    rng = np.random.default_rng(6)
    positive = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    good = positive * 1.5 + rng.normal(size=400)
    weak = positive * 0.3 + rng.normal(size=400)
    out = delong_paired(good, weak, positive)
    assert out["difference"] > 0 and out["z"] > 0 and out["p_value"] < 0.01
    swapped = delong_paired(weak, good, positive)
    assert swapped["z"] == pytest.approx(-out["z"]) and swapped["p_value"] == pytest.approx(out["p_value"])


def test_delong_paired_z_matches_brute_force_covariance():
    scores_a, positive = _as_data(SMALL_POS, SMALL_NEG)
    scores_b, _ = _as_data(SMALL_B_POS, SMALL_B_NEG)
    va10, va01 = _brute_components(SMALL_POS, SMALL_NEG)
    vb10, vb01 = _brute_components(SMALL_B_POS, SMALL_B_NEG)
    m, n = len(SMALL_POS), len(SMALL_NEG)
    s10 = np.cov(np.stack([va10, vb10]))  # 2 x 2 covariance of the structural components
    s01 = np.cov(np.stack([va01, vb01]))
    cov = s10 / m + s01 / n
    contrast = np.array([1.0, -1.0])
    z = (va10.mean() - vb10.mean()) / np.sqrt(contrast @ cov @ contrast)
    out = delong_paired(scores_a, scores_b, positive)
    assert out["auc_a"] == pytest.approx(va10.mean()) and out["auc_b"] == pytest.approx(vb10.mean())
    assert out["z"] == pytest.approx(z, rel=1e-10)
    assert out["p_value"] == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-10)


def test_delong_paired_zero_variance_with_a_difference_gives_no_p_value():
    scores, positive = _as_data(np.array([2.0, 3.0, 4.0]), np.array([0.0, 1.0, 1.5]))
    out = delong_paired(scores, np.zeros_like(scores), positive)
    assert out["difference"] == 0.5 and out["z"] is None and out["p_value"] is None


# --- Clopper-Pearson --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [(0, 10, (0.0, 0.3085)), (5, 10, (0.1871, 0.8129)), (10, 10, (0.6915, 1.0)), (1, 20, (0.0013, 0.2487))],
)
def test_clopper_pearson_known_values(k, n, expected):
    np.testing.assert_allclose(clopper_pearson(k, n), expected, atol=1e-4)


def test_clopper_pearson_matches_scipy_exact_interval():
    for n in (1, 7, 50, 333):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for alpha in (0.05, 0.1):
                ref = sps.binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")
                np.testing.assert_allclose(clopper_pearson(k, n, alpha), (ref.low, ref.high), atol=1e-9)


def test_auc_clopper_pearson_is_beta_quantiles_of_auc_times_n():
    x, n = 0.873 * 150, 150
    lo, hi = auc_ci_clopper_pearson(0.873, 150)
    assert lo == pytest.approx(sps.beta.ppf(0.025, x, n - x + 1))
    assert hi == pytest.approx(sps.beta.ppf(0.975, x + 1, n - x))
    assert auc_ci_clopper_pearson(0.8, 10) == pytest.approx(clopper_pearson(8, 10))


def test_auc_clopper_pearson_undercovers_with_rare_positives():
    """Why the docstring calls it invalid: with 10 positives in 1000 cases it is far too narrow."""
    d = 1.2
    true_auc = sps.norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(7)
    hits_cp, hits_delong = [], []
    for _ in range(200):
        scores, positive = _binormal(rng, 10, 990, d)
        dl = delong(scores, positive)
        lo, hi = auc_ci_clopper_pearson(dl["auc"], len(scores))
        hits_cp.append(lo <= true_auc <= hi)
        hits_delong.append(dl["ci"][0] <= true_auc <= dl["ci"][1])
    assert np.mean(hits_cp) < 0.5
    assert np.mean(hits_delong) > max(0.75, np.mean(hits_cp) + 0.3)


# --- McNemar ----------------------------------------------------------------------------------------


def _pairs(b: int, c: int, both_right: int = 30, both_wrong: int = 5) -> tuple[np.ndarray, np.ndarray]:
    a = np.r_[np.ones(b, bool), np.zeros(c, bool), np.ones(both_right, bool), np.zeros(both_wrong, bool)]
    bb = np.r_[np.zeros(b, bool), np.ones(c, bool), np.ones(both_right, bool), np.zeros(both_wrong, bool)]
    return a, bb


def test_mcnemar_exact_hand_computed():
    out = mcnemar(*_pairs(1, 8))
    assert (out["b"], out["c"], out["exact"]) == (1, 8, True)
    assert out["p_value"] == pytest.approx(2 * sps.binom.cdf(1, 9, 0.5), rel=1e-12)
    assert out["p_value"] == pytest.approx(20 / 512, rel=1e-12)  # 2 * (1 + 9) / 2**9
    assert out["statistic"] == 1.0
    assert mcnemar(*reversed(_pairs(1, 8)))["p_value"] == pytest.approx(out["p_value"])


def test_mcnemar_chi_square_hand_computed():
    out = mcnemar(*_pairs(10, 25))
    assert (out["b"], out["c"], out["exact"]) == (10, 25, False)
    assert out["statistic"] == pytest.approx((abs(10 - 25) - 1) ** 2 / 35)  # = 5.6
    assert out["p_value"] == pytest.approx(sps.chi2.sf(5.6, 1), rel=1e-10)


def test_mcnemar_switches_at_25_discordant_and_handles_none():
    assert mcnemar(*_pairs(10, 14))["exact"] is True
    assert mcnemar(*_pairs(10, 15))["exact"] is False
    out = mcnemar(*_pairs(0, 0))
    assert out["p_value"] == 1.0 and out["b"] == out["c"] == 0


# --- Bootstrap --------------------------------------------------------------------------------------


def test_bootstrap_percentile_coverage_of_accuracy():
    p, n = 0.8, 200
    covered = []
    for seed in range(100):
        correct = np.random.default_rng(1000 + seed).random(n) < p
        out = bootstrap_ci(lambda idx, c=correct: float(c[idx].mean()), n, n_boot=300, seed=seed)
        assert out["n_boot"] == 300 and out["estimate"] == pytest.approx(correct.mean())
        covered.append(out["ci"][0] <= p <= out["ci"][1])
    assert 0.88 <= np.mean(covered) <= 0.99


def test_bootstrap_interval_is_percentiles_of_the_replicates():
    values = np.random.default_rng(14).normal(size=50)
    seen = []

    def mean(idx):
        seen.append(float(values[idx].mean()))
        return seen[-1]

    for alpha in (0.05, 0.3):
        seen.clear()
        out = bootstrap_ci(mean, 50, n_boot=200, alpha=alpha, seed=1)
        assert out["estimate"] == seen[0] == pytest.approx(values.mean())
        np.testing.assert_allclose(out["ci"], np.quantile(seen[1:], [alpha / 2, 1 - alpha / 2]), rtol=1e-12)


def test_bootstrap_grouped_interval_is_wider_with_correlated_groups():
    rng = np.random.default_rng(8)
    groups = np.repeat(np.arange(40), 10)  # 40 patients x 10 images sharing correctness
    correct = np.repeat(rng.random(40) < 0.8, 10)

    def accuracy(idx):
        return float(correct[idx].mean())

    rows = bootstrap_ci(accuracy, len(correct), n_boot=500)
    grouped = bootstrap_ci(accuracy, len(correct), groups=groups, n_boot=500)
    assert grouped["estimate"] == rows["estimate"]
    assert grouped["ci"][1] - grouped["ci"][0] > 2 * (rows["ci"][1] - rows["ci"][0])


def test_bootstrap_resamples_whole_groups():
    rng = np.random.default_rng(9)
    groups = rng.choice(np.array(["p1", "p2", "p3", "p4", "p5", "p6"]), size=30)
    sizes = {g: int(np.sum(groups == g)) for g in np.unique(groups)}
    seen = []

    def check(idx):
        seen.append(idx)
        for g, size in sizes.items():
            rows = np.flatnonzero(groups == g)
            counts = np.bincount(idx, minlength=len(groups))[rows]
            assert np.all(counts == counts[0])  # all images of a patient drawn together
            assert np.sum(np.isin(idx, rows)) % size == 0
        return 0.0

    bootstrap_ci(check, len(groups), groups=groups, n_boot=50)
    assert len(seen) == 51 and any(len(s) != len(groups) for s in seen)


def test_bootstrap_strata_keep_class_counts_and_none_replicates_are_skipped():
    positive = np.r_[np.ones(2, bool), np.zeros(8, bool)]
    scores = np.linspace(0, 1, 10)[::-1]

    def auc(idx):
        return roc_auc(scores[idx], positive[idx])

    free = bootstrap_ci(auc, 10, n_boot=400)
    assert 0 < free["n_boot"] < 400  # some replicates lack positives and are skipped
    strat = bootstrap_ci(auc, 10, strata=positive, n_boot=400)
    assert strat["n_boot"] == 400
    counts = bootstrap_ci(lambda idx: float(positive[idx].sum()), 10, strata=positive, n_boot=100)
    assert counts["ci"] == [2.0, 2.0]
    assert bootstrap_ci(lambda idx: None, 10, n_boot=5) == {"estimate": None, "ci": [None, None], "n_boot": 0}
    assert bootstrap_ci(lambda idx: float("nan") if len(set(idx)) < 10 else 1.0, 10, n_boot=5)["n_boot"] == 0


def test_bootstrap_group_stratum_is_its_first_row_and_seed_reproduces():
    groups = np.array([0, 0, 1, 1, 2, 2, 3])
    strata = np.array([1, 0, 0, 1, 1, 1, 0])  # group strata by first row: 1, 0, 1, 0

    def n_stratum_one_groups(idx):
        return float(len({int(g) for g in groups[idx] if strata[np.flatnonzero(groups == g)[0]] == 1}))

    # Replicates keep 2 groups of each stratum, so at most 2 distinct stratum-1 groups and at least 1.
    out = bootstrap_ci(n_stratum_one_groups, 7, groups=groups, strata=strata, n_boot=200)
    assert 1.0 <= out["ci"][0] <= out["ci"][1] <= 2.0
    again = bootstrap_ci(lambda i: float(i.sum()), 7, groups=groups, n_boot=50, seed=3)
    assert again == bootstrap_ci(lambda i: float(i.sum()), 7, groups=groups, n_boot=50, seed=3)
    assert again != bootstrap_ci(lambda i: float(i.sum()), 7, groups=groups, n_boot=50, seed=4)


# --- Calibration ------------------------------------------------------------------------------------


def _calibrated(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities from a Dirichlet and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, 0.7), size=n)
    y = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return probs, np.minimum(y, k - 1)


def test_ece_small_for_calibrated_and_large_for_overconfident():
    probs, y = _calibrated(20000, 3, seed=10)
    assert expected_calibration_error(probs, y) < 0.03
    sharp = probs**4 / np.sum(probs**4, axis=1, keepdims=True)  # same argmax, overconfident
    assert expected_calibration_error(sharp, y) > 0.08
    assert expected_calibration_error(sharp, y) > 3 * expected_calibration_error(probs, y)


def test_ece_and_reliability_curve_hand_computed():
    probs = np.array([[0.85, 0.15], [0.35, 0.65], [0.25, 0.75], [0.22, 0.78]])
    y = np.array([0, 0, 1, 0])
    # Bins of width 0.1: 0.85 -> bin 8 (right), 0.65 -> bin 6 (wrong), 0.75 and 0.78 -> bin 7 (1 of 2).
    expected = (0.15 + 0.65 + 2 * abs(0.5 - 0.765)) / 4
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(expected)
    curve = reliability_curve(probs, y, n_bins=10)
    assert curve["count"] == [0, 0, 0, 0, 0, 0, 1, 2, 1, 0]
    assert curve["confidence"][:6] == [None] * 6 and curve["accuracy"][9] is None
    assert curve["confidence"][7] == pytest.approx(0.765) and curve["accuracy"][7] == 0.5
    assert curve["accuracy"][6] == 0.0 and curve["accuracy"][8] == 1.0
    assert curve["edges"][0] == 0.0 and curve["edges"][-1] == 1.0 and len(curve["edges"]) == 11
    json.dumps(curve, allow_nan=False)


def test_brier_perfect_and_uniform():
    y = np.array([0, 2, 1, 3, 3])
    assert brier_score(np.eye(4)[y], y) == 0.0
    for k in (2, 3, 5):
        labels = np.arange(7) % k
        assert brier_score(np.full((7, k), 1.0 / k), labels) == pytest.approx((k - 1) / k)
    assert brier_score(np.array([[0.0, 1.0]]), np.array([0])) == 2.0


# --- Temperature ------------------------------------------------------------------------------------


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_fit_temperature_recovers_known_overconfidence():
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(6000, 4)) * 1.5
    y = (rng.random(6000)[:, None] > np.cumsum(_softmax(logits), axis=1)).sum(axis=1).clip(max=3)
    t = fit_temperature(3.0 * logits, y, from_probs=False)
    assert abs(t - 3.0) / 3.0 < 0.1
    assert fit_temperature(_softmax(3.0 * logits), y) == pytest.approx(t, rel=1e-3)
    assert abs(fit_temperature(logits, y, from_probs=False) - 1.0) < 0.1
    calibrated = apply_temperature(_softmax(3.0 * logits), t)
    assert expected_calibration_error(calibrated, y) < expected_calibration_error(_softmax(3.0 * logits), y)


def test_apply_temperature_keeps_argmax_and_normalises():
    probs = np.random.default_rng(12).dirichlet(np.ones(5), size=200)
    for t in (0.3, 1.0, 2.5):
        out = apply_temperature(probs, t)
        np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-9)
    assert apply_temperature(probs, 4.0).max(axis=1).mean() < probs.max(axis=1).mean()


# --- Contracts --------------------------------------------------------------------------------------

_OK_PROBS = np.array([[0.7, 0.3], [0.2, 0.8]])


@pytest.mark.parametrize(
    "call",
    [
        lambda: clopper_pearson(0, 0),
        lambda: clopper_pearson(11, 10),
        lambda: clopper_pearson(-1, 10),
        lambda: clopper_pearson(5, 10, alpha=0.0),
        lambda: auc_ci_clopper_pearson(0.9, 0),
        lambda: auc_ci_clopper_pearson(1.2, 10),
        lambda: delong(np.arange(5.0), np.array([1, 0, 1, 0])),
        lambda: delong(np.arange(5.0), np.ones(5, bool)),
        lambda: delong(np.arange(5.0), np.array([1, 0, 0, 0, 0])),
        lambda: delong(np.arange(4.0), np.array([1, 2, 1, 2])),
        lambda: delong(np.array([0.1, np.nan, 0.3, 0.4]), np.array([1, 0, 1, 0])),
        lambda: delong_paired(np.arange(4.0), np.arange(5.0), np.array([1, 0, 1, 0])),
        lambda: mcnemar(np.ones(3, bool), np.ones(4, bool)),
        lambda: mcnemar(np.array([], bool), np.array([], bool)),
        lambda: bootstrap_ci(lambda i: 0.0, 0),
        lambda: bootstrap_ci(lambda i: 0.0, 5, groups=np.arange(4)),
        lambda: bootstrap_ci(lambda i: 0.0, 5, strata=np.arange(6)),
        lambda: bootstrap_ci(lambda i: 0.0, 5, n_boot=0),
        lambda: expected_calibration_error(_OK_PROBS, np.array([0, 1, 1])),
        lambda: expected_calibration_error(_OK_PROBS, np.array([0, 2])),
        lambda: expected_calibration_error(_OK_PROBS, np.array([0, 1]), n_bins=0),
        lambda: expected_calibration_error(np.empty((0, 2)), np.array([], int)),
        lambda: brier_score(np.array([[0.7, 0.7], [0.2, 0.8]]), np.array([0, 1])),
        lambda: brier_score(_OK_PROBS, np.array([0.5, 1.0])),
        lambda: reliability_curve(_OK_PROBS[:, :1], np.array([0, 0])),
        lambda: fit_temperature(np.arange(4.0), np.array([0, 1, 0, 1]), from_probs=False),
        lambda: fit_temperature(_OK_PROBS, np.array([0])),
        lambda: apply_temperature(_OK_PROBS, 0.0),
        lambda: apply_temperature(_OK_PROBS, float("nan")),
    ],
)
def test_invalid_inputs_raise_spec_error(call):
    with pytest.raises(SpecError):
        call()


def test_results_are_json_serialisable():
    rng = np.random.default_rng(13)
    scores, positive = _binormal(rng, 30, 30, 1.0)
    probs, y = _calibrated(100, 3, seed=13)
    results = [
        clopper_pearson(np.int64(3), np.int64(9)),
        auc_ci_clopper_pearson(np.float32(0.8), 50),
        delong(scores, positive),
        delong_paired(scores, scores + rng.normal(size=60), positive),
        mcnemar(positive, scores > 0.5),
        bootstrap_ci(lambda i: np.float32(positive[i].mean()), 60, n_boot=20),
        expected_calibration_error(probs, y),
        brier_score(probs, y),
        reliability_curve(probs, y),
        fit_temperature(probs, y),
    ]
    text = json.dumps(results, allow_nan=False)
    assert "np." not in text and json.loads(text)[2]["auc"] == pytest.approx(results[2]["auc"])
