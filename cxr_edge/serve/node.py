"""The DICOM node: a Storage SCP that stores durably, then triages with a worker, one audit record each.

Receiving (one pynetdicom thread per association): the C-STORE handler writes the instance to the
inbox (temp file, ``fsync``, atomic rename, folder ``fsync``) and only then answers 0x0000. If the
write fails, or the inbox already holds ``max_pending`` files, or the disk is nearly full, or the
association sent more instances than ``[limits]`` allow, it answers 0xA700 (out of resources) and
keeps nothing, so the modality retries later. What a peer may send (associations per peer, bytes per
dataset and association, PDU size, the calling-AE allow-list) is enforced as it arrives by
:mod:`~cxr_edge.serve.guard`; every refusal has an audit record (``event`` ``refused``). Images are
decoded within ``[limits]`` (a worker process with a deadline, see :mod:`cxr_edge.imaging.isolated`).

Back-pressure: the in-memory queue (``queue_size``) only points the worker at files that are already
on disk. When it is full the instance is still stored and acknowledged -- refusing work that is
already safe would only make the modality resend it -- and the worker catches up by rescanning
``pending/``. The limit that really pushes back is ``max_pending`` (and ``min_free_mb``).

Triage (one worker thread): for each pending file, if its instance already has a decision in the
audit log (a re-sent instance), or the file itself has a record (a crash between the record and the
move), the file is moved to ``done/`` without a second record (a copy that could not be read leaves
its instance open: an intact resend is triaged); otherwise it is triaged, the result is delivered to
the destination when one is configured (:mod:`~cxr_edge.serve.delivery`), the record is appended
(``fsync``) and the file moves to ``done/``. The listener itself is :mod:`~cxr_edge.serve.scp`.

Shutdown (SIGTERM/SIGINT): stop accepting associations, let open ones finish for ``drain_s`` seconds
(then abort them: their unacknowledged instances are resent by the modality), finish the image being
triaged, leave the rest in ``pending/`` for the next start. A start first removes partial writes and
resumes everything in ``pending/``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from collections import Counter, deque
from pathlib import Path

from cxr_edge.imaging import isolated
from cxr_edge.serve.audit import AuditLog
from cxr_edge.serve.config import ServeConfig
from cxr_edge.serve.delivery import SUCCESS, Delivery
from cxr_edge.serve.guard import Guard
from cxr_edge.serve.inbox import Inbox, instance_key, key_of
from cxr_edge.serve.outbox import Outbox
from cxr_edge.serve.triage import Triage

log = logging.getLogger("cxr_edge.serve")

OUT_OF_RESOURCES = 0xA700
_RESCAN_IDLE_S = 10.0


class Node:
    """The Storage SCP, its worker and its status file.

    Args:
        config: The node's configuration.
        triage: A ready :class:`Triage` (tests share one); default: built from ``config.triage``.
    """

    def __init__(self, config: ServeConfig, triage: Triage | None = None):
        self.config = config
        self.inbox = Inbox(config.storage.inbox)
        self.audit = AuditLog(config.storage.audit)
        dest = config.destination
        self.outbox = Outbox(self.inbox.root / "outbox", dest.backoff if dest else None)
        self.triage = triage or Triage(config.triage)
        predictor = self.triage.predictor
        predictor.read_options = config.limits.read_options(predictor.read_options)
        self.counts: Counter = Counter()
        self.guard = Guard(config.limits, config.node, self.audit, self.counts)
        self.delivery = Delivery(
            dest, config.node.ae_title, self.outbox, self.audit, self.counts, self._report
        )
        self.queue: queue.Queue[Path] = queue.Queue(maxsize=config.storage.queue_size)
        self.state = "starting"
        self.port: int | None = None
        self.last_error: str | None = None
        self._rescan = threading.Event()
        self._stop_worker = threading.Event()
        self._stop_heartbeat = threading.Event()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._ae = None
        self._server = None
        self._worker: threading.Thread | None = None
        self._heartbeat: threading.Thread | None = None
        self._started = time.time()

    # ------------------------------------------------------------------------------------- life cycle

    def start(self, worker: bool = True) -> Node:
        """Resumes the inbox, starts listening, the worker (unless ``worker=False``) and the heartbeat."""
        removed = self.inbox.clean_partials()
        if removed:
            log.warning("removed %d partial writes (never acknowledged; senders retry them)", removed)
        self._pending = self.inbox.count_pending()
        if self._pending:
            log.info("resuming %d instances left in %s", self._pending, self.inbox.pending_dir)
        if self.outbox.clean_partials():
            log.warning("removed outbox entries cut short by a crash (their images are triaged again)")
        waiting = len(self.outbox.entries())
        if waiting:
            log.info("%d results wait in the outbox for the destination", waiting)
        self._rescan.set()
        isolated.prewarm(self.triage.predictor.read_options)
        self._start_server()
        if worker:
            self.start_worker()
        self.state = "running"
        # The first status file is written before start() returns, so a `serve health` right after a
        # start never finds none (the heartbeat thread alone raced it about 1 run in 3).
        self._write_status_logged()
        self._heartbeat = threading.Thread(target=self._beat, name="cxr-edge-heartbeat", daemon=True)
        self._heartbeat.start()
        node = self.config.node
        band = self.triage.abstain
        log.info(
            "listening as %s on %s:%d (callers: %s); bundle %s; refer below top probability %.2f "
            "or margin %.2f (the %s's band)",
            node.ae_title,
            node.host,
            self.port,
            ", ".join(node.allow) or "any",
            self.triage.bundle["name"],
            band["min_top_prob"],
            band["min_margin"],
            band["source"],
        )
        return self

    def start_worker(self) -> None:
        """Starts the triage worker and the redelivery thread (separate from :meth:`start` so tests can
        hold work back)."""
        self._worker = threading.Thread(target=self._work, name="cxr-edge-worker", daemon=True)
        self._worker.start()
        self.delivery.start()

    def stop(self) -> None:
        """Graceful shutdown: stop accepting, drain associations, finish the current image, keep the rest."""
        if self.state in ("stopping", "stopped"):
            return
        self.state = "stopping"
        self.write_status()
        if self._server is not None:
            self._server.shutdown()  # no new associations
            deadline = time.monotonic() + self.config.node.drain_s
            while self._open_associations() and time.monotonic() < deadline:
                time.sleep(0.05)
            for assoc in self._open_associations():
                assoc.abort()  # unacknowledged instances are resent by the modality
        self._stop_worker.set()
        if self._worker is not None:
            self._worker.join()
        self.delivery.stop()
        self._stop_heartbeat.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        self.audit.close()
        self.state = "stopped"
        self.write_status()
        log.info("stopped; %d instances left in %s", self.inbox.count_pending(), self.inbox.pending_dir)

    def run_forever(self) -> None:
        """Starts, serves until SIGTERM or SIGINT, then shuts down gracefully."""
        stop = threading.Event()

        def on_signal(signum, _frame):
            log.info("%s received: shutting down", signal.Signals(signum).name)
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Waits until nothing is pending or queued (tests, benchmarks); returns whether it got there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle():
                return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------------------------------- receiving

    def _start_server(self) -> None:
        from cxr_edge.serve.scp import start_scp

        self._ae, self._server = start_scp(
            self.config.node,
            self._on_store,
            lambda _address, _reason: self.counts.update(["tls_refused"]),
            guard=self.guard.handlers(),
            max_associations=self.config.limits.max_associations,
        )
        self.port = int(self._server.server_address[1])

    def _open_associations(self) -> list:
        return [a for a in self._ae.active_associations if a.is_acceptor] if self._ae else []

    def _on_store(self, event) -> int:
        """C-STORE handler: durable write first, then the acknowledgement."""
        from pynetdicom.dsutils import encode_file_meta

        storage = self.config.storage
        key = instance_key(str(event.request.AffectedSOPInstanceUID))
        status = self.guard.admit_instance(event.assoc, key)
        if status is not None:
            return status
        try:
            if self._pending >= storage.max_pending:
                self._refused("max_pending", f"the inbox holds {self._pending} instances", event, key)
                return OUT_OF_RESOURCES
            if self.inbox.free_mb() < storage.min_free_mb:
                self._refused("min_free_mb", f"less than {storage.min_free_mb} MiB free", event, key)
                return OUT_OF_RESOURCES
            meta = event.file_meta
            meta.SourceApplicationEntityTitle = event.assoc.requestor.ae_title
            data = b"".join(
                (b"\0" * 128, b"DICM", encode_file_meta(meta), event.encoded_dataset(include_meta=False))
            )
            if len(data) > self.config.limits.max_file_mb << 20:  # the guard aborts long before
                self._refused("instance_bytes", f"an instance of {len(data)} bytes", event, key)
                return OUT_OF_RESOURCES
            path = self.inbox.store(data, key)
        except Exception as exc:  # disk full, permissions, vanished folder: nothing acknowledged
            self.last_error = f"store failed: {type(exc).__name__}: {exc}"
            log.error("could not store a received instance (%s): answering 0xA700", type(exc).__name__)
            self._refused("store_failed", f"the inbox write failed ({type(exc).__name__})", event, key)
            return OUT_OF_RESOURCES
        with self._pending_lock:
            self._pending += 1
        self.counts["received"] += 1
        try:
            self.queue.put_nowait(path)
        except queue.Full:
            self._rescan.set()  # stored and safe; the worker will find it in pending/
        return SUCCESS

    def _refused(self, check: str, reason: str, event, key: str) -> None:
        """A C-STORE answered 0xA700: counted, logged and audited by the guard (no identifiers)."""
        self.guard.refuse(
            check,
            reason,
            answer="0xA700",
            peer=self.guard.peer_of(event.assoc),
            calling_ae=str(event.assoc.requestor.ae_title or "").strip() or None,
            instance=key,
        )

    # ------------------------------------------------------------------------------------- triage

    def _work(self) -> None:
        backlog: deque[Path] = deque()
        last_scan = time.monotonic()
        while not self._stop_worker.is_set():
            if self._rescan.is_set() and not backlog:
                self._rescan.clear()
                backlog.extend(self.inbox.pending())
                last_scan = time.monotonic()
            if backlog:
                path = backlog.popleft()
            else:
                try:
                    path = self.queue.get(timeout=0.2)
                except queue.Empty:
                    if time.monotonic() - last_scan > _RESCAN_IDLE_S:
                        self._rescan.set()  # safety net: never leave a stored file behind
                    continue
            try:
                self.process(path)
            except Exception as exc:  # e.g. the audit log cannot be written: retry later, keep the file
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("triage of %s failed (%s); it stays pending", path.name, type(exc).__name__)
                time.sleep(1.0)

    def process(self, path: Path) -> dict | None:
        """Triages one pending file (or retires it when already audited); returns the new record."""
        if not path.exists():
            return None  # listed twice (queue and rescan) and already done
        key = key_of(path)
        # A copy of an instance already judged is retired; a copy of one whose earlier copy could not
        # be read (corrupt, truncated) is triaged: a modality resending it intact must not be ignored.
        if key in self.audit or self.audit.has_file(path.name):
            self.inbox.mark_done(path)
            self._retired()
            self.counts["duplicate"] += 1
            log.info("%s already in the audit log: moved to done/ without a second record", key[:12])
            return None
        calling_ae, sop_class = _meta(path)
        triaged = self.triage(path, calling_ae, sop_class)
        triaged.record["delivery"] = self.delivery.deliver(path, triaged)
        record = self.audit.append(triaged.record)
        self.inbox.mark_done(path)
        self._retired()
        self.counts[record["decision"]] += 1
        # What and why, never who: the reason names a check or a probability, not the patient.
        why = record["label"] or (record["reason"] if record["decision"] != "classified" else "") or ""
        log.info(
            "%s %s: %s (%.0f ms)", key[:12], record["decision"], why, record["timings_ms"].get("total", 0.0)
        )
        return record

    def _report(self, error: str) -> None:
        self.last_error = error

    def _retired(self) -> None:
        with self._pending_lock:
            self._pending = max(0, self._pending - 1)

    def redeliver_due(self) -> int:
        """One retry round over the outbox's due entries (:meth:`Delivery.redeliver_due`)."""
        return self.delivery.redeliver_due()

    def wait_delivered(self, timeout: float = 60.0) -> bool:
        """Waits until nothing is pending and the outbox is empty; returns whether it got there."""
        return self.delivery.wait_delivered(self._idle, timeout)

    def _idle(self) -> bool:
        """Nothing received is waiting for triage or being triaged."""
        return self._pending == 0 and self.queue.empty()

    # ------------------------------------------------------------------------------------- status

    def status(self) -> dict:
        """What ``cxr-edge serve health`` reads (no patient identifiers)."""
        node = self.config.node
        return {
            "pid": os.getpid(),
            "state": self.state,
            "ae_title": node.ae_title,
            "host": node.host,
            "port": self.port,
            "started": self._started,
            "heartbeat": time.time(),
            "queue": self.queue.qsize(),
            "pending": self._pending,
            "audited": len(self.audit),
            "counts": dict(self.counts),
            "outbox": self.outbox.stats(),
            "bundle": self.triage.bundle,
            "last_error": self.last_error,
        }

    def write_status(self) -> None:
        """Rewrites the status file atomically."""
        path = self.config.storage.status_path
        with self._status_lock:  # the heartbeat and stop() may write at the same time
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(self.status(), indent=2) + "\n")
            os.replace(tmp, path)

    def _write_status_logged(self) -> None:
        try:
            self.write_status()
        except OSError as exc:
            log.error("cannot write the status file: %s", exc)

    def _beat(self) -> None:
        while not self._stop_heartbeat.wait(self.config.node.heartbeat_s):
            self._write_status_logged()


def _meta(path: Path) -> tuple[str, str]:
    """Calling AE title and SOP Class UID from the file meta the node wrote ("" when unreadable)."""
    from pydicom.filereader import read_file_meta_info

    try:
        meta = read_file_meta_info(path)
    except Exception:
        return "", ""
    return str(meta.get("SourceApplicationEntityTitle", "") or "").strip(), str(
        meta.get("MediaStorageSOPClassUID", "") or ""
    )
