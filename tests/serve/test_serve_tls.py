"""TLS for the node and for delivery, with a throwaway CA made here (no network, no downloads)."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_serve import config, dicoms, running, triage, uid_of  # noqa: F401 - fixtures used below

from cxr_edge.benchmarks.peers import MISSING, STORESCU, Orthanc
from cxr_edge.cli import main
from cxr_edge.errors import SpecError
from cxr_edge.serve import load_config, read_records
from cxr_edge.serve.config import NodeConfig
from cxr_edge.serve.scu import NetworkError, echo, send_files
from cxr_edge.serve.tls import TlsConfig


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer=None, issuer_key=None, ca: bool = False, server: bool = False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:  # a node's certificate serves both ways: SCP (server) and result delivery (client)
        usage = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([*usage, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    if server:
        sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key if issuer_key is not None else key, hashes.SHA256())


def _write(folder: Path, name: str, cert, key) -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization

    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(folder / f"{name}.pem"), str(folder / f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """A CA, a server certificate (127.0.0.1, localhost), a client certificate, and a stranger CA's client."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, other_key = _key(), _key()
    ca, other = _cert("cxr-edge test CA", ca_key, ca=True), _cert("stranger CA", other_key, ca=True)
    out = {}
    out["ca"], _ = _write(folder, "ca", ca, ca_key)
    for name, issuer, issuer_key, server in (
        ("server", ca, ca_key, True),
        ("client", ca, ca_key, False),
        ("stranger", other, other_key, False),
    ):
        key = _key()
        out[name], out[f"{name}_key"] = _write(
            folder, name, _cert(name, key, issuer, issuer_key, server=server), key
        )
    return out


def _node_tls(pki, require: bool = True) -> NodeConfig:
    tls = TlsConfig(cert=pki["server"], key=pki["server_key"], ca=pki["ca"], require_client_cert=require)
    return NodeConfig(port=0, allow=("MODALITY",), heartbeat_s=0.1, drain_s=1.0, tls=tls)


def _client(pki, name: str = "client") -> TlsConfig:
    return TlsConfig(cert=pki[name], key=pki[f"{name}_key"], ca=pki["ca"])


def test_tls_node_takes_certified_clients_only(tmp_path, triage, dicoms, pki, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="cxr_edge.serve")
    files = dicoms["good"][:2]
    with running(config(tmp_path, node=_node_tls(pki)), triage) as node:
        good = _client(pki)
        assert echo("127.0.0.1", node.port, "CXR_EDGE", "MODALITY", tls=good) == 0
        # No client certificate, a certificate from another CA, plain TCP: refused, node unharmed.
        with pytest.raises(NetworkError):
            send_files(
                files[:1], "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", 5, tls=TlsConfig(ca=pki["ca"])
            )
        with pytest.raises(NetworkError):
            echo("127.0.0.1", node.port, "CXR_EDGE", "MODALITY", 5, tls=_client(pki, "stranger"))
        with pytest.raises(NetworkError):
            send_files(files[:1], "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", 5)
        # A client that connects and never speaks TLS does not hold the others back.
        with socket.create_connection(("127.0.0.1", node.port)):
            assert send_files(files, "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", 10, tls=good) == [0, 0]
            assert node.wait_idle(60)
        assert node.counts["tls_refused"] >= 3
    assert len(list(read_records(tmp_path / "audit.jsonl"))) == 2
    refusals = [r.getMessage() for r in caplog.records if "TLS handshake refused" in r.getMessage()]
    assert len(refusals) >= 3 and any(
        "TLS on, client certificates required" in r.getMessage() for r in caplog.records
    )
    for uid in map(uid_of, files):  # the log names peers and reasons, never what was sent
        assert all(uid not in m and "Doe^Jane" not in m for m in refusals)


def test_client_verifies_the_node_certificate(tmp_path, triage, pki):  # noqa: F811
    with running(config(tmp_path, node=_node_tls(pki, require=False)), triage) as node:
        assert echo("127.0.0.1", node.port, "CXR_EDGE", "MODALITY", tls=TlsConfig(ca=pki["ca"])) == 0
        # A CA that did not sign the server's certificate: the client refuses the node.
        stranger_ca = TlsConfig(ca=pki["stranger"])
        with pytest.raises(NetworkError):
            echo("127.0.0.1", node.port, "CXR_EDGE", "MODALITY", 5, tls=stranger_ca)
        wrong_name = TlsConfig(ca=pki["ca"], server_name="pacs.example.org")
        with pytest.raises(NetworkError):
            echo("127.0.0.1", node.port, "CXR_EDGE", "MODALITY", 5, tls=wrong_name)
        # `serve health` speaks TLS to a TLS node (its own CA; no client certificate needed here).
        assert _health(tmp_path, pki, node.port, require=False) == (0, "healthy")
    # ... and where client certificates are required (the node's certificate allows clientAuth).
    with running(config(tmp_path / "2", node=_node_tls(pki, require=True)), triage) as node:
        assert _health(tmp_path / "2", pki, node.port, require=True) == (0, "healthy")


def _health(folder: Path, pki, port: int, require: bool) -> tuple[int, str]:
    toml = folder / "serve.toml"
    toml.write_text(
        f'[node]\nport = {port}\nallow = ["MODALITY"]\n[node.tls]\ncert = "{pki["server"]}"\n'
        f'key = "{pki["server_key"]}"\nca = "{pki["ca"]}"\nrequire_client_cert = {str(require).lower()}\n'
        f'[storage]\ninbox = "{folder / "inbox"}"\n'
    )
    result = CliRunner().invoke(main, ["serve", "--config", str(toml), "health", "--max-age", "60"])
    return result.exit_code, result.output.split(":")[0]


def test_tls_config_is_checked_at_load(tmp_path, pki):
    toml = tmp_path / "serve.toml"
    toml.write_text(f'[node.tls]\ncert = "{pki["server"]}"\nkey = "{tmp_path / "missing.key"}"\n')
    with pytest.raises(SpecError, match="TLS key file not found"):
        load_config(toml)
    toml.write_text(
        f'[node.tls]\ncert = "{pki["server"]}"\nkey = "{pki["server_key"]}"\nrequire_client_cert = true\n'
    )
    with pytest.raises(SpecError, match="require_client_cert needs the CA"):
        load_config(toml)
    toml.write_text(f'[node.tls]\ncert = "{pki["server"]}"\nkey = "{pki["client_key"]}"\n')  # not its key
    from cxr_edge.serve.tls import server_context

    with pytest.raises(SpecError, match="cannot be loaded"):
        server_context(load_config(toml).node.tls)
    toml.write_text(
        f'[node.tls]\ncert = "{pki["server"]}"\nkey = "{pki["server_key"]}"\nca = "{pki["ca"]}"\n'
        f'[destination]\nae_title = "PACS"\n[destination.tls]\nca = "{pki["ca"]}"\nserver_name = "pacs"\n'
    )
    cfg = load_config(toml)
    assert cfg.node.tls.ca == pki["ca"] and cfg.destination.tls.server_name == "pacs"


@pytest.mark.skipif(bool(MISSING), reason=MISSING or "-")
def test_dcmtk_storescu_sends_over_tls(tmp_path, triage, dicoms, pki):  # noqa: F811
    with running(config(tmp_path, node=_node_tls(pki)), triage) as node:
        base = [STORESCU, "-aet", "MODALITY", "-aec", "CXR_EDGE", "+cf", pki["ca"]]
        target = ["127.0.0.1", str(node.port)]
        sent = subprocess.run(
            [*base, "+tls", pki["client_key"], pki["client"], *target, str(dicoms["good"][0])],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr[-2000:]
        # storescu without a client certificate (anonymous TLS) is refused by a node that requires one.
        anonymous = subprocess.run(
            [*base, "+tla", *target, str(dicoms["good"][1])],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert anonymous.returncode != 0
        assert node.wait_idle(60)
    assert len(list(read_records(tmp_path / "audit.jsonl"))) == 1


@pytest.mark.skipif(bool(MISSING), reason=MISSING or "-")
def test_results_are_delivered_over_tls_to_orthanc(tmp_path, triage, dicoms, pki):  # noqa: F811
    import dataclasses

    from cxr_edge.serve.config import DestinationConfig

    pacs = Orthanc(
        tmp_path / "orthanc",
        DicomTlsEnabled=True,
        DicomTlsCertificate=pki["server"],
        DicomTlsPrivateKey=pki["server_key"],
        DicomTlsTrustedCertificates=pki["ca"],
        DicomTlsRemoteCertificateRequired=True,
    )
    try:
        tls = _client(pki)
        dest = DestinationConfig(ae_title="PACS", port=pacs.dicom, kind="sr", timeout_s=20, tls=tls)
        cfg = config(tmp_path, destination=dest)
        with running(cfg, triage) as node:
            assert send_files(dicoms["good"][:1], "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", 10) == [0]
            assert node.wait_delivered(60)
        (record,) = read_records(tmp_path / "audit.jsonl")
        assert record["delivery"]["status"] == "sent", record["delivery"]
        assert len(pacs.get("/instances")) == 1
        # The same destination without a client certificate: Orthanc refuses, the result is queued.
        cfg = dataclasses.replace(
            cfg, destination=dataclasses.replace(dest, tls=TlsConfig(ca=pki["ca"]), retry_s=300)
        )
        with running(cfg, triage) as node:
            assert send_files(dicoms["good"][1:2], "127.0.0.1", node.port, "CXR_EDGE", "MODALITY", 10) == [0]
            assert node.wait_idle(60)
        second = list(read_records(tmp_path / "audit.jsonl"))[-1]
        assert second["delivery"]["status"] == "queued" and "NetworkError" in second["delivery"]["error"]
        assert len(pacs.get("/instances")) == 1
    finally:
        pacs.stop()
