"""Batch mode that survives interruption: `predict --resume` appends, never duplicates or truncates."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import KIT

from cxr_edge.cli import main
from cxr_edge.dataset.samples import load_samples


@pytest.fixture
def folder(tmp_path):
    """Five shipped samples and one unreadable file."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for sample in load_samples()[:5]:
        shutil.copy(sample.file, folder / sample.file.name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n-not-really")
    return folder


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_resume_appends_only_the_missing_rows(folder, tmp_path):
    out = tmp_path / "rows.csv"
    files = sorted(str(p) for p in folder.iterdir())
    good = [f for f in files if not f.endswith("broken.png")]
    first = CliRunner().invoke(main, ["predict", *good[:2], "--out", str(out)])
    assert first.exit_code == 0, first.output
    before = out.read_bytes()
    result = CliRunner().invoke(main, ["predict", str(folder), "--out", str(out), "--resume"])
    assert result.exit_code == 2  # broken.png failed in this run
    assert "2 inputs already have a row, 4 to go" in result.output
    assert out.read_bytes().startswith(before)  # nothing written before was changed
    paths = [r["path"] for r in rows(out)]
    assert sorted(paths) == files and len(paths) == len(set(paths))
    again = CliRunner().invoke(main, ["predict", str(folder), "--out", str(out), "--resume"])
    assert again.exit_code == 0 and "6 inputs already have a row, 0 to go" in again.output
    assert len(rows(out)) == 6


def test_resume_jsonl_and_fresh_start(folder, tmp_path):
    out = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(main, ["predict", str(folder), "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "0 inputs already have a row, 6 to go" in result.output
    again = CliRunner().invoke(main, ["predict", str(folder), "--out", str(out), "--resume"])
    assert again.exit_code == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 6 and len({json.loads(line)["path"] for line in lines}) == 6


def test_resume_refuses_what_it_cannot_continue_safely(folder, tmp_path):
    out = tmp_path / "rows.csv"
    assert CliRunner().invoke(main, ["predict", str(folder), "--out", str(out)]).exit_code == 2
    torn = out.read_text()[:-10]  # a crash in the middle of the last row
    out.write_text(torn)
    result = CliRunner().invoke(main, ["predict", str(folder), "--out", str(out), "--resume"])
    assert result.exit_code == 1 and "incomplete row" in result.output and "Traceback" not in result.output
    assert out.read_text() == torn
    other = tmp_path / "other.csv"
    other.write_text("path,score\na.png,1\n")
    result = CliRunner().invoke(main, ["predict", str(folder), "--out", str(other), "--resume"])
    assert result.exit_code == 1 and "other columns" in result.output
    assert other.read_text() == "path,score\na.png,1\n"
    assert CliRunner().invoke(main, ["predict", str(folder), "--resume"]).exit_code == 2
    assert (
        CliRunner().invoke(main, ["predict", str(folder), "--out", str(out), "--resume", "--force"]).exit_code
        == 2
    )


def test_killed_batch_resumes_without_duplicates(tmp_path, kit_manifest):
    """A real interruption: SIGKILL a predict over 400 kit images, then resume it."""
    out = tmp_path / "nih.csv"
    args = [
        sys.executable,
        "-c",
        "from cxr_edge.cli import main; main()",
        "predict",
        str(KIT / "nih" / "normal"),
        "--no-checks",  # about resuming: two of these frontal films fail the frontal-pattern heuristic
    ]
    proc = subprocess.Popen([*args, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 30):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = out.read_bytes()
    if not before.endswith(b"\n"):  # killed mid-row: the user removes the torn line (resume says so)
        before = before[: before.rfind(b"\n") + 1]
        out.write_bytes(before)
    n_before = len(rows(out))
    assert 0 < n_before < 400
    done = subprocess.run([*args, "--out", str(out), "--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]
    assert out.read_bytes().startswith(before)
    paths = [r["path"] for r in rows(out)]
    assert len(paths) == 400 == len(set(paths))
