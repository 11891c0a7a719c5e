"""The append-only JSONL audit log: one line per triaged instance, the source of truth of the node.

Each record is written with one ``write`` of a complete line, flushed and ``fsync``-ed before the
instance's file leaves ``pending/``. On start-up the log is read back: an instance with a decision
on its pixels is done, and so is every inbox file with a record, so a file gets exactly one record
even when the node was killed between the record and the move to ``done/``. An instance whose copy
could not be read (``check`` ``read`` or ``error``: corrupt, truncated) is not done: a later, intact
copy of it is triaged, and the log holds both records. A last line cut short by a crash is ignored
when reading and the next record starts on a fresh line; nothing already written is ever rewritten
or truncated.

Two kinds of record share the log, told apart by ``event``: one ``triage`` record per instance (the
decision), and ``delivery`` records for results that reached the destination only after a retry or
were dead-lettered (see :mod:`cxr_edge.serve.outbox`). Records of schema 1 and 2 have no ``event``
and are triage records.

**Tamper evidence** (schema 4): every record carries ``prev``, the SHA-256 hex of the previous
record's line (its exact bytes, without the newline; :data:`GENESIS` for the first), so a record
removed, inserted, reordered or edited breaks the next record's link; :func:`verify_chain` (``cxr-edge
serve verify-audit LOG``) reports the first broken link. A line torn by a crash is not a record and
is skipped (the next record links to the last complete one). The last record has no successor to
vouch for it: ``verify-audit`` prints the chain's head hash, to be noted elsewhere (a ticket, a
second log) when the log must be proven whole up to a moment.

Triage record schema (``schema`` = 4; 3 lacked ``prev``; 2 also lacked ``event``; 1 also lacked
``lung_fraction``, ``flags`` and ``abstain``); no patient identifiers, no UIDs, no file paths from the
sender:

``schema`` (int), ``event`` (``"triage"``), ``prev`` (the link), ``time`` (UTC ISO 8601, when the
record was written),
``instance`` (SHA-256 hex of
the SOP Instance UID), ``sop_class`` (SOP Class UID of the received object; a class, not an
identifier), ``calling_ae`` (sender's AE title), ``inbox_file`` (name in the inbox), ``bundle``
(``{"name", "sha256"}``: SHA-256 of the bundle's manifest.json, which pins every model file),
``decision`` (``classified``, ``refer`` or ``rejected``), ``label`` (reported label; null unless
classified), ``probs`` (calibrated probabilities; null when rejected), ``per_model``,
``lung_fraction`` (share of the heat map inside the predicted lung mask; null without a segmenter, a
heat map, or when the lung crop fell back), ``flags`` (e.g. ``["evidence outside the lungs"]``),
``abstain`` (the band in force: ``{"min_top_prob", "min_margin", "source": "config"|"bundle"|
"default"}``), ``reason`` (why
referred or rejected, else null), ``check`` (the failed check: a quality check name, ``read`` or
``error``; null otherwise), ``image`` (how the pixels were read: format, size, modality, view, body
part, photometric, transfer syntax...; null when unreadable), ``timings_ms`` (``queue``: received to
start of triage, ``decode``, ``quality``, model stages, ``total``), ``delivery`` (``{"status":
"sent"|"queued"|"failed"|"off"|"skipped", "kinds": [...], "error"}``: ``queued`` = the first try
failed and the results wait in the outbox; ``failed`` = the results could not even be built).

Delivery record: ``schema``, ``event`` (``"delivery"``), ``time``, ``instance``, ``status`` (``sent``
or ``dead``), ``tries``, ``kinds`` (results delivered by this try), ``error`` (the last one, for
``dead``), ``queued_s`` (from the first failure to this record).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

SCHEMA_VERSION = 4
#: ``prev`` of a log's first record.
GENESIS = "0" * 64
TRIAGE, DELIVERY = "triage", "delivery"
#: ``check`` values of records that judged no pixels: the instance may arrive again, intact.
UNREAD_CHECKS = frozenset({"read", "error"})


def read_records(path: str | Path, event: str | None = TRIAGE) -> Iterator[dict]:
    """Yields the complete records of an audit log (a torn last line and foreign lines are skipped).

    Args:
        path: The log.
        event: Only records of this kind (``triage``, the default, or ``delivery``); None: all.
    """
    p = Path(path)
    if not p.exists():
        return
    with open(p, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.endswith("\n"):
                return  # cut short by a crash
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not (isinstance(record, dict) and "instance" in record):
                continue
            if event is None or record.get("event", TRIAGE) == event:
                yield record


class AuditLog:
    """Appends records to the JSONL audit log and knows which instances are already done.

    Args:
        path: The log file (created with its folder when missing).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._done: set[str] = set()
        self._files: set[str] = set()
        # One pass over the log: the instances already done and the head of the hash chain.
        self._head = GENESIS
        for _, body, record in _lines(self.path) if self.path.exists() else ():
            if record is None:
                continue
            self._head = _link(body)
            if record.get("event", TRIAGE) == TRIAGE:
                self._remember(record)
        self._lock = threading.Lock()
        needs_newline = (
            self.path.exists() and self.path.stat().st_size > 0 and not _ends_with_newline(self.path)
        )
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if needs_newline:  # a torn last line: keep it, start the next record on its own line
            self._fh.write("\n")
            self._sync()

    def __contains__(self, instance: str) -> bool:
        """Whether the instance has a decision on its pixels (a copy that could not be read has none)."""
        return instance in self._done

    def __len__(self) -> int:
        return len(self._done)

    def has_file(self, inbox_file: str) -> bool:
        """Whether this inbox file already has a triage record (whatever its decision)."""
        return inbox_file in self._files

    def _remember(self, record: dict) -> None:
        if record.get("check") not in UNREAD_CHECKS:
            self._done.add(record["instance"])
        if record.get("inbox_file"):
            self._files.add(record["inbox_file"])

    def append(self, record: dict, event: str = TRIAGE) -> dict:
        """Writes one record durably (``schema``, ``event`` and ``time`` are added) and returns it.

        Only triage records mark an instance (or, when it could not be read, its inbox file) as done.
        """
        with self._lock:
            full = {
                "schema": SCHEMA_VERSION,
                "event": event,
                "prev": self._head,
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                **record,
            }
            line = json.dumps(full, separators=(",", ":"), allow_nan=False)
            self._fh.write(line + "\n")
            self._sync()
            self._head = _link(line.encode("utf-8"))
            if event == TRIAGE:
                self._remember(full)
        return full

    def _sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Closes the file."""
        with self._lock:
            self._fh.close()


def _link(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _lines(path: Path) -> Iterator[tuple[int, bytes, dict | None]]:
    """``(line number, bytes without the newline, record or None)`` of every complete line."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                return  # cut short by a crash: not a record
            body = raw[:-1]
            try:
                record = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError):
                record = None
            yield number, body, record if isinstance(record, dict) and "instance" in record else None


def chain_head(path: str | Path) -> str:
    """The link the next record of a log carries: the hash of its last complete record (or GENESIS)."""
    p = Path(path)
    head = GENESIS
    if p.exists():
        for _, body, record in _lines(p):
            if record is not None:
                head = _link(body)
    return head


def verify_chain(path: str | Path) -> dict:
    """Checks every link of an audit log.

    Records without ``prev`` (schema 3 and older) may only come before the first linked record; after
    it, every record must link to the one before it.

    Returns:
        ``{"records", "linked", "unlinked", "torn", "head", "broken"}``: ``broken`` is None for an
        intact chain, else ``{"line", "reason"}`` of the first broken link.
    """
    p = Path(path)
    out: dict = {"records": 0, "linked": 0, "unlinked": 0, "torn": 0, "head": GENESIS, "broken": None}
    if not p.exists():
        out["broken"] = {"line": 0, "reason": "no such log"}
        return out
    previous = GENESIS
    chained = False
    for number, body, record in _lines(p):
        if record is None:
            out["torn"] += 1
            continue
        out["records"] += 1
        link = record.get("prev")
        if link is None:
            if chained:
                out["broken"] = {"line": number, "reason": "a record without a link after linked records"}
                return out
            out["unlinked"] += 1
        elif link != previous:
            out["broken"] = {
                "line": number,
                "reason": "its link does not match the record before it "
                "(a record was removed, inserted, reordered or changed)",
            }
            return out
        else:
            chained = True
            out["linked"] += 1
        previous = _link(body)
        out["head"] = previous
    return out


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
