"""Training protocol on the kit with tiny models: transfer, resume, held-out sources, mixed precision,
search and evaluate-run."""

from __future__ import annotations

import dataclasses
import json

import keras
import pytest
from click.testing import CliRunner

from cxr_edge.cli import main
from cxr_edge.errors import SpecError
from cxr_edge.ops.preprocess import PreprocessSpec
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.fit import train_run
from cxr_edge.train.rundir import LAST_MODEL

pytestmark = pytest.mark.train

BASE = TrainConfig(
    preprocess=PreprocessSpec(input_size=(32, 32)),
    model_args={"depth": 2, "base_filters": 4},
    epochs=2,
    batch_size=8,
    augment=False,
    seed=3,
)
STAGE1 = dataclasses.replace(BASE, labels=("normal", "pneumonia_unknown"))
PER_PART = 12


@pytest.fixture(scope="module")
def stage1(kit_manifest, split, tmp_path_factory):
    return train_run(
        STAGE1,
        kit_manifest,
        split,
        tmp_path_factory.mktemp("s1") / "run",
        max_per_part=PER_PART,
        progress=False,
    )


def test_stage2_transfers_from_stage1_and_records_it(stage1, kit_manifest, split, tmp_path):
    config = dataclasses.replace(BASE, init_from=str(stage1), epochs=1)
    run = train_run(config, kit_manifest, split, tmp_path / "s2", max_per_part=PER_PART, progress=False)
    info = json.loads((run / "run.json").read_text())
    assert info["init_from"]["run"] == str(stage1)
    assert info["init_from"]["labels"] == ["normal", "pneumonia_unknown"]
    assert len(info["init_from"]["best_model_sha256"]) == 64
    assert info["weights"].startswith("modality-specific transfer")
    model = keras.models.load_model(run / "best.keras")
    assert model.output_shape == (None, 3)


def test_stage1_uses_only_its_labels(stage1):
    info = json.loads((stage1 / "run.json").read_text())
    assert info["val_metrics"]["per_class"].keys() == {"normal", "pneumonia_unknown"}
    assert info["init_from"] is None and info["weights"] == "random initialisation"


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def test_interrupted_run_resumes(kit_manifest, split, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_run(
            BASE, kit_manifest, split, out, max_per_part=PER_PART, progress=False, callbacks=[_Interrupt()]
        )
    assert (out / LAST_MODEL).is_file() and not (out / "run.json").exists()
    with pytest.raises(SpecError, match="not empty"):
        train_run(BASE, kit_manifest, split, out, max_per_part=PER_PART, progress=False)
    with pytest.raises(SpecError, match="different config"):
        train_run(
            dataclasses.replace(BASE, epochs=5),
            kit_manifest,
            split,
            out,
            max_per_part=PER_PART,
            progress=False,
            resume=True,
        )
    train_run(BASE, kit_manifest, split, out, max_per_part=PER_PART, progress=False, resume=True)
    info = json.loads((out / "run.json").read_text())
    assert info["resumed"] is True and info["epochs_run"] == 2
    assert len((out / "history.csv").read_text().strip().splitlines()) == 3  # header + 2 epochs, no repeats
    assert not (out / LAST_MODEL).exists()
    with pytest.raises(SpecError, match="already complete"):
        train_run(BASE, kit_manifest, split, out, max_per_part=PER_PART, progress=False, resume=True)


def test_held_out_source_is_excluded_and_reported(kit_manifest, split, tmp_path):
    config = dataclasses.replace(BASE, holdout_sources=("montreal",), epochs=1)
    run = train_run(config, kit_manifest, split, tmp_path / "run", max_per_part=PER_PART, progress=False)
    info = json.loads((run / "run.json").read_text())
    holdout = info["holdout_metrics"]
    assert holdout["sources"] == ["montreal"] and holdout["n"] == PER_PART
    assert set(holdout["sensitivity"]) == {"covid"}  # montreal holds covid images only
    assert info["n_images"]["holdout"] == PER_PART


def test_mixed_precision_run_saves_a_float32_model(kit_manifest, split, tmp_path):
    config = dataclasses.replace(BASE, mixed_precision=True, epochs=1)
    run = train_run(config, kit_manifest, split, tmp_path / "run", max_per_part=PER_PART, progress=False)
    model = keras.models.load_model(run / "best.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert keras.config.dtype_policy().name == "float32"  # the global policy was not changed


def test_run_without_split_makes_and_keeps_its_own(kit_manifest, tmp_path):
    run = train_run(
        dataclasses.replace(BASE, epochs=1),
        kit_manifest,
        None,
        tmp_path / "run",
        max_per_part=PER_PART,
        progress=False,
    )
    assert (run / "split.csv").is_file()
    assert json.loads((run / "run.json").read_text())["split"] == str(run / "split.csv")


def test_search_writes_results_and_a_trainable_best_config(kit_manifest, split, tmp_path):
    config_file = tmp_path / "search.toml"
    config_file.write_text(
        'model = "custom_cnn"\nbatch_size = 8\naugment = false\n[model_args]\ndepth = 2\nbase_filters = 4\n'
        "[preprocess]\ninput_size = [32, 32]\n[search]\ntrials = 2\nepochs = 1\nseed = 1\n"
    )
    out = tmp_path / "search"
    args = [
        "search",
        "--config",
        str(config_file),
        "--manifest",
        str(kit_manifest),
        "--split",
        str(split),
        "--out",
        str(out),
        "--max-per-part",
        "8",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = (out / "search_results.csv").read_text().splitlines()
    assert rows[0].split(",")[:2] == ["trial", "val_loss"] and len(rows) == 3
    assert {"dropout", "activation", "optimizer"} <= set(rows[0].split(","))
    best = TrainConfig.load(out / "best_config.json")
    assert best.optimizer in ("sgd", "adam") and 0.1 <= best.model_args["dropout"] <= 0.7


def test_evaluate_run_prints_a_table_row(stage1):
    result = CliRunner().invoke(main, ["runs", "report", str(stage1)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("| run | split | accuracy | AUC")
    test_row = next(line for line in lines if "| test |" in line)
    assert test_row.count("|") == 10 and "n/a" not in test_row.split("|")[3]
    evaluation = json.loads((stage1 / "evaluation.json").read_text())
    assert evaluation["test"]["n"] == PER_PART and evaluation["params"] > 0


def test_study_runs_three_stages_and_tabulates(kit_manifest, split, tmp_path):
    from cxr_edge.train.study import report, run_model

    configs = tmp_path / "configs"
    configs.mkdir()
    common = "epochs = 1\nbatch_size = 8\naugment = false\n[model_args]\ndepth = 2\nbase_filters = 4\n"
    common += "[preprocess]\ninput_size = [32, 32]\n"
    (configs / "zoo_stage1.toml").write_text('labels = ["normal", "pneumonia_unknown"]\n' + common)
    (configs / "zoo_stage2.toml").write_text(common)
    rows = run_model(
        "custom_cnn", str(kit_manifest), str(split), tmp_path / "zoo", configs, max_per_part=8, progress=False
    )
    assert [r["kind"] for r in rows] == ["stage1", "stage2", "scratch"]
    assert rows[1]["info"]["init_from"]["run"] == str(tmp_path / "zoo" / "custom_cnn-stage1")
    assert rows[2]["info"]["init_from"] is None
    table = report(rows)
    assert table.count("| custom_cnn |") == 3 and "--init-from" in table
    again = run_model(
        "custom_cnn", str(kit_manifest), str(split), tmp_path / "zoo", configs, max_per_part=8, progress=False
    )  # completed runs are not retrained
    assert [r["info"]["created"] for r in again] == [r["info"]["created"] for r in rows]


def test_cli_model_override_sets_channels_and_holdout(kit_manifest, split, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("epochs = 1\nbatch_size = 4\naugment = false\n[preprocess]\ninput_size = [32, 32]\n")
    out = tmp_path / "run"
    args = [
        "train",
        "--config",
        str(config),
        "--model",
        "mobilenet_v2",
        "--manifest",
        str(kit_manifest),
        "--split",
        str(split),
        "--out",
        str(out),
        "--max-per-part",
        "4",
        "--holdout-source",
        "montreal",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    saved = TrainConfig.load(out / "config.json")
    assert saved.model == "mobilenet_v2" and saved.preprocess.channels == 3
    assert saved.holdout_sources == ("montreal",)
    assert json.loads((out / "run.json").read_text())["holdout_metrics"]["n"] == 4


def test_study_picks_a_model_or_family_recipe_before_the_shared_one(tmp_path):
    from cxr_edge.train.study import config_file

    for name in ("zoo_stage1.toml", "zoo_stage1_vgg.toml", "zoo_stage2.toml", "zoo_stage2_vgg19.toml"):
        (tmp_path / name).write_text("")
    assert config_file(tmp_path, "stage1", "vgg16").name == "zoo_stage1_vgg.toml"
    assert config_file(tmp_path, "stage2", "vgg19").name == "zoo_stage2_vgg19.toml"
    assert config_file(tmp_path, "stage2", "vgg16").name == "zoo_stage2.toml"
    assert config_file(tmp_path, "stage1", "mobilenet_v2").name == "zoo_stage1.toml"
    with pytest.raises(FileNotFoundError):
        config_file(tmp_path, "stage3", "vgg16")
