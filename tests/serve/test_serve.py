"""The DICOM node in this process, on loopback: durable receive, triage, audit, results, back-pressure."""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.cli import main
from cxr_edge.dataset.samples import load_samples
from cxr_edge.errors import SpecError
from cxr_edge.imaging.synth import stored_from_image, write_radiograph
from cxr_edge.serve import AuditLog, Node, Triage, instance_key, load_config, read_records
from cxr_edge.serve.config import DestinationConfig, NodeConfig, ServeConfig, StorageConfig, TriageConfig
from cxr_edge.serve.node import OUT_OF_RESOURCES
from cxr_edge.serve.report import read_report
from cxr_edge.serve.scu import NetworkError, echo, send_files

REPO = Path(__file__).resolve().parents[2]
IDENTIFIERS = ("Doe^Jane", "PAT-0042-SECRET", "ACC-77-SECRET", "19700101")


@pytest.fixture(scope="module")
def triage() -> Triage:
    """One triage (bundle loaded once) shared by the nodes of this module."""
    return Triage(TriageConfig())


@pytest.fixture(scope="module")
def dicoms(tmp_path_factory) -> dict[str, list[Path]]:
    """Real CXRs as DX DICOMs (12-bit, from the shipped kit samples) and objects the node must refuse."""
    folder = tmp_path_factory.mktemp("dicom")
    samples = load_samples()
    good = [
        write_radiograph(folder / f"good{i}.dcm", stored_from_image(s.file))
        for i, s in enumerate(samples[:16])
    ]
    lateral = write_radiograph(folder / "lateral.dcm", stored_from_image(samples[0].file), ViewPosition="LL")
    # A thumbnail (not a single intensity, which the reader itself refuses): the resolution check.
    small = write_radiograph(
        folder / "small.dcm", (np.arange(64 * 64).reshape(64, 64) % 200).astype(np.uint8)
    )
    return {"good": good, "lateral": [lateral], "sr": [basic_sr(folder / "report.dcm")], "small": [small]}


def uid_of(path: Path) -> str:
    """The SOP Instance UID of a DICOM file (what the audit log must never show)."""
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def basic_sr(path: Path) -> Path:
    """A Basic Text SR (a non-image object)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = BasicTextSRStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = BasicTextSRStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Doe^Jane", "PAT-0042-SECRET", "SR"
    ds.save_as(path, enforce_file_format=True)
    return path


def config(tmp_path: Path, **sections) -> ServeConfig:
    base = ServeConfig(
        node=NodeConfig(port=0, allow=("MODALITY",), heartbeat_s=0.1, drain_s=1.0),
        storage=StorageConfig(
            inbox=str(tmp_path / "inbox"), audit=str(tmp_path / "audit.jsonl"), queue_size=4
        ),
    )
    import dataclasses

    return dataclasses.replace(base, **sections)


@contextmanager
def running(cfg: ServeConfig, triage: Triage, worker: bool = True):
    node = Node(cfg, triage).start(worker=worker)
    try:
        yield node
    finally:
        node.stop()


def send(node: Node, files, caller: str = "MODALITY") -> list[int]:
    return send_files(files, "127.0.0.1", node.port, "CXR_EDGE", caller, timeout_s=10)


def by_instance(audit: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in read_records(audit):
        out.setdefault(r["instance"], []).append(r)
    return out


def test_mixed_batch_and_a_burst_larger_than_the_queue(tmp_path, triage, dicoms, caplog):
    """16 good images (queue of 4), a lateral view, an SR, a truncated image, a thumbnail: one record each."""
    corrupt = tmp_path / "truncated.dcm"
    write_radiograph(corrupt, stored_from_image(load_samples()[2].file))
    from pydicom import dcmread

    ds = dcmread(corrupt)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(corrupt)
    files = dicoms["good"] + dicoms["lateral"] + dicoms["sr"] + [corrupt] + dicoms["small"]
    caplog.set_level(logging.DEBUG, logger="cxr_edge")
    with running(config(tmp_path), triage) as node:
        assert send(node, files) == [0] * len(files)
        assert node.wait_idle(60)
    records = by_instance(tmp_path / "audit.jsonl")
    keys = {instance_key(uid_of(f)): f.name for f in files}
    assert set(records) == set(keys) and all(len(v) == 1 for v in records.values())
    decision = {keys[k]: v[0] for k, v in records.items()}
    for f in dicoms["good"]:
        r = decision[f.name]
        assert r["decision"] in ("classified", "refer"), r
        assert set(r["probs"]) == {"covid", "normal", "pneumonia"}  # the default bundle's triage labels
        assert (r["label"] is None) == (r["decision"] == "refer")
        assert r["calling_ae"] == "MODALITY" and r["bundle"]["sha256"] and r["timings_ms"]["total"] > 0
    assert (decision["lateral.dcm"]["check"], decision["lateral.dcm"]["decision"]) == ("view", "rejected")
    assert decision["report.dcm"]["check"] == "read" and "no pixel data" in decision["report.dcm"]["reason"]
    assert decision["truncated.dcm"]["check"] == "read"
    assert decision["small.dcm"]["check"] == "resolution"
    inbox = tmp_path / "inbox"
    assert not list((inbox / "pending").iterdir()) and len(list((inbox / "done").iterdir())) == len(files)
    # No patient identifiers and no UIDs in the audit log or the node's log.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("cxr_edge"))
    text = (tmp_path / "audit.jsonl").read_text() + ours
    for secret in (*IDENTIFIERS, *(uid_of(f) for f in files)):
        assert secret not in text


class _Destination:
    """A Storage SCP standing in for a PACS: keeps the datasets it receives."""

    def __init__(self):
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.received = []
        ae = AE(ae_title="PACS")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        self.port = self.server.server_address[1]

    def _store(self, event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return 0


def test_results_go_back_as_sr_and_secondary_capture(tmp_path, triage, dicoms):
    pacs = _Destination()
    try:
        dest = DestinationConfig(ae_title="PACS", port=pacs.port, kind="both", timeout_s=10)
        files = dicoms["good"][:2] + dicoms["lateral"] + dicoms["sr"]
        with running(config(tmp_path, destination=dest), triage) as node:
            assert send(node, files) == [0] * 4
            assert node.wait_idle(60)
    finally:
        pacs.server.shutdown()
    records = list(read_records(tmp_path / "audit.jsonl"))
    delivery = {r["check"] or r["decision"]: r["delivery"]["status"] for r in records}
    assert delivery["view"] == "sent" and delivery["read"] == "skipped"
    # two triaged images and the lateral one: an SR and an SC each; nothing for the SR that came in
    assert len(pacs.received) == 6
    source = {str(ds.SOPInstanceUID): ds for ds in map(_read, files[:3])}
    for result in pacs.received:
        assert str(result.PatientID) == "PAT-0042-SECRET" and str(result.PatientName) == "Doe^Jane"
        assert str(result.StudyInstanceUID) in {str(s.StudyInstanceUID) for s in source.values()}
    srs = [ds for ds in pacs.received if ds.Modality == "SR"]
    reports = [read_report(ds) for ds in srs]  # the coded SR (TID 1500), read back with highdicom
    assert sum("NOT TRIAGED: view position LL is not frontal" in (r["reason"] or "") for r in reports) == 1
    assert all("not a medical device" in r["disclaimer"] for r in reports)
    for ds in srs:
        ref = (
            ds.CurrentRequestedProcedureEvidenceSequence[0]
            .ReferencedSeriesSequence[0]
            .ReferencedSOPSequence[0]
        )
        assert str(ref.ReferencedSOPInstanceUID) in source
    sc = [ds for ds in pacs.received if ds.Modality == "OT"]
    assert all(ds.PhotometricInterpretation == "RGB" and ds.pixel_array.shape[2] == 3 for ds in sc)
    colourful = [ds for ds in sc if np.ptp(ds.pixel_array.astype(int), axis=2).max() > 50]
    assert len(colourful) >= 2  # heat maps on the triaged images


def _read(path):
    from pydicom import dcmread

    return dcmread(path, stop_before_pixels=True)


def test_unknown_callers_are_refused_and_echo_works(tmp_path, triage, dicoms):
    with running(config(tmp_path), triage) as node:
        assert echo("127.0.0.1", node.port, "CXR_EDGE", "MODALITY") == 0
        with pytest.raises(NetworkError, match="rejected"):
            send(node, dicoms["good"][:1], caller="INTRUDER")
    assert not list((tmp_path / "inbox" / "pending").iterdir())
    assert not list(read_records(tmp_path / "audit.jsonl"))


def test_a_failed_write_answers_out_of_resources_and_keeps_nothing(tmp_path, triage, dicoms):
    with running(config(tmp_path), triage) as node:
        pending = tmp_path / "inbox" / "pending"
        pending.rmdir()
        pending.write_text("a file where the folder should be")  # every rename now fails, even as root
        assert send(node, dicoms["good"][:2]) == [OUT_OF_RESOURCES] * 2
        pending.unlink()
        pending.mkdir()
        assert send(node, dicoms["good"][:2]) == [0, 0]  # the modality's retry
        assert node.wait_idle(30)
    assert len(by_instance(tmp_path / "audit.jsonl")) == 2
    assert not list((tmp_path / "inbox" / "incoming").iterdir())


def test_max_pending_pushes_back_and_the_worker_catches_up(tmp_path, triage, dicoms):
    import dataclasses

    cfg = config(tmp_path)
    cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, max_pending=3))
    with running(cfg, triage, worker=False) as node:
        assert send(node, dicoms["good"][:5]) == [0, 0, 0, OUT_OF_RESOURCES, OUT_OF_RESOURCES]
        node.start_worker()
        assert node.wait_idle(30)
        assert send(node, dicoms["good"][3:5]) == [0, 0]
        assert node.wait_idle(30)
    assert len(by_instance(tmp_path / "audit.jsonl")) == 5


def test_restart_resumes_and_never_audits_an_instance_twice(tmp_path, triage, dicoms, monkeypatch):
    files = dicoms["good"][:4]
    cfg = config(tmp_path)
    with running(cfg, triage, worker=False) as node:
        assert send(node, files + files[:1]) == [0] * 5  # the first instance is sent twice
        pending = node.inbox.pending()
        assert len(pending) == 5
        # A crash between the audit record and the move to done/: the record is written, the file stays.
        monkeypatch.setattr(node.inbox, "mark_done", lambda path: (_ for _ in ()).throw(OSError("crash")))
        with pytest.raises(OSError):
            node.process(pending[1])
        monkeypatch.undo()
    (tmp_path / "inbox" / "incoming" / "x.dcm.part").write_bytes(b"half a file")
    with running(cfg, triage) as node:
        assert node.wait_idle(30)
        assert node.counts["duplicate"] == 2  # the re-sent copy and the already audited file
    records = by_instance(tmp_path / "audit.jsonl")
    assert len(records) == 4 and all(len(v) == 1 for v in records.values())
    inbox = tmp_path / "inbox"
    assert len(list((inbox / "done").iterdir())) == 5 and not list((inbox / "incoming").iterdir())


def test_audit_log_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text(json.dumps({"instance": "a" * 64, "decision": "classified"}) + "\n" + '{"instance": "bbb')
    log = AuditLog(path)
    assert "a" * 64 in log and "bbb" not in log and len(log) == 1
    log.append({"instance": "c" * 64, "decision": "refer"})
    log.close()
    assert [r["instance"][0] for r in read_records(path)] == ["a", "c"]
    assert path.read_text().startswith(json.dumps({"instance": "a" * 64, "decision": "classified"}))


def test_config_file_and_overrides(tmp_path):
    cfg = load_config(REPO / "configs" / "serve.toml")
    assert cfg.node.host == "127.0.0.1" and cfg.node.ae_title == "CXR_EDGE"
    assert cfg.triage.abstain is None  # the bundle's own band (test_the_shipped_config_uses_the_bundle_band)
    assert cfg.triage.quality.frontal_views == ("PA", "AP")
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nae_titel = "X"\n')
    with pytest.raises(SpecError, match="unknown keys"):
        load_config(bad)
    bad.write_text('[node]\nae_title = "MUCH_TOO_LONG_AE_TITLE"\n')
    with pytest.raises(SpecError, match="ae_title"):
        load_config(bad)
    bad.write_text("[destination]\nport = 104\n")
    with pytest.raises(SpecError):
        load_config(bad)


def test_health_command(tmp_path, triage):
    cfg = config(tmp_path)
    args = [
        "serve",
        "--inbox",
        str(tmp_path / "inbox"),
        "--audit",
        str(tmp_path / "audit.jsonl"),
        "--allow",
        "MODALITY",
    ]
    with running(cfg, triage) as node:
        node.write_status()
        result = CliRunner().invoke(main, [*args, "--port", str(node.port), "health"])
        assert result.exit_code == 0 and result.output.startswith("healthy: CXR_EDGE on 127.0.0.1"), (
            result.output
        )
    result = CliRunner().invoke(main, [*args, "--port", str(node.port), "health"])
    assert result.exit_code == 1 and "state stopped" in result.output and "C-ECHO failed" in result.output


def test_sigterm_in_process_finishes_the_current_image(tmp_path, triage, dicoms):
    """stop() while the worker is busy: the audited files are in done/, the rest stay pending."""
    files = dicoms["good"]
    with running(config(tmp_path), triage, worker=False) as node:
        assert send(node, files) == [0] * len(files)
        started = threading.Event()
        real = node.triage

        def slow(path, *a):
            started.set()
            time.sleep(0.2)
            return real(path, *a)

        node.triage = slow
        node.triage.bundle = real.bundle
        node.start_worker()
        started.wait(10)
    done = list((tmp_path / "inbox" / "done").iterdir())
    pending = list((tmp_path / "inbox" / "pending").iterdir())
    assert len(done) + len(pending) == len(files) and len(done) >= 1 and len(pending) >= 1
    assert len(by_instance(tmp_path / "audit.jsonl")) == len(done)
    status = json.loads((tmp_path / "inbox" / "status.json").read_text())
    assert status["state"] == "stopped" and status["pending"] == len(pending)


def test_grey_png_secondary_capture_keeps_its_size(tmp_path):
    """The SC picture is downscaled to at most 1024 px and carries a text band."""
    from cxr_edge.serve.results import build_sc, result_lines

    header = _read(write_radiograph(tmp_path / "a.dcm", stored_from_image(load_samples()[0].file, 1200)))
    record = {
        "instance": "0" * 64,
        "bundle": {"name": "b", "sha256": "f" * 64},
        "decision": "refer",
        "reason": "refer to a radiologist: top probability 0.41 below 0.60",
        "label": None,
        "probs": {"covid": 0.41, "normal": 0.3, "pneumonia_unknown": 0.29},
    }
    image = cv2.resize(np.linspace(0, 1, 1200 * 1200, dtype=np.float32).reshape(1200, 1200), (1200, 1200))
    ds = build_sc(header, record, image, None)
    assert ds.Columns == 1024 and ds.Rows > 1024
    assert result_lines(record)[0].startswith("REFER TO RADIOLOGIST")
    assert "covid" not in " ".join(result_lines(record))  # a referral shows no guess


def test_abstention_band_comes_from_the_config_else_the_bundle_else_the_default(tmp_path, dicoms, caplog):
    """`[triage.abstain]` wins (with a warning); without it the bundle's own band; without both the
    node's default."""
    from tiny_bundle import default_as_format3

    from cxr_edge.bundle.folder import Bundle
    from cxr_edge.ops.quality import ReferralBand
    from cxr_edge.runtime.pipeline import Predictor
    from cxr_edge.serve.config import DEFAULT_REFERRAL

    root = default_as_format3(tmp_path / "b3", abstain=ReferralBand(min_top_prob=1.0))
    predictor = Predictor(Bundle.load(root))
    file = dicoms["good"][0]
    from_bundle = Triage(TriageConfig(), predictor)
    record = from_bundle(file).record
    assert record["abstain"] == {"min_top_prob": 1.0, "min_margin": 0.0, "source": "bundle"}
    assert record["decision"] == "refer" and "below 1.00" in record["reason"]
    assert record["lung_fraction"] is None and record["flags"] == []  # no segmenter
    caplog.set_level(logging.WARNING, logger="cxr_edge.serve")
    configured = Triage(TriageConfig(abstain=ReferralBand(min_top_prob=0.0)), predictor)(file).record
    assert configured["abstain"]["source"] == "config" and configured["decision"] == "classified"
    assert any("replaces the bundle's own band (1.00, 0.00)" in r.getMessage() for r in caplog.records)
    from conftest import FIRST_RELEASE_BUNDLE

    no_band = Predictor(Bundle.load(FIRST_RELEASE_BUNDLE))  # a format-2 bundle: no band of its own
    default = Triage(TriageConfig(), no_band)(file).record
    assert default["abstain"] == {
        "min_top_prob": DEFAULT_REFERRAL.min_top_prob,
        "min_margin": DEFAULT_REFERRAL.min_margin,
        "source": "default",
    }
    assert not any(i in json.dumps(record) for i in IDENTIFIERS)


@pytest.mark.train
def test_audit_records_carry_lung_fraction_and_flags(tiny_segmenter_bundle, tmp_path):
    from cxr_edge.bundle.folder import Bundle
    from cxr_edge.ops.quality import QualityConfig
    from cxr_edge.runtime.pipeline import Predictor
    from cxr_edge.serve.results import result_lines

    predictor = Predictor(Bundle.load(tiny_segmenter_bundle))
    # The tiny bundle works at 32 px; its samples are small: the resolution check is not what is tested.
    triage = Triage(
        TriageConfig(quality=QualityConfig(min_side=8, min_frontal_score=float("-inf"))), predictor
    )
    seen = set()
    for i, sample in enumerate(load_samples()[:8]):
        dcm = write_radiograph(tmp_path / f"{i}.dcm", stored_from_image(sample.file))
        record = triage(dcm).record
        want = predictor.predict_file(dcm)
        assert record["abstain"]["source"] == "bundle"
        if want.lung_fraction is None:
            assert record["lung_fraction"] is None
        else:
            assert record["lung_fraction"] == pytest.approx(
                want.lung_fraction, abs=1e-3
            )  # 12-bit DICOM pixels
        assert record["flags"] in ([], ["evidence outside the lungs"])
        if record["flags"]:
            assert "Warning: evidence outside the lungs" in result_lines(record)
        seen.add(bool(record["flags"]))
    assert True in seen


def test_compressed_and_uncompressed_files_travel_on_one_association(tmp_path, triage, dicoms):
    """JPEG 2000 and RLE files next to Explicit LE ones: each gets its own presentation context."""
    from pydicom import dcmread

    from cxr_edge.imaging.synth import encode

    files = []
    for syntax in ("j2k_lossless", "rle"):
        ds = dcmread(dicoms["good"][0])  # 12-bit stored values
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.10.9.{len(files)}"
        assert encode(ds, syntax)
        files.append(tmp_path / f"{syntax}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    files.append(dicoms["good"][1])
    with running(config(tmp_path), triage) as node:
        assert send(node, files) == [0, 0, 0]
        assert node.wait_idle(60)
    decisions = [r["decision"] for r in read_records(tmp_path / "audit.jsonl")]
    assert len(decisions) == 3 and set(decisions) <= {"classified", "refer"}


def test_an_intact_resend_of_an_instance_that_failed_to_decode_is_triaged(tmp_path, triage, dicoms):
    """The first copy of a SOP Instance UID no longer wins when it could not be read: the audit log
    keeps the failed copy's record and the intact copy's decision; a third copy is a duplicate."""
    from pydicom import dcmread

    from cxr_edge.imaging.synth import encode, with_pixel_data

    ds = dcmread(dicoms["good"][2])
    assert encode(ds, "jpeg_baseline")
    intact, damaged = tmp_path / "intact.dcm", tmp_path / "damaged.dcm"
    ds.save_as(intact, enforce_file_format=True)
    cut = with_pixel_data(ds, lambda frame: frame[: len(frame) // 2] + b"\xff\xd9")  # end marker kept
    cut.save_as(damaged, enforce_file_format=True)
    with running(config(tmp_path), triage) as node:
        assert send(node, [damaged]) == [0]
        assert node.wait_idle(30)
        assert send(node, [intact, intact]) == [0, 0]
        assert node.wait_idle(30)
        assert node.counts["duplicate"] == 1
    records = by_instance(tmp_path / "audit.jsonl")[instance_key(str(ds.SOPInstanceUID))]
    assert records[0]["check"] == "read" and "premature end" in records[0]["reason"]
    assert len(records) == 2 and records[1]["decision"] in ("classified", "refer")


def test_the_shipped_config_uses_the_bundle_band():
    """configs/serve.toml once set 0.6 over the default bundle's tempered band (0.38): 28 of 32 referred."""
    cfg = load_config(REPO / "configs" / "serve.toml")
    assert cfg.triage.abstain is None
    triage = Triage(cfg.triage)
    band = triage.predictor.ensemble.abstain
    assert triage.abstain == {
        "min_top_prob": band.min_top_prob,
        "min_margin": band.min_margin,
        "source": "bundle",
    }
