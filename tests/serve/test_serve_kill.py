"""`cxr-edge serve` in a child process: SIGKILL mid-batch and SIGTERM, then restart; one record each."""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest
from test_serve import uid_of

from cxr_edge.benchmarks.serve import ServerProcess, free_port, kill_restart, kit_pngs
from cxr_edge.imaging.synth import stored_from_image, write_radiograph
from cxr_edge.serve import instance_key
from cxr_edge.serve.scu import send_files


@pytest.fixture(scope="module")
def batch(tmp_path_factory, kit_manifest):
    """40 kit images as DX DICOMs (512 px, 12-bit), fixed seed."""
    folder = tmp_path_factory.mktemp("batch")
    return [
        write_radiograph(folder / f"{i:03d}.dcm", stored_from_image(p))
        for i, p in enumerate(kit_pngs(40, seed=3))
    ]


def test_sigkill_mid_batch_then_restart_gives_every_instance_exactly_one_record(tmp_path, batch):
    result = kill_restart(batch, tmp_path)
    assert result["records_at_kill"] < len(batch)  # the node really died mid-batch
    assert result["missing"] == 0 and result["duplicates"] == 0
    assert result["instances_with_one_record"] == len(batch) == result["records_after_restart"]


def test_sigterm_finishes_cleanly_and_a_restart_resumes_the_inbox(tmp_path, batch):
    server = ServerProcess(tmp_path, free_port()).start()
    assert send_files(batch, "127.0.0.1", server.port, "CXR_EDGE", "MODALITY", timeout_s=10) == [0] * len(
        batch
    )
    assert server.signal(signal.SIGTERM) == 0
    status = json.loads(server.status.read_text())
    done = list((server.inbox / "done").iterdir())
    pending = list((server.inbox / "pending").iterdir())
    assert status["state"] == "stopped" and status["pending"] == len(pending)
    assert len(done) + len(pending) == len(batch)
    assert len(server.records()) == len(done)  # every finished image has its record, nothing half-done
    server.start()
    records = server.wait_records(len(batch), timeout=60)
    assert server.signal(signal.SIGTERM) == 0
    counts = Counter(r["instance"] for r in server.records())
    assert set(counts) == {instance_key(uid_of(f)) for f in batch} and set(counts.values()) == {1}
    assert all(r["decision"] in ("classified", "refer", "rejected") for r in records)
    assert "Doe^Jane" not in server.log.read_text() and "PAT-0042" not in server.log.read_text()
