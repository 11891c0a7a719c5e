"""The Storage SCP the node listens with: pynetdicom's server, every storage class and syntax accepted,
calling AE titles checked, TCP_NODELAY on every association, the node's guard on every connection
(:mod:`~cxr_edge.serve.guard`), TLS when configured."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cxr_edge.serve.config import NodeConfig

log = logging.getLogger("cxr_edge.serve")


def start_scp(
    node: NodeConfig,
    on_store: Callable,
    on_refused: Callable[[object, str], None],
    guard: list | None = None,
    max_associations: int = 16,
):
    """Starts listening (non-blocking).

    Args:
        node: Address, AE title, allowed callers, TLS.
        on_store: The C-STORE handler (durable write, then the acknowledgement).
        on_refused: Called for each TLS handshake refused.
        guard: More ``(event, handler)`` pairs: the limits of :class:`~cxr_edge.serve.guard.Guard`.
        max_associations: Associations open at once (more are rejected: transient, local limit).

    Returns:
        ``(ae, server)``: pynetdicom's application entity (its associations) and the server.
    """
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
    from pynetdicom.sop_class import Verification

    from cxr_edge.serve.scu import no_delay

    ae = AE(ae_title=node.ae_title)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.require_calling_aet = list(node.allow)
    ae.maximum_associations = max_associations
    # Responses to a modality go out without waiting on its delayed ACKs (see scu.no_delay).
    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_CONN_OPEN, lambda e: no_delay(e.assoc))]
    handlers += list(guard or ())
    if node.tls is None:
        return ae, ae.start_server((node.host, node.port), block=False, evt_handlers=handlers)
    return ae, _start_tls_server(ae, node, handlers, on_refused)


def _start_tls_server(ae, node: NodeConfig, handlers, on_refused):
    """pynetdicom's non-blocking ``start_server``, with the server class of :mod:`~.tls`."""
    from cxr_edge.serve.tls import server_context, tls_server_class

    context = server_context(node.tls)  # bad files: SpecError before anything listens
    server = ae.make_server(
        (node.host, node.port),
        ssl_context=context,
        evt_handlers=handlers,
        server_class=tls_server_class(),
    )
    server.handshake_timeout_s = node.tls.handshake_timeout_s
    server.on_refused = on_refused
    threading.Thread(target=server.serve_forever, name="cxr-edge-scp-tls", daemon=True).start()
    ae._servers.append(server)  # as start_server does, so ae.shutdown() stops it too
    log.info("TLS on%s", ", client certificates required" if node.tls.require_client_cert else "")
    return server
