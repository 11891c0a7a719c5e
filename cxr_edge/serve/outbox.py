"""The durable outbox: DICOM results whose delivery failed, retried with back-off across restarts.

Layout under ``<inbox>/outbox``::

    tmp/            an entry being written (never read; removed at start-up)
    queued/<key>/   one entry per triaged instance: ``sr.dcm`` and/or ``sc.dcm`` (the result objects
                    exactly as first built) and ``state.json`` (tries, next try, last error)
    dead/<key>/     entries that failed ``max_tries`` times (kept for an operator; never deleted)

An entry is written in ``tmp/``, ``fsync``-ed and renamed into ``queued/`` as a whole, before the
instance's audit record is written, so a crash cannot lose a result: either the entry exists or the
inbox file is still pending and is triaged again (rebuilding results with the same deterministic UIDs;
an entry already queued for that key is kept as it is). Retries re-send the stored bytes, so the
destination can only ever receive one object per result (same SOP Instance UID, same content). A
result that reached the destination just before a crash is sent again after the restart; with the
same UID the destination keeps one instance.

``key`` is the instance key (SHA-256 of the source SOP Instance UID): no patient identifiers in names,
states or errors (errors are network statuses and exception types from the SCU).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cxr_edge.serve.inbox import fsync_dir

_STATE = "state.json"


@dataclass(frozen=True)
class Backoff:
    """When to try again: ``first_s`` after the first failure, doubling up to ``max_s``.

    Attributes:
        first_s: Wait after the first failed try.
        max_s: Longest wait between two tries.
        max_tries: Tries (the first delivery included) before an entry is dead-lettered.
    """

    first_s: float = 10.0
    max_s: float = 600.0
    max_tries: int = 20

    def wait_s(self, tries: int) -> float:
        """The wait after ``tries`` failed tries (``tries`` >= 1)."""
        return min(self.max_s, self.first_s * 2 ** max(0, tries - 1))


@dataclass(frozen=True)
class Entry:
    """One queued (or dead) entry.

    Attributes:
        key: Instance key of the source image.
        folder: Its folder.
        state: ``tries``, ``first_failure``, ``next_at`` (epoch s), ``last_error``, ``kinds``.
    """

    key: str
    folder: Path
    state: dict

    @property
    def files(self) -> list[Path]:
        """The result files still to send, in a fixed order (SR before SC)."""
        return sorted(self.folder.glob("*.dcm"), key=lambda p: (p.stem != "sr", p.name))


class Outbox:
    """The outbox folder (see the module docstring).

    Args:
        root: The outbox folder (created when missing).
        backoff: Retry schedule (default: :class:`Backoff`'s).
    """

    def __init__(self, root: str | Path, backoff: Backoff | None = None):
        self.root = Path(root)
        self.backoff = backoff or Backoff()
        self.tmp, self.queued, self.dead = self.root / "tmp", self.root / "queued", self.root / "dead"
        for folder in (self.tmp, self.queued, self.dead):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def clean_partials(self) -> int:
        """Removes entries cut short by a crash while being written (their triage is redone)."""
        removed = 0
        for partial in self.tmp.iterdir():
            shutil.rmtree(partial, ignore_errors=True)
            removed += 1
        return removed

    def put(self, key: str, datasets: list, error: str, now: float | None = None) -> Entry:
        """Queues the results of one instance after a failed first try (durably, before its audit record).

        Args:
            key: Instance key.
            datasets: The result datasets (``sr`` first), as built; each is written with its file meta.
            error: Why the first try failed.
            now: Time of that failure (default: now).

        Returns:
            The queued entry (the one already there when the instance was queued before a crash).
        """
        now = time.time() if now is None else now
        final = self.queued / key
        with self._lock:
            if final.exists():
                return self._entry(final)
            staging = self.tmp / f"{key}.{time.time_ns()}"
            staging.mkdir()
            kinds = []
            for ds in datasets:
                kind = "sr" if str(ds.Modality) == "SR" else "sc"
                kinds.append(kind)
                path = staging / f"{kind}.dcm"
                ds.save_as(path, enforce_file_format=True)
                _fsync_file(path)
            state = {
                "tries": 1,
                "first_failure": now,
                "next_at": now + self.backoff.wait_s(1),
                "last_error": error[:300],
                "kinds": kinds,
            }
            _write_json(staging / _STATE, state)
            fsync_dir(staging)
            os.replace(staging, final)
            fsync_dir(self.queued)
            return Entry(key, final, state)

    def waiting(self) -> bool:
        """Whether any entry is queued (cheap: one directory read, no state files)."""
        return any(True for _ in self.queued.iterdir())

    def __contains__(self, key: str) -> bool:
        return (self.queued / key).exists()

    def entries(self) -> list[Entry]:
        """Queued entries, soonest retry first."""
        out = []
        for folder in self.queued.iterdir():
            entry = self._entry(folder)
            if entry is not None:
                out.append(entry)
        return sorted(out, key=lambda e: e.state["next_at"])

    def due(self, now: float | None = None) -> list[Entry]:
        """Queued entries whose next try is due."""
        now = time.time() if now is None else now
        return [e for e in self.entries() if e.state["next_at"] <= now]

    def sent(self, entry: Entry, path: Path) -> None:
        """One result file of an entry was delivered: it is not sent again."""
        path.unlink(missing_ok=True)
        fsync_dir(entry.folder)

    def done(self, entry: Entry) -> None:
        """Every result of the entry was delivered: the entry goes."""
        with self._lock:
            shutil.rmtree(entry.folder, ignore_errors=True)
            fsync_dir(self.queued)

    def failed(self, entry: Entry, error: str, now: float | None = None) -> bool:
        """Counts a failed try; dead-letters the entry after ``max_tries``. Returns whether it is dead."""
        now = time.time() if now is None else now
        state = dict(entry.state)
        state["tries"] = int(state["tries"]) + 1
        state["last_error"] = error[:300]
        state["next_at"] = now + self.backoff.wait_s(state["tries"])
        with self._lock:
            _write_json(entry.folder / _STATE, state)
            if state["tries"] < self.backoff.max_tries:
                return False
            target = self.dead / entry.key
            if target.exists():  # dead-lettered before, queued again after a re-triage: keep both
                target = self.dead / f"{entry.key}.{time.time_ns()}"
            os.replace(entry.folder, target)
            fsync_dir(self.queued)
            fsync_dir(self.dead)
            return True

    def bring_forward(self, now: float | None = None) -> None:
        """Makes every queued entry due now (the destination answered again: drain without waiting)."""
        now = time.time() if now is None else now
        with self._lock:
            for entry in self.entries():
                if entry.state["next_at"] > now:
                    _write_json(entry.folder / _STATE, {**entry.state, "next_at": now})

    def stats(self, now: float | None = None) -> dict:
        """What ``serve health`` shows: counts, oldest failure, next try and the last error."""
        now = time.time() if now is None else now
        entries = self.entries()
        dead = sum(1 for p in self.dead.iterdir() if p.is_dir())
        if not entries:
            return {"queued": 0, "dead": dead}
        return {
            "queued": len(entries),
            "dead": dead,
            "oldest_failure_s": round(now - min(e.state["first_failure"] for e in entries), 1),
            "next_try_in_s": round(max(0.0, entries[0].state["next_at"] - now), 1),
            "most_tries": max(int(e.state["tries"]) for e in entries),
            "last_error": max(entries, key=lambda e: e.state["next_at"]).state["last_error"],
        }

    def _entry(self, folder: Path) -> Entry | None:
        try:
            state = json.loads((folder / _STATE).read_text())
        except (OSError, json.JSONDecodeError):
            return None  # vanished while listed (sent and removed by the delivery thread)
        return Entry(folder.name, folder, state)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
