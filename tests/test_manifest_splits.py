"""Manifests are validated as a whole; splits are by patient, stratified, seeded and checked."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest

from cxr_edge.errors import ManifestError, SplitError
from cxr_edge.manifest import load_manifest
from cxr_edge.splits import Split, check_split, make_split, read_split, write_split

HEADER = "path,source,patient_id,label,view,license,original_path,mask_path\n"


def write_manifest(folder, rows: list[str], files=()) -> object:
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    path = folder / "manifest.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_real_kit_manifest_loads(kit_manifest):
    m = load_manifest(kit_manifest)
    assert len(m.records) == 1044
    assert m.labels == ("covid", "normal", "pneumonia_unknown")
    assert len({r.patient_id for r in m.records}) == 610
    assert sum(1 for r in m.records if r.mask_file) == 55
    assert len(m.sha256) == 64


def test_manifest_problems_are_all_reported(tmp_path):
    path = write_manifest(
        tmp_path,
        [
            "a.png,s,p1,covid,PA,,,",
            "a.png,s,p2,covid,PA,,,",  # duplicate
            "b.png,s,p3,flu,PA,,,",  # unknown label
            "c.png,s,p4,normal,PA,,,",  # missing file
            "d.png,s,,normal,PA,,,",  # empty patient
        ],
        files=["a.png", "b.png", "d.png"],
    )
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    text = str(info.value)
    assert "4 invalid manifest rows" in text
    assert "line 3: duplicate path" in text and "line 4: unknown label 'flu'" in text
    assert "line 5: image not found: c.png" in text and "line 6: empty patient_id" in text
    assert "p1" not in text  # no patient ids in messages


def test_manifest_missing_columns(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.png,covid\n")
    with pytest.raises(ManifestError, match="required columns"):
        load_manifest(tmp_path / "m.csv")


def test_select_restricts_labels(kit_manifest):
    m = load_manifest(kit_manifest).select(["covid", "normal"])
    assert m.labels == ("covid", "normal") and len(m.records) == 644


def test_kit_split_is_patient_disjoint_stratified_and_seeded(kit_manifest):
    m = load_manifest(kit_manifest)
    split = make_split(m, seed=0)
    parts_of = defaultdict(set)
    for r in m.records:
        parts_of[r.patient_id].add(split.parts[r.path])
    assert all(len(p) == 1 for p in parts_of.values())
    patients = {part: {pid for pid, p in parts_of.items() if part in p} for part in ("train", "val", "test")}
    n = len(parts_of)
    assert abs(len(patients["test"]) / n - 0.10) < 0.02
    assert abs(len(patients["val"]) / (n - len(patients["test"])) - 0.10) < 0.02
    summary = split.summary(m)
    for part in ("val", "test"):  # every label and source in every part
        assert all(summary[part].get(lab, 0) > 0 for lab in m.labels)
        assert {r.source for r in split.records(m, part)} == {"hannover", "montreal", "nih"}
    assert make_split(m, seed=0) == split
    assert make_split(m, seed=1) != split


def test_split_round_trip_and_no_silent_overwrite(kit_manifest, tmp_path):
    m = load_manifest(kit_manifest)
    written = write_split(tmp_path / "s.csv", m, make_split(m))
    assert read_split(tmp_path / "s.csv", m) == written
    with pytest.raises(SplitError, match="already exists"):
        write_split(tmp_path / "s.csv", m, make_split(m, seed=3))
    with open(tmp_path / "s.csv") as fh:
        assert next(csv.reader(fh)) == ["path", "patient_id", "source", "label", "split"]


def test_check_split_catches_a_leaking_patient(kit_manifest):
    m = load_manifest(kit_manifest)
    parts = dict(make_split(m).parts)
    pid = next(r.patient_id for r in m.records if sum(x.patient_id == r.patient_id for x in m.records) > 2)
    recs = [r for r in m.records if r.patient_id == pid]
    parts[recs[0].path] = "test" if parts[recs[1].path] != "test" else "train"
    with pytest.raises(SplitError, match="1 patients split across parts") as info:
        check_split(m, Split(parts))
    assert pid not in str(info.value)


def test_check_split_requires_full_coverage(kit_manifest):
    m = load_manifest(kit_manifest)
    parts = dict(make_split(m).parts)
    parts.pop(m.records[0].path)
    with pytest.raises(SplitError, match="missing from split"):
        check_split(m, Split(parts))
    with pytest.raises(SplitError, match="unknown split part"):
        check_split(m, Split(dict.fromkeys(make_split(m).parts, "holdout")))
