"""Durable retry of result delivery: the outbox on its own, and the node with a PACS that is down."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_serve import config, dicoms, running, send, triage  # noqa: F401 - fixtures used below

from cxr_edge.benchmarks.peers import free_port
from cxr_edge.cli import main
from cxr_edge.errors import SpecError
from cxr_edge.serve import Node, read_records
from cxr_edge.serve.config import DestinationConfig
from cxr_edge.serve.outbox import Backoff, Outbox


class _Pacs:
    """A Storage SCP on a given port standing in for a PACS; keeps what it receives (by SOP UID)."""

    def __init__(self, port: int):
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        self.received: list[Dataset] = []
        ae = AE(ae_title="PACS")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(
            ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def _store(self, event) -> int:
        self.received.append(event.dataset)
        return 0

    def stop(self) -> None:
        self.server.shutdown()


def _result(uid: str, modality: str = "SR") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.SOPInstanceUID = uid
    ds.Modality = modality
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return ds


def test_backoff_doubles_up_to_its_cap():
    b = Backoff(first_s=10, max_s=60, max_tries=5)
    assert [b.wait_s(t) for t in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]


def test_outbox_keeps_the_first_results_retries_and_dead_letters(tmp_path):
    box = Outbox(tmp_path / "outbox", Backoff(first_s=10, max_s=100, max_tries=3))
    uid = generate_uid()
    entry = box.put("k1", [_result(uid), _result(generate_uid(), "OT")], "no association", now=1000.0)
    assert [p.name for p in entry.files] == ["sr.dcm", "sc.dcm"]
    assert entry.state["next_at"] == 1010.0 and "k1" in box and box.waiting()
    # Triaged again after a crash: the queued results stand (same bytes are re-sent, never new ones).
    again = box.put("k1", [_result(generate_uid())], "other", now=2000.0)
    assert again.state["first_failure"] == 1000.0 and len(again.files) == 2
    assert box.due(now=1009.0) == [] and [e.key for e in box.due(now=1010.0)] == ["k1"]
    assert not box.failed(entry, "still down", now=1010.0)  # try 2: next in 20 s
    (entry,) = box.entries()
    assert entry.state["tries"] == 2 and entry.state["next_at"] == 1030.0
    box.bring_forward(now=1011.0)
    assert [e.key for e in box.due(now=1011.0)] == ["k1"]
    stats = box.stats(now=1011.0)
    assert stats["queued"] == 1 and stats["oldest_failure_s"] == 11.0 and stats["most_tries"] == 2
    assert box.failed(box.entries()[0], "still down", now=1012.0)  # try 3 = max_tries: dead
    assert not box.waiting() and (tmp_path / "outbox" / "dead" / "k1" / "sr.dcm").exists()
    assert box.stats()["dead"] == 1
    # A partial entry left by a crash while being written is removed at start-up.
    (tmp_path / "outbox" / "tmp" / "k2.123").mkdir()
    assert Outbox(tmp_path / "outbox").clean_partials() == 1


def test_destination_retry_settings_are_checked():
    with pytest.raises(SpecError, match="retry"):
        DestinationConfig(ae_title="PACS", retry_s=0)
    with pytest.raises(SpecError, match="retry"):
        DestinationConfig(ae_title="PACS", retry_s=20, retry_max_s=10)


def test_results_wait_for_a_pacs_that_is_down_and_survive_a_restart(tmp_path, triage, dicoms):  # noqa: F811
    port = free_port()  # nothing listens there yet: the PACS is down
    dest = DestinationConfig(ae_title="PACS", port=port, kind="sr", timeout_s=5, retry_s=0.2, retry_max_s=0.5)
    cfg = config(tmp_path, destination=dest)
    files = dicoms["good"][:3]
    with running(cfg, triage) as node:
        assert send(node, files) == [0, 0, 0]
        assert node.wait_idle(60)
        assert node.outbox.stats()["queued"] == 3
        node.write_status()
        # `serve health` shows what waits (no C-ECHO: the node's own port is not in cfg).
        result = CliRunner().invoke(
            main, ["serve", "--inbox", cfg.storage.inbox, "health", "--no-echo", "--max-age", "60"]
        )
        assert "outbox: 3 queued, 0 dead-lettered" in result.output, result.output
    triaged = list(read_records(tmp_path / "audit.jsonl"))
    assert [r["delivery"]["status"] for r in triaged] == ["queued"] * 3
    # The node is restarted; the PACS comes back; the results arrive once each, from the outbox.
    pacs = _Pacs(port)
    try:
        with running(cfg, triage) as node:
            assert node.wait_delivered(60)
            assert node.counts["redelivered"] == 3
    finally:
        pacs.stop()
    uids = [str(ds.SOPInstanceUID) for ds in pacs.received]
    assert len(uids) == 3 and len(set(uids)) == 3
    late = list(read_records(tmp_path / "audit.jsonl", event="delivery"))
    assert sorted(r["instance"] for r in late) == sorted(r["instance"] for r in triaged)
    assert all(r["status"] == "sent" and r["tries"] >= 2 and r["kinds"] == ["sr"] for r in late)
    assert len(list(read_records(tmp_path / "audit.jsonl"))) == 3  # still one triage record each
    assert not any((tmp_path / "inbox" / "outbox" / "queued").iterdir())


def test_results_are_dead_lettered_after_max_tries(tmp_path, triage, dicoms):  # noqa: F811
    dest = DestinationConfig(
        ae_title="PACS", port=free_port(), kind="sr", timeout_s=5, retry_s=0.05, retry_max_s=0.05, max_tries=3
    )
    with running(config(tmp_path, destination=dest), triage) as node:
        assert send(node, dicoms["good"][:1]) == [0]
        assert node.wait_delivered(60)  # the outbox empties: into dead/
        assert node.counts["dead_lettered"] == 1
    (dead,) = read_records(tmp_path / "audit.jsonl", event="delivery")
    assert dead["status"] == "dead" and dead["tries"] == 3 and "NetworkError" in dead["error"]
    assert (tmp_path / "inbox" / "outbox" / "dead" / dead["instance"] / "sr.dcm").exists()


def test_new_results_queue_behind_waiting_ones_without_a_try(tmp_path, triage, dicoms):  # noqa: F811
    dest = DestinationConfig(ae_title="PACS", port=free_port(), kind="sr", timeout_s=5, retry_s=300)
    cfg = config(tmp_path, destination=dest)
    node = Node(cfg, triage).start(worker=False)
    try:
        assert send(node, dicoms["good"][:2]) == [0, 0]
        first, second = (node.process(p) for p in node.inbox.pending())
    finally:
        node.stop()
    assert first["delivery"]["error"].startswith("NetworkError")
    assert second["delivery"] == {
        "status": "queued",
        "kinds": ["sr"],
        "error": "queued behind earlier results waiting for the destination",
    }
    queued = tmp_path / "inbox" / "outbox" / "queued" / first["instance"]
    state = json.loads((queued / "state.json").read_text())
    assert state["tries"] == 1 and state["next_at"] - state["first_failure"] == pytest.approx(300)
    assert dataclasses.asdict(dest)["max_tries"] == 20  # the default when not configured
