"""The node against real DICOM peers: dcmtk's ``echoscu``/``storescu`` send, a real Orthanc receives.

Started by the tests on loopback with temporary configs and free ports (``make test`` installs dcmtk
and Orthanc with apt, like Chromium; without them these tests skip with the reason). What a hospital's
integration engineer checks first: full-size images in several transfer syntaxes (JPEG 2000 included)
and a lateral view go in, an SR and a Secondary Capture per image come out, filed in the source study,
with the label, probabilities, referral and the disclaimer, and nothing identifying in the audit log.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from test_serve import config, running, triage  # noqa: F401 - triage is a fixture used below

from cxr_edge.benchmarks.peers import ECHOSCU, MISSING, STORESCU, Orthanc
from cxr_edge.dataset.samples import load_samples
from cxr_edge.imaging.reader import read_image
from cxr_edge.imaging.synth import VARIANTS, build_dataset, encode, stored_values
from cxr_edge.serve import instance_key
from cxr_edge.serve.audit import read_records
from cxr_edge.serve.config import DestinationConfig
from cxr_edge.serve.report import finding_code, read_report
from cxr_edge.serve.results import DISCLAIMER

pytestmark = pytest.mark.skipif(bool(MISSING), reason=MISSING or "-")
SYNTAXES = ("j2k_lossless", "explicit_le", "rle")
#: storescu's option proposing a file's own syntax (dcmtk 3.6: -xv JPEG 2000 lossless, -xr RLE).
PROPOSE = {"j2k_lossless": ["-xv"], "rle": ["-xr"]}


@pytest.fixture(scope="module")
def full_size(tmp_path_factory) -> dict[str, Path]:
    """2560 x 2130 12-bit DX images of two kit samples, one per syntax, plus a full-size lateral view."""
    folder = tmp_path_factory.mktemp("peers")
    samples = load_samples()
    out = {}
    for n, syntax in enumerate(SYNTAXES):
        image, _ = read_image(samples[n].file)
        ds = build_dataset(stored_values(image, (2560, 2130), VARIANTS[0], seed=n), VARIANTS[0], 100 + n)
        ds.PatientID, ds.PatientName = f"PEER-SECRET-{n}", "Peer^Patient"
        assert encode(ds, syntax)
        out[syntax] = folder / f"{syntax}.dcm"
        ds.save_as(out[syntax], enforce_file_format=True)
    lateral = dcmread(out["explicit_le"])
    lateral.ViewPosition = "LL"
    lateral.SOPInstanceUID = lateral.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out["lateral"] = folder / "lateral.dcm"
    lateral.save_as(out["lateral"], enforce_file_format=True)
    return out


def test_dcmtk_sends_full_size_images_and_orthanc_files_the_results(tmp_path, triage, full_size):  # noqa: F811
    pacs = Orthanc(tmp_path / "orthanc")
    try:
        dest = DestinationConfig(ae_title="PACS", port=pacs.dicom, kind="both", timeout_s=30)
        with running(config(tmp_path, destination=dest), triage) as node:
            echo = subprocess.run(
                [ECHOSCU, "-aet", "MODALITY", "-aec", "CXR_EDGE", "127.0.0.1", str(node.port)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert echo.returncode == 0, echo.stderr
            # One storescu per file, proposing the file's own syntax as an integration engineer would
            # (storescu proposes uncompressed syntaxes only by default and cannot decompress JPEG 2000).
            for name, path in full_size.items():
                sent = subprocess.run(
                    [STORESCU, *PROPOSE.get(name, []), "-aet", "MODALITY", "-aec", "CXR_EDGE",
                     "127.0.0.1", str(node.port), str(path)],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )  # fmt: skip
                assert sent.returncode == 0, (name, sent.stderr[-2000:])
            assert node.wait_idle(120)
        by_study: dict[str, list[dict]] = {}
        reports = []
        for inst in pacs.get("/instances"):
            tags = pacs.get(f"/instances/{inst}/simplified-tags")
            by_study.setdefault(tags["StudyInstanceUID"], []).append(tags)
            if tags["Modality"] == "SR":  # read the coded report back (highdicom) as a RIS would
                reports.append(read_report(dcmread(io.BytesIO(pacs.get(f"/instances/{inst}/file")))))
        records = list(read_records(tmp_path / "audit.jsonl"))
    finally:
        pacs.stop()

    sources = {name: dcmread(p, stop_before_pixels=True) for name, p in full_size.items()}
    summary = [(r["decision"], r["check"], r["reason"], r["delivery"]["status"]) for r in records]
    assert len(records) == 4 and all(r["delivery"]["status"] == "sent" for r in records), summary
    decisions = sorted(r["decision"] for r in records)
    assert decisions.count("rejected") == 1  # the lateral view
    # Every source study holds an SR and a Secondary Capture per image sent (the lateral shares the
    # explicit image's study), with the source patient's identifiers copied there and only there.
    for name, src in sources.items():
        study = by_study[str(src.StudyInstanceUID)]
        assert {t["PatientID"] for t in study} == {str(src.PatientID)}
        modalities = sorted(t["Modality"] for t in study)
        per_study = 2 if name != "explicit_le" and name != "lateral" else 4
        assert modalities.count("SR") + modalities.count("OT") == per_study, (name, modalities)
    # The report: label and probabilities (or the referral, or why it was not triaged), and the disclaimer,
    # coded (TID 1500) and referencing its source image.
    assert len(reports) == 4 and all(rep["disclaimer"] == DISCLAIMER for rep in reports)
    by_decision = {r["decision"]: r for r in records}
    report_of = {instance_key(rep["source"][0]): rep for rep in reports}
    assert set(report_of) == {r["instance"] for r in records}
    for r in records:
        rep = report_of[r["instance"]]
        assert rep["decision"] == r["decision"], (rep, r["decision"])
        probs = {finding_code(label)[:2]: p for label, p in (r["probs"] or {}).items()}
        assert set(rep["probs"]) == set(probs)
        assert all(abs(rep["probs"][code] - p) < 1e-6 for code, p in probs.items())
        if r["decision"] == "classified":
            assert rep["finding"] == finding_code(r["label"]) and rep["reason"] is None
        elif r["decision"] == "refer":
            assert rep["finding"] is None and rep["recommendation"][0] == "REFER"
            assert rep["reason"] == r["reason"]
        else:
            assert rep["finding"] is None and rep["check"] == "view"
            assert rep["reason"].startswith("NOT TRIAGED: view position LL is not frontal")
    assert "rejected" in by_decision
    audit = (tmp_path / "audit.jsonl").read_text()
    for src in sources.values():
        assert str(src.PatientID) not in audit and "Peer^Patient" not in audit
    assert set(by_study) == {str(s.StudyInstanceUID) for s in sources.values()}


def test_load_benchmark_with_faults_keeps_every_image_exactly_once(tmp_path):
    """A small run of ``cxr_edge.benchmarks.serve_faults``: two modalities, node SIGKILLs, PACS down,
    disk low."""
    from cxr_edge.benchmarks.serve_faults import build_corpus, render, run, section_name

    corpus = tmp_path / "dicom"
    corpus.mkdir()
    lists = build_corpus(corpus, senders=2, per_sender=10)
    result = run(lists, tmp_path / "run", faults=True)
    assert len(result["faults"]) == 6
    assert result["acknowledged"] == result["triage_records"] == 20
    assert result["instances_with_one_record"] == 20 and result["instances_with_several_records"] == 0
    # Every triaged image calls for an SR and a Secondary Capture; Orthanc holds each once, nothing else.
    assert result["results_expected"] == result["results_in_orthanc"] == 40
    assert result["results_lost"] == result["results_unexpected"] == 0
    # Whatever the outage queued in the outbox was delivered late, none dead. (How much it queues
    # depends on timing in a run this small; tests/serve/test_serve_outbox.py covers the outbox itself.)
    assert result["first_delivery"].get("queued", 0) == result["late_deliveries"].get("sent", 0)
    assert "dead" not in result["late_deliveries"]
    section = render({"machine": "m", "syntaxes": ["j2k_lossless", "jpegls_lossless"], "mean_file_mib": 3,
                      "run": result})  # fmt: skip
    assert section_name({"run": result}) == "serve-faults" and "| 20 / 0 / 0 | 40 / 40 / 0 / 0 |" in section
