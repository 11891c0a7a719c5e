"""Leave-one-source-out scoring (cxr_edge.evaluation.loso, loso_select) and the training loop
(cxr_edge.train.loso)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from cxr_edge.dataset.manifest import Manifest, Record
from cxr_edge.errors import SpecError
from cxr_edge.evaluation import loso, loso_select
from cxr_edge.evaluation.loso import HeldOut

REPO = Path(__file__).resolve().parents[2]

LABELS = ("covid", "normal", "pneumonia")


def held(sources, y, pred, raw=None) -> HeldOut:
    """Held-out predictions whose argmax is ``pred`` (one-hot-ish probabilities)."""
    n = len(y)
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), pred] = 0.8
    return HeldOut(
        LABELS,
        tuple(f"img{i}.png" for i in range(n)),
        np.array(sources),
        np.array(y),
        np.array(raw if raw is not None else [LABELS[i] for i in y]),
        probs,
    )


def test_per_source_rates_have_clopper_pearson_intervals():
    h = held(["a"] * 4 + ["b"] * 2, [0, 0, 0, 0, 1, 2], [0, 0, 0, 1, 1, 1])
    report = loso.score(h)
    a = report["by_source"]["a"]
    assert a["accuracy"]["k"] == 3 and a["accuracy"]["n"] == 4
    lo, hi = a["accuracy"]["ci"]
    assert lo == pytest.approx(0.1941, abs=1e-3) and hi == pytest.approx(0.9937, abs=1e-3)  # exact CP 3/4
    # source a has only covid: normal sensitivity undefined, normal specificity 3/4
    assert a["per_class"]["normal"]["sensitivity"]["value"] is None
    assert a["per_class"]["normal"]["specificity"]["value"] == pytest.approx(0.75)
    assert report["pooled"]["accuracy"]["value"] == pytest.approx(4 / 6)


def test_selection_score_weighs_every_source_class_cell_equally():
    # 100 images of a/covid all right, 1 image of b/normal wrong: pooled accuracy 0.99, score 0.5
    h = held(["a"] * 100 + ["b"], [0] * 100 + [1], [0] * 100 + [2])
    assert loso.score(h)["pooled"]["accuracy"]["value"] == pytest.approx(100 / 101)
    assert loso.selection_score(h) == pytest.approx(0.5)


def test_raw_labels_are_reported_within_a_mapped_class():
    h = held(["k"] * 4, [2, 2, 2, 2], [2, 2, 1, 1], raw=["bacterial", "bacterial", "viral", "viral"])
    per_raw = loso.score(h)["pooled"]["per_raw_label"]
    assert per_raw["bacterial"]["value"] == 1.0 and per_raw["viral"]["value"] == 0.0


def test_predictions_round_trip_and_refuse_mixed_labels(tmp_path):
    h = held(["a", "b"], [0, 1], [0, 2])
    rows = [(p, s, LABELS[y], "") for p, s, y in zip(h.paths, h.sources, h.y, strict=True)]
    loso.write_predictions(tmp_path / "a.csv", LABELS, rows, h.probs)
    back = loso.read_predictions([tmp_path / "a.csv"])
    assert back.paths == h.paths and np.allclose(back.probs, h.probs, atol=1e-6)
    loso.write_predictions(tmp_path / "b.csv", ("x", "y", "z"), rows, h.probs)
    with pytest.raises(SpecError, match="disagree on labels"):
        loso.read_predictions([tmp_path / "a.csv", tmp_path / "b.csv"])
    with pytest.raises(SpecError, match="not found"):
        loso.read_predictions([tmp_path / "missing.csv"])


def test_ensembles_align_images_and_fit_weights_leave_one_fold_out():
    rng = np.random.default_rng(0)
    n = 60
    y = rng.integers(0, 3, n)
    sources = np.array(["a", "b", "c"] * 20)
    good = np.eye(3)[y] * 0.7 + 0.1  # right, confident
    bad = np.full((n, 3), 1 / 3)  # uninformative
    base = HeldOut(
        LABELS, tuple(f"p{i}" for i in range(n)), sources, y, np.array([LABELS[i] for i in y]), good
    )
    other = dataclasses.replace(base, probs=bad)
    reversed_other = HeldOut(
        LABELS, base.paths[::-1], sources[::-1], y[::-1], base.raw_labels[::-1], bad[::-1]
    )
    mean = loso_select.ensemble([base, reversed_other])  # aligned by path, not by position
    order = [base.paths.index(p) for p in mean.paths]
    assert np.allclose(mean.probs, (good[order] + bad[order]) / 2) and np.array_equal(mean.y, y[order])
    fitted = loso_select.fitted_ensemble([base, other])
    assert fitted["weights"][0] > 0.9  # the informative member gets the weight
    assert set(fitted["per_fold"]) == {"a", "b", "c"}
    assert loso.selection_score(fitted["held"]) == pytest.approx(1.0)


def test_source_median_temperature_ignores_one_confidently_wrong_source():
    # Sources a, b, c: right with probability 0.8 (optimum near T=1); d: confidently wrong (optimum:
    # flatten everything, T at the search bound). Pooled fitting lets d set T for every hospital.
    rng = np.random.default_rng(1)
    n = 400
    sources = np.repeat(np.array(["a", "b", "c", "d"]), n // 4)
    y = rng.integers(0, 3, n)
    right = np.where(sources == "d", False, rng.random(n) < 0.8)
    pred = np.where(right, y, (y + 1) % 3)
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), pred] = 0.8
    h = HeldOut(LABELS, tuple(f"p{i}" for i in range(n)), sources, y, np.array([LABELS[i] for i in y]), probs)
    pooled = loso_select.fitted_ensemble([h], weighted=False)
    robust = loso_select.fitted_ensemble([h], weighted=False, temperature_rule="source_median")
    assert pooled["temperature"] > 1.5 * robust["temperature"]
    assert 0.5 < robust["temperature"] < 2.0  # near the three good sources' own optimum
    assert robust["temperature_by_source"]["d"] > 10  # reported, not hidden
    assert robust["per_fold"]["d"]["temperature"] == pytest.approx(robust["temperature"], rel=0.3)
    with pytest.raises(SpecError, match="unknown temperature rule"):
        loso_select.fitted_ensemble([h], temperature_rule="mode")


def test_referral_curve_and_choice():
    h = held(["a"] * 10, [0] * 10, [0] * 5 + [1] * 5)
    probs = h.probs.copy()
    probs[5:] = [0.3, 0.4, 0.3]  # the wrong ones are unsure
    h = h.with_probs(probs)
    curve = loso_select.referral_curve(h, thresholds=(0.35, 0.5))
    assert curve[0]["reported"] == 1.0 and curve[1]["reported"] == 0.5
    assert curve[1]["accuracy_reported"] == 1.0 and curve[1]["accuracy_referred"] == 0.0
    assert loso_select.choose_referral(curve, max_referred=0.5)["threshold"] == 0.5
    with pytest.raises(SpecError):
        loso_select.choose_referral(curve, max_referred=-1)


def _records(rows):
    return Manifest(
        tuple(Record(f"{s}/{i}.png", s, f"{s}:{i}", lab) for i, (s, lab) in enumerate(rows)), None, ""
    )


@pytest.mark.train
def test_eligible_sources_keep_every_class_a_source():
    from cxr_edge.train.loso import eligible_sources

    m = _records([("h", "covid"), ("c", "covid"), ("n", "normal"), ("n", "pneumonia"), ("k", "normal")])
    # n is pneumonia's only source; h and c each leave covid another; k leaves normal to n
    assert eligible_sources(m, LABELS) == ["c", "h", "k"]
    with pytest.raises(SpecError, match="without images"):
        eligible_sources(m, (*LABELS, "tb"))


@pytest.mark.train
@pytest.mark.parametrize(
    ("config", "folds"),
    [
        (
            "configs/triage/lungcrop_balanced.toml",
            ["cxnet", "hannover", "kermany", "montreal", "nih", "shenzhen"],
        ),
        # bacterial pneumonia has one source: kermany cannot be held out in the paper's task
        ("configs/paper/lungcrop_balanced.toml", ["cxnet", "hannover", "montreal", "nih", "shenzhen"]),
    ],
)
def test_task_configs_define_the_kit_folds(kit_manifest, config, folds):
    from cxr_edge.dataset.manifest import load_manifest
    from cxr_edge.train.config import TrainConfig
    from cxr_edge.train.loso import eligible_sources

    cfg = TrainConfig.load(REPO / config)
    task = load_manifest(kit_manifest).select(cfg.labels, cfg.label_map)
    assert eligible_sources(task, cfg.labels) == folds
    assert {r.label for r in task.records} == set(cfg.labels)
    assert "tb" not in {r.manifest_label for r in task.records}  # TB is in neither task


@pytest.mark.train
def test_loso_trains_a_fold_predicts_its_source_and_resumes(kit_manifest, tmp_path):
    from cxr_edge.train.config import TrainConfig
    from cxr_edge.train.loso import run_loso

    config = TrainConfig.load("configs/triage/baseline.toml")
    spec = dataclasses.replace(config.preprocess, input_size=(32, 32))
    model_args = {"depth": 2, "base_filters": 4, "dropout": 0.5}
    config = dataclasses.replace(config, preprocess=spec, model_args=model_args, epochs=1)
    split = "splits/kit.csv"
    out = tmp_path / "loso"
    report = run_loso(config, kit_manifest, split, out, sources=["montreal"], max_per_part=12, progress=False)
    preds = loso.read_predictions([out / "montreal" / loso.PREDICTIONS])
    assert len(preds) == 26 and set(preds.sources) == {"montreal"}  # every montreal image, all parts
    assert np.allclose(preds.probs.sum(axis=1), 1.0, atol=1e-5)
    run = json.loads((out / "montreal" / "run.json").read_text())
    assert run["n_images"]["val"] == 12 and run["n_images"]["holdout"] > 0  # holdout check is capped too
    assert report["by_source"]["montreal"]["n"] == 26
    mtime = (out / "montreal" / "best.keras").stat().st_mtime
    run_loso(config, kit_manifest, split, out, sources=["montreal"], max_per_part=12, progress=False)
    assert (out / "montreal" / "best.keras").stat().st_mtime == mtime  # finished fold kept
    with pytest.raises(SpecError, match="another recipe"):
        run_loso(dataclasses.replace(config, seed=1), kit_manifest, split, out, sources=["montreal"])
    with pytest.raises(SpecError, match="cannot be held out"):
        run_loso(config, kit_manifest, split, tmp_path / "x", sources=["nowhere"])


@pytest.mark.train
def test_pruning_level_is_chosen_on_held_out_sources(kit_manifest, tmp_path):
    from cxr_edge.train.config import TrainConfig
    from cxr_edge.train.loso import run_loso
    from cxr_edge.train.prune.loop import PruneConfig, prune_run
    from cxr_edge.train.prune.loso import prune_folds

    config = TrainConfig.load("configs/triage/baseline.toml")
    spec = dataclasses.replace(config.preprocess, input_size=(32, 32))
    model_args = {"depth": 2, "base_filters": 8, "dropout": 0.5}
    config = dataclasses.replace(config, preprocess=spec, model_args=model_args, epochs=1)
    split = "splits/kit.csv"
    run_loso(
        config, kit_manifest, split, tmp_path / "loso", sources=["montreal"], max_per_part=12, progress=False
    )
    cfg = PruneConfig(step=0.25, max_fraction=0.5, latency=False)
    summary = prune_folds(
        tmp_path / "loso", kit_manifest, split, tmp_path / "prune", cfg, tolerance=1.0, max_per_part=12
    )
    levels = summary["levels"]
    assert [r["fraction"] for r in levels] == [0.0, 0.25, 0.5]
    assert levels[1]["params_mean"] < levels[0]["params_mean"]
    assert all(0.0 <= r["score"] <= 1.0 and "acc_montreal" in r for r in levels)
    assert summary["chosen"]["fraction"] == 0.5  # tolerance 1.0: everything is within it
    assert (tmp_path / "prune" / "loso_prune.csv").is_file()
    # the deployed run is pruned to the chosen level with the same schedule
    run = tmp_path / "loso" / "montreal"
    out = prune_run(
        run,
        kit_manifest,
        split,
        tmp_path / "final",
        cfg,
        selection="fraction",
        fraction=0.25,
        max_per_part=12,
    )
    best = json.loads((out / "best" / "run.json").read_text())
    assert best["pruned_fraction"] == 0.25 and best["pruning_selection"]["fraction"] == 0.25


def _write_fold_dirs(root, probs_by_source: dict[str, np.ndarray], y_by_source: dict[str, list[int]]):
    for src, probs in probs_by_source.items():
        y = y_by_source[src]
        rows = [(f"{src}/{i}.png", src, LABELS[c], "") for i, c in enumerate(y)]
        (root / src).mkdir(parents=True, exist_ok=True)
        loso.write_predictions(root / src / loso.PREDICTIONS, LABELS, rows, probs)


def test_loso_report_and_ensemble_commands(tmp_path):
    from click.testing import CliRunner

    from cxr_edge.cli import main

    rng = np.random.default_rng(0)
    y = {"a": [0] * 20, "b": [1] * 10 + [2] * 10}
    for name, noise in (("m1", 0.2), ("m2", 0.6)):
        probs = {
            s: np.clip(np.eye(3)[v] + rng.normal(0, noise, (len(v), 3)), 0.01, None) for s, v in y.items()
        }
        _write_fold_dirs(tmp_path / name, {s: p / p.sum(1, keepdims=True) for s, p in probs.items()}, y)
    result = CliRunner().invoke(
        main, ["loso", "report", str(tmp_path / "m1"), str(tmp_path / "m2"), "--out", str(tmp_path / "t.md")]
    )
    assert result.exit_code == 0, result.output
    table = (tmp_path / "t.md").read_text()
    assert "| m1 |" in table and "| m2 |" in table and "pooled accuracy" in table
    out = tmp_path / "ens"
    result = CliRunner().invoke(
        main,
        [
            "loso",
            "ensemble",
            str(tmp_path / "m1"),
            str(tmp_path / "m2"),
            "--method",
            "weighted",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads((out / "ensemble.json").read_text())
    assert len(info["weights"]) == 2 and info["weights"][0] > info["weights"][1]  # the less noisy member
    assert info["temperature"] > 0 and 0.34 <= info["referral"]["threshold"] <= 0.96
    assert json.loads((out / "loso.json").read_text())["by_source"]["a"]["n"] == 20
    result = CliRunner().invoke(main, ["loso", "report", str(tmp_path / "nothing")])
    assert result.exit_code != 0


def test_paired_difference_of_scores_has_a_bootstrap_interval():
    y = [0] * 30 + [1] * 30
    sources = ["a"] * 30 + ["b"] * 30
    better = held(sources, y, y)  # all right
    worse = held(sources, y, [0] * 30 + [2] * 15 + [1] * 15)  # b/normal half wrong
    d = loso_select.paired_difference(better, worse, n_boot=500)
    assert d["difference"] == pytest.approx(0.25)  # cells a/covid 1-1, b/normal 1-0.5 -> mean 0.25
    assert d["ci"][0] > 0.1 and d["ci"][1] <= 0.4
    same = loso_select.paired_difference(better, better, n_boot=100)
    assert same["difference"] == 0.0 and same["ci"] == [0.0, 0.0]


def test_single_class_held_out_sources_are_marked():
    """A constant "covid" answer scores 1.000 on an all-covid source: tables and the score line say so."""
    only_covid = loso.score(held(["hannover"] * 4, [0, 0, 0, 0], [0, 0, 0, 0]))
    assert only_covid["single_class_sources"] == ["hannover"] and only_covid["selection_score"] == 1.0
    assert "every held-out source has a single class" in loso.score_line(only_covid)
    table = loso.markdown_table({"constant": only_covid})
    assert "| hannover † |" in table and loso.SINGLE_CLASS_NOTE in table
    assert "| hannover † | 4 |" in loso.source_report(only_covid)
    mixed = loso.score(held(["hannover"] * 2 + ["nih"] * 2, [0, 0, 1, 2], [0, 0, 1, 1]))
    assert mixed["single_class_sources"] == ["hannover"]
    assert "single class" not in loso.score_line(mixed)


def test_usefulness_names_a_constant_model_and_passes_a_working_one():
    from cxr_edge.convert.gates import usefulness

    y = np.array([0] * 10 + [1] * 30 + [2] * 20)
    constant = np.tile([0.34, 0.33, 0.33], (len(y), 1))
    found = usefulness(constant, y, LABELS, temperature=20.0)
    assert len(found) == 3
    assert "at or below the majority-class rate 0.500" in found[0] and "'normal'" in found[0]
    assert "'covid' for 60 of 60" in found[1] and "search bound" in found[2]
    rng = np.random.default_rng(0)
    good = np.eye(3)[np.where(rng.random(len(y)) < 0.8, y, (y + 1) % 3)] * 0.7 + 0.1
    assert usefulness(good, y, LABELS, temperature=1.3) == []


def test_score_bundle_scores_every_held_out_image_even_one_the_input_checks_refuse(kit_manifest, tmp_path):
    """LOSO scoring is not triage: the kit film the frontal-pattern check refuses is still scored."""
    import csv

    from click.testing import CliRunner

    from cxr_edge.cli import main

    with open(kit_manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    wanted = ("kermany/bacterial/person731_bacteria_2633.png", "kermany/normal/IM-0140-0001.png")
    small = tmp_path / "manifest.csv"
    with open(small, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["path"] in wanted)
    labels = [a for lab in ("covid", "normal", "pneumonia") for a in ("--label", lab)]
    result = CliRunner().invoke(
        main,
        [
            "loso", "score-bundle", "--source", "kermany", *labels, "--map", "bacterial=pneumonia",
            "--manifest", str(small), "--root", str(kit_manifest.parent), "--out", str(tmp_path / "out"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    held = loso.load_loso(tmp_path / "out")
    assert sorted(held.paths) == sorted(wanted)
