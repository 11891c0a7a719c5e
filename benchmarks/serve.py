"""Throughput of the DICOM node, and what a SIGKILL in the middle of a batch does.

    python -m cxr_edge.benchmarks.serve [--n 100] [--size 1024] [--kill] [--out FILE.json]

Builds ``n`` DX DICOMs (12-bit, ``size`` x ``size``) from kit PNGs with the library's writer
(:func:`cxr_edge.imaging.synth.write_radiograph`), starts ``cxr-edge serve`` in a child process on a
free loopback port, sends them on one association with the library's SCU and
times (a) until every C-STORE is acknowledged (received = durably stored) and (b) until every
instance has its audit record (triaged). With ``--kill`` it then sends another batch, SIGKILLs the
node once a third of it is audited, restarts it, resends what was not acknowledged (as a modality
would) and checks that every instance has exactly one audit record.

:class:`ServerProcess` and :func:`kill_restart` are also used by the tests of this benchmark
(``tests/serve/test_serve_kill.py``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import click
import numpy as np

from cxr_edge.imaging.synth import stored_from_image, write_radiograph
from cxr_edge.serve.audit import read_records
from cxr_edge.serve.inbox import instance_key
from cxr_edge.serve.scu import send_files

KIT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def recode(path: Path, syntax: str) -> Path:
    """Re-encodes a 12-bit file in place in another syntax (:func:`cxr_edge.imaging.synth.encode`)."""
    import pydicom

    from cxr_edge.imaging.synth import encode

    ds = pydicom.dcmread(path)
    if not encode(ds, syntax):
        raise click.UsageError(f"{syntax} cannot hold these 12-bit images")
    ds.save_as(path, enforce_file_format=True)
    return path


def kit_pngs(n: int, seed: int = 0) -> list[Path]:
    """``n`` kit images (NIH and Hannover), chosen with a fixed seed."""
    with open(KIT / "manifest.csv", newline="") as fh:
        rows = [r["path"] for r in csv.DictReader(fh)]
    picked = np.random.default_rng(seed).choice(len(rows), size=n, replace=n > len(rows))
    return [KIT / rows[i] for i in picked]


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``cxr-edge serve`` in a child process (for kill/restart tests and benchmarks).

    Args:
        workdir: Folder for the inbox, audit log and status file.
        port: Port to listen on.
        extra: More ``cxr-edge serve`` options.
    """

    def __init__(self, workdir: Path, port: int, extra: tuple[str, ...] = ()):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.audit = self.workdir / "audit.jsonl"
        self.inbox = self.workdir / "inbox"
        self.status = self.inbox / "status.json"
        self.args = [
            sys.executable,
            "-c",
            "from cxr_edge.cli import main; main()",
            "serve",
            "--port",
            str(port),
            "--allow",
            "MODALITY",
            "--inbox",
            str(self.inbox),
            "--audit",
            str(self.audit),
            *extra,
        ]
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "serve.log"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        """Starts the node and waits until its status file says it is running."""
        self.status.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                if json.loads(self.status.read_text()).get("state") == "running":
                    return self
            except (OSError, json.JSONDecodeError):
                pass
            time.sleep(0.05)
        raise TimeoutError("serve did not start")

    def signal(self, signum: int, timeout: float = 60.0) -> int:
        """Sends a signal and waits for the process to end; returns its exit code."""
        self.proc.send_signal(signum)
        return self.proc.wait(timeout)

    def records(self) -> list[dict]:
        """The audit log's complete records."""
        return list(read_records(self.audit))

    def wait_records(self, n: int, timeout: float = 120.0) -> list[dict]:
        """Waits until the audit log holds at least ``n`` records."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.records()
            if len(records) >= n:
                return records
            time.sleep(0.05)
        raise TimeoutError(f"only {len(self.records())} of {n} records")


def uid_of(path: Path) -> str:
    """SOP Instance UID of a DICOM file."""
    from pydicom.filereader import read_file_meta_info

    return str(read_file_meta_info(path).MediaStorageSOPInstanceUID)


def throughput(files: list[Path], workdir: Path) -> dict:
    """Receives and triages ``files`` with a child-process node; images per minute both ways."""
    server = ServerProcess(workdir, free_port()).start()
    try:
        t0 = time.perf_counter()
        statuses = send_files(files, "127.0.0.1", server.port, "CXR_EDGE", "MODALITY", timeout_s=10)
        t_sent = time.perf_counter() - t0
        records = server.wait_records(len(files))
        t_done = time.perf_counter() - t0
    finally:
        server.signal(signal.SIGTERM)
    totals = [r["timings_ms"]["total"] for r in records]
    return {
        "n": len(files),
        "acknowledged": sum(s == 0 for s in statuses),
        "send_s": round(t_sent, 2),
        "received_per_min": round(len(files) / t_sent * 60),
        "all_triaged_s": round(t_done, 2),
        "triaged_per_min": round(len(files) / t_done * 60),
        "worker_ms_p50": round(float(np.median(totals)), 1),
        "decisions": dict(Counter(r["decision"] for r in records)),
    }


def kill_restart(files: list[Path], workdir: Path) -> dict:
    """SIGKILL the node mid-batch, restart, resend the unacknowledged; count records per instance."""
    port = free_port()
    server = ServerProcess(workdir, port).start()
    statuses: list[int] = []

    def send():
        with contextlib.suppress(Exception):  # the association dies with the node
            statuses.extend(send_files(files, "127.0.0.1", port, "CXR_EDGE", "MODALITY", timeout_s=5.0))

    sender = threading.Thread(target=send)
    sender.start()
    server.wait_records(max(1, len(files) // 3))
    server.proc.kill()
    server.proc.wait()
    sender.join()
    at_kill = len(server.records())
    acked = [f for f, s in zip(files, statuses, strict=False) if s == 0]
    pending_after_kill = len(list((server.inbox / "pending").glob("*.dcm")))
    server.start()
    resend = [f for f in files if f not in acked]
    if resend:
        send_files(resend, "127.0.0.1", port, "CXR_EDGE", "MODALITY", timeout_s=10)
    records = server.wait_records(len(files))
    time.sleep(0.5)  # let a possible (wrong) duplicate appear
    records = server.records()
    server.signal(signal.SIGTERM)
    per_instance = Counter(r["instance"] for r in records)
    expected = {instance_key(uid_of(f)) for f in files}
    return {
        "n": len(files),
        "records_at_kill": at_kill,
        "acknowledged_before_kill": len(acked),
        "pending_in_inbox_after_kill": pending_after_kill,
        "resent": len(resend),
        "records_after_restart": len(records),
        "instances_with_one_record": sum(per_instance[k] == 1 for k in expected),
        "duplicates": sum(c > 1 for c in per_instance.values()),
        "missing": len(expected - set(per_instance)),
    }


@click.command()
@click.option("--n", default=100, show_default=True, type=click.IntRange(1), help="Images per batch.")
@click.option("--size", default=1024, show_default=True, type=click.IntRange(64), help="Image side (px).")
@click.option(
    "--syntax",
    default="explicit_le",
    show_default=True,
    help="Transfer syntax of the sent files (a name of cxr_edge.imaging.synth.SYNTAXES, e.g. j2k_lossless).",
)
@click.option("--kill", is_flag=True, help="Also run the SIGKILL-and-restart check.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Also write the numbers as JSON.")
def main(n: int, size: int, syntax: str, kill: bool, out: str | None) -> None:
    """Measure images per minute received and triaged by `cxr-edge serve` on this machine."""
    result: dict = {"machine": f"{os.cpu_count()} CPUs", "size": size, "syntax": syntax}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dicom"
        folder.mkdir()
        files = [
            write_radiograph(folder / f"{i:04d}.dcm", stored_from_image(p, size))
            for i, p in enumerate(kit_pngs(n))
        ]
        if syntax != "explicit_le":
            files = [recode(f, syntax) for f in files]
        result["mean_file_mib"] = sum(f.stat().st_size for f in files) / len(files) / 2**20
        result["throughput"] = throughput(files, Path(tmp) / "run1")
        if kill:
            more = [
                write_radiograph(folder / f"k{i:04d}.dcm", stored_from_image(p, size))
                for i, p in enumerate(kit_pngs(n, 1))
            ]
            result["kill_restart"] = kill_restart(more, Path(tmp) / "run2")
    text = json.dumps(result, indent=2)
    click.echo(text)
    if out:
        Path(out).write_text(text + "\n")


if __name__ == "__main__":
    main()
