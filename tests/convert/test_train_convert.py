"""Tiny model, end to end: train -> convert (fp32, int8) -> bundle -> runtime -> CLI.

Uses 32x32 inputs, a 3-block custom CNN with 8 base filters and 24 kit images per split part, so
the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.bundle.folder import Bundle
from cxr_edge.cli import main
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.preprocess import PreprocessSpec, preprocess
from cxr_edge.runtime.pipeline import Predictor
from cxr_edge.train.config import TrainConfig

pytestmark = pytest.mark.train

TINY = TrainConfig(
    preprocess=PreprocessSpec(input_size=(32, 32), border=0.05),
    model_args={"depth": 3, "base_filters": 8},
    epochs=2,
    batch_size=8,
    seed=1,
)
PER_PART = 24


@pytest.fixture(scope="module")
def tiny_run(kit_manifest, split, tmp_path_factory):
    from cxr_edge.train.fit import train_run

    return train_run(
        TINY,
        kit_manifest,
        split,
        tmp_path_factory.mktemp("run") / "tiny",
        max_per_part=PER_PART,
        progress=False,
    )


@pytest.fixture(scope="module")
def converted_bundle(tiny_run, kit_manifest, split, tmp_path_factory):
    """The tiny run converted by ``build_bundle``: the conversion under test here. (Tests that just
    need a small bundle use conftest's ``tiny_segmenter_bundle``, built by ``tests/tiny_bundle.py``.)"""
    from cxr_edge.convert.build import build_bundle
    from cxr_edge.convert.recipe import BundleRecipe

    return build_bundle(
        BundleRecipe(
            runs=[tiny_run],
            manifest=kit_manifest,
            split=split,
            n_calibration=16,
            max_per_part=PER_PART,
            name="tiny",
            allow_degraded=True,
        ),
        tmp_path_factory.mktemp("b") / "bundle",
        progress=False,
    )


def test_run_directory_records_provenance(tiny_run, split):
    assert {p.name for p in tiny_run.iterdir()} >= {"best.keras", "config.json", "history.csv", "run.json"}
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["n_images"] == {"train": PER_PART, "val": PER_PART, "test": PER_PART, "holdout": 0}
    assert len(run["data_manifest_sha256"]) == 64 and len(run["split_sha256"]) == 64
    assert run["weights"] == "random initialisation"
    assert 0.0 <= run["val_metrics"]["accuracy"] <= 1.0
    assert TrainConfig.load(tiny_run / "config.json") == TINY


def test_run_directory_is_never_overwritten(tiny_run, kit_manifest, split):
    from cxr_edge.errors import SpecError
    from cxr_edge.train.fit import train_run

    with pytest.raises(SpecError, match="not empty"):
        train_run(TINY, kit_manifest, split, tiny_run, max_per_part=4, progress=False)


def test_bundle_contents_and_parity(converted_bundle, kit_manifest):
    from cxr_edge.dataset.manifest import load_manifest

    bundle = Bundle.load(converted_bundle)
    m = bundle.manifest
    assert m.labels == TINY.labels and m.preprocess == TINY.preprocess
    by_quant = {e.quant: e for e in m.models}
    assert set(by_quant) == {"fp32", "int8"}
    assert m.ensemble.members == ("custom_cnn-int8",)
    fp32, int8 = by_quant["fp32"], by_quant["int8"]
    assert fp32.input.dtype == "float32" and int8.input.dtype == "int8" and int8.input.scale > 0
    assert fp32.parity["n"] == PER_PART
    # Keras vs fp32 TFLite: same arithmetic up to kernel order.
    assert fp32.parity["argmax_agreement"] == 1.0 and fp32.parity["max_abs_diff"] < 1e-4
    # Full int8: output step 1/256; a tiny, barely trained model stays within a few steps.
    assert int8.parity["max_abs_diff"] < 0.08
    assert fp32.gate["passed"] and int8.gate["passed"] in (True, False)
    assert int8.gate["passed"] or int8.gate["allowed_degraded"]  # a failure is recorded, never hidden
    assert set(fp32.outputs) == {"probs", "features"} and np.array(fp32.cam_weights).shape == (32, 3)
    assert bundle.path_of(int8).stat().st_size < bundle.path_of(fp32).stat().st_size
    assert int8.params == fp32.params > 0
    prov = m.provenance
    assert prov["max_per_part"] == PER_PART and prov["n_images"]["calibration"] == 16
    sources = {r.source for r in load_manifest(kit_manifest, check_files=False).records}
    assert set(prov["ensemble_metrics"]["test_by_source"]) <= sources  # the kit has grown beyond three
    # Format 3: every bundle gets a card; without --card it says that LOSO was not recorded.
    assert m.format_version == 3 and m.label_map == {} and m.ensemble.abstain is None
    card = m.card
    assert card.loso.report is None and card.loso.note == "no leave-one-source-out evaluation recorded"
    assert card.disclaimer.startswith("Not a medical device") and card.task.labels == TINY.labels
    assert sum(sum(c.values()) for c in card.training_data.values()) == PER_PART
    val = card.in_distribution["val"]
    assert val["n"] == PER_PART and val["accuracy"]["n"] == PER_PART and len(val["accuracy"]["ci"]) == 2
    assert card.in_distribution["ensemble"]["temperature_source"] == "fitted on the validation split"
    assert m.lung_evidence is None and card.lung_evidence is None  # no segmenter


def test_runtime_matches_keras_on_a_real_image(tiny_run, converted_bundle, kit_png):
    import keras

    model = keras.models.load_model(tiny_run / "best.keras")
    image, _ = read_image(kit_png)
    expected = model.predict(preprocess(image, TINY.preprocess)[None], verbose=0)[0]
    pred = Predictor(Bundle.load(converted_bundle), members=["custom_cnn-fp32"]).predict_file(kit_png)
    got = np.array([pred.probs[label] for label in TINY.labels])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert pred.label == TINY.labels[int(np.argmax(expected))]
    assert set(pred.timings_ms) >= {"decode", "preprocess", "custom_cnn-fp32", "combine", "total"}


def test_int8_calibration_is_required(tiny_run):
    import keras

    from cxr_edge.convert.tflite import to_tflite
    from cxr_edge.errors import SpecError

    with pytest.raises(SpecError, match="calibration"):
        to_tflite(keras.models.load_model(tiny_run / "best.keras"), "int8", calibration=[])


def test_cli_train_and_convert(kit_manifest, split, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        'model = "custom_cnn"\nepochs = 1\nbatch_size = 4\n[model_args]\ndepth = 2\nbase_filters = 4\n'
        "[preprocess]\ninput_size = [16, 16]\n"
    )
    runner = CliRunner()
    common = ["--manifest", str(kit_manifest), "--split", str(split), "--max-per-part", "6"]
    result = runner.invoke(main, ["train", "--config", str(config), *common, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    convert = ["convert", str(tmp_path / "run"), *common, "--quant", "fp32", "--member", "fp32"]
    convert += ["--out", str(tmp_path / "bundle"), "--referral-min-prob", "0.45", "--temperature", "1.5"]
    result = runner.invoke(main, convert)
    assert result.exit_code == 0, result.output
    manifest = Bundle.load(tmp_path / "bundle").manifest
    assert [m.quant for m in manifest.models] == ["fp32"]
    assert manifest.ensemble.temperature == 1.5 and manifest.ensemble.abstain.min_top_prob == 0.45
    assert manifest.ensemble.abstain.min_margin == 0.0 and manifest.card is not None
    result = runner.invoke(main, convert)  # an existing bundle is never replaced silently
    assert result.exit_code == 1 and "not empty" in result.output


def test_config_rejects_unknown_keys(tmp_path):
    from cxr_edge.errors import SpecError

    (tmp_path / "c.toml").write_text('model = "custom_cnn"\nlearning_rat = 0.1\n')
    with pytest.raises(SpecError, match="learning_rat"):
        TrainConfig.load(tmp_path / "c.toml")
    with pytest.raises(SpecError, match="label"):
        dataclasses.replace(TINY, labels=("covid",))


def test_two_run_bundle_fits_every_combiner_on_validation(tiny_run, kit_manifest, split, tmp_path):
    from cxr_edge.convert.build import build_bundle
    from cxr_edge.convert.recipe import BundleRecipe
    from cxr_edge.dataset.manifest import load_manifest
    from cxr_edge.dataset.splits import read_split
    from cxr_edge.evaluation.evaluate import evaluate
    from cxr_edge.train.fit import train_run

    other = train_run(
        dataclasses.replace(TINY, seed=7, epochs=1),
        kit_manifest,
        split,
        tmp_path / "other",
        max_per_part=PER_PART,
        progress=False,
    )
    out = build_bundle(
        BundleRecipe(
            runs=[tiny_run, other],
            manifest=kit_manifest,
            split=split,
            quants=("fp32",),
            member_quant="fp32",
            method="stacking",
            n_calibration=8,
            max_per_part=PER_PART,
        ),
        tmp_path / "bundle",
        progress=False,
    )
    bundle = Bundle.load(out)
    ens = bundle.manifest.ensemble
    assert ens.method == "stacking" and len(ens.members) == 2 and ens.temperature == 1.0
    assert ens.weights is not None and sum(ens.weights) == pytest.approx(1.0) and ens.stacking is not None
    fit = bundle.manifest.provenance["ensemble_fit"]
    assert fit["fitted_on"] == "validation split" and fit["weight_rule"] == "logloss"
    pred = Predictor(bundle).predict_file(load_samples_first())
    assert abs(sum(pred.probs.values()) - 1) < 1e-6 and set(pred.per_model) == set(ens.members)
    manifest = load_manifest(kit_manifest)
    records = read_split(split, manifest).records(manifest, "test")[:20]
    metrics, _ = evaluate(bundle, records, n_boot=100, progress=False)
    assert set(metrics["methods"]) == {"vote", "mean", "weighted", "stacking"}
    assert "ensemble_vs_best_member" in metrics["paired"]


def test_single_member_weighted_is_refused(tiny_run, kit_manifest, split, tmp_path):
    from cxr_edge.convert.build import build_bundle
    from cxr_edge.convert.recipe import BundleRecipe
    from cxr_edge.errors import SpecError

    with pytest.raises(SpecError, match="two or more members"):
        build_bundle(
            BundleRecipe(
                runs=[tiny_run],
                manifest=kit_manifest,
                split=split,
                quants=("fp32",),
                member_quant="fp32",
                method="weighted",
                n_calibration=8,
                max_per_part=PER_PART,
            ),
            tmp_path / "b",
            progress=False,
        )


def load_samples_first():
    from cxr_edge.dataset.samples import load_samples

    return load_samples()[0].file


def test_bundle_mixes_grey_and_three_channel_models(tiny_run, kit_manifest, split, tmp_path):
    from cxr_edge.convert.build import build_bundle
    from cxr_edge.convert.recipe import BundleRecipe
    from cxr_edge.train.fit import train_run

    spec3 = dataclasses.replace(TINY.preprocess, channels=3)
    backbone = train_run(
        dataclasses.replace(TINY, model="mobilenet_v2", model_args={}, preprocess=spec3, epochs=1),
        kit_manifest,
        split,
        tmp_path / "mnv2",
        max_per_part=8,
        progress=False,
    )
    out = build_bundle(
        BundleRecipe(
            runs=[tiny_run, backbone],
            manifest=kit_manifest,
            split=split,
            quants=("fp32",),
            member_quant="fp32",
            n_calibration=4,
            max_per_part=8,
        ),
        tmp_path / "bundle",
        progress=False,
    )
    bundle = Bundle.load(out)
    assert bundle.spec.channels == 1
    assert sorted(m.input.shape[-1] for m in bundle.manifest.models) == [1, 3]
    pred = Predictor(bundle).predict_file(load_samples_first())
    assert len(pred.per_model) == 2 and abs(sum(pred.probs.values()) - 1) < 1e-5


def test_convert_writes_the_card_band_and_temperature_it_is_given(tiny_run, kit_manifest, split, tmp_path):
    from tiny_bundle import synthetic_loso_report

    from cxr_edge.convert.build import build_bundle
    from cxr_edge.convert.recipe import BundleRecipe
    from cxr_edge.errors import SpecError
    from cxr_edge.ops.quality import ReferralBand

    loso = tmp_path / "loso"
    loso.mkdir()
    (loso / "loso.json").write_text(json.dumps(synthetic_loso_report()))
    (loso / "loso_config.json").write_text(json.dumps({"command": "cxr-edge loso train --config tiny.toml"}))
    audit = {
        "audit": {
            "features": "log-probabilities",
            "overall_source_auc": 0.97,
            "within_label": {"covid": {"sources": {"hannover": 20, "montreal": 6}, "source_auc": 0.91}},
            "reading": "...",
        }
    }
    (tmp_path / "metrics.json").write_text(json.dumps(audit))
    card_file = tmp_path / "card.toml"
    card_file.write_text(
        'intended_use = "Tiny tests."\nfailure_modes = ["Misses Montreal figures."]\nrecipe = "tiny"\n'
        'loso = "loso/loso.json"\naudit = "metrics.json"\n'
    )
    common = dict(quants=("fp32",), member_quant="fp32", n_calibration=4, max_per_part=PER_PART)
    out = build_bundle(
        BundleRecipe(
            runs=[tiny_run],
            manifest=kit_manifest,
            split=split,
            referral=ReferralBand(0.5, 0.05),
            temperature=2.0,
            card=card_file,
            allow_degraded=True,
            **common,
        ),
        tmp_path / "b",
        progress=False,
    )
    m = Bundle.load(out).manifest
    assert m.ensemble.temperature == 2.0 and m.ensemble.abstain == ReferralBand(0.5, 0.05)
    fit = m.provenance["ensemble_fit"]
    assert fit["temperature_source"].startswith("--temperature") and fit["temperature_fitted"] > 0
    card = m.card
    assert card.intended_use == "Tiny tests." and card.failure_modes[-1] == "Misses Montreal figures."
    # The tiny model says nothing, and the card says so first (as `convert` and `info` do).
    warnings = m.provenance["warnings"]
    assert warnings and card.failure_modes[:-1] == tuple(
        f"This bundle looks useless on validation: {w}." for w in warnings
    )
    assert card.loso.recipe == "tiny" and card.loso.command == "cxr-edge loso train --config tiny.toml"
    assert card.loso.report == synthetic_loso_report() and "recipe" in card.loso.note
    assert card.shortcut_audit["within_label"]["covid"]["source_auc"] == 0.91
    assert card.in_distribution["ensemble"]["temperature"] == 2.0
    band = card.in_distribution["abstain"]
    assert band["min_top_prob"] == 0.5 and band["referred"]["n"] == PER_PART
    pred = Predictor(Bundle.load(out)).predict_file(load_samples_first())
    top = max(pred.probs.values())
    assert (pred.referral is not None) == (top < 0.5 or top - sorted(pred.probs.values())[-2] < 0.05)
    report = synthetic_loso_report() | {"labels": ["a", "b", "c"]}
    (loso / "loso.json").write_text(json.dumps(report))
    with pytest.raises(SpecError, match="LOSO report is about other labels"):
        build_bundle(
            BundleRecipe(
                runs=[tiny_run],
                manifest=kit_manifest,
                split=split,
                card=card_file,
                allow_degraded=True,
                **common,
            ),
            tmp_path / "b2",
            progress=False,
        )
