"""The cxr-edge CLI with the shipped bundle: predict (mixed folder), info, demo, split, missing extras."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from cxr_edge.cli import main
from cxr_edge.dataset.samples import load_samples
from cxr_edge.imaging.synth import SECONDARY_CAPTURE, write_radiograph

LABELS = (
    "covid",
    "normal",
    "pneumonia_unknown",
)  # the first release's bundle (tiny_bundle.default_as_format3)
DEFAULT_LABELS = ("covid", "normal", "pneumonia")  # the shipped default bundle (triage task)


@pytest.fixture
def mixed_folder(tmp_path):
    """Two real PNGs, a DICOM made from one of them (nested), a truncated PNG, a text file (skipped: not an
    image) and a stray file of unknown kind (an error row: it might have been a DICOM)."""
    folder = tmp_path / "inbox"
    (folder / "nested").mkdir(parents=True)
    samples = load_samples()
    covid = next(s for s in samples if s.label == "covid")
    normal = next(s for s in samples if s.label == "normal")
    shutil.copy(covid.file, folder / "covid.png")
    shutil.copy(normal.file, folder / "normal.png")
    pixels = cv2.imread(str(normal.file), cv2.IMREAD_UNCHANGED)
    # LINEAR_EXACT window 127.5 +- 127.5 maps stored values to value / 255: the same pixels as the PNG.
    write_radiograph(
        folder / "nested" / "normal_as_dicom",
        pixels,
        preset=SECONDARY_CAPTURE,
        WindowCenter=127.5,
        WindowWidth=255,
        VOILUTFunction="LINEAR_EXACT",
    )
    data = covid.file.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 3])
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "stray.bin").write_text("not an image either\n")
    (folder / ".hidden.png").write_bytes(b"skipped")
    return folder


def read_rows(path):
    with open(path, newline="") as fh:
        return {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(fh)}


def test_predict_mixed_folder(mixed_folder, tmp_path):
    out = tmp_path / "rows.csv"
    result = CliRunner().invoke(main, ["predict", str(mixed_folder), "--out", str(out)])
    assert result.exit_code == 2, result.output
    rows = read_rows(out)
    assert set(rows) == {"covid.png", "normal.png", "normal_as_dicom", "truncated.png", "stray.bin"}
    assert list(next(iter(rows.values()))) == [
        "path",
        "status",
        "error",
        "label",
        *(f"prob_{lab}" for lab in DEFAULT_LABELS),
        "crop",
        "lung_fraction",
        "flags",
        "referral",
        "latency_ms",
    ]
    for name in ("covid.png", "normal.png", "normal_as_dicom"):
        row = rows[name]
        assert row["status"] == "ok" and row["error"] == "" and row["label"] in DEFAULT_LABELS
        # The default classifies the whole film; its segmenter only measures the lung fraction.
        assert row["crop"] == "none"
        assert row["lung_fraction"] == "" or 0.0 <= float(row["lung_fraction"]) <= 1.0
        assert abs(sum(float(row[f"prob_{lab}"]) for lab in DEFAULT_LABELS) - 1) < 0.02
    for lab in DEFAULT_LABELS:  # the DICOM holds the PNG's pixels: same result
        assert float(rows["normal_as_dicom"][f"prob_{lab}"]) == pytest.approx(
            float(rows["normal.png"][f"prob_{lab}"]), abs=1e-6
        )
    assert rows["truncated.png"]["status"] == "error" and "ImageDecodeError" in rows["truncated.png"]["error"]
    assert rows["stray.bin"]["status"] == "error" and "not an image" in rows["stray.bin"]["error"]
    assert rows["stray.bin"]["label"] == "" and rows["stray.bin"]["prob_covid"] == ""
    assert (
        "3 of 5 images classified, 2 failed; 1 non-image file(s) in folders skipped (.txt)" in result.output
    )
    named = CliRunner().invoke(main, ["predict", str(mixed_folder / "notes.txt")])
    assert named.exit_code == 2 and "not an image" in named.output  # named explicitly: its own row
    assert "SECRET-ID-123" not in out.read_text() + result.output  # no patient identifiers


def test_predict_all_good_exits_zero_and_writes_jsonl(tmp_path):
    sample = load_samples()[0].file
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(main, ["predict", str(sample), "--out", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["status"] == "ok" and set(row["per_model"]) and row["timings_ms"]["total"] > 0
    assert row["image"]["format"] == "png"


def test_predict_to_stdout(tmp_path):
    sample = load_samples()[0].file
    result = CliRunner().invoke(main, ["predict", str(sample), str(tmp_path / "missing.png")])
    assert result.exit_code == 2
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines[0].startswith("path,status,error,label") and len(lines) == 3
    assert "file not found" in lines[2]


def test_predict_never_overwrites_without_force(tmp_path):
    sample = load_samples()[0].file
    out = tmp_path / "rows.csv"
    out.write_text("precious\n")
    result = CliRunner().invoke(main, ["predict", str(sample), "--out", str(out)])
    assert result.exit_code == 1 and "output file exists" in result.output
    assert out.read_text() == "precious\n"
    assert CliRunner().invoke(main, ["predict", str(sample), "--out", str(out), "--force"]).exit_code == 0
    assert "precious" not in out.read_text()


def test_predict_with_a_bad_bundle_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["predict", "x.png", "--bundle", str(tmp_path)])
    assert result.exit_code == 1
    assert "BundleError: not a bundle" in result.output and "Traceback" not in result.output


def test_predict_with_unknown_model_name(tmp_path):
    result = CliRunner().invoke(main, ["predict", "x.png", "--models", "resnet"])
    assert result.exit_code == 1 and "no such model" in result.output


def test_info_and_json():
    result = CliRunner().invoke(main, ["bundle", "info"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "covid, normal, pneumonia" in out and "label map   bacterial -> pneumonia" in out
    assert "segmenter   unet" in out and "lungs       flagged 'evidence outside the lungs'" in out
    assert (
        "card        LOSO (" in out
        and "referral    refer to a radiologist when top probability < 0.44" in out
    )
    assert "margin" not in out.split("referral    ", 1)[1].split("\n", 1)[0]  # a margin of 0 refers nothing
    assert "temperature 3.11: the combined probabilities are tempered" in out
    members = [line for line in out.splitlines() if line.startswith("  * ")]
    assert len(members) == 3  # the ensemble's members are marked
    # A member whose int8 variant failed its gate is named (the paper preset has one).
    paper = CliRunner().invoke(main, ["bundle", "info", "--bundle", "paper"]).output
    assert "lungcrop_balanced_seed1-pruned-int8: not shipped (argmax agreement 0.983 < 0.99)" in paper
    data = json.loads(CliRunner().invoke(main, ["bundle", "info", "--json"]).output)
    assert data["format_version"] == 3 and data["labels"] == list(DEFAULT_LABELS)
    card = CliRunner().invoke(main, ["bundle", "card"])
    assert card.exit_code == 0 and "Not a medical device" in card.output and "**pooled**" in card.output


def test_info_of_a_bundle_without_a_card(first_release_bundle):
    result = CliRunner().invoke(main, ["bundle", "info", "--bundle", str(first_release_bundle)])
    assert result.exit_code == 0 and "card        none (bundles before format 3" in result.output
    no_card = CliRunner().invoke(main, ["bundle", "card", "--bundle", str(first_release_bundle)])
    assert no_card.exit_code == 1 and "carries no model card" in no_card.output


def test_info_card_markdown_json_and_summary(tmp_path):
    from tiny_bundle import FAILURE_MODES, default_as_format3, synthetic_loso_report

    from cxr_edge.bundle.card import LOSO_NOTE, CardTask, LosoRecord, ModelCard
    from cxr_edge.ops.quality import ReferralBand

    report = synthetic_loso_report()
    card = ModelCard(
        intended_use="Triage research on carts.",
        task=CardTask(LABELS, {"bacterial": "pneumonia_unknown"}),
        training_data={"nih": {"bacterial": 4, "normal": 7}},
        loso=LosoRecord(
            "baseline", "cxr-edge loso train --config configs/triage/baseline.toml", report, LOSO_NOTE
        ),
        failure_modes=FAILURE_MODES,
    )
    root = default_as_format3(
        tmp_path / "b3", card=card, label_map={"bacterial": "pneumonia_unknown"}, abstain=ReferralBand(0.55)
    )
    info = CliRunner().invoke(main, ["bundle", "info", "--bundle", str(root)])
    assert info.exit_code == 0, info.output
    worst = min(report["by_source"], key=lambda s: report["by_source"][s]["accuracy"]["value"])
    pooled = report["pooled"]["accuracy"]["value"]
    assert f"card        LOSO (baseline): pooled accuracy {pooled:.2f} (" in info.output
    assert f"worst held-out source {worst} " in info.output
    assert "label map   bacterial -> pneumonia_unknown" in info.output
    assert "referral    refer to a radiologist when top probability < 0.55" in info.output
    md = CliRunner().invoke(main, ["bundle", "card", "--bundle", str(root)])
    assert md.exit_code == 0, md.output
    text = md.output
    assert text.startswith("# Model card: cxr-edge-default") and "**Not a medical device." in text
    assert "Triage research on carts." in text and FAILURE_MODES[0] in text and LOSO_NOTE in text
    assert "| held-out source | n | accuracy |" in text and f"| {worst} |" in text and "**pooled**" in text
    assert "bacterial → pneumonia_unknown" in text and "| nih | 4 | 7 | 11 |" in text
    js = json.loads(CliRunner().invoke(main, ["bundle", "card", "--bundle", str(root), "--json"]).output)
    assert js == card.to_dict()


def test_a_card_without_loso_says_so(tmp_path):
    from tiny_bundle import default_as_format3

    root = default_as_format3(tmp_path / "b3")
    info = CliRunner().invoke(main, ["bundle", "info", "--bundle", str(root)]).output
    assert "card        no leave-one-source-out evaluation recorded" in info
    md = CliRunner().invoke(main, ["bundle", "card", "--bundle", str(root)]).output
    assert "No leave-one-source-out evaluation recorded." in md and "No shortcut audit recorded." in md


def test_demo_writes_one_row_per_sample(tmp_path):
    out = tmp_path / "demo.csv"
    result = CliRunner().invoke(main, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    samples = load_samples()
    assert len(rows) == len(samples) >= 12 and all(r["status"] == "ok" for r in rows)
    assert "correct; median latency" in result.output
    assert all(s.file.name in result.output for s in samples)


def test_split_command(kit_manifest, tmp_path):
    out = tmp_path / "split.csv"
    result = CliRunner().invoke(main, ["split", "--manifest", str(kit_manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "no patient is in two parts" in result.output
    again = CliRunner().invoke(
        main, ["split", "--manifest", str(kit_manifest), "--out", str(out), "--seed", "5"]
    )
    assert again.exit_code == 1 and "already exists" in again.output


def test_learning_commands_explain_the_missing_extra(tmp_path):
    # A runtime-only install: TensorFlow and Keras cannot be imported (tests/runtime_only.py).
    code = (
        "import sys, runtime_only\n"
        "from cxr_edge.cli import main\n"
        "a = sys.argv[1]\n"
        "main(['train', '--config', a, '--manifest', a, '--split', a, '--out', sys.argv[2]])"
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    tests = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", code, str(cfg), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(tests)},
    )
    assert proc.returncode == 1
    assert "pip install 'cxr-edge[train]'" in proc.stderr and "Traceback" not in proc.stderr


def test_heatmaps_say_refer_draw_the_lungs_and_have_a_column(tmp_path):
    """--heatmaps writes an overlay per image (lung outline, colour scale) and a `heatmap` column."""
    samples = load_samples()[:2]
    out, folder = tmp_path / "rows.csv", tmp_path / "heat"
    args = ["predict", *(str(s.file) for s in samples), "--out", str(out), "--heatmaps", str(folder)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["heatmap"] for r in rows] == [str(p) for p in sorted(folder.glob("*_heatmap.png"))]
    picture = cv2.imread(rows[0]["heatmap"])
    image = cv2.imread(str(samples[0].file), cv2.IMREAD_GRAYSCALE)
    assert picture.shape[:2] == image.shape[:2]
    h, w = image.shape
    top, bottom = picture[h // 2 - h // 6 + 4, w - 10], picture[h // 2 + h // 6 - 4, w - 10]
    assert top[2] > 150 and bottom[0] > 150  # the colour scale: red (high) at the top, blue at the bottom
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0 and "2 inputs already have a row, 0 to go" in resumed.output


def test_overlay_draws_the_referral_text_and_the_lung_outline():
    import numpy as np

    from cxr_edge.ops.cam import overlay

    image = np.full((400, 400), 0.5, np.float32)
    lungs = np.zeros((400, 400), np.uint8)
    lungs[100:300, 60:180] = 255
    plain = overlay(image, np.zeros_like(image), scale=False)
    drawn = overlay(image, np.zeros_like(image), ["REFER: top probability 0.35 below 0.38"], lungs=lungs)
    assert (drawn[5, 5] == 0).all() and not (plain[5, 5] == 0).all()  # the text box
    assert (drawn[200, 60] > 200).all() and (plain[200, 60] == 128).all()  # the lung outline


HEAVY = ("scipy", "statsmodels", "pandas", "matplotlib", "tensorflow", "keras", "pyarrow", "ray")


@pytest.mark.parametrize("command", ["", "predict", "batch", "bundle", "serve", "demo"])
def test_runtime_commands_import_no_heavy_libraries(command):
    """`cxr-edge predict` pays for what it uses: no statistics, no training stack (cold start ~1 s before)."""
    code = (
        "import sys, click; from cxr_edge.cli import main; "
        f"'{command}' and main.get_command(click.Context(main), '{command}'); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"{command or 'import cxr_edge.cli'} imports {done.stdout.strip()}"


def test_predict_process_prints_no_native_notices(tmp_path):
    """A plain run prints its summary only; LiteRT's XNNPACK notice shows with --verbose."""
    sample = str(load_samples()[0].file)
    exe = str(Path(sys.executable).parent / "cxr-edge")
    cli = [exe, "predict", sample, "--out", str(tmp_path / "a.csv")]
    quiet = subprocess.run(cli, capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr.strip() == "1 of 1 images classified; rows in " + str(
        tmp_path / "a.csv"
    )
    loud = [exe, "-v", "predict", sample, "--out", str(tmp_path / "b.csv")]
    assert "XNNPACK" in subprocess.run(loud, capture_output=True, text=True).stderr


def test_old_command_and_option_names_still_work_and_say_the_new_ones(kit_manifest, tmp_path):
    """Renamed one release ago: hidden from help, they run the new command after naming it."""
    info = CliRunner().invoke(main, ["info"])
    assert info.exit_code == 0 and "note: `cxr-edge info` is now `cxr-edge bundle info`" in info.stderr
    assert "bundle      cxr-edge-default" in info.stdout
    assert "Not a medical device" in CliRunner().invoke(main, ["info", "--card"]).stdout
    split = CliRunner().invoke(main, ["split", "--data", str(kit_manifest), "--out", str(tmp_path / "s.csv")])
    assert split.exit_code == 0, split.output  # --data is now --manifest
    help_text = (
        CliRunner().invoke(main, ["--help"]).output + CliRunner().invoke(main, ["split", "--help"]).output
    )
    assert "loso-report" not in help_text and " info " not in help_text and "--data" not in help_text
    assert "bundle" in help_text and "--manifest" in help_text
    legacy = CliRunner().invoke(main, ["loso", "--config", str(tmp_path / "missing.toml")])
    assert "is now `cxr-edge loso train" in legacy.stderr and legacy.exit_code == 2
