"""Lung segmentation end to end with a tiny U-Net: train -> segmenter bundle -> crop table ->
lung-crop classifier -> bundle with segmenter -> predict (crop reported), plus the consistency checks."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from cxr_edge.bundle import Bundle
from cxr_edge.cli import main
from cxr_edge.errors import BundleError, SpecError
from cxr_edge.pipeline import Predictor
from cxr_edge.preprocess import PreprocessSpec
from cxr_edge.samples import load_samples
from cxr_edge.segmenter import CropTable
from train.config import TrainConfig

pytestmark = pytest.mark.train

SEG = TrainConfig(
    task="segment",
    model="unet",
    epochs=1,
    batch_size=2,
    optimizer="adam",
    learning_rate=1e-3,
    model_args={"width": 4, "depth": 3},
    preprocess=PreprocessSpec(input_size=(64, 64)),
)
CLS = TrainConfig(
    preprocess=PreprocessSpec(input_size=(32, 32)),
    model_args={"depth": 2, "base_filters": 4},
    epochs=1,
    batch_size=8,
    augment=False,
)


@pytest.fixture(scope="module")
def seg_run(kit_manifest, split, tmp_path_factory):
    from train.segment import train_segmenter

    return train_segmenter(
        SEG, kit_manifest, split, tmp_path_factory.mktemp("seg") / "run", progress=False, max_per_part=6
    )


@pytest.fixture(scope="module")
def seg_bundle(seg_run, kit_manifest, split, tmp_path_factory):
    from convert.segmenter import build_segmenter_bundle

    return build_segmenter_bundle(
        seg_run, kit_manifest, split, tmp_path_factory.mktemp("sb") / "seg", quant="int8", n_calibration=8
    )


@pytest.fixture(scope="module")
def crops(seg_bundle, kit_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("crops")
    result = CliRunner().invoke(
        main,
        [
            "segment",
            "--manifest",
            str(kit_manifest),
            "--bundle",
            str(seg_bundle),
            "--out",
            str(out),
            "--no-images",
        ],
    )
    assert result.exit_code == 0, result.output
    return out / "crops.csv"


def test_segmentation_run_reports_heldout_dice(seg_run):
    info = json.loads((seg_run / "run.json").read_text())
    assert info["n_images"] == {"fit": 6, "val": 6, "heldout": 6}
    assert 0.0 <= info["heldout_metrics"]["dice"] <= 1.0 and info["macs"] > 0 and info["params"] > 0


def test_segmenter_bundle_holds_only_the_segmenter(seg_bundle):
    bundle = Bundle.load(seg_bundle)
    seg = bundle.manifest.segmenter
    assert seg.quant == "int8" and seg.input.dtype == "int8" and seg.outputs["mask"].shape == (1, 64, 64, 1)
    assert not bundle.manifest.models and set(bundle.manifest.provenance["variants"]) == {"fp32", "int8"}
    with pytest.raises(BundleError, match="no classifiers"):
        Predictor(bundle)


def test_crop_table_covers_the_manifest(crops, seg_bundle):
    table = CropTable.read(crops)
    assert len(table.status) == 1044 and set(table.status.values()) <= {"lung", "fallback"}
    assert table.segmenter_sha256 == Bundle.load(seg_bundle).manifest.segmenter.sha256


def test_segment_paths_writes_masks_overlays_and_reports_errors(seg_bundle, tmp_path):
    sample = load_samples()[0].file
    bad = tmp_path / "notes.txt"
    bad.write_text("x")
    out = tmp_path / "seg"
    result = CliRunner().invoke(
        main, ["segment", str(sample), str(bad), "--bundle", str(seg_bundle), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert (
        len(list((out / "overlays").glob("*_overlay.png"))) == 1 and len(list((out / "masks").glob("*"))) == 1
    )
    assert "error" in (out / "crops.csv").read_text()


def test_lung_crop_classifier_ships_with_its_segmenter(crops, seg_bundle, kit_manifest, split, tmp_path):
    from convert.build import build_bundle
    from train.fit import train_run

    run = train_run(
        dataclasses.replace(CLS, crops=str(crops)),
        kit_manifest,
        split,
        tmp_path / "run",
        max_per_part=12,
        progress=False,
    )
    border_run = train_run(CLS, kit_manifest, split, tmp_path / "border", max_per_part=12, progress=False)
    common = dict(quants=("fp32",), member_quant="fp32", n_calibration=4, max_per_part=12, progress=False)
    with pytest.raises(SpecError, match="need their segmenter"):
        build_bundle([run], kit_manifest, split, tmp_path / "b0", **common)
    with pytest.raises(SpecError, match="without lung crops"):
        build_bundle([border_run], kit_manifest, split, tmp_path / "b1", segmenter=seg_bundle, **common)
    out = build_bundle([run], kit_manifest, split, tmp_path / "b2", segmenter=seg_bundle, **common)
    bundle = Bundle.load(out)
    assert bundle.manifest.segmenter.sha256 == CropTable.read(crops).segmenter_sha256
    pred = Predictor(bundle).predict_file(load_samples()[0].file)
    assert pred.crop in ("lung", "fallback") and pred.crop_box is not None
    assert "segment" in pred.timings_ms
    assert (pred.crop == "fallback") == bool(pred.crop_reason)


def test_crop_table_from_another_segmenter_is_refused(crops, seg_bundle, kit_manifest, split, tmp_path):
    from convert.build import build_bundle
    from train.fit import train_run

    forged = tmp_path / "crops.csv"
    forged.write_text(crops.read_text().replace(CropTable.read(crops).segmenter_sha256, "0" * 64))
    run = train_run(
        dataclasses.replace(CLS, crops=str(forged)),
        kit_manifest,
        split,
        tmp_path / "run",
        max_per_part=8,
        progress=False,
    )
    with pytest.raises(SpecError, match="differs from the one that made the crop table"):
        build_bundle(
            [run],
            kit_manifest,
            split,
            tmp_path / "b",
            segmenter=seg_bundle,
            quants=("fp32",),
            member_quant="fp32",
            n_calibration=4,
            max_per_part=8,
            progress=False,
        )
