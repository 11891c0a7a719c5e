"""Within-source signal of held-out predictions and the selection score that counts it
(cxr_edge.evaluation.loso_signal, through loso.score and loso_select.paired_difference)."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_edge.evaluation import loso, loso_select, loso_signal
from cxr_edge.evaluation.loso import HeldOut

LABELS = ("covid", "normal", "pneumonia")


def _held(p_pneumonia: np.ndarray, y: np.ndarray, sources: np.ndarray) -> HeldOut:
    probs = np.stack([np.full(len(y), 0.05), 0.95 - p_pneumonia, p_pneumonia], axis=1)
    return HeldOut(LABELS, tuple(map(str, range(len(y)))), sources, y, np.array(LABELS)[y], probs)


def _site(seed: int = 0, separation: float = 1.5, n: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A two-class source (nih: normal and pneumonia) and a single-class one (hannover: covid)."""
    rng = np.random.default_rng(seed)
    y = np.array([1] * n + [2] * n + [0] * 20)
    score = rng.normal(np.where(y == 2, separation, 0.0), 1.0)
    p = 0.9 / (1.0 + np.exp(-score))
    sources = np.array(["nih"] * (2 * n) + ["hannover"] * 20)
    return p, y, sources


def test_the_score_is_the_mean_of_recall_and_the_within_source_auc():
    p, y, sources = _site()
    report = loso.score(_held(p, y, sources))
    nih = report["within_source"]["nih"]
    assert set(report["within_source"]) == {"nih"}  # hannover has one class: no ranking to measure
    assert nih["n"] == {"normal": 100, "pneumonia": 100}
    auc = nih["abnormal"]["auc"]
    assert 0.8 < auc < 0.9 and nih["abnormal"]["ci"][0] < auc < nih["abnormal"]["ci"][1]
    assert report["within_auc"] == pytest.approx(auc)
    assert report["selection_score"] == pytest.approx((report["recall_score"] + auc) / 2)
    assert "within-source AUC" in loso.score_line(report)


def test_moving_the_operating_point_changes_recall_but_not_the_ranking():
    p, y, sources = _site(seed=1)
    logit = np.log(p / (0.9 - p))
    shifted = 0.9 / (1.0 + np.exp(-(logit + 1.0)))  # calls more pneumonia: same order of the images
    a, b = loso.score(_held(p, y, sources)), loso.score(_held(shifted, y, sources))
    assert a["recall_score"] != pytest.approx(b["recall_score"], abs=1e-3)
    assert a["within_auc"] == pytest.approx(b["within_auc"], abs=1e-9)


def test_a_constant_answer_scores_chance_on_the_ranking():
    _, y, sources = _site()
    constant = loso.score(_held(np.full(len(y), 0.1), y, sources))  # "normal" for everything
    assert constant["within_auc"] == pytest.approx(0.5)
    assert constant["selection_score"] == pytest.approx((constant["recall_score"] + 0.5) / 2)


def test_tables_show_each_ranked_source_with_its_interval():
    p, y, sources = _site()
    report = loso.score(_held(p, y, sources))
    table = loso.markdown_table({"model": report})
    assert "| nih AUC | recall score | score |" in table
    assert "| hannover † |" in table
    assert "| nih | normal 100, pneumonia 100 |" in loso.source_report(report)


def test_the_paired_difference_counts_the_ranking():
    p, y, sources = _site(seed=2, separation=2.5)
    good = _held(p, y, sources)
    blind = _held(np.random.default_rng(3).permutation(p), y, sources)  # same calls, no ranking
    d = loso_select.paired_difference(good, blind, n_boot=300)
    expected = loso.selection_score(good) - loso.selection_score(blind)
    assert d["difference"] == pytest.approx(expected)
    assert d["ci"][0] > 0.05


def test_without_a_normal_class_the_mean_one_vs_rest_auc_is_used():
    y = np.array([0] * 10 + [2] * 10)
    probs = np.tile([0.5, 0.0, 0.5], (20, 1))
    probs[10:, 2] += 0.1
    probs[10:, 0] -= 0.1
    assert loso_signal.source_auc(y, probs, LABELS) == pytest.approx(1.0)


def test_mass_on_a_label_the_source_lacks_does_not_count_as_ranking():
    # Normal films partly called covid (as held-out NIH's adults are): 1 - p(normal) ranks them as
    # abnormal, but among the source's own labels pneumonia still ranks above normal.
    rng = np.random.default_rng(5)
    y = np.array([1] * 50 + [2] * 50)
    covid = np.where(y == 1, 0.8, 0.05)
    pneumonia_share = np.where(y == 2, 0.7, 0.3) + rng.normal(0, 0.05, 100)
    rest = 1.0 - covid
    probs = np.stack([covid, rest * (1 - pneumonia_share), rest * pneumonia_share], axis=1)
    block = loso_signal.within_source(np.array(["nih"] * 100), y, probs, LABELS)["nih"]
    assert block["abnormal"]["auc"] > 0.95 and block["abnormal_any"]["auc"] < 0.5
