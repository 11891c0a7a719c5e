"""``batch``: local and Ray engines give predict's rows; bad files are rows; resume adds no duplicates."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.batch import Backend, PredictorSpec, run_batch
from cxr_edge.batch import stages as batch_stages
from cxr_edge.cli import main
from cxr_edge.errors import InputError
from cxr_edge.imaging.reader import read_image
from cxr_edge.imaging.synth import VARIANTS, build_dataset, encode, stored_values

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SAMPLES = Path(__file__).resolve().parents[2] / "cxr_edge" / "data" / "samples"
#: A file name that looks like a patient's: it must never reach the logs.
IDENTIFYING = "DOE^JOHN_MRN48213.png"
PROB_TOLERANCE = 1e-6  # predict's CSV rounds probabilities to 6 decimals


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """24 sample PNGs, two full-detector-size DICOMs (JPEG 2000, explicit), and four bad files."""
    root = tmp_path_factory.mktemp("archive")
    pngs = sorted(SAMPLES.glob("*.png"))[:23]
    (root / "pngs").mkdir()
    for p in pngs:
        shutil.copy(p, root / "pngs" / p.name)
    shutil.copy(pngs[0], root / IDENTIFYING)
    image, _ = read_image(pngs[3])
    for n, syntax in enumerate(("j2k_lossless", "explicit_le")):
        ds = build_dataset(stored_values(image, (2560, 2130), VARIANTS[0], seed=n), VARIANTS[0], n)
        assert encode(ds, syntax)
        ds.save_as(root / f"study{n}.dcm", enforce_file_format=True)
    bad = root / "bad"
    bad.mkdir()
    (bad / "notes.dcm").write_text("not an image at all\n")
    (bad / "empty.png").write_bytes(b"")
    (bad / "truncated.png").write_bytes(pngs[1].read_bytes()[:3000])
    (bad / "cut.dcm").write_bytes((root / "study1.dcm").read_bytes()[:200_000])
    return root


def _rows(out: Path) -> dict[str, dict]:
    rows = pq.read_table(out).to_pylist()
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a path has more than one row"
    return {r["path"]: r for r in rows}


def _assert_same_rows(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert a.keys() == b.keys()
    for path, row in a.items():
        other = b[path]
        for column, value in row.items():
            if column.endswith("_ms"):
                continue  # timings differ run to run
            if isinstance(value, float):
                assert other[column] == pytest.approx(value, abs=PROB_TOLERANCE), (path, column)
            else:
                assert other[column] == value, (path, column)


@pytest.fixture(scope="module")
def local_out(archive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "rows"
    summary = run_batch([archive], out, backend="local", rows_per_part=7, progress=False)
    assert (summary.inputs, summary.ok, summary.errors) == (30, 26, 4)
    return out


@pytest.fixture(scope="module")
def ray_result(archive, tmp_path_factory):
    pytest.importorskip("ray")
    out = tmp_path_factory.mktemp("ray") / "rows"
    result = CliRunner().invoke(
        main,
        [
            "batch",
            str(archive),
            "--out",
            str(out),
            "--backend",
            "ray",
            "--workers",
            "2",
            "--rows-per-part",
            "4",
        ],
    )
    return out, result


def test_local_rows_are_predicts_rows_plus_members_bundle_and_timings(archive, local_out, tmp_path):
    csv_out = tmp_path / "predict.csv"
    result = CliRunner().invoke(main, ["predict", str(archive), "--out", str(csv_out)])
    assert result.exit_code == 2  # some inputs failed
    predicted = {r["path"]: r for r in csv.DictReader(csv_out.open())}
    rows = _rows(local_out)
    assert rows.keys() == predicted.keys()
    for path, want in predicted.items():
        got = rows[path]
        for column, value in want.items():
            if column == "latency_ms":
                continue
            if column.startswith("prob_") or column == "lung_fraction":
                expected = None if value == "" else float(value)
                if expected is None:
                    assert got[column] is None, (path, column)
                else:
                    assert got[column] == pytest.approx(expected, abs=PROB_TOLERANCE), (path, column)
            else:
                assert got[column] == value, (path, column)
    ok = [r for r in rows.values() if r["status"] == "ok"]
    member_columns = [c for c in ok[0] if c.startswith("member_")]
    assert len(member_columns) == 9  # three members x three labels of the default bundle
    for r in ok:
        members = np.array([r[c] for c in member_columns]).reshape(3, 3)
        assert np.allclose(members.sum(axis=1), 1.0, atol=1e-5)
        assert r["decode_ms"] > 0 and r["prepare_ms"] > 0 and r["model_ms"] > 0
        assert r["latency_ms"] == pytest.approx(r["decode_ms"] + r["prepare_ms"] + r["model_ms"])
    assert len({r["bundle_sha256"] for r in rows.values()}) == 1
    errors = {Path(p).name: r["error"] for p, r in rows.items() if r["status"] == "error"}
    assert set(errors) == {"notes.dcm", "empty.png", "truncated.png", "cut.dcm"}
    assert errors["cut.dcm"].startswith(("ImageDecodeError", "InputError"))
    assert len(list(local_out.glob("part-*.parquet"))) == 5  # 30 rows, 7 per part


def test_ray_engine_gives_the_local_rows_and_logs_no_paths(ray_result, local_out, archive):
    out, result = ray_result
    assert result.exit_code == 2, result.output
    _assert_same_rows(_rows(local_out), _rows(out))
    assert IDENTIFYING not in result.output and "MRN48213" not in result.output
    assert str(archive) not in result.output
    assert "26 classified, 4 errors" in result.output
    assert not list(out.glob(".ray-*")), "the staging folder is emptied into --out"


def test_resume_after_an_interrupted_local_run_writes_no_duplicates(
    archive, local_out, tmp_path, monkeypatch
):
    out = tmp_path / "rows"
    real = batch_stages.Preparer.prepare
    calls = {"n": 0}

    def interrupted(self, path):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        return real(self, path)

    monkeypatch.setattr(batch_stages.Preparer, "prepare", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_batch([archive], out, rows_per_part=5, progress=False)
    monkeypatch.setattr(batch_stages.Preparer, "prepare", real)
    assert len(_rows(out)) == 10  # two whole parts; the eleventh row was still buffered
    # What a SIGKILL mid-write leaves: a temporary part, and a part cut short by a full disk.
    (out / ".part-dead-00000.parquet.tmp").write_bytes(b"PAR1 half")
    good = sorted(out.glob("part-*.parquet"))[0]
    (out / "part-cut-00000.parquet").write_bytes(good.read_bytes()[:200])

    with pytest.raises(InputError, match="not empty"):
        run_batch([archive], out, progress=False)
    summary = run_batch([archive], out, resume=True, rows_per_part=5, progress=False)
    assert (summary.skipped, summary.ok + summary.errors) == (10, 20)
    _assert_same_rows(_rows(local_out), _rows(out))
    assert sorted(p.name for p in (out / ".incomplete").iterdir()) == [
        "rows-.part-dead-00000.parquet.tmp",
        "rows-part-cut-00000.parquet",
    ]
    again = run_batch([archive], out, resume=True, progress=False)
    assert (again.skipped, again.ok, again.errors) == (30, 0, 0)


def test_resume_adopts_an_interrupted_ray_staging_folder(ray_result, local_out, archive, tmp_path):
    # What a Ray run killed mid-way leaves: some finished files in its staging folder, one half-written.
    out = tmp_path / "rows"
    staging = out / ".ray-killed01"
    staging.mkdir(parents=True)
    table = pq.read_table(ray_result[0])
    for n in range(3):
        pq.write_table(table.slice(4 * n, 4), staging / f"block_{n:06d}-0.parquet")
    (staging / "half-written.parquet").write_bytes(b"PAR1")
    result = CliRunner().invoke(
        main, ["batch", str(archive), "--out", str(out), "--backend", "ray", "--workers", "2", "--resume"]
    )
    assert result.exit_code in (0, 2), result.output  # 2 only when a re-run input was a bad file
    assert "(12 already had a row)" in result.output
    _assert_same_rows(_rows(local_out), _rows(out))
    assert [p.name for p in (out / ".incomplete").iterdir()] == [".ray-killed01-half-written.parquet"]
    assert not staging.exists()


def test_manifest_csv_inputs_and_refusals(archive, tmp_path):
    manifest = tmp_path / "list" / "manifest.csv"
    manifest.parent.mkdir()
    names = sorted((archive / "pngs").iterdir())[:3]
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerow([str(names[0]), "normal"])  # absolute
        for p in names[1:]:
            w.writerow([str(p), "x"])
    summary = run_batch([manifest, names[0]], tmp_path / "a", progress=False)
    assert (summary.inputs, summary.ok) == (3, 3)  # the repeated file gets one row

    relative = tmp_path / "rel.csv"
    shutil.copy(names[0], tmp_path / "one.png")
    relative.write_text("path\none.png\nmissing.png\n")
    rows = _rows_of(run_batch([relative], tmp_path / "b", progress=False), tmp_path / "b")
    assert {Path(p).name: r["status"] for p, r in rows.items()} == {"one.png": "ok", "missing.png": "error"}

    (tmp_path / "nocol.csv").write_text("file\none.png\n")
    with pytest.raises(InputError, match="path column"):
        run_batch([tmp_path / "nocol.csv"], tmp_path / "c", progress=False)
    with pytest.raises(InputError, match="other columns"):
        run_batch(
            [relative],
            tmp_path / "b",
            resume=True,
            spec=PredictorSpec(members=("equalize_e14-pruned-int8",)),
            progress=False,
        )
    with pytest.raises(InputError, match="URIs are not read directly"):
        run_batch(["s3://bucket/x.dcm"], tmp_path / "d", backend=Backend.RAY, progress=False)


def _rows_of(summary, out: Path) -> dict[str, dict]:
    assert summary.ok + summary.errors == summary.inputs
    return _rows(out)
