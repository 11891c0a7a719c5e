"""A small DICOM SCU (pynetdicom): send files or datasets with C-STORE, check a node with C-ECHO.

Used by the node to deliver results, by ``cxr-edge serve health``, by the tests and by
``python -m cxr_edge.benchmarks.serve``.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path

from cxr_edge.errors import CxrEdgeError
from cxr_edge.serve.tls import TlsConfig, client_context

_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit, implicit VR little endian


class NetworkError(CxrEdgeError):
    """A DICOM association could not be established or was aborted."""


def _ae(calling_ae: str, timeout_s: float):
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    return ae


def no_delay(assoc) -> None:
    """Turns Nagle's algorithm off on an association's socket (pynetdicom leaves it on).

    With it on, a C-STORE, whose command and data set go out as separate writes, waits for the peer's
    delayed ACK (about 40 ms on Linux): storing a small SR into Orthanc on loopback took 103 ms per
    instance with it and 58 ms without (docs/serve.md, "Load with faults").
    """
    sock = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def associate(ae, host: str, port: int, called_ae: str, tls: TlsConfig | None = None):
    """Opens an association from ``ae`` (with its requested contexts), over TLS when ``tls`` is given.

    Raises:
        NetworkError: Not established (nothing listening, rejected, aborted, TLS refused).
        SpecError: The TLS files cannot be loaded.
    """
    tls_args = (client_context(tls), tls.server_name or host) if tls is not None else None
    assoc = ae.associate(host, port, ae_title=called_ae, tls_args=tls_args)
    no_delay(assoc)
    _keep_responses(assoc)
    if not assoc.is_established:
        state = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise NetworkError(
            "association not established",
            expected=f"{called_ae} accepting at {host}:{port}",
            received=state,
        )
    return assoc


def _keep_responses(assoc) -> None:
    """Works around a race in pynetdicom's requestor (3.0): hands back responses its reactor took.

    ``send_c_store`` pauses the association's reactor thread before sending, but the reactor can be
    between its pause check and its queue read; a fast peer (loopback) then answers so quickly that the
    reactor takes the response off the queue, logs "Received unexpected C-STORE service message" and
    drops it, and the sender waits for the whole DIMSE timeout. Putting the response back lets the
    waiting sender find it. Requests from the peer still go to pynetdicom's handler.
    """
    serve = assoc._serve_request

    def serve_or_return(msg, context_id):
        if not msg.is_valid_request and msg.is_valid_response:
            assoc.dimse.msg_queue.put((context_id, msg))
            return
        serve(msg, context_id)

    assoc._serve_request = serve_or_return


def echo(
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "CXR_EDGE_SCU",
    timeout_s: float = 10.0,
    tls: TlsConfig | None = None,
) -> int:
    """Sends a C-ECHO; returns its status (0 = success).

    Raises:
        NetworkError: No association (nothing listening, wrong AE title, caller not allowed).
    """
    from pynetdicom.sop_class import Verification

    ae = _ae(calling_ae, timeout_s)
    ae.add_requested_context(Verification)
    assoc = associate(ae, host, port, called_ae, tls)
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status else -1
    finally:
        assoc.release()


def send_datasets(
    datasets: Sequence,
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "CXR_EDGE_SCU",
    timeout_s: float = 30.0,
    tls: TlsConfig | None = None,
) -> list[int]:
    """Sends pydicom datasets (each with ``file_meta.TransferSyntaxUID``) on one association.

    Returns:
        One C-STORE status per dataset (0 = success, -1 = no response).

    Raises:
        NetworkError: The association could not be established.
    """
    pairs = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}
    return _send(pairs, list(datasets), host, port, called_ae, calling_ae, timeout_s, tls)


def send_files(
    paths: Iterable[str | os.PathLike],
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "CXR_EDGE_SCU",
    timeout_s: float = 30.0,
    tls: TlsConfig | None = None,
) -> list[int]:
    """Sends DICOM files (as stored, without decoding them) on one association.

    Returns:
        One C-STORE status per file (0 = success; 0xA700 = out of resources, retry later...).

    Raises:
        NetworkError: The association could not be established.
        InputError: A file has no readable DICOM file meta information.
    """
    from pydicom.filereader import read_file_meta_info

    from cxr_edge.errors import InputError

    files = [Path(p) for p in paths]
    pairs = set()
    for f in files:
        try:
            meta = read_file_meta_info(f)
            pairs.add((str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
        except Exception as exc:
            raise InputError(
                "not a DICOM file with file meta", expected="a DICOM Part 10 file", received=f.name
            ) from exc
    return _send(pairs, files, host, port, called_ae, calling_ae, timeout_s, tls)


def _send(pairs, items, host, port, called_ae, calling_ae, timeout_s, tls, retries: int = 1) -> list[int]:
    """Sends every item; those that got no response at all are sent again on a new association.

    An item without a response may or may not have been stored by the peer; sending it again is what a
    modality does, and the node keeps one record per instance whatever it receives twice. (pynetdicom's
    requestor can lose a fast response to its own reactor thread under load; the retry covers that too.)
    """
    ae = _ae(calling_ae, timeout_s)
    by_class: dict[str, set[str]] = {}
    for sop_class, ts in pairs:
        by_class.setdefault(sop_class, set()).add(ts)
    # One presentation context per stored transfer syntax (as dcmtk's storescu proposes them): an
    # acceptor takes one syntax per context, so a single context listing JPEG 2000 and Explicit LE is
    # accepted as Explicit LE and the compressed files then have no context to travel on.
    for sop_class, syntaxes in sorted(by_class.items()):
        for ts in sorted(syntaxes):
            ae.add_requested_context(sop_class, [ts])
        if not syntaxes <= set(_UNCOMPRESSED):
            ae.add_requested_context(sop_class, list(_UNCOMPRESSED))
    statuses = [-1] * len(items)
    todo = list(range(len(items)))
    for attempt in range(retries + 1):
        try:
            assoc = associate(ae, host, port, called_ae, tls)
        except NetworkError:
            if attempt == 0:
                raise
            break
        unanswered = []
        try:
            for i in todo:
                if not assoc.is_established:
                    unanswered.append(i)
                    continue
                item = items[i]
                status = assoc.send_c_store(str(item) if isinstance(item, Path) else item)
                statuses[i] = int(status.Status) if status and "Status" in status else -1
                if statuses[i] == -1:
                    unanswered.append(i)
        finally:
            if assoc.is_established:
                assoc.release()
        todo = unanswered
        if not todo:
            break
    return statuses
