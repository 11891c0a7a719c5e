"""The iterative pruning loop on a tiny model: steps recorded, validation-only selection, resumable,
and the best step converts into a bundle that records parameters before and after."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.bundle.folder import Bundle
from cxr_edge.cli import main
from cxr_edge.errors import SpecError
from cxr_edge.ops.preprocess import PreprocessSpec
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.prune.loop import PruneConfig, choose, prune_run

pytestmark = pytest.mark.train
TINY = TrainConfig(
    preprocess=PreprocessSpec(input_size=(32, 32)),
    model_args={"depth": 3, "base_filters": 8},
    epochs=1,
    batch_size=8,
    augment=False,
)


@pytest.fixture(scope="module")
def run(kit_manifest, split, tmp_path_factory):
    from cxr_edge.train.fit import train_run

    return train_run(
        TINY, kit_manifest, split, tmp_path_factory.mktemp("run") / "tiny", max_per_part=16, progress=False
    )


@pytest.fixture(scope="module")
def pruned(run, kit_manifest, split, tmp_path_factory):
    from cxr_edge.convert.latency import int8_latency_ms

    cfg = PruneConfig(step=0.25, max_fraction=0.5, latency_runs=3)
    out = tmp_path_factory.mktemp("p") / "prune"
    return prune_run(
        run, kit_manifest, split, out, cfg, max_per_part=16, progress=False, latency_ms=int8_latency_ms
    )


def test_every_step_is_recorded_and_channels_shrink(pruned):
    with open(pruned / "prune_results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["fraction"]) for r in rows] == [0.0, 0.25, 0.5]
    params = [int(r["params"]) for r in rows]
    macs = [int(r["macs"]) for r in rows]
    assert params[0] > params[1] > params[2] and macs[0] > macs[1] > macs[2]
    assert all(float(r["int8_latency_ms"]) > 0 for r in rows)
    channels = json.loads((pruned / "step_02" / "channels.json").read_text())
    assert len(channels["block1_sepconv"]) == 8 - 4 and len(channels["block3_sepconv"]) == 32 - 16
    assert (pruned / "prune_plot.png").is_file()


def test_best_step_is_chosen_on_validation_and_exported_as_a_run(pruned):
    rows = [json.loads((pruned / f"step_{i:02d}" / "metrics.json").read_text()) for i in range(3)]
    best = json.loads((pruned / "best" / "run.json").read_text())
    assert best["pruning_step"] == choose(rows)["step"]
    assert (
        best["params_unpruned"] == rows[0]["params"]
        and best["params"] == rows[best["pruning_step"]]["params"]
    )
    assert best["val_metrics"]["auc_macro"] >= rows[0]["val_auc_macro"]  # no loss (the default rule)
    assert best["pruning_selection"] == {"rule": "no_loss", "tolerance": 0.0}
    assert "test" not in json.dumps(rows)  # nothing measured on the test split


def _rows(*aucs):
    return [{"step": i, "fraction": i * 0.1, "val_auc_macro": a} for i, a in enumerate(aucs)]


def test_no_loss_takes_the_most_pruned_step_that_keeps_the_unpruned_auc():
    rows = _rows(0.90, 0.91, 0.89, 0.90, 0.85)
    assert choose(rows)["step"] == 3  # 0.90 >= 0.90; step 4 lost AUC
    assert choose(rows, tolerance=0.011)["step"] == 3
    assert choose(rows, tolerance=0.06)["step"] == 4
    assert choose(rows, "best")["step"] == 1
    assert choose(_rows(0.9, 0.8, 0.7))["step"] == 0  # every step lost: keep the unpruned model
    with pytest.raises(SpecError, match="selection rule"):
        choose(rows, "fastest")


def _no_conversion(*_):
    raise AssertionError("a finished step is not measured again")


def test_rerun_continues_instead_of_redoing(pruned, run, kit_manifest, split):
    before = (pruned / "step_01" / "metrics.json").stat().st_mtime_ns
    prune_run(
        run,
        kit_manifest,
        split,
        pruned,
        PruneConfig(step=0.25, max_fraction=0.5, latency_runs=3),
        max_per_part=16,
        progress=False,
        latency_ms=_no_conversion,
    )
    assert (pruned / "step_01" / "metrics.json").stat().st_mtime_ns == before
    prune_run(  # another selection rule re-chooses without pruning again
        run,
        kit_manifest,
        split,
        pruned,
        PruneConfig(step=0.25, max_fraction=0.5, latency_runs=3),
        max_per_part=16,
        progress=False,
        selection="best",
        latency_ms=_no_conversion,
    )
    assert (pruned / "step_01" / "metrics.json").stat().st_mtime_ns == before
    assert json.loads((pruned / "best" / "run.json").read_text())["pruning_selection"]["rule"] == "best"
    with pytest.raises(SpecError, match="different settings"):
        prune_run(
            run,
            kit_manifest,
            split,
            pruned,
            PruneConfig(step=0.1, max_fraction=0.5),
            max_per_part=16,
            progress=False,
            latency_ms=_no_conversion,
        )
    with pytest.raises(SpecError, match="needs a converter"):  # training never imports conversion
        prune_run(run, kit_manifest, split, pruned, PruneConfig(step=0.25, max_fraction=0.5))


def test_pruned_model_converts_and_the_bundle_records_its_reduction(pruned, kit_manifest, split, tmp_path):
    from cxr_edge.convert.build import build_bundle
    from cxr_edge.convert.recipe import BundleRecipe

    out = build_bundle(
        BundleRecipe(
            runs=[pruned / "best"],
            manifest=kit_manifest,
            split=split,
            quants=("int8",),
            n_calibration=8,
            max_per_part=16,
            allow_degraded=True,
        ),
        tmp_path / "bundle",
        progress=False,
    )
    entry = Bundle.load(out).manifest.models[0]
    assert entry.params_unpruned > entry.params or entry.pruned_fraction == 0.0
    assert entry.macs > 0


def test_global_ranking_and_cli(run, kit_manifest, split, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "prune",
            str(run),
            "--manifest",
            str(kit_manifest),
            "--split",
            str(split),
            "--step",
            "0.5",
            "--max",
            "0.5",
            "--ranking",
            "global",
            "--no-latency",
            "--out",
            str(tmp_path / "g"),
            "--max-per-part",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "chosen (no-loss): step" in result.output
    with open(tmp_path / "g" / "prune_results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert int(rows[1]["params"]) < int(rows[0]["params"]) and rows[1]["int8_latency_ms"] == ""


def test_pruned_members_are_named_after_their_pruning_folder(tmp_path):
    from cxr_edge.convert.members import member_stems

    runs = [tmp_path / "mobilenet_v2-stage2" / "best", tmp_path / "custom_cnn-scratch" / "best"]
    assert member_stems(runs, [TINY, TINY]) == ["mobilenet_v2-stage2-pruned", "custom_cnn-scratch-pruned"]
    assert member_stems(runs[:1], [TINY]) == [TINY.model]
    with pytest.raises(SpecError, match="distinct"):
        member_stems([tmp_path / "a" / "best", tmp_path / "b" / "a-pruned"], [TINY, TINY])


def _level(folder, fraction: float, params: int, right: float) -> None:
    """A pruning step of one fold: held-out predictions where ``right`` of each class is ranked right."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)  # the same draws at every level: only ``right`` differs
    labels = ("covid", "normal", "pneumonia")
    rows = ["path,source,label,raw_label," + ",".join(f"prob_{k}" for k in labels)]
    for source, present in (("kermany", ("normal", "pneumonia")), ("hannover", ("covid",))):
        for label in present:
            for i in range(60):
                p = rng.dirichlet([1, 1, 1]) * 0.2
                hit = labels.index(label) if rng.random() < right else (labels.index(label) + 1) % 3
                p[hit] += 0.8
                rows.append(f"{source}/{label}/{i}.png,{source},{label},," + ",".join(f"{v:.6f}" for v in p))
    (folder / "holdout_predictions.csv").write_text("\n".join(rows) + "\n")
    (folder / "metrics.json").write_text(json.dumps({"fraction": fraction, "params": params}))


def test_pruning_stops_at_the_first_drop_beyond_the_tolerance(tmp_path):
    from cxr_edge.train.prune.loso import summarise

    # Levels 0, 2, 4, 6%: the score holds, drops at 4%, climbs back at 6% (a lucky draw, not evidence).
    for step, (fraction, right) in enumerate(((0.0, 0.9), (0.02, 0.9), (0.04, 0.5), (0.06, 0.95))):
        for fold in ("a", "b"):
            _level(tmp_path / fold / f"step_{step:02d}", fraction, 1000 - 100 * step, right)
    summary = summarise(tmp_path, ["a", "b"], tolerance=0.02, n_boot=50)
    scores = [r["score"] for r in summary["levels"]]
    assert scores[2] < scores[0] - 0.02 and scores[3] >= scores[0] - 0.02
    assert summary["chosen"]["fraction"] == 0.02
    assert summary["levels"][0]["delta"] == 0.0
    low = summary["levels"][2]
    assert low["delta"] < 0 and low["delta_lo"] <= low["delta"] <= low["delta_hi"] < 0
    assert {"auc_kermany", "recall_score", "within_auc"} <= set(low)
