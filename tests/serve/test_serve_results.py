"""DICOM results built with highdicom: the coded SR (TID 1500) and the Secondary Capture, read back."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ComprehensiveSRStorage

from cxr_edge.dataset.samples import load_samples
from cxr_edge.imaging.synth import stored_from_image, write_radiograph
from cxr_edge.serve.report import DECISIONS, PRIVATE, PROCEDURE, finding_code, read_report
from cxr_edge.serve.results import COPIED, DISCLAIMER, build_results, read_header

DSRDUMP = shutil.which("dsrdump")
SHA = "ab12cd34ef56" + "0" * 52
LABELS = ("covid", "normal", "pneumonia")


def record(decision: str, sha: str = SHA, flags=(), instance: str = "1" * 64) -> dict:
    """A triage record as :class:`cxr_edge.serve.triage.Triage` writes it (without schema and time)."""
    probs = {"covid": 0.812345, "normal": 0.101, "pneumonia": 0.086655}
    out = {
        "instance": instance,
        "sop_class": "1.2.840.10008.5.1.4.1.1.1.1",
        "calling_ae": "MODALITY",
        "inbox_file": "1-x.dcm",
        "bundle": {"name": "default-triage", "sha256": sha},
        "decision": decision,
        "label": None,
        "probs": None,
        "per_model": None,
        "lung_fraction": None,
        "flags": list(flags),
        "abstain": {"min_top_prob": 0.6, "min_margin": 0.1, "source": "bundle"},
        "reason": None,
        "check": None,
        "image": None,
        "timings_ms": {"total": 1.0},
    }
    if decision == "classified":
        out.update(label="covid", probs=probs)
    elif decision == "refer":
        probs = {"covid": 0.41, "normal": 0.3, "pneumonia": 0.29}
        out.update(probs=probs, reason="refer to a radiologist: top probability 0.41 below 0.60")
    else:
        out.update(check="view", reason="view position LL is not frontal")
    return out


@pytest.fixture(scope="module")
def header(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    path = write_radiograph(
        folder / "a.dcm",
        stored_from_image(load_samples()[0].file, 256),
        IssuerOfPatientID="HOSP",
        PatientAge="054Y",
        ReferringPhysicianName="Ref^Doctor",
        StudyDescription="CHEST PA",
        PatientAddress="1 Secret Street",  # not in COPIED: must stay out of the results
    )
    return read_header(path)


def image_and_heat():
    image = np.linspace(0, 1, 200 * 160, dtype=np.float32).reshape(200, 160)
    heat = np.zeros((200, 160), np.float32)
    heat[50:120, 40:100] = 1.0
    return image, heat


def roundtrip(ds):
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return dcmread(io.BytesIO(buf.getvalue()))


def both(header, rec):
    image, heat = image_and_heat()
    sr, sc = build_results("both", header, rec, image, heat if rec["decision"] == "classified" else None)
    return roundtrip(sr), roundtrip(sc)


def dsrdump_problems(ds, tmp_path) -> list[str]:
    """dsrdump's warning/error lines (``W:``/``E:``/``F:`` in dcmtk 3.6) and a non-zero exit."""
    path = tmp_path / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    out = subprocess.run([DSRDUMP, "+Pc", str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    bad = [line for line in lines if re.match(r"(W|E|F): |(Warning|Error)\b", line)]
    bad += [line for line in lines if "invalid code" in line]
    return bad + ([f"exit status {out.returncode}"] if out.returncode else [])


@pytest.mark.parametrize("decision", ["classified", "refer", "rejected"])
def test_sr_is_a_coded_measurement_report(header, decision, tmp_path):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    rec = record(decision, flags=["evidence outside the lungs"] if decision == "classified" else ())
    sr, sc = both(header, rec)
    assert sr.SOPClassUID == ComprehensiveSRStorage
    assert sr.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1" == sc.file_meta.TransferSyntaxUID
    assert (sr.Modality, sr.SeriesNumber, sc.Modality, sc.SeriesNumber) == ("SR", 9901, "OT", 9902)
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("PARTIAL", "UNVERIFIED")

    doc = hd.sr.ComprehensiveSR.from_dataset(sr)
    report = doc.content
    assert isinstance(report, hd.sr.MeasurementReport)
    root = report[0].ContentSequence
    procedure = [i.value for i in root if i.name == codes.DCM.ProcedureReported]
    assert [(c.value, c.scheme_designator) for c in procedure] == [PROCEDURE[:2]]
    (observer,) = report.get_observer_contexts(observer_type=codes.DCM.Device)
    device = observer.observer_identifying_attributes
    assert (device.name, device.model_name) == ("cxr-edge", "default-triage")
    (group,) = report.get_image_measurement_groups()
    assert [str(s.referenced_sop_instance_uid) for s in group.source_images] == [str(header.SOPInstanceUID)]
    evidence = doc.get_evidence(current_procedure_only=True)
    assert [(str(e[0]), str(e[2])) for e in evidence] == [(header.StudyInstanceUID, header.SOPInstanceUID)]

    # the finding: the label's SNOMED CT code (classified only; a referral shows no guess)
    finding = group.finding_type
    if decision == "classified":
        assert (finding.value, finding.scheme_designator) == ("840539006", "SCT")
    else:
        assert finding is None
    # one probability per label, named by the label's code, dimensionless
    measurements = group.get_measurements()
    assert len(measurements) == len(rec["probs"] or {})
    for label, p in (rec["probs"] or {}).items():
        code = finding_code(label)
        (m,) = [m for m in measurements if (m.name.value, m.name.scheme_designator) == code[:2]]
        assert abs(m.value - p) < 1e-6
        assert (m.unit.value, m.unit.scheme_designator) == ("1", "UCUM")
    # decision, referral and rejection: coded, with the reason as text
    got = read_report(sr)
    assert got["decision"] == decision
    evaluations = {
        (e.name.value, e.name.scheme_designator): e.value for e in group.get_qualitative_evaluations()
    }
    assert evaluations[("DECISION", PRIVATE)].value == DECISIONS[decision][0]
    if decision == "refer":
        assert evaluations[("121075", "DCM")].value == "REFER"
        assert got["reason"] == rec["reason"] and got["recommendation"][:2] == ("REFER", PRIVATE)
    elif decision == "rejected":
        assert ("121075", "DCM") not in evaluations
        assert got["reason"] == "NOT TRIAGED: view position LL is not frontal" and got["check"] == "view"
    else:
        assert got["reason"] is None and got["flags"] == ["evidence outside the lungs"]
    assert got["disclaimer"] == DISCLAIMER
    assert got["algorithm"]["name"] == "default-triage" and SHA[:12] in got["algorithm"]["version"]

    # filed in the source study with the source's identifiers, and no others
    for ds in (sr, sc):
        for name in COPIED:
            if name in header:
                assert ds[name].value == header[name].value, name
        assert "PatientAddress" not in ds
    if DSRDUMP:
        assert dsrdump_problems(sr, tmp_path) == []


def test_secondary_capture_holds_the_picture(header):
    from cxr_edge.serve.results import _picture, result_lines

    rec = record("classified")
    image, heat = image_and_heat()
    (sc,) = build_results("sc", header, rec, image, heat)
    back = roundtrip(sc)
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and back.PhotometricInterpretation == "RGB"
    assert back.BurnedInAnnotation == "YES" and back.ConversionType == "WSD"
    want = _picture(image, heat, result_lines(rec), 1024)[:, :, ::-1]  # BGR -> RGB
    assert back.pixel_array.shape == want.shape and np.array_equal(back.pixel_array, want)
    assert np.ptp(back.pixel_array.astype(int), axis=2).max() > 50  # the heat map's colours


def test_uids_are_deterministic(header):
    image, heat = image_and_heat()
    first = build_results("both", header, record("classified"), image, heat)
    again = build_results("both", header, record("classified"), image, heat)
    other = build_results("both", header, record("classified", sha="9" * 64), image, heat)
    key = [(str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)) for ds in first]
    assert key == [(str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)) for ds in again]
    assert not {k for pair in key for k in pair} & {
        uid for ds in other for uid in (str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID))
    }
    assert len({k[0] for k in key}) == 2  # SR and SC are two instances
    for ds in first:
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.StudyInstanceUID == header.StudyInstanceUID


def test_sparse_header_unknown_label_and_full_image_library(tmp_path):
    """A source with few attributes still gets results; a DX with orientation gets highdicom's library."""
    import highdicom as hd

    sparse = read_header(write_radiograph(tmp_path / "s.dcm", np.zeros((300, 300), np.uint8) + 9))
    for name in ("PatientSex", "PatientBirthDate", "AccessionNumber", "StudyID", "StudyInstanceUID"):
        del sparse[name]
    rec = record("classified")
    rec["probs"] = {"covid": 0.1, "effusion": 0.9}
    rec["label"] = "effusion"
    sr, sc = (roundtrip(ds) for ds in build_results("both", sparse, rec, None, None))
    assert sr.StudyInstanceUID == sc.StudyInstanceUID  # derived from the instance key, the same for both
    assert read_report(sr)["finding"] == ("EFFUSION", PRIVATE, "effusion")
    assert any(i.CodingSchemeDesignator == PRIVATE for i in sr.CodingSchemeIdentificationSequence)

    full = read_header(
        write_radiograph(
            tmp_path / "f.dcm",
            np.zeros((300, 300), np.uint8) + 9,
            PatientOrientation=["L", "F"],
            ImagerPixelSpacing=[0.15, 0.15],
        )
    )
    sr, sc = (roundtrip(ds) for ds in build_results("both", full, record("refer"), None, None))
    library = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "111028"]
    text = str(library[0])
    assert "Horizontal Pixel Spacing" in text and "Pixel Data Rows" in text
    assert list(sc.PatientOrientation) == ["L", "F"]
    assert hd.sr.ComprehensiveSR.from_dataset(sr).content.get_image_measurement_groups()


def test_results_module_imports_without_highdicom():
    code = (
        "import sys, cxr_edge.serve, cxr_edge.serve.results, cxr_edge.serve.report\n"
        "assert 'highdicom' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
