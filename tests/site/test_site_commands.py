"""`cxr-edge site validate | calibrate` on real kit images with the shipped bundle (no TensorFlow)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.bundle.folder import Bundle, bundle_sha256, default_bundle_path
from cxr_edge.cli import main
from cxr_edge.ops.site import softmax
from cxr_edge.runtime.pipeline import Predictor

PER_CLASS = 16


@pytest.fixture(scope="module")
def site_rows(kit_manifest) -> list[dict]:
    """16 normal and 16 bacterial-pneumonia Kermany films (the shipped bundle ranks them well: in
    distribution, AUC 0.98 on the test split; NIH's 32 films were too few for its within-site signal)."""
    rows = list(csv.DictReader(kit_manifest.open()))
    rng = np.random.default_rng(0)
    out = []
    for label in ("normal", "bacterial"):
        pool = [r for r in rows if r["source"] == "kermany" and r["label"] == label]
        out += [pool[i] for i in rng.choice(len(pool), PER_CLASS, replace=False)]
    return out


def _labels_csv(folder: Path, kit_manifest: Path, rows: list[dict], *, swap: bool = False) -> Path:
    """A site's LABELS.csv: images copied next to it (relative paths), optionally with swapped labels."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    swapped = {"normal": "pneumonia", "bacterial": "normal"}
    path = folder / "labels.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "patient_id"])
        for i, r in enumerate(rows):
            name = f"img/{i:03d}.png"
            shutil.copy(kit_manifest.parent / r["path"], folder / name)
            w.writerow([name, swapped[r["label"]] if swap else r["label"], r["patient_id"]])
    return path


@pytest.fixture(scope="module")
def swapped_site(tmp_path_factory, kit_manifest, site_rows) -> tuple[Path, Path]:
    """A site whose labels are the other way round, and the bundle `site calibrate` made for it."""
    folder = tmp_path_factory.mktemp("swapped")
    labels = _labels_csv(folder, kit_manifest, site_rows, swap=True)
    out = folder / "calibrated"
    result = CliRunner().invoke(
        main, ["site", "calibrate", str(labels), "--site", "swapped", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return labels, out


def test_validate_writes_the_study_without_patient_identifiers(tmp_path, kit_manifest, site_rows):
    labels = _labels_csv(tmp_path / "site", kit_manifest, site_rows)
    (tmp_path / "site" / "img" / "broken.png").write_bytes(b"not a png")
    with labels.open("a", newline="") as f:
        csv.writer(f).writerow(["img/broken.png", "normal", "kermany:broken"])
    out = tmp_path / "report"
    result = CliRunner().invoke(
        main, ["site", "validate", str(labels), "--map", "bacterial=pneumonia", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    images = report["images"]
    # Every row is either classified or an error row (a film may fail the frontal-pattern check).
    assert images["classified"] + images["errors"] == 2 * PER_CLASS + 1 and images["calibration_images"] == 0
    errors = {e["image"]: e["error"] for e in report["errors"]}
    assert errors["img/broken.png"].startswith("InputError: not an image")
    m = report["metrics"]
    assert m["n"] == images["classified"] and m["abnormal"]["auc"]["ci"][0] > 0.5
    assert set(report["verdicts"]) == {"accuracy", "sensitivity normal", "sensitivity pneumonia"}
    assert report["expectation"]["source"].startswith("leave-one-source-out")
    assert report["more_cases"]["accuracy"]["more"] > 0
    text = (out / "report.md").read_text() + (out / "report.json").read_text()
    assert not any(r["patient_id"] in text for r in site_rows)  # identifiers stay out of the report
    assert "| normal |" in text


def test_validate_names_labels_the_bundle_does_not_know(tmp_path, kit_manifest, site_rows):
    labels = _labels_csv(tmp_path / "site", kit_manifest, site_rows[:2] + site_rows[-2:])
    text = labels.read_text().replace(",normal,", ",effusion,")
    labels.write_text(text)
    result = CliRunner().invoke(main, ["site", "validate", str(labels), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "labels the bundle does not know" in result.output and "'effusion' (2 rows)" in result.output
    assert not (tmp_path / "r").exists()


def test_calibrate_refuses_when_the_site_gains_nothing(tmp_path, kit_manifest, site_rows):
    labels = _labels_csv(tmp_path / "site", kit_manifest, site_rows)
    out = tmp_path / "new"
    result = CliRunner().invoke(main, ["site", "calibrate", str(labels), "--site", "x", "--out", str(out)])
    assert result.exit_code == 1
    assert "CalibrationRefusedError" in result.output and "balanced accuracy" in result.output
    assert not out.exists()


def test_calibrated_bundle_keeps_the_parent_and_records_the_site(swapped_site):
    _, out = swapped_site
    parent = Bundle.load()
    new = Bundle.load(out)
    site = new.manifest.site
    assert new.manifest.format_version == 4 and site.name == "swapped" and site.method == "head"
    assert site.parent_sha256 == bundle_sha256(parent)
    # The classified images only (a film may fail the frontal-pattern check).
    used = sum(site.images.values())
    assert set(site.images) == {"normal", "pneumonia"} and 2 * PER_CLASS - 2 <= used <= 2 * PER_CLASS
    assert used - 2 <= site.patients <= used == len(site.image_digests)
    assert site.metrics["gain"]["ci"][0] > 0
    for entry in parent.manifest.models:  # the parent's files, byte for byte
        assert (out / entry.file).read_bytes() == (default_bundle_path() / entry.file).read_bytes()
    assert parent.manifest.site is None
    # Calibrations do not stack, and the new bundle is never written over another.
    again = CliRunner().invoke(
        main,
        [
            "site",
            "calibrate",
            str(swapped_site[0]),
            "--bundle",
            str(out),
            "--site",
            "y",
            "--out",
            str(out.parent / "twice"),
        ],
    )
    assert again.exit_code == 1 and "already calibrated" in again.output


def test_calibrated_predictions_are_the_heads_then_the_ensemble_then_the_site(
    swapped_site, kit_manifest, site_rows
):
    _, out = swapped_site
    bundle = Bundle.load(out)
    m = bundle.manifest
    calibrated, parent = Predictor(bundle), Predictor(Bundle.load())
    flipped = 0
    for r in site_rows[:: PER_CLASS // 2]:
        file = kit_manifest.parent / r["path"]
        pred = calibrated.predict_file(file)
        # By hand from the raw member outputs: head per member, mean, ensemble temperature, site.
        outputs = calibrated.run_members(calibrated.prepare(calibrated.read(file)[0]).x)
        members = []
        for name in m.ensemble.members:
            head = m.site.heads[name]
            pooled = np.asarray(outputs[name]["features"], dtype=np.float64).mean(axis=(0, 1))
            members.append(softmax(pooled @ np.asarray(head.weights) + np.asarray(head.bias)))
        mean = np.mean(members, axis=0)
        tempered = softmax(np.log(mean) / m.ensemble.temperature)
        expected = softmax(np.log(tempered) / m.site.temperature + np.asarray(m.site.bias or (0, 0, 0)))
        np.testing.assert_allclose([pred.probs[k] for k in bundle.labels], expected, atol=1e-9)
        flipped += pred.label != parent.predict_file(file).label
    assert flipped >= 3  # the site's swapped labels changed the decisions


def test_validating_on_the_calibration_images_is_called_in_sample(swapped_site, tmp_path):
    labels, out = swapped_site
    result = CliRunner().invoke(
        main, ["site", "validate", str(labels), "--bundle", str(out), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    used = len(Bundle.load(out).manifest.site.image_digests)
    assert f"{used} of them were used to fit the site calibration" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["expectation"]["source"].startswith("cross-validated on swapped")
    assert "in-sample" in (tmp_path / "report.md").read_text()


def test_batch_and_the_dicom_node_apply_the_site_calibration(swapped_site, kit_manifest, site_rows, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from cxr_edge.serve.config import TriageConfig
    from cxr_edge.serve.triage import Triage

    _, out = swapped_site
    files = tmp_path / "in"
    files.mkdir()
    for r in site_rows[::8]:
        shutil.copy(kit_manifest.parent / r["path"], files / Path(r["path"]).name)
    predictor = Predictor(Bundle.load(out))
    expected = {}
    for f in sorted(files.iterdir()):
        pred = predictor.predict_file(f)
        expected[f.name] = [pred.probs[k] for k in predictor.labels]
    result = CliRunner().invoke(
        main,
        ["batch", str(files), "--bundle", str(out), "--out", str(tmp_path / "rows"), "--backend", "local"],
    )
    assert result.exit_code == 0, result.output
    rows = [
        r
        for part in sorted((tmp_path / "rows").glob("part-*.parquet"))
        for r in pq.read_table(part).to_pylist()
    ]
    assert len(rows) == len(expected)
    for r in rows:
        got = [r[f"prob_{k}"] for k in predictor.labels]
        np.testing.assert_allclose(got, expected[Path(r["path"]).name], atol=1e-5)
    triage = Triage(TriageConfig(bundle=str(out)))
    for name, probs in expected.items():
        record = triage(files / name).record
        np.testing.assert_allclose([record["probs"][k] for k in predictor.labels], probs, atol=1e-5)
