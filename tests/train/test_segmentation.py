"""Lung segmentation end to end with a tiny U-Net: train -> segmenter bundle -> crop table ->
lung-crop classifier -> bundle with segmenter -> predict (crop reported), plus the consistency checks."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
from collections import Counter

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.bundle.entries import SegmenterRole
from cxr_edge.bundle.folder import Bundle
from cxr_edge.cli import main
from cxr_edge.dataset.samples import load_samples
from cxr_edge.errors import BundleError, SpecError
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.preprocess import PreprocessSpec, crop_region, preprocess
from cxr_edge.runtime import selftest
from cxr_edge.runtime.pipeline import Predictor
from cxr_edge.runtime.segmenter import CropTable
from cxr_edge.train.config import TrainConfig

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
    from cxr_edge.train.segment import train_segmenter

    return train_segmenter(
        SEG, kit_manifest, split, tmp_path_factory.mktemp("seg") / "run", progress=False, max_per_part=6
    )


@pytest.fixture(scope="module")
def seg_bundle(seg_run, kit_manifest, split, tmp_path_factory):
    from cxr_edge.convert.segmenter import build_segmenter_bundle

    # A one-epoch width-4 U-Net is noise, so int8 may well "lose" against fp32: the gate is tested
    # on its own below, here it is recorded, not enforced.
    return build_segmenter_bundle(
        seg_run,
        kit_manifest,
        split,
        tmp_path_factory.mktemp("sb") / "seg",
        quant="int8",
        n_calibration=8,
        allow_degraded=True,
    )


PER_SOURCE = 10  # seeded sample per source; with the classifier tests' images about 120 of 3008


@pytest.fixture(scope="module")
def crop_sample(kit_manifest, split, tmp_path_factory):
    """A sub-manifest: a seeded sample of every source plus every image the lung-crop tests train on
    (their crop tables must cover them). Segmenting all 3008 kit images would take minutes."""
    from cxr_edge.train.fit import load_task

    with open(kit_manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    rng = random.Random(0)
    keep = {r["path"] for group in by_source.values() for r in rng.sample(group, min(PER_SOURCE, len(group)))}
    for n in (12, 8):  # max_per_part of the classifier tests below
        task = load_task(CLS, kit_manifest, split, max_per_part=n)
        keep |= {r.path for part in task.parts.values() for r in part}
    path = tmp_path_factory.mktemp("sample") / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(r for r in rows if r["path"] in keep)
    return path, sorted(keep), set(by_source)


@pytest.fixture(scope="module")
def crops(seg_bundle, kit_manifest, crop_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("crops")
    result = CliRunner().invoke(
        main,
        [
            "segment",
            "--manifest",
            str(crop_sample[0]),
            "--root",
            str(kit_manifest.parent),
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
    held = info["heldout_metrics"]
    assert 0.0 <= held["dice"] <= 1.0 and 0.0 <= held["box_iou"] <= 1.0
    assert info["macs"] > 0 and info["params"] > 0
    assert sum(g["n"] for g in held["by_convention"].values()) == 6
    assert sum(g["n"] for g in held["by_source"].values()) == 6
    assert sum(info["n_images_by_convention"]["heldout"].values()) == 6


def _lungs(size: int = 96, heart: bool = False, ignore: bool = False) -> np.ndarray:
    """A synthetic kit mask: two lung ellipses (Shenzhen style), optionally the heart between them
    (V7 style) and a band of "ignore" (127) over the right lung (a device)."""
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, (28, 48), (14, 30), 0, 0, 360, 255, -1)
    cv2.ellipse(mask, (68, 48), (14, 30), 0, 0, 360, 255, -1)
    if heart:
        cv2.rectangle(mask, (30, 40), (66, 70), 255, -1)
    if ignore:
        mask[40:50, 14:40] = 127
    return mask


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())


def test_metrics_per_convention_ignore_127_and_box_iou():
    from cxr_edge.ops.lungcrop import CropSpec, fallback_box, lung_crop
    from cxr_edge.train.segment import (
        between_lungs,
        box_iou,
        convention_of,
        crop_box_iou,
        mask_target,
        segmentation_scores,
    )

    assert convention_of("hannover") == convention_of("montreal") == "heart_included"
    assert convention_of("shenzhen") == "lungs_only" and convention_of("nih") == "unknown"
    v7, shenzhen = _lungs(heart=True, ignore=True), _lungs()
    targets = [mask_target(v7), mask_target(shenzhen), mask_target(shenzhen)]
    assert targets[0][..., 1].min() == 0 and targets[1][..., 1].min() == 1  # 127 is the only "ignore"
    # V7 image: right where the mask is valid, wrong (all lung) under the ignore band -> Dice 1.
    p_v7 = (v7 > 0).astype(np.float32)[..., None]
    # Shenzhen images: one segmented in V7's convention (heart added), one lungs-only but a lung lost.
    p_heart = (_lungs(heart=True) > 0).astype(np.float32)[..., None]
    p_half = (shenzhen > 0).astype(np.float32)[..., None]
    p_half[:, 48:] = 0
    scores = segmentation_scores([p_v7, p_heart, p_half], targets, ["hannover", "shenzhen", "shenzhen"])

    heart_dice = _dice(_lungs(heart=True) > 0, shenzhen > 0)
    half_dice = _dice(p_half[..., 0] > 0, shenzhen > 0)
    conv = scores["by_convention"]
    assert set(conv) == {"heart_included", "lungs_only"} and conv["heart_included"]["n"] == 1
    assert conv["heart_included"]["dice"] == pytest.approx(1.0)
    assert conv["lungs_only"]["n"] == 2
    assert conv["lungs_only"]["dice"] == pytest.approx((heart_dice + half_dice) / 2, abs=1e-4)
    assert scores["dice"] == pytest.approx((1.0 + heart_dice + half_dice) / 3, abs=1e-4)
    assert scores["by_source"]["shenzhen"] == conv["lungs_only"]
    # The heart lies inside the lungs' convex hull: including it changes the pixels, not the box.
    assert 0.7 < heart_dice < 0.95 and scores["dice_per_image"][1] == pytest.approx(heart_dice, abs=1e-4)
    assert conv["heart_included"]["box_iou"] == pytest.approx(1.0)
    # One lung lost: a one-lung box is too narrow for the quality gate, so the classifier would get the
    # fallback (border) crop -- the box IoU is that of the fallback box, and the fallback is counted.
    truth_box = lung_crop((shenzhen > 0).astype(np.float32), shenzhen.shape, CropSpec()).box
    fallback_iou = box_iou(fallback_box(96, 96, CropSpec().fallback_border), truth_box)
    assert scores["dice_per_image"][2] < 0.7 and fallback_iou < 0.9
    assert conv["lungs_only"]["fallbacks"] == scores["fallbacks"] == 1
    assert conv["lungs_only"]["box_iou"] == pytest.approx((1.0 + fallback_iou) / 2, abs=1e-4)
    assert scores["lung_in_box"] == pytest.approx(1.0)  # no crop above cut lung away
    # A prediction missing the outer edge of both lungs: the box passes the gate, but lung is lost.
    p_narrow = (shenzhen > 0).astype(np.float32)[..., None]
    p_narrow[:, :22], p_narrow[:, 74:] = 0, 0
    _, kept, status = crop_box_iou(p_narrow, targets[1], CropSpec(margin=0.0))
    lung = shenzhen > 0
    assert status == "lung" and kept == pytest.approx(lung[:, 22:74].sum() / lung.sum()) and kept < 0.9
    # Which convention the model follows between the lungs (hull of the true lungs minus the lungs):
    # the heart was added in one of the two images, and it fills part of that region.
    band = between_lungs(targets[1])
    heart_share = float(p_heart[..., 0][band].mean())
    assert 0.3 < heart_share < 1.0 and float(p_half[..., 0][band].mean()) == 0.0
    assert conv["lungs_only"]["between_lungs_predicted"] == pytest.approx(heart_share / 2, abs=1e-4)
    assert "between_lungs_predicted" not in conv["heart_included"]


def test_segmenter_gate_compares_int8_with_fp32():
    from cxr_edge.convert.segmenter import SegmenterGate, segmenter_gate

    fp32 = {"dice": 0.90, "box_iou": 0.92}
    assert segmenter_gate(fp32, {"dice": 0.895, "box_iou": 0.93})["passed"]
    failed = segmenter_gate(fp32, {"dice": 0.85, "box_iou": 0.90})
    assert not failed["passed"] and len(failed["failures"]) == 2 and failed["dice_drop"] == 0.05
    assert segmenter_gate(fp32, {"dice": 0.85, "box_iou": 0.92}, SegmenterGate(max_dice_drop=0.1))["passed"]


def test_segmenter_bundle_holds_only_the_segmenter(seg_bundle):
    bundle = Bundle.load(seg_bundle)
    seg = bundle.manifest.segmenter
    assert seg.quant == "int8" and seg.input.dtype == "int8" and seg.outputs["mask"].shape == (1, 64, 64, 1)
    assert not bundle.manifest.models and set(bundle.manifest.provenance["variants"]) == {"fp32", "int8"}
    assert "gate" in bundle.manifest.provenance and "by_convention" in seg.metrics
    assert 0.0 <= seg.metrics["heldout_box_iou"] <= 1.0
    with pytest.raises(BundleError, match="no classifiers"):
        Predictor(bundle)


def test_crop_table_covers_the_sampled_manifest(crops, crop_sample, seg_bundle):
    _, paths, sources = crop_sample
    table = CropTable.read(crops)
    assert sorted(table.status) == paths and set(table.status.values()) <= {"lung", "fallback"}
    assert len(sources) == 6 and set(Counter(p.split("/")[0] for p in paths)) == sources
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
    from cxr_edge.convert.build import build_bundle
    from cxr_edge.convert.recipe import BundleRecipe
    from cxr_edge.train.fit import train_run

    run = train_run(
        dataclasses.replace(CLS, crops=str(crops)),
        kit_manifest,
        split,
        tmp_path / "run",
        max_per_part=12,
        progress=False,
    )
    border_run = train_run(CLS, kit_manifest, split, tmp_path / "border", max_per_part=12, progress=False)
    common = dict(quants=("fp32",), member_quant="fp32", n_calibration=4, max_per_part=12)
    with pytest.raises(SpecError, match="need their segmenter"):
        build_bundle(
            BundleRecipe(runs=[run], manifest=kit_manifest, split=split, **common),
            tmp_path / "b0",
            progress=False,
        )
    # A full-image classifier ships the segmenter to check its evidence, never to crop its input.
    evidence = Bundle.load(
        build_bundle(
            BundleRecipe(
                runs=[border_run], manifest=kit_manifest, split=split, segmenter=seg_bundle, **common
            ),
            tmp_path / "b1",
            progress=False,
        )
    )
    assert evidence.manifest.segmenter.role == SegmenterRole.EVIDENCE
    assert not evidence.manifest.segmenter.crops
    image, _ = read_image(load_samples()[0].file)
    full = Predictor(evidence)
    prepared = full.prepare(image)
    np.testing.assert_array_equal(prepared.x, preprocess(image, evidence.spec))
    assert prepared.crop is not None and prepared.box is None
    seen = full.classify(prepared)
    assert seen.crop == "none" and seen.crop_box is None and "segment" in seen.timings_ms
    assert (seen.lung_fraction is not None) == (prepared.crop.status == "lung")
    assert seen.cam_region == crop_region(image.shape, evidence.spec)
    # convert writes the self-test last: it passes on the machine that made it, segment and crop included.
    assert {"segment", "crop", "preprocess", "output"} <= {r.stage for r in selftest.run(evidence)}
    assert selftest.check(evidence) > 0
    out = build_bundle(
        BundleRecipe(runs=[run], manifest=kit_manifest, split=split, segmenter=seg_bundle, **common),
        tmp_path / "b2",
        progress=False,
    )
    bundle = Bundle.load(out)
    assert bundle.manifest.segmenter.sha256 == CropTable.read(crops).segmenter_sha256
    assert bundle.manifest.segmenter.role == SegmenterRole.CROP
    pred = Predictor(bundle).predict_file(load_samples()[0].file)
    assert pred.crop in ("lung", "fallback") and pred.crop_box is not None
    assert "segment" in pred.timings_ms
    assert (pred.crop == "fallback") == bool(pred.crop_reason)
    # The lung-evidence threshold is chosen on validation with the staged bundle's own pipeline.
    m = bundle.manifest
    info = m.provenance["lung_evidence"]
    assert info["n_validation"] == 12 and "correctly classified validation images" in info["rule"]
    assert m.card.lung_evidence.split == "validation"
    assert m.card.lung_evidence.overall.n == info["n_with_fraction"]
    if m.lung_evidence is not None:
        assert 0.0 <= m.lung_evidence.min_fraction <= 1.0 and m.lung_evidence.chosen_on.startswith(
            "validation"
        )
        assert m.card.lung_evidence.min_fraction == m.lung_evidence.min_fraction
    assert (pred.lung_fraction is None) == (pred.crop != "lung")


def test_crop_table_from_another_segmenter_is_refused(crops, seg_bundle, kit_manifest, split, tmp_path):
    from cxr_edge.convert.build import build_bundle
    from cxr_edge.convert.recipe import BundleRecipe
    from cxr_edge.train.fit import train_run

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
            BundleRecipe(
                runs=[run],
                manifest=kit_manifest,
                split=split,
                segmenter=seg_bundle,
                quants=("fp32",),
                member_quant="fp32",
                n_calibration=4,
                max_per_part=8,
            ),
            tmp_path / "b",
            progress=False,
        )
