"""The node's limits (issue 29): the calling-AE allow-list, associations per peer, instances, bytes and PDU
size per association, and the per-image decode deadline; each refusal is answered and audited without
identifiers (``event`` ``refused``)."""

from __future__ import annotations

import dataclasses
import json
import socket
import struct
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from cxr_edge.dataset.samples import load_samples
from cxr_edge.errors import SpecError
from cxr_edge.imaging.image import ReadOptions
from cxr_edge.imaging.synth import stored_from_image, write_radiograph
from cxr_edge.serve import Node, Triage, instance_key, load_config, read_records
from cxr_edge.serve.config import LimitsConfig, NodeConfig, ServeConfig, StorageConfig, TriageConfig
from cxr_edge.serve.node import OUT_OF_RESOURCES
from cxr_edge.serve.scu import NetworkError, echo, send_files

DX = "1.2.840.10008.5.1.4.1.1.1.1"


@pytest.fixture(scope="module")
def triage() -> Triage:
    return Triage(TriageConfig(selftest=False))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("dicom")
    samples = load_samples()
    good = [
        write_radiograph(folder / f"g{i}.dcm", stored_from_image(s.file)) for i, s in enumerate(samples[:3])
    ]
    rng = np.random.default_rng(0)
    big = write_radiograph(folder / "big.dcm", (rng.random((1100, 1000)) * 4095).astype(np.uint16))
    return {"good": good, "big": [big]}


def config(tmp_path: Path, **limits) -> ServeConfig:
    return ServeConfig(
        node=NodeConfig(port=0, allow=("MODALITY",), heartbeat_s=0.2, drain_s=1.0),
        storage=StorageConfig(inbox=str(tmp_path / "inbox"), audit=str(tmp_path / "audit.jsonl")),
        limits=LimitsConfig(**limits),
    )


@contextmanager
def running(cfg: ServeConfig, triage: Triage):
    node = Node(cfg, triage).start()
    try:
        yield node
    finally:
        node.stop()


def refusals(tmp_path: Path) -> list[dict]:
    return list(read_records(tmp_path / "audit.jsonl", event="refused"))


def uid_of(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def assert_no_identifiers(tmp_path: Path, files: list[Path]) -> None:
    text = (tmp_path / "audit.jsonl").read_text()
    for f in files:
        assert uid_of(f) not in text
    assert "Bench" not in text and "PAT" not in text


def test_limits_config_and_read_options():
    limits = LimitsConfig()
    options = limits.read_options(ReadOptions(min_side=256, threads=2))
    assert (options.min_side, options.threads) == (256, 2)  # the bundle's decoding is kept
    assert (options.max_bytes, options.max_pixels, options.decode_timeout_s) == (128 << 20, 36_000_000, 20.0)
    assert LimitsConfig(decode_timeout_s=0).read_options(ReadOptions()).decode_timeout_s is None
    with pytest.raises(SpecError):
        LimitsConfig(max_associations_per_peer=0)
    shipped = load_config(Path(__file__).resolve().parents[2] / "configs" / "serve.toml")
    assert shipped.limits == LimitsConfig()


def test_a_caller_not_allowed_is_rejected_and_audited(tmp_path, triage, files):
    with running(config(tmp_path), triage) as node:
        with pytest.raises(NetworkError, match="rejected"):
            send_files(files["good"][:1], "127.0.0.1", node.port, "CXR_EDGE", "INTRUDER", timeout_s=10)
        assert node.counts["refused_calling_ae"] == 1
    [record] = refusals(tmp_path)
    assert record["check"] == "calling_ae" and record["answer"] == "A-ASSOCIATE-RJ"
    assert record["calling_ae"] == "INTRUDER" and record["instance"] is None and record["peer"] == "127.0.0.1"
    assert not list(read_records(tmp_path / "audit.jsonl"))  # no triage record


def test_associations_per_peer_are_limited(tmp_path, triage):
    from pynetdicom import AE

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(DX)
    with running(config(tmp_path, max_associations_per_peer=2), triage) as node:
        held = [ae.associate("127.0.0.1", node.port, ae_title="CXR_EDGE") for _ in range(2)]
        assert all(a.is_established for a in held)
        third = ae.associate("127.0.0.1", node.port, ae_title="CXR_EDGE")
        assert third.is_rejected
        assert (third.acceptor.primitive.result, third.acceptor.primitive.diagnostic) == (2, 2)  # transient
        held[0].release()
        deadline = time.monotonic() + 10
        while True:  # the node sees the release a moment later
            fourth = ae.associate("127.0.0.1", node.port, ae_title="CXR_EDGE")
            if fourth.is_established or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert fourth.is_established
        for a in (held[1], fourth):
            a.release()
    record = refusals(tmp_path)[0]
    assert record["check"] == "associations_per_peer" and record["answer"] == "A-ASSOCIATE-RJ"


def test_instances_past_the_association_limit_get_out_of_resources(tmp_path, triage, files):
    good = files["good"]
    with running(config(tmp_path, max_instances_per_association=2), triage) as node:
        statuses = send_files(good, "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", timeout_s=10)
        assert statuses == [0, 0, OUT_OF_RESOURCES]
        assert send_files(good[2:], "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", timeout_s=10) == [0]
        assert node.wait_idle(60)
    [record] = refusals(tmp_path)
    assert record["check"] == "instances_per_association" and record["answer"] == "0xA700"
    assert record["instance"] == instance_key(uid_of(good[2]))
    assert len(list(read_records(tmp_path / "audit.jsonl"))) == 3
    assert_no_identifiers(tmp_path, good)


def test_a_dataset_past_the_size_limit_aborts_the_association(tmp_path, triage, files):
    """pynetdicom keeps a received dataset in memory whole: the guard counts it as it arrives."""
    with running(config(tmp_path, max_file_mb=1), triage) as node:
        assert files["big"][0].stat().st_size > 2 << 20
        statuses = send_files(files["big"], "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", timeout_s=10)
        assert statuses == [-1]  # no answer: aborted (twice: send_files tries again once)
        assert send_files(
            files["good"][:1], "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", timeout_s=10
        ) == [0]
        assert node.counts["refused_instance_bytes"] == 2
        assert node.wait_idle(60)
    [record] = refusals(tmp_path)  # the second refusal within AUDIT_EVERY_S is counted, not recorded
    assert record["check"] == "instance_bytes" and record["answer"] == "A-ABORT"
    assert not list((tmp_path / "inbox" / "pending").iterdir())


def test_an_oversized_pdu_closes_the_connection(tmp_path, triage):
    with running(config(tmp_path), triage) as node:
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
            # An A-ASSOCIATE-RQ declaring 512 MiB: pynetdicom would read all of it before any check.
            sock.sendall(b"\x01\x00" + struct.pack(">I", 512 << 20))
            reply = sock.recv(64)
            assert reply[:1] == b"\x07"  # A-ABORT
            assert sock.recv(64) == b""  # then closed
        assert echo("127.0.0.1", node.port, "CXR_EDGE", "MODALITY") == 0
    [record] = refusals(tmp_path)
    assert record["check"] == "pdu_bytes" and record["answer"] == "A-ABORT"


def test_a_decode_past_the_deadline_is_rejected_and_audited(tmp_path, triage, files):
    cfg = config(tmp_path, decode_timeout_s=0.001)
    with running(cfg, triage) as node:
        assert node.triage.predictor.read_options.decode_timeout_s == 0.001
        assert send_files(
            files["good"][:1], "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", timeout_s=10
        ) == [0]
        assert node.wait_idle(60)
    [record] = list(read_records(tmp_path / "audit.jsonl"))
    assert record["decision"] == "rejected" and record["check"] == "read"
    assert record["reason"].startswith("DecodeLimitError") and "deadline" in record["reason"]
    triage.predictor.read_options = dataclasses.replace(triage.predictor.read_options, decode_timeout_s=20.0)
    json.dumps(record)  # (a plain JSON record)
