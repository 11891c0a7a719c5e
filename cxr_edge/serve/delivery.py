"""Results to the destination: a first try per image, the durable outbox, redelivery in batches.

:meth:`Delivery.deliver` builds an image's DICOM results (SR and/or SC) and sends them on one
association, or queues them in the outbox when the destination is down (or when earlier results still
wait there: a dead PACS costs one failed association per retry round, not one per image). A thread
retries the outbox when entries are due (:meth:`Delivery.redeliver_due`), in batches on one
association, and writes a ``delivery`` audit record for each entry delivered late or dead-lettered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from cxr_edge.serve.audit import DELIVERY, UNREAD_CHECKS, AuditLog
from cxr_edge.serve.config import DestinationConfig
from cxr_edge.serve.outbox import Outbox
from cxr_edge.serve.triage import Triaged

log = logging.getLogger("cxr_edge.serve")

SUCCESS = 0x0000
_REDELIVER_POLL_S = 1.0
_REDELIVER_BATCH = 8  # entries per association (an SR and a <= 1024-px SC each: about 3 MiB)


class Delivery:
    """The destination's side of the node.

    Args:
        dest: The destination (None: delivery is off, every record says so).
        calling_ae: The node's AE title (the calling AE of its associations).
        outbox: The durable outbox.
        audit: The audit log (for ``delivery`` records).
        counts: The node's counters (``delivered``, ``delivery_queued``, ``redelivered``...).
        on_error: Where an unexpected redelivery failure is reported (the node's status).
    """

    def __init__(
        self,
        dest: DestinationConfig | None,
        calling_ae: str,
        outbox: Outbox,
        audit: AuditLog,
        counts: Counter,
        on_error: Callable[[str], None],
    ):
        self.dest = dest
        self.calling_ae = calling_ae
        self.outbox = outbox
        self.audit = audit
        self.counts = counts
        self.on_error = on_error
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._round_lock = threading.Lock()  # held by a redelivery round (records and counts included)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts the redelivery thread (nothing to do without a destination)."""
        if self.dest is not None:
            self._thread = threading.Thread(target=self._loop, name="cxr-edge-redelivery", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stops the redelivery thread; a try in flight ends within the destination's timeout."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def wake(self) -> None:
        """Makes the redelivery thread look at the outbox now."""
        self._wake.set()

    def deliver(self, path: Path, triaged: Triaged) -> dict:
        """Sends the DICOM result(s) to the destination, or queues them in the outbox; never raises.

        While earlier results wait in the outbox (the destination was down a moment ago) new ones are
        queued behind them without a try of their own, so a dead PACS costs one failed association
        per retry round, not one per image.
        """
        dest = self.dest
        record = triaged.record
        if dest is None:
            return {"status": "off"}
        if record["decision"] == "rejected" and (
            record["check"] in UNREAD_CHECKS or not dest.send_rejections
        ):
            return {"status": "skipped"}
        from cxr_edge.serve.results import build_results, read_header

        kinds = ["sr", "sc"] if dest.kind == "both" else [dest.kind]
        timings = record.setdefault("timings_ms", {})
        t0 = time.perf_counter()
        try:
            header = read_header(path)
            pred = triaged.prediction
            heat = (
                pred.heatmap(triaged.image.shape) if pred is not None and triaged.image is not None else None
            )
            datasets = build_results(dest.kind, header, record, triaged.image, heat)
            timings["results"] = round((time.perf_counter() - t0) * 1000, 1)
        except Exception as exc:  # a result that cannot be built will not build on a retry either
            self.counts["delivery_failed"] += 1
            return {"status": "failed", "kinds": kinds, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        key = record["instance"]
        if key in self.outbox:  # queued before a crash, triaged again: the queued results stand
            return {"status": "queued", "kinds": kinds, "error": "queued before a restart"}
        if self.outbox.waiting():
            error = "queued behind earlier results waiting for the destination"
        else:
            t0 = time.perf_counter()
            error = self._send(datasets)
            timings["send"] = round((time.perf_counter() - t0) * 1000, 1)
            if error is None:
                self.counts["delivered"] += 1
                return {"status": "sent", "kinds": kinds}
        self.outbox.put(key, datasets, error)  # durable before the audit record (see outbox.py)
        self.counts["delivery_queued"] += 1  # tried by the redelivery thread's next poll once due
        return {"status": "queued", "kinds": kinds, "error": error}

    def _send(self, datasets: list) -> str | None:
        """One delivery try of ``datasets``; returns None when every C-STORE succeeded, else why not."""
        statuses, error = self._store(datasets)
        if error is None and any(s != SUCCESS for s in statuses):
            error = f"statuses {[hex(s) for s in statuses]}"
        return error

    def _store(self, items: list) -> tuple[list[int], str | None]:
        """C-STOREs datasets, or stored files as they are, to the destination on one association.

        Returns:
            One status per item (-1 when the association failed) and why it failed (None when it held).
        """
        from cxr_edge.serve.scu import send_datasets, send_files

        dest = self.dest
        send = send_files if items and isinstance(items[0], Path) else send_datasets
        try:
            statuses = send(
                items, dest.host, dest.port, dest.ae_title, self.calling_ae, dest.timeout_s,
                tls=dest.tls,
            )  # fmt: skip
        except Exception as exc:  # no association, TLS refused, aborted, an unreadable stored file...
            return [-1] * len(items), f"{type(exc).__name__}: {str(exc)[:200]}"
        return statuses, None

    def _loop(self) -> None:
        """Retries queued results when due; records the ones delivered late or dead-lettered."""
        while not self._stop.is_set():
            self._wake.wait(_REDELIVER_POLL_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.redeliver_due()
            except Exception as exc:  # e.g. the audit log cannot be written: the entry stays queued
                self.on_error(f"redelivery: {type(exc).__name__}: {exc}")
                log.error("redelivery failed (%s); results stay in the outbox", type(exc).__name__)

    def redeliver_due(self) -> int:
        """One retry round over the due entries; returns how many were delivered.

        Due entries go in batches of ``_REDELIVER_BATCH`` on one association each (the stored files as
        they are, not decoded): after an outage the backlog drains faster than the worker refills it.
        A round stops at the first batch that delivers nothing (the destination is still down: the
        others wait for their own time); after a success every waiting entry is made due, so a PACS
        that comes back is drained at once rather than over the back-off schedule.
        """
        with self._round_lock:
            return self._redeliver_round()

    def _redeliver_round(self) -> int:
        due = self.outbox.due()
        delivered = 0
        for start in range(0, len(due), _REDELIVER_BATCH):
            if self._stop.is_set():
                break
            batch = due[start : start + _REDELIVER_BATCH]
            files = [entry.files for entry in batch]
            flat = [path for paths in files for path in paths]
            # Entries whose files all went before a crash (folder not yet removed) need no association.
            statuses, round_error = self._store(flat) if flat else ([], None)
            before = delivered
            for entry, paths in zip(batch, files, strict=True):
                mine, statuses = statuses[: len(paths)], statuses[len(paths) :]
                sent = []
                for path, status in zip(paths, mine, strict=True):
                    if status == SUCCESS:
                        self.outbox.sent(entry, path)
                        sent.append(path.stem)
                failed = [hex(s) for s in mine if s != SUCCESS]
                error = round_error or (f"statuses {failed}" if failed else None)
                if self._settle(entry, sent, error):
                    delivered += 1
            if before == 0 < delivered:
                self.outbox.bring_forward()
                self._wake.set()  # the entries made due now are not in this round's list
            if delivered == before:
                if round_error:
                    log.warning("redelivery of %d results failed: %s", len(batch), round_error)
                break  # the destination is still unreachable or refuses
        return delivered

    def _settle(self, entry, sent: list[str], error: str | None) -> bool:
        """Records one entry's try: delivered (True), failed again, or dead-lettered."""
        queued_s = round(time.time() - float(entry.state["first_failure"]), 1)
        tries = int(entry.state["tries"]) + 1
        if error is None:
            self.audit.append(
                {"instance": entry.key, "status": "sent", "tries": tries, "kinds": sent,
                 "error": None, "queued_s": queued_s},
                event=DELIVERY,
            )  # fmt: skip
            self.outbox.done(entry)
            self.counts["redelivered"] += 1
            return True
        if self.outbox.failed(entry, error):
            self.audit.append(
                {"instance": entry.key, "status": "dead", "tries": tries, "kinds": sent,
                 "error": error, "queued_s": queued_s},
                event=DELIVERY,
            )  # fmt: skip
            self.counts["dead_lettered"] += 1
            log.error("%s results dead-lettered after %d tries: %s", entry.key[:12], tries, error)
        else:
            self.counts["redelivery_failed"] += 1
        return False

    def wait_delivered(self, idle: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Waits until ``idle()`` (nothing pending) and the outbox is empty; returns whether it got there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if idle() and not self.outbox.waiting():
                with self._round_lock:  # a round that emptied the outbox writes its records first
                    if not self.outbox.waiting():
                        return True
            self._wake.set()
            time.sleep(0.05)
        return False
