"""Manifests are validated as a whole; splits are by patient, stratified, seeded and checked."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest

from cxr_edge.dataset.manifest import Manifest, load_manifest
from cxr_edge.dataset.splits import Split, check_split, make_split, read_split, write_split
from cxr_edge.errors import ManifestError, SplitError

HEADER = "path,source,patient_id,label,view,license,original_path,mask_path\n"


def write_manifest(folder, rows: list[str], files=()) -> object:
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    path = folder / "manifest.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_real_kit_manifest_loads(kit_manifest):
    m = load_manifest(kit_manifest)  # the extended kit (second release), ../shared/data/README.md
    assert len(m.records) == 3008
    assert m.labels == ("bacterial", "covid", "normal", "pneumonia_unknown", "tb", "viral")
    assert {r.source for r in m.records} == {"hannover", "montreal", "nih", "kermany", "shenzhen", "cxnet"}
    assert len({r.patient_id for r in m.records}) == 2505
    assert sum(1 for r in m.records if r.mask_file) == 620
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
    assert m.labels == ("covid", "normal") and len(m.records) == 428 + 1091


def test_select_maps_labels_into_a_task(kit_manifest):
    triage = {"bacterial": "pneumonia", "viral": "pneumonia", "pneumonia_unknown": "pneumonia"}
    m = load_manifest(kit_manifest).select(["covid", "normal", "pneumonia"], triage)
    assert m.labels == ("covid", "normal", "pneumonia") and len(m.records) == 3008 - 289  # TB left out
    pneumonia = [r for r in m.records if r.label == "pneumonia"]
    assert {r.raw_label for r in pneumonia} == {"bacterial", "viral", "pneumonia_unknown"}
    assert all(r.manifest_label == r.raw_label for r in pneumonia)
    assert all(r.raw_label == "" and r.manifest_label == r.label for r in m.records if r.label != "pneumonia")


def test_extending_a_split_keeps_every_known_patient_in_its_part(kit_manifest):
    from cxr_edge.dataset.splits import extend_split

    m = load_manifest(kit_manifest)
    first = [r for r in m.records if r.source in ("hannover", "montreal", "nih")]
    old = make_split(Manifest(tuple(first), m.csv_path, m.sha256), seed=0)
    grown = extend_split(m, old, seed=0)
    assert all(grown.parts[p] == part for p, part in old.parts.items())
    check_split(m, grown)  # covers the new images, no patient in two parts
    new = [r for r in m.records if r.path not in old.parts]
    share = sum(grown.parts[r.path] == "test" for r in new) / len(new)
    assert abs(share - 0.10) < 0.02
    # a previous split that already leaks a patient is refused
    leaking = dict(old.parts)
    pid = next(r.patient_id for r in first if sum(x.patient_id == r.patient_id for x in first) > 1)
    recs = [r for r in first if r.patient_id == pid]
    leaking[recs[0].path] = "test" if leaking[recs[1].path] != "test" else "train"
    with pytest.raises(SplitError, match="two parts"):
        extend_split(m, Split(leaking))


def test_committed_split_extends_the_first_release(kit_manifest):
    """splits/kit.csv covers the extended kit; first-release images keep the parts they had."""
    from pathlib import Path

    m = load_manifest(kit_manifest)
    split = read_split(Path(__file__).resolve().parents[2] / "splits" / "kit.csv", m)
    summary = split.summary(m)
    assert sum(v for part in summary.values() for k, v in part.items() if k != "patients") == 3008
    for part in ("val", "test"):
        assert {r.source for r in split.records(m, part)} == {
            "hannover",
            "montreal",
            "nih",
            "kermany",
            "shenzhen",
            "cxnet",
        }


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
        assert {r.source for r in split.records(m, part)} == {
            "hannover",
            "montreal",
            "nih",
            "kermany",
            "shenzhen",
            "cxnet",
        }
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
