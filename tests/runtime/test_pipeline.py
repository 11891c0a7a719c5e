"""Predictor batches: folder expansion and per-file failure isolation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cxr_edge.dataset.samples import load_samples
from cxr_edge.errors import InputError
from cxr_edge.runtime import pipeline
from cxr_edge.runtime.pipeline import Predictor, expand_inputs


def test_expand_inputs_recurses_sorted_and_skips_hidden_and_non_images(tmp_path):
    (tmp_path / "b" / ".git").mkdir(parents=True)
    for name in (
        "b/2.dcm",
        "b/1",
        "a.png",
        ".DS_Store",
        "b/.git/x.png",
        "README.md",
        "b/list.CSV",
        "b/x.img",
    ):
        (tmp_path / name).write_bytes(b"x")
    skipped = []
    files = expand_inputs([tmp_path, tmp_path / "missing.png", tmp_path / "README.md"], skipped=skipped)
    assert [p.relative_to(tmp_path).as_posix() for p in files] == [
        "a.png",
        "b/1",
        "b/2.dcm",
        "b/x.img",  # DICOMs come with any suffix: only certain non-images are skipped
        "missing.png",
        "README.md",  # named explicitly: kept, so it gets its error row
    ]
    assert sorted(p.name for p in skipped) == ["README.md", "list.CSV"]


def test_unexpected_decoder_failure_is_reported_on_that_file_only(tmp_path, monkeypatch, caplog):
    samples = load_samples()[:3]
    files = []
    for i, s in enumerate(samples):
        files.append(tmp_path / f"{i}.png")
        shutil.copy(s.file, files[-1])
    real = pipeline.read_image

    def flaky(path, options=None):
        if str(path).endswith("1.png"):
            raise RuntimeError("decoder exploded")
        return real(path, options)

    monkeypatch.setattr(pipeline, "read_image", flaky)
    caplog.set_level("DEBUG", logger="cxr_edge.runtime.pipeline")
    outcomes = list(Predictor().predict_many(files))
    assert [o.ok for o in outcomes] == [True, False, True]
    # The row names the exception; its text (a library's internals) is only in the debug log.
    message = str(outcomes[1].error)
    assert isinstance(outcomes[1].error, InputError) and "RuntimeError" in message
    assert "decoder exploded" not in message
    assert any("decoder exploded" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_prediction_probabilities_follow_bundle_labels():
    predictor = Predictor()
    pred = predictor.predict_file(load_samples()[0].file)
    assert tuple(pred.probs) == predictor.labels
    assert abs(sum(pred.probs.values()) - 1) < 0.02
    assert pred.label == max(pred.probs, key=pred.probs.get)


# ------------------------------------------------------------------------------------------ lung evidence


def _blob_cam(size: int = 8) -> np.ndarray:
    cam = np.zeros((size, size), np.float32)
    cam[2:5, 3:6] = [[0.2, 0.6, 0.3], [0.5, 1.0, 0.4], [0.1, 0.3, 0.2]]
    return cam


def test_lung_fraction_is_one_when_the_heat_is_inside_and_zero_outside():
    from cxr_edge.ops.cam import lung_fraction

    cam = _blob_cam()
    region, frame = (40, 30, 440, 430), (64, 64)  # a 400 x 400 crop of a 500 x 470 image
    seg_region = (0, 0, 500, 470)  # the segmenter saw the whole image at 50 x 47
    inside = np.full((47, 50), 255, np.uint8)
    assert abs(lung_fraction(cam, region, inside, seg_region, frame) - 1.0) <= 1e-6
    assert abs(lung_fraction(cam, region, np.zeros_like(inside), seg_region, frame) - 0.0) <= 1e-6
    # The mask covers exactly the heat map's support (rows 2-4, columns 3-5 of the CAM plus the bilinear
    # spread into the neighbouring cells): still all of the mass.
    support = np.zeros_like(inside)
    support[2:36, 6:46] = 255
    assert abs(lung_fraction(cam, region, support, seg_region, frame) - 1.0) <= 1e-6
    # Heat where the mask is not: the left half of the crop is lung, the heat sits right of centre.
    left = np.zeros_like(inside)
    left[:, :24] = 255
    assert 0.0 < lung_fraction(cam, region, left, seg_region, frame) < 0.5
    assert lung_fraction(np.zeros_like(cam), region, inside, seg_region, frame) is None


def test_lung_fraction_maps_the_crop_frame_onto_the_segmenter_region():
    """Frame pixel centres outside the segmenter's region count as outside the lungs."""
    from cxr_edge.ops.cam import lung_fraction

    cam = np.ones((4, 4), np.float32)
    full = np.full((10, 10), 255, np.uint8)
    # The segmenter saw the right half of the image only; the classifier the whole image.
    frac = lung_fraction(cam, (0, 0, 100, 100), full, (50, 0, 100, 100), (20, 20))
    assert abs(frac - 0.5) <= 1e-6
    assert lung_fraction(cam, (0, 0, 100, 100), full, (0, 0, 100, 100), (20, 20)) == 1.0


def test_min_fraction_rule_uses_correct_predictions_only():
    from cxr_edge.ops.cam import choose_min_fraction

    fractions = [0.9, 0.8, None, 0.1, 0.7, 0.95, 0.85, 0.6, 0.75, 0.65]
    correct = [True, True, True, False, True, True, True, True, True, True]
    value, used = choose_min_fraction(fractions, correct)
    kept = [f for f, ok in zip(fractions, correct, strict=True) if ok and f is not None]
    assert used == 8 and value == pytest.approx(np.percentile(kept, 5)) and value > 0.1
    assert choose_min_fraction([None, 0.3], [True, False]) is None


@pytest.mark.train
def test_segmenter_bundle_reports_lung_fraction_flags_and_referrals(tiny_segmenter_bundle):
    from cxr_edge.bundle.folder import Bundle
    from cxr_edge.ops.cam import FLAG_OUTSIDE_LUNGS

    bundle = Bundle.load(tiny_segmenter_bundle)
    evidence, band = bundle.manifest.lung_evidence, bundle.manifest.ensemble.abstain
    preds = [Predictor(bundle).predict_file(s.file) for s in load_samples()[:8]]
    fractions = [p.lung_fraction for p in preds if p.crop == "lung"]
    assert all(0.0 <= f <= 1.0 for f in fractions) and len(fractions) >= 2
    assert all(p.lung_fraction is None for p in preds if p.crop != "lung")
    for p in preds:
        assert p.flags == (
            (FLAG_OUTSIDE_LUNGS,)
            if p.lung_fraction is not None and p.lung_fraction < evidence.min_fraction
            else ()
        )
        top = max(p.probs.values())
        assert (p.referral is not None) == (top < band.min_top_prob)
        assert "lung_fraction" in p.timings_ms or p.lung_fraction is None
    assert any(p.flags for p in preds) and not all(p.flags for p in preds)
    assert any(p.referral for p in preds) and not all(p.referral for p in preds)


@pytest.mark.train
def test_predict_rows_carry_lung_fraction_flags_referral_and_resume(tiny_segmenter_bundle, tmp_path):
    import csv
    import json

    from click.testing import CliRunner

    from cxr_edge.bundle.folder import Bundle
    from cxr_edge.cli import main

    files = [str(s.file) for s in load_samples()[:6]]
    out = tmp_path / "rows.csv"
    common = ["--bundle", str(tiny_segmenter_bundle), "--out"]
    assert CliRunner().invoke(main, ["predict", *files[:2], *common, str(out)]).exit_code == 0
    result = CliRunner().invoke(main, ["predict", *files, *common, str(out), "--resume"])
    assert result.exit_code == 0 and "2 inputs already have a row, 4 to go" in result.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows] == files
    predictor = Predictor(Bundle.load(tiny_segmenter_bundle))
    for row in rows:
        pred = predictor.predict_file(row["path"])
        assert row["lung_fraction"] == (
            "" if pred.lung_fraction is None else str(round(pred.lung_fraction, 6))
        )
        assert row["flags"] == "; ".join(pred.flags) and row["referral"] == (pred.referral or "")
    jsonl = tmp_path / "rows.jsonl"
    assert CliRunner().invoke(main, ["predict", *files, *common, str(jsonl)]).exit_code == 0
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert all(isinstance(r["flags"], list) and "referral" in r for r in lines)
    assert any(r["lung_fraction"] is not None for r in lines)
