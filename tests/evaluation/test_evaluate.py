"""cxr-edge evaluate: every method with intervals, bad rows reported, paired tests, audit, report files."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FIRST_RELEASE_BUNDLE

from cxr_edge.bundle.folder import Bundle
from cxr_edge.cli import main
from cxr_edge.config import to_dict
from cxr_edge.dataset.manifest import load_manifest
from cxr_edge.dataset.splits import read_split
from cxr_edge.evaluation.evaluate import evaluate
from cxr_edge.evaluation.shortcut import source_auc
from cxr_edge.ops.ensemble import fit_stacker

KEYS = {"accuracy", "accuracy_ci", "auc_macro", "auc_macro_ci", "per_class", "ece"}


@pytest.fixture(scope="module")
def test_records(kit_manifest):
    from pathlib import Path

    manifest = load_manifest(kit_manifest)
    split = read_split(Path(__file__).resolve().parents[2] / "splits" / "kit.csv", manifest)
    return split.records(manifest, "test")


@pytest.fixture
def two_member_bundle(tmp_path):
    """The first release's fp32 and int8 models as a two-member stacking ensemble."""
    dst = tmp_path / "bundle"
    shutil.copytree(FIRST_RELEASE_BUNDLE, dst)
    data = json.loads((dst / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    fake_val = rng.dirichlet(np.ones(3), size=(2, 60))
    stacker = fit_stacker(fake_val, rng.integers(0, 3, 60), l2_grid=(0.1,), folds=2)
    data["ensemble"] = {
        "method": "stacking",
        "members": ["custom_cnn-fp32", "custom_cnn-int8"],
        "weights": [0.7, 0.3],
        "stacking": to_dict(stacker),
        "temperature": 1.5,
    }
    (dst / "manifest.json").write_text(json.dumps(data))
    return Bundle.load(dst)


def test_metrics_follow_the_documented_schema(test_records):
    metrics, _preds = evaluate(
        Bundle.load(FIRST_RELEASE_BUNDLE), test_records[:40], n_boot=200, progress=False
    )
    assert metrics["labels"] == ["covid", "normal", "pneumonia_unknown"] and metrics["n"] == 40
    assert set(metrics["ensemble"]) >= KEYS and metrics["ensemble"]["method"] == "mean"
    for block in [metrics["ensemble"], *metrics["models"].values(), *metrics["methods"].values()]:
        assert set(block) >= KEYS
        lo, hi = block["accuracy_ci"]
        assert lo <= block["accuracy"] <= hi
        if block["auc_macro"] is not None:
            assert block["auc_macro_ci"][0] <= block["auc_macro"] + 1e-9
        assert set(block["per_class"]["normal"]) >= {"auc", "sensitivity", "specificity"}
    assert set(metrics["methods"]) == {"vote", "mean"}  # no fitted weights or stacker in the default bundle
    assert set(metrics["by_source"]) <= {"hannover", "montreal", "nih"}
    assert sum(s["n"] for s in metrics["by_source"].values()) == 40
    json.dumps(metrics)  # JSON-serialisable as it is


def test_bad_rows_are_reported_not_fatal(test_records, tmp_path):
    from dataclasses import replace

    broken = replace(test_records[0], path="missing/nowhere.png")
    alien = replace(test_records[1], label="tb")
    metrics, _ = evaluate(
        Bundle.load(FIRST_RELEASE_BUNDLE), [broken, alien, *test_records[2:12]], n_boot=100, progress=False
    )
    assert metrics["n"] == 10
    reasons = {s["path"]: s["reason"] for s in metrics["skipped"]}
    assert "file not found" in reasons["missing/nowhere.png"] and "'tb'" in reasons[alien.path]


def test_every_method_and_paired_tests(two_member_bundle, test_records):
    metrics, _ = evaluate(two_member_bundle, test_records[:30], n_boot=100, progress=False)
    assert set(metrics["methods"]) == {"vote", "mean", "weighted", "stacking"}
    assert metrics["ensemble"]["method"] == "stacking" and metrics["ensemble"]["temperature"] == 1.5
    paired = metrics["paired"]["ensemble_vs_best_member"]
    assert paired["best_member"] in ("custom_cnn-fp32", "custom_cnn-int8")
    assert 0.0 <= paired["mcnemar"]["p_value"] <= 1.0


def test_source_audit_detects_source_signal():
    rng = np.random.default_rng(0)
    n = 120
    sources = np.array(["a", "b"] * (n // 2))
    groups = np.arange(n).astype(str)
    informative = rng.normal(size=(n, 3)) + 3.0 * (sources == "a")[:, None]
    assert source_auc(informative, sources, groups) > 0.95
    assert abs(source_auc(rng.normal(size=(n, 3)), sources, groups) - 0.5) < 0.15
    assert source_auc(informative, np.array(["a"] * n), groups) is None


def test_cli_writes_report_and_protects_previous_results(kit_manifest, tmp_path):
    from pathlib import Path

    split = Path(__file__).resolve().parents[2] / "splits" / "kit.csv"
    out = tmp_path / "eval"
    args = [
        "evaluate",
        "--manifest",
        str(kit_manifest),
        "--split",
        str(split),
        "--out",
        str(out),
        "--n-boot",
        "100",
        "--audit-source",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} >= {
        "metrics.json",
        "report.md",
        "roc.png",
        "confusion.png",
        "reliability.png",
    }
    metrics = json.loads((out / "metrics.json").read_text())
    from cxr_edge.dataset.manifest import load_manifest
    from cxr_edge.dataset.splits import read_split

    bundle = Bundle.load()  # every test image whose (mapped) label the default bundle knows
    task = load_manifest(kit_manifest).select(bundle.labels, bundle.manifest.label_map)
    assert metrics["n"] == len(read_split(split, task).records(task, "test")) and "audit" in metrics
    report = (out / "report.md").read_text()
    assert "Clopper-Pearson" in report and "By source" in report and "Shortcut audit" in report
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "already used" in again.output


def test_report_without_matplotlib(test_records, tmp_path, monkeypatch):
    from cxr_edge.evaluation.evaluate import ensemble_probs
    from cxr_edge.evaluation.report import write_evaluation

    bundle = Bundle.load(FIRST_RELEASE_BUNDLE)
    metrics, preds = evaluate(bundle, test_records[:20], n_boot=100, progress=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = write_evaluation(tmp_path / "r", metrics, preds.y, ensemble_probs(bundle, preds), title="t")
    assert "Plots need matplotlib" in (out / "report.md").read_text()
    assert not (out / "roc.png").exists()


def test_pruned_members_find_their_unpruned_counterparts():
    from cxr_edge.evaluation.evaluate import counterpart

    others = ["mnet-stage2-fp32", "mnet-stage2-int8", "custom-fp32"]
    assert counterpart("mnet-stage2-pruned-int8", others) == "mnet-stage2-int8"
    assert counterpart("custom-fp32", others) == "custom-fp32"
    assert counterpart("inception-pruned-fp32", others) is None


def test_compare_against_another_bundle(two_member_bundle, test_records, tmp_path):
    """The stacking bundle against the shipped one: paired per model; itself: no discordant image."""
    from cxr_edge.errors import InputError
    from cxr_edge.evaluation.evaluate import compare

    records = test_records[:24]
    metrics, preds = evaluate(two_member_bundle, records, n_boot=100, progress=False)
    shipped = Bundle.load(FIRST_RELEASE_BUNDLE)
    c = compare(two_member_bundle, preds, shipped, progress=False)
    assert c["n"] == 24 and c["left_out"] == 0
    assert set(c["models"]) == {"custom_cnn-fp32", "custom_cnn-fp16", "custom_cnn-int8"}
    same = c["models"]["custom_cnn-int8"]
    assert same["baseline_model"] == "custom_cnn-int8"
    assert same["mcnemar"]["b"] == same["mcnemar"]["c"] == 0  # the same model on the same images
    assert set(c["ensemble"]["delong"]) <= set(shipped.labels)
    assert all(0.0 <= d["p_value"] <= 1.0 for d in c["ensemble"]["delong"].values())
    from cxr_edge.evaluation.report import markdown

    metrics.setdefault("paired", {})["vs_bundle"] = c
    text = markdown(metrics, "t", None)
    assert f"Against `{shipped.manifest.name}` on the same 24 images" in text
    assert "| `custom_cnn-int8` | `custom_cnn-int8` | 0 / 0 |" in text
    binary = tmp_path / "binary"
    shutil.copytree(FIRST_RELEASE_BUNDLE, binary)
    data = json.loads((binary / "manifest.json").read_text())
    data["labels"] = ["covid", "normal", "other"]
    (binary / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="different labels"):
        compare(two_member_bundle, preds, Bundle.load(binary), progress=False)


def test_label_map_maps_manifest_labels_and_reports_the_rest(kit_manifest, tmp_path):
    from tiny_bundle import default_as_format3

    label_map = {"bacterial": "pneumonia_unknown", "viral": "pneumonia_unknown"}
    bundle = Bundle.load(default_as_format3(tmp_path / "b3", label_map=label_map))
    manifest = load_manifest(kit_manifest)
    picked = {}
    for r in manifest.records:  # two rows of each manifest label
        if len(picked.setdefault(r.label, [])) < 2:
            picked[r.label].append(r)
    records = [r for rows in picked.values() for r in rows]
    metrics, preds = evaluate(bundle, records, n_boot=100, progress=False)
    mapped = [r for r in preds.records if r.raw_label]
    assert {r.raw_label for r in mapped} == {"bacterial", "viral"} and {r.label for r in mapped} == {
        "pneumonia_unknown"
    }
    assert all(preds.y[i] == 2 for i, r in enumerate(preds.records) if r.raw_label)
    reasons = [s["reason"] for s in metrics["skipped"]]
    assert len(reasons) == 2 and all("'tb'" in reason for reason in reasons)
    assert metrics["n"] == len(records) - 2 and metrics["lung_evidence"] is None  # no segmenter


def test_evaluate_reports_the_abstention_band(test_records, tmp_path):
    from tiny_bundle import default_as_format3

    from cxr_edge.ops.quality import ReferralBand

    bundle = Bundle.load(default_as_format3(tmp_path / "b3", abstain=ReferralBand(0.9)))
    metrics, preds = evaluate(bundle, test_records[:20], n_boot=100, progress=False)
    band = metrics["abstain"]
    assert band["min_top_prob"] == 0.9 and band["referred"]["n"] == 20
    assert band["referred"]["k"] == sum(r is not None for r in preds.referral)


@pytest.mark.train
def test_evaluate_runs_the_lung_crop_pipeline(tiny_segmenter_bundle, test_records):
    """A lung-crop bundle is evaluated on its crops: Predictor's probabilities, not the border crop's."""
    from cxr_edge.evaluation.evaluate import ensemble_probs
    from cxr_edge.imaging.reader import read_image
    from cxr_edge.ops.preprocess import preprocess
    from cxr_edge.runtime.pipeline import Predictor

    bundle = Bundle.load(tiny_segmenter_bundle)
    records = test_records[:12]
    metrics, preds = evaluate(bundle, records, n_boot=100, progress=False)
    predictor = Predictor(bundle)
    ens = ensemble_probs(bundle, preds)
    moved = 0
    for i, record in enumerate(preds.records):
        want = predictor.predict_file(record.file)
        np.testing.assert_allclose(ens[i], [want.probs[lab] for lab in bundle.labels], atol=1e-6)
        for name, probs in preds.per_model.items():
            np.testing.assert_allclose(
                probs[i], [want.per_model[name][lab] for lab in bundle.labels], atol=1e-6
            )
        assert preds.lung_fraction[i] == want.lung_fraction and preds.flags[i] == want.flags
        assert preds.crop[i] == want.crop and preds.referral[i] == want.referral
        if want.crop == "lung":  # the border crop would have given other pixels
            border = preprocess(read_image(record.file)[0], bundle.spec)
            fp32 = predictor._engines["tiny-fp32"](border)
            moved += not np.allclose(
                fp32, probs[i] if name == "tiny-fp32" else preds.per_model["tiny-fp32"][i]
            )
    assert moved > 0
    ev = metrics["lung_evidence"]
    assert ev["min_fraction"] == bundle.manifest.lung_evidence.min_fraction
    fractions = [f for f in preds.lung_fraction if f is not None]
    assert ev["overall"]["n"] == len(fractions) and ev["overall"]["median"] == pytest.approx(
        np.median(fractions)
    )
    flagged = np.mean([f < ev["min_fraction"] for f in fractions])
    assert ev["overall"]["flagged"] == pytest.approx(flagged)
    assert sum(s["n"] for s in ev["by_source"].values()) == len(fractions)
    assert ev["fallback_crops"] == preds.crop.count("fallback")
    assert metrics["abstain"]["referred"]["k"] == sum(r is not None for r in preds.referral)
    from cxr_edge.evaluation.report import markdown

    text = markdown(metrics, "t", None)
    assert "## Where the model looked" in text and "## Referral band" in text
    json.dumps(metrics)
