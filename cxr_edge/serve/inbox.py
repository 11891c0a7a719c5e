"""The durable inbox: every received instance is on disk before the C-STORE is acknowledged.

Layout under the inbox folder::

    incoming/   partial writes (``*.part``); never acknowledged, removed at start-up
    pending/    received and acknowledged, waiting for triage (the durable work queue)
    done/       triaged: a result or a rejection is in the audit log

A file is written to ``incoming/``, flushed and ``fsync``-ed, then renamed into ``pending/`` (atomic
on one file system) and the folder is ``fsync``-ed, so an acknowledged instance survives a crash or a
power cut. Names are ``<receive time ns>-<sequence>-<instance key>.dcm``: sortable by arrival, unique
even when a modality sends the same instance twice (nothing received is overwritten), and free of
patient identifiers (the key is the SHA-256 of the SOP Instance UID, see :func:`instance_key`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import threading
import time
from pathlib import Path

from cxr_edge.errors import InputError

_SUFFIX = ".dcm"


def instance_key(sop_instance_uid: str) -> str:
    """The SHA-256 (hex) of a SOP Instance UID: names an instance in files and the audit log."""
    return hashlib.sha256(sop_instance_uid.strip().strip("\0").encode("ascii", "replace")).hexdigest()


def key_of(path: Path) -> str:
    """The instance key encoded in an inbox file name."""
    return path.stem.rsplit("-", 1)[-1]


class Inbox:
    """The inbox folder (see the module docstring).

    Args:
        root: Inbox folder; created when missing.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.pending_dir = self.root / "pending"
        self.done_dir = self.root / "done"
        for folder in (self.incoming, self.pending_dir, self.done_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def clean_partials(self) -> int:
        """Removes partial writes left by a crash (never acknowledged, so the sender retries them)."""
        removed = 0
        for part in self.incoming.glob("*.part"):
            part.unlink(missing_ok=True)
            removed += 1
        return removed

    def store(self, data: bytes, key: str) -> Path:
        """Writes one received instance durably into ``pending/`` and returns its path.

        Raises:
            OSError: The file could not be written, flushed or renamed (the caller answers with a
                failure status so that the sender retries).
        """
        with self._lock:
            name = f"{time.time_ns():020d}-{next(self._seq):06d}-{key}{_SUFFIX}"
        tmp = self.incoming / (name + ".part")
        final = self.pending_dir / name
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.pending_dir)
        return final

    def pending(self) -> list[Path]:
        """Files waiting for triage, oldest first."""
        return sorted(p for p in self.pending_dir.iterdir() if p.suffix == _SUFFIX)

    def count_pending(self) -> int:
        """How many files wait in ``pending/``."""
        return sum(1 for p in self.pending_dir.iterdir() if p.suffix == _SUFFIX)

    def free_mb(self) -> float:
        """Free space on the inbox's file system (MiB)."""
        return shutil.disk_usage(self.root).free / (1024 * 1024)

    def mark_done(self, path: Path) -> Path:
        """Moves a triaged file from ``pending/`` to ``done/`` (atomic; the audit record comes first)."""
        target = self.done_dir / path.name
        if not path.exists():
            if target.exists():
                return target  # already moved (e.g. listed twice)
            raise InputError("inbox file vanished", expected=f"{path.name} in pending/", received="nothing")
        os.replace(path, target)
        fsync_dir(self.done_dir)
        fsync_dir(self.pending_dir)
        return target


def fsync_dir(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
