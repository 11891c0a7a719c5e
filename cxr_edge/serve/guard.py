"""What a peer may cost the node: associations per peer, instances and bytes per association, PDU size,
and the calling-AE allow-list; every refusal is answered and audited without identifiers.

pynetdicom reads a PDU whole before anything sees it (a peer may declare a 4 GiB PDU) and keeps each
received dataset in memory until it is complete, with no limit of its own. So the guard wraps each
connection's ``recv`` (at ``EVT_CONN_OPEN``, before the association's thread reads anything) and counts
what arrives: a PDU longer than ``max_pdu_kb``, a dataset longer than ``max_file_mb`` or an association
past ``max_association_mb`` gets an A-ABORT and the connection is closed; nothing more is read from it,
so memory stays bounded by about ``max_associations x max_file_mb``. Its unacknowledged instance is sent
again by the modality, on a new association.

=================================  =========================================  ===========================
limit                              answer                                     audit ``check``
=================================  =========================================  ===========================
calling AE not in ``node.allow``   A-ASSOCIATE-RJ (permanent, AE unknown)     ``calling_ae``
``max_associations_per_peer``      A-ASSOCIATE-RJ (transient, local limit)    ``associations_per_peer``
``max_instances_per_association``  C-STORE 0xA700 (out of resources)          ``instances_per_association``
``max_file_mb`` (dataset bytes)    A-ABORT                                    ``instance_bytes``
``max_association_mb``             A-ABORT                                    ``association_bytes``
``max_pdu_kb``                     A-ABORT                                    ``pdu_bytes``
inbox full, disk low, write fails  C-STORE 0xA700                             ``max_pending``...
=================================  =========================================  ===========================

Audit records (``event`` ``"refused"``): ``instance`` (SHA-256 of the SOP Instance UID, or null before
a C-STORE), ``calling_ae``, ``peer`` (the sender's IP address: a device, not a patient), ``check``,
``reason``, ``answer``, ``suppressed`` (refusals of the same kind from the same peer not recorded since
the last record: one record per peer and kind every :data:`AUDIT_EVERY_S` seconds, so a flood cannot
fill the log).
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import time
from collections import Counter

from cxr_edge.serve.audit import AuditLog
from cxr_edge.serve.config import LimitsConfig, NodeConfig

log = logging.getLogger("cxr_edge.serve")

REFUSED = "refused"
#: At most one audit record per peer and kind of refusal in this many seconds.
AUDIT_EVERY_S = 10.0
# A-ABORT PDU: type 7, length 4, source 2 (service provider), reason 0 (not specified).
_A_ABORT = bytes((0x07, 0, 0, 0, 0, 4, 0, 0, 2, 0))
_P_DATA = 0x04


class _Connection:
    """What one connection has sent so far."""

    def __init__(self, peer: str):
        self.peer = peer
        self.calling_ae = ""
        self.instances = 0
        self.bytes = 0
        self.dataset = 0  # bytes of the dataset being received
        self.pdu_type = 0
        self.body_left = 0  # bytes of the current PDU's body still to read (0: a header comes next)
        self.closed = False


class Guard:
    """The node's per-association and per-peer limits (see the module docstring).

    Args:
        limits: The ``[limits]`` section.
        node: The ``[node]`` section (its allow-list).
        audit: Where refusals are recorded.
        counts: The node's counters (``refused_<check>`` are added).
    """

    def __init__(self, limits: LimitsConfig, node: NodeConfig, audit: AuditLog, counts: Counter):
        self.limits = limits
        self.allow = frozenset(node.allow)
        self.audit = audit
        self.counts = counts
        self._connections: dict[int, _Connection] = {}
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: Counter = Counter()

    def handlers(self) -> list:
        """pynetdicom event handlers to bind to the server."""
        from pynetdicom import evt

        return [
            (evt.EVT_CONN_OPEN, self._on_open),
            (evt.EVT_CONN_CLOSE, self._on_close),
            (evt.EVT_REQUESTED, self._on_requested),
        ]

    # -------------------------------------------------------------------------------- connections

    def _on_open(self, event) -> None:
        address = event.address[0] if isinstance(event.address, tuple) else str(event.address)
        conn = _Connection(str(address))
        with self._lock:
            self._connections[id(event.assoc)] = conn
        sock = event.assoc.dul.socket
        sock.recv = self._counting(sock.recv, sock, event.assoc, conn)

    def _on_close(self, event) -> None:
        with self._lock:
            self._connections.pop(id(event.assoc), None)

    def _counting(self, recv, sock, assoc, conn: _Connection):
        """``recv`` of one connection, counting PDUs and datasets as they arrive."""
        limits = self.limits
        max_pdu = max(limits.max_pdu_kb << 10, assoc.ae.maximum_pdu_size + 6)

        def counted(nr_bytes: int) -> bytearray:
            if conn.closed:
                return bytearray()  # pynetdicom reads this as a closed connection
            if conn.body_left == 0:  # a PDU header (pynetdicom reads 6 bytes: type, reserved, length)
                data = recv(nr_bytes)
                if len(data) == 6:
                    conn.pdu_type, _, conn.body_left = struct.unpack(">BBL", data)
                    if conn.body_left + 6 > max_pdu:
                        received = f"a PDU of {conn.body_left + 6} bytes"
                        self._abort(sock, conn, "pdu_bytes", received, max_pdu)
                        return bytearray()
                return data
            data = recv(nr_bytes)
            conn.body_left = max(0, conn.body_left - len(data)) if data else 0
            conn.bytes += len(data)
            largest = self._count_datasets(data, conn) if conn.pdu_type == _P_DATA else 0
            if largest > limits.max_file_mb << 20:
                self._abort(sock, conn, "instance_bytes", "a larger dataset", limits.max_file_mb << 20)
                return bytearray()
            if conn.bytes > limits.max_association_mb << 20:
                self._abort(sock, conn, "association_bytes", "more", limits.max_association_mb << 20)
                return bytearray()
            return data

        return counted

    @staticmethod
    def _count_datasets(body: bytes, conn: _Connection) -> int:
        """Adds the dataset fragments of a P-DATA-TF body (PS3.8 9.3.5: items of length, context ID,
        message control header, fragment); a last fragment ends the dataset being received.

        Returns:
            The largest size a dataset reached in this PDU.
        """
        pos, end, largest = 0, len(body), conn.dataset
        while pos + 6 <= end:
            length = struct.unpack_from(">L", body, pos)[0]
            control = body[pos + 5]
            if not control & 0x01:  # a dataset fragment (bit 0 clear), not a command
                conn.dataset += max(0, length - 2)
                largest = max(largest, conn.dataset)
                if control & 0x02:
                    conn.dataset = 0
            pos += 4 + max(length, 2)
        return largest

    def _abort(self, sock, conn: _Connection, check: str, received: str, limit: int) -> None:
        """Audits, then sends an A-ABORT straight on the socket; nothing more is read (pynetdicom sees a
        closed connection)."""
        conn.closed = True
        self.refuse(
            check,
            f"{check.replace('_', ' ')} past the limit",
            answer="A-ABORT",
            peer=conn.peer,
            calling_ae=conn.calling_ae,
            expected=f"at most {limit} bytes",
            received=received,
        )
        with contextlib.suppress(Exception):  # the peer may be gone already
            sock.socket.sendall(_A_ABORT)

    # -------------------------------------------------------------------------------- associations

    def _on_requested(self, event) -> None:
        """A-ASSOCIATE-RQ: the allow-list, then the per-peer count."""
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title or "").strip()
        with self._lock:
            conn = self._connections.get(id(assoc))
            if conn is None:
                return
            conn.calling_ae = calling
            others = [c for k, c in self._connections.items() if k != id(assoc) and not c.closed]
        if self.allow and calling not in self.allow:
            self._reject(assoc, conn, "calling_ae", permanent=True, reason="calling AE title not allowed")
            return
        limit = self.limits.max_associations_per_peer
        same_peer = sum(c.peer == conn.peer for c in others)
        same_ae = sum(c.calling_ae == calling for c in others)
        if max(same_peer, same_ae) >= limit:
            self._reject(
                assoc,
                conn,
                "associations_per_peer",
                permanent=False,
                reason=f"{max(same_peer, same_ae)} associations already open from this peer "
                f"(at most {limit})",
            )

    def _reject(self, assoc, conn: _Connection, check: str, permanent: bool, reason: str) -> None:
        """A-ASSOCIATE-RJ from the EVT_REQUESTED handler (pynetdicom then skips its negotiation)."""
        conn.closed = True
        self.refuse(
            check, reason, answer="A-ASSOCIATE-RJ", peer=conn.peer, calling_ae=conn.calling_ae or None
        )
        if permanent:  # rejected permanent, service user, calling AE title not recognised
            assoc.acse.send_reject(0x01, 0x01, 0x03)
        else:  # rejected transient, service provider (presentation), local limit exceeded
            assoc.acse.send_reject(0x02, 0x03, 0x02)
        assoc.kill()  # as pynetdicom's own rejections: returns once the DUL has sent it and is idle

    # -------------------------------------------------------------------------------- instances

    def admit_instance(self, assoc, key: str) -> int | None:
        """Counts one C-STORE of ``assoc``; returns 0xA700 when past the association's limit, else None."""
        with self._lock:
            conn = self._connections.get(id(assoc))
        if conn is None:
            return None
        conn.instances += 1
        limit = self.limits.max_instances_per_association
        if conn.instances <= limit:
            return None
        self.refuse(
            "instances_per_association",
            f"more than {limit} instances on one association",
            answer="0xA700",
            peer=conn.peer,
            calling_ae=conn.calling_ae,
            instance=key,
        )
        return 0xA700

    def peer_of(self, assoc) -> str | None:
        """The address an association comes from (None when unknown)."""
        with self._lock:
            conn = self._connections.get(id(assoc))
        return conn.peer if conn else None

    # -------------------------------------------------------------------------------- records

    def refuse(
        self,
        check: str,
        reason: str,
        *,
        answer: str,
        peer: str | None = None,
        calling_ae: str | None = None,
        instance: str | None = None,
        expected: str | None = None,
        received: str | None = None,
    ) -> None:
        """Counts a refusal, logs it and writes its audit record (throttled per peer and kind)."""
        self.counts[f"refused_{check}"] += 1
        now = time.monotonic()
        key = (peer or "", check)
        with self._lock:
            if key in self._last and now - self._last[key] < AUDIT_EVERY_S:
                self._suppressed[key] += 1
                log.debug("refused (%s) again from %s", check, peer)
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        log.warning("refused (%s) from %s at %s: %s; answered %s", check, calling_ae, peer, reason, answer)
        record = {
            "instance": instance,
            "calling_ae": calling_ae or None,
            "peer": peer,
            "check": check,
            "reason": reason,
            "answer": answer,
            "expected": expected,
            "received": received,
            "suppressed": suppressed,
        }
        try:
            self.audit.append(record, event=REFUSED)
        except Exception as exc:  # the answer goes out whatever the log can do
            log.error("could not audit a refusal (%s)", type(exc).__name__)
