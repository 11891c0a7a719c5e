"""The node against real DICOM peers: dcmtk's ``echoscu``/``storescu`` send, a real Orthanc receives.

Started by the tests on loopback with temporary configs and free ports (``make test`` installs dcmtk
and Orthanc with apt, like Chromium; without them these tests skip with the reason). What a hospital's
integration engineer checks first: full-size images in several transfer syntaxes (JPEG 2000 included)
and a lateral view go in, an SR and a Secondary Capture per image come out, filed in the source study,
with the label, probabilities, referral and the disclaimer, and nothing identifying in the audit log.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from test_serve import config, running, triage  # noqa: F401 - triage is a fixture used below

from cxr_edge.dicom_synth import VARIANTS, build_dataset, encode, stored_values
from cxr_edge.imaging import read_image
from cxr_edge.samples import load_samples
from cxr_edge.serve.audit import read_records
from cxr_edge.serve.config import DestinationConfig
from cxr_edge.serve.results import DISCLAIMER

STORESCU, ECHOSCU = shutil.which("storescu"), shutil.which("echoscu")
ORTHANC = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")  # Debian's place
pytestmark = pytest.mark.skipif(
    not (STORESCU and ECHOSCU and ORTHANC),
    reason="dcmtk (storescu, echoscu) and Orthanc are not installed (make test installs them with apt)",
)
SYNTAXES = ("j2k_lossless", "explicit_le", "rle")
#: storescu's option proposing a file's own syntax (dcmtk 3.6: -xv JPEG 2000 lossless, -xr RLE).
PROPOSE = {"j2k_lossless": ["-xv"], "rle": ["-xr"]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Orthanc:
    """A throwaway Orthanc: temporary storage, loopback HTTP without authentication, AE title PACS."""

    def __init__(self, folder: Path):
        self.http, self.dicom = _free_port(), _free_port()
        cfg = {
            "Name": "cxr-edge-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": self.http,
            "DicomPort": self.dicom,
            "DicomAet": "PACS",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "Plugins": [],
            "StableAge": 1,
        }
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "orthanc.json"
        path.write_text(json.dumps(cfg))
        self.log = open(folder / "orthanc.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([ORTHANC, str(path)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("Orthanc did not start: " + (folder / "orthanc.log").read_text()[-2000:])

    def get(self, route: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{route}", timeout=10) as r:
            body = r.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


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
    pacs = _Orthanc(tmp_path / "orthanc")
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
            if tags["Modality"] == "SR":  # read back what a radiologist's viewer would show
                sr = dcmread(io.BytesIO(pacs.get(f"/instances/{inst}/file")))
                reports.append("\n".join(item.TextValue for item in sr.ContentSequence))
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
    # The report: label and probabilities (or the referral, or why it was not triaged), and the disclaimer.
    assert len(reports) == 4 and all(DISCLAIMER in r for r in reports)
    by_decision = {r["decision"]: r for r in records}
    assert sum("NOT TRIAGED: view position LL is not frontal" in r for r in reports) == 1
    for r in records:
        if r["decision"] == "classified":
            line = f"Triage result: {r['label']} (p = {r['probs'][r['label']]:.2f})"
            assert sum(line in rep for rep in reports) >= 1
            assert any(", ".join(f"{k} {v:.2f}" for k, v in r["probs"].items()) in rep for rep in reports)
        elif r["decision"] == "refer":
            assert any("REFER TO RADIOLOGIST" in rep and r["reason"] in rep for rep in reports)
    assert "rejected" in by_decision
    audit = (tmp_path / "audit.jsonl").read_text()
    for src in sources.values():
        assert str(src.PatientID) not in audit and "Peer^Patient" not in audit
    assert set(by_study) == {str(s.StudyInstanceUID) for s in sources.values()}
