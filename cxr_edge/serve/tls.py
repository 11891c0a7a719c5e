"""TLS for the node (``[node.tls]``) and for result delivery (``[destination.tls]``), by config.

Server side (the Storage SCP): the node's certificate chain and key; with ``ca`` set, client
certificates signed by it are checked when presented, and with ``require_client_cert`` a client
without one is refused. Client side (delivery, ``serve health``): the destination's certificate is
verified against ``ca`` (the system's trust store when empty) and its host name (``server_name``,
else the destination host); ``cert``/``key`` present a client certificate when the PACS requires one.
TLS 1.2 is the minimum (BCP 195, as dcmtk's default profile).

The handshake of an incoming connection runs in that connection's own thread, with a timeout
(:func:`tls_server_class`): pynetdicom's server would run it in its accept loop, where one client that
connects and never speaks TLS (a port scanner, a plain-TCP modality) holds every other sender back.
A refused handshake is logged with the peer's address and OpenSSL's reason -- nothing from DICOM,
so no patient identifiers -- and counted in the node's status (``tls_refused``).
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cxr_edge.errors import SpecError

log = logging.getLogger("cxr_edge.serve")


@dataclass(frozen=True)
class TlsConfig:
    """One side's TLS settings (see the module docstring).

    Attributes:
        cert: PEM certificate chain (this side's certificate first). Required for the node; for
            delivery only when the destination requires client certificates.
        key: PEM private key of ``cert`` (unencrypted; protect it with file permissions).
        ca: PEM CA bundle that verifies the peer. Node: signs accepted client certificates (empty:
            none asked for). Delivery: signs the destination's certificate (empty: system store).
        require_client_cert: Node only: refuse clients without a certificate signed by ``ca``.
        server_name: Delivery only: the host name expected in the destination's certificate
            (empty: the destination's ``host``).
        handshake_timeout_s: Node only: how long a connecting client has to complete the handshake.
    """

    cert: str = ""
    key: str = ""
    ca: str = ""
    require_client_cert: bool = False
    server_name: str = ""
    handshake_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise SpecError(
                "TLS certificate and key go together",
                expected="both cert and key, or neither",
                received=f"cert={self.cert!r}, key={self.key!r}",
            )
        for name in ("cert", "key", "ca"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise SpecError(f"TLS {name} file not found", expected="a readable PEM file", received=path)
        if self.require_client_cert and not self.ca:
            raise SpecError(
                "require_client_cert needs the CA that signs client certificates",
                expected="tls.ca set",
                received="empty",
            )
        if self.handshake_timeout_s <= 0:
            raise SpecError(
                "invalid tls.handshake_timeout_s", expected="> 0", received=str(self.handshake_timeout_s)
            )


def server_context(cfg: TlsConfig) -> ssl.SSLContext:
    """The node's TLS context.

    Raises:
        SpecError: No certificate, or the certificate, key or CA cannot be loaded.
    """
    if not cfg.cert:
        raise SpecError(
            "the node's TLS needs a certificate", expected="node.tls.cert and key", received="none"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, cfg)
    if cfg.ca:
        ctx.verify_mode = ssl.CERT_REQUIRED if cfg.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def client_context(cfg: TlsConfig) -> ssl.SSLContext:
    """A delivery (or health check) TLS context: the peer's certificate and host name are verified.

    Raises:
        SpecError: The client certificate, key or CA cannot be loaded.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not cfg.ca:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    _load(ctx, cfg)
    return ctx


def _load(ctx: ssl.SSLContext, cfg: TlsConfig) -> None:
    try:
        if cfg.cert:
            ctx.load_cert_chain(cfg.cert, cfg.key)
        if cfg.ca:
            ctx.load_verify_locations(cafile=cfg.ca)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise SpecError(
            "TLS files cannot be loaded",
            expected="PEM certificate chain, its private key, PEM CA bundle",
            received=f"cert={cfg.cert!r}, key={cfg.key!r}, ca={cfg.ca!r}: {exc}",
        ) from exc


@functools.cache
def tls_server_class():
    """pynetdicom's threaded server with the handshake moved into the connection's thread.

    Passed to ``AE.make_server(server_class=...)``, pynetdicom's documented hook for custom servers.
    The server's ``on_refused(address, reason)`` (set by the node) is called for each refused
    handshake.
    """
    from pynetdicom.transport import ThreadedAssociationServer

    class TlsAssociationServer(ThreadedAssociationServer):
        on_refused: Callable[[tuple, str], None] | None = None
        handshake_timeout_s: float = 10.0

        def get_request(self):
            # Accept only; the handshake waits for the connection's thread (process_request_thread).
            return self.socket.accept()

        def process_request_thread(self, request, client_address):
            timeout = request.gettimeout()
            try:
                request.settimeout(self.handshake_timeout_s)
                tls = self.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
                tls.do_handshake()
                tls.settimeout(timeout)
            except (ssl.SSLError, OSError) as exc:  # no/untrusted certificate, plain TCP, timeout
                reason = getattr(exc, "reason", None) or type(exc).__name__
                log.warning("TLS handshake refused from %s:%s (%s)", *client_address[:2], reason)
                if self.on_refused is not None:
                    self.on_refused(client_address, str(reason))
                self.shutdown_request(request)
                return
            super().process_request_thread(tls, client_address)

    return TlsAssociationServer
