"""The fuzz campaign's ``node`` target: datasets sent over a loopback association to a running node.

The node runs in this process as ``cxr-edge serve`` runs it (its ``[limits]`` defaults: isolated decoding
with a deadline, the guard on every connection), with the shipped bundle. Each input is the raw dataset
of one C-STORE: its first byte picks the transfer syntax and its second the SOP class of the file meta
the sender declares; the rest is sent as it is, never decoded by the sender (pynetdicom's chunked send of
a file). The node must answer with a status (0x0000 stored, or a failure status of its limits), and
every stored instance must get its audit record within the decode deadline, with a typed outcome:
``classified``, ``refer``, or ``rejected`` by a named check. A record whose ``check`` is ``error`` (an
exception the reader or the model did not type), a missing answer, an association the node dropped
without a guard refusal, a missing record, or the node's memory past ``rss_mb`` is a crash.

Seeds: the reader target's DICOM seeds without their file meta, and two seeds large enough for the
models to run (160 x 144, uncompressed and JPEG baseline).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import numpy as np

from cxr_edge.benchmarks.fuzz_targets import reader_seeds

#: SOP classes the sender may declare: Digital X-Ray for Presentation, Secondary Capture, CT.
SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.2")


def _syntaxes() -> tuple[str, ...]:
    from cxr_edge.imaging import synth
    from cxr_edge.imaging.syntaxes import BIG_ENDIAN

    return (*(uid for uid, _, _ in synth.SYNTAXES.values()), BIG_ENDIAN)


def _dataset_of(file: bytes) -> tuple[str, bytes] | None:
    """(transfer syntax, dataset bytes) of a Part 10 file, or None without a file meta group length."""
    import io

    from pydicom import dcmread

    if file[128:132] != b"DICM" or file[132:140] != b"\x02\x00\x00\x00UL\x04\x00":
        return None
    try:
        syntax = str(dcmread(io.BytesIO(file), stop_before_pixels=True).file_meta.TransferSyntaxUID)
    except Exception:
        return None
    return syntax, file[144 + int.from_bytes(file[140:144], "little") :]


class NodeTarget:
    """A node on loopback and an association to it (see the module docstring).

    Args:
        work: Folder of the node's inbox, audit log and the input file.
        wait_s: Longest wait for an audit record (past the node's decode deadline).
        rss_mb: Largest resident memory of this process (the node and the sender).
    """

    name = "node"

    def __init__(self, work: Path, wait_s: float = 60.0, rss_mb: int = 3072):
        from pynetdicom import AE

        from cxr_edge.serve import Node
        from cxr_edge.serve.config import NodeConfig, ServeConfig, StorageConfig, TriageConfig

        self.work = Path(work)
        self.wait_s, self.rss_mb = wait_s, rss_mb
        config = ServeConfig(
            node=NodeConfig(port=0, allow=("FUZZ",), heartbeat_s=1.0, drain_s=1.0),
            storage=StorageConfig(
                inbox=str(self.work / "inbox"), audit=str(self.work / "audit.jsonl"), min_free_mb=64
            ),
            triage=TriageConfig(selftest=False),
        )
        self.node = Node(config).start()
        self.audit = Path(config.storage.audit)
        self._offset = self.audit.stat().st_size if self.audit.exists() else 0
        self.syntaxes = _syntaxes()
        self.ae = AE(ae_title="FUZZ")
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = wait_s
        for sop in SOP_CLASSES:  # one context per syntax: the node accepts one syntax per context
            for syntax in self.syntaxes:
                self.ae.add_requested_context(sop, syntax)
        self.assoc = None
        self.file = self.work / "input.dcm"
        self._n = itertools.count()

    def seeds(self) -> list[bytes]:
        """Datasets of the reader's DICOM seeds and two larger images, each with its syntax byte."""
        from cxr_edge.imaging import synth

        files = [s for s in reader_seeds() if s[128:132] == b"DICM"]
        rng = np.random.default_rng(0)
        big = (rng.random((160, 144)) * 4095).astype(np.uint16)
        for syntax in ("explicit_le", "jpeg_baseline"):
            ds = synth.build_dataset(big, synth.VARIANTS[0], 0)
            synth.encode(ds, syntax)
            files.append(synth.file_bytes(ds))
        out = []
        for f in files:
            split = _dataset_of(f)
            if split and split[0] in self.syntaxes:
                out.append(bytes([self.syntaxes.index(split[0]), 0]) + split[1])
        return out

    def _association(self):
        if self.assoc is None or not self.assoc.is_established:
            self.assoc = self.ae.associate("127.0.0.1", self.node.port, ae_title="CXR_EDGE")
            if not self.assoc.is_established:
                raise RuntimeError("the node refused an association from its allowed caller")
        return self.assoc

    def __call__(self, data: bytes) -> list[str]:
        from pydicom.uid import UID

        from cxr_edge.serve.inbox import instance_key

        syntax = self.syntaxes[data[0] % len(self.syntaxes)] if data else self.syntaxes[0]
        sop = SOP_CLASSES[data[1] % len(SOP_CLASSES)] if len(data) > 1 else SOP_CLASSES[0]
        uid = f"1.2.826.0.1.3680043.10.1017.9.{time.time_ns()}.{next(self._n)}"
        self.file.write_bytes(_part10(sop, uid, syntax, data[2:]))
        if not _sendable(self.file):
            return ["unsendable"]  # the sender cannot frame it: nothing reaches the node
        refusals = self._refusals()
        assoc = self._association()
        reply = _send_raw(assoc, self.file)
        status = int(reply.Status) if "Status" in reply else None
        self._check_memory()
        if status is None:  # no answer: the guard aborted the association, or the node failed
            self.assoc = None
            if self._refusals() > refusals:
                return ["aborted:guard"]
            raise AssertionError(f"no C-STORE answer (syntax {UID(syntax).name}) and no refusal recorded")
        if status != 0x0000:
            if status in (0xA700,) and self._refusals() > refusals:
                # A refused association (e.g. past the instances-per-association limit) is released so
                # that the next input meets the triage again, not the same refusal.
                self.assoc.release()
                self.assoc = None
                return [f"status:{status:#06x}"]
            raise AssertionError(f"C-STORE answered {status:#06x}")
        record = self._record(instance_key(uid))
        check, decision = record.get("check"), record["decision"]
        if check == "error":
            raise AssertionError(f"untyped failure in triage: {record.get('reason')}")
        if check == "read":  # the reason starts with the typed error's class
            return [f"rejected:read:{str(record.get('reason', '')).split(':', 1)[0]}"]
        return [f"{decision}:{check}" if check else decision]

    def _refusals(self) -> int:
        return sum(v for k, v in self.node.counts.items() if k.startswith("refused_"))

    def _record(self, key: str) -> dict:
        """The instance's triage record, waiting for the worker (a hang past ``wait_s`` is a crash)."""
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            with open(self.audit, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
            lines = chunk.split(b"\n")
            for line in lines[:-1]:
                self._offset += len(line) + 1
                record = json.loads(line)
                if record.get("instance") == key and record.get("event") == "triage":
                    return record
            time.sleep(0.005)
        raise TimeoutError(f"no audit record within {self.wait_s} s")

    def _check_memory(self) -> None:
        try:
            text = Path("/proc/self/status").read_text()
        except OSError:
            return
        rss = int(text.split("VmRSS:")[1].split()[0]) >> 10
        if rss > self.rss_mb:
            raise MemoryError(f"node process at {rss} MiB (limit {self.rss_mb})")

    def close(self) -> None:
        """Releases the association and stops the node."""
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()
        self.node.stop()


def _sendable(file: Path) -> bool:
    """Whether pynetdicom's sender can split the file into its meta and dataset (a mutated file meta
    can make it raise before anything is sent: a limit of the sender, not a finding of the node)."""
    import struct

    from pynetdicom.dsutils import split_dataset

    try:
        split_dataset(file)
    except (struct.error, ValueError, EOFError, OSError, KeyError, TypeError):
        return False
    return True


def _send_raw(assoc, file: Path):
    """C-STORE of a file's dataset bytes as they are (pynetdicom's chunked send: never decoded), without
    changing the process's pynetdicom settings for anyone else."""
    from pynetdicom import _config

    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return assoc.send_c_store(str(file))
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


def _part10(sop: str, uid: str, syntax: str, dataset: bytes) -> bytes:
    """A Part 10 file: preamble, a valid file meta declaring ``sop``, ``uid`` and ``syntax``, ``dataset``."""
    import io

    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop)
    meta.MediaStorageSOPInstanceUID = UID(uid)
    meta.TransferSyntaxUID = UID(syntax)
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    return out.getvalue() + dataset
