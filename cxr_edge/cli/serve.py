"""``cxr-edge serve`` (run the DICOM node) and ``cxr-edge serve health`` (check a running one)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from cxr_edge.cli.common import clean_errors, config_option
from cxr_edge.errors import CxrEdgeError
from cxr_edge.serve.config import ServeConfig, load_config, override


def _config(config_path, host, port, ae_title, allow, inbox, audit, bundle_dir) -> ServeConfig:
    config = load_config(config_path)
    return override(
        config,
        node__host=host,
        node__port=port,
        node__ae_title=ae_title,
        node__allow=tuple(allow) if allow else None,
        storage__inbox=inbox,
        storage__audit=audit,
        triage__bundle=bundle_dir,
    )


@click.group("serve", invoke_without_command=True)
@config_option("serve.toml (default: built-in defaults, see docs/serve.md).", required=False)
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1: loopback only).")
@click.option("--port", default=None, type=click.IntRange(0, 65535), help="TCP port (default 11112).")
@click.option("--ae-title", default=None, help="This node's AE title (default CXR_EDGE).")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    help="Calling AE title allowed to send (repeatable; default: as configured, else anyone).",
)
@click.option("--inbox", default=None, type=click.Path(file_okay=False), help="Durable inbox folder.")
@click.option("--audit", default=None, type=click.Path(dir_okay=False), help="Append-only JSONL audit log.")
@click.option(
    "--bundle",
    "bundle_dir",
    default=None,
    type=click.Path(),
    help="Bundle folder or preset name (default: default).",
)
@click.pass_context
@clean_errors
def serve_group(ctx, config_path, host, port, ae_title, allow, inbox, audit, bundle_dir):
    """Run a DICOM Storage SCP that triages received chest X-rays (stop with SIGTERM or Ctrl-C).

    Every instance is written durably to the inbox before it is acknowledged, then checked (view,
    modality, body part, resolution, blank, frontal pattern), classified, referred to a radiologist
    when the model is not confident, and recorded in the append-only audit log (no patient
    identifiers). Results go back as DICOM (Basic Text SR or Secondary Capture) when a destination is
    configured. A restart resumes what is left in the inbox; an instance is never audited twice.
    """
    config = _config(config_path, host, port, ae_title, allow, inbox, audit, bundle_dir)
    ctx.obj = config
    if ctx.invoked_subcommand is not None:
        return
    from cxr_edge.serve.node import Node

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its debug output can dump datasets
    logging.getLogger("highdicom").setLevel(logging.WARNING)  # ~20 INFO lines per result built
    try:
        node = Node(config)
    except OSError as exc:
        raise click.ClickException(f"cannot prepare the inbox or audit log: {exc}") from exc
    try:
        node.run_forever()
    except OSError as exc:  # e.g. the port is taken
        raise click.ClickException(f"cannot listen on {config.node.host}:{config.node.port}: {exc}") from exc
    click.echo(f"stopped; audit log {config.storage.audit}", err=True)


@serve_group.command("health")
@click.option(
    "--status-file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Status file (default: from the config, <inbox>/status.json).",
)
@click.option(
    "--max-age", default=10.0, show_default=True, type=float, help="Oldest acceptable heartbeat (s)."
)
@click.option("--calling-ae", default=None, help="AE title for the C-ECHO (default: first allowed caller).")
@click.option("--no-echo", is_flag=True, help="Only read the status file; send no C-ECHO.")
@click.option(
    "--drift-window",
    default=500,
    show_default=True,
    type=click.IntRange(0),
    help="Judge drift on the audit log's last N predictions (0: no drift check).",
)
@click.pass_obj
@clean_errors
def health_cmd(config: ServeConfig, status_file, max_age, calling_ae, no_echo, drift_window):
    """Check a running node: fresh status file, state running, and a C-ECHO answered.

    Prints one line and exits 0 when healthy, 1 when not. Options of `cxr-edge serve` (--config,
    --port, ...) given before `health` say which node to check. The line also carries the drift flag
    of `cxr-edge site monitor` on the last --drift-window predictions of the audit log: drift is a
    warning for the people who run the node, not a failure of the node (the exit code ignores it).
    """
    from cxr_edge.serve.scu import echo

    path = Path(status_file) if status_file else config.storage.status_path
    problems = []
    try:
        status = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        status = {}
        problems.append(f"no readable status file {path} ({type(exc).__name__})")
    if status:
        age = time.time() - float(status.get("heartbeat", 0))
        if status.get("state") != "running":
            problems.append(f"state {status.get('state')}")
        if age > max_age:
            problems.append(f"heartbeat {age:.0f} s old")
    node = config.node
    host = "127.0.0.1" if node.host in ("0.0.0.0", "") else node.host
    port = int(status.get("port") or node.port)
    if not no_echo:
        caller = calling_ae or (node.allow[0] if node.allow else "CXR_EDGE_HEALTH")
        try:
            code = echo(host, port, node.ae_title, caller, timeout_s=5.0, tls=_health_tls(node))
            if code != 0:
                problems.append(f"C-ECHO status {code:#06x}")
        except CxrEdgeError as exc:
            problems.append(f"C-ECHO failed: {exc}")
    counts = status.get("counts", {})
    summary = (
        f"{node.ae_title} on {host}:{port}: pending {status.get('pending', '?')}, audited "
        f"{status.get('audited', '?')}, "
        + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("classified", "refer", "rejected"))
    )
    outbox = status.get("outbox") or {}
    if outbox.get("queued") or outbox.get("dead"):
        # Results the destination has not got yet: not a failure of the node (it retries), but the
        # operator must see them; dead-lettered ones need a person (docs/serve.md, "Delivery").
        summary += f"; outbox: {outbox.get('queued', 0)} queued, {outbox.get('dead', 0)} dead-lettered"
        if outbox.get("queued"):
            summary += (
                f" (oldest failure {outbox.get('oldest_failure_s')} s ago, next try in "
                f"{outbox.get('next_try_in_s')} s, last error: {outbox.get('last_error')})"
            )
    if drift_window:
        summary += f"; {_drift(config, drift_window)}"
    if problems:
        click.echo(f"unhealthy: {summary}; " + "; ".join(problems))
        sys.exit(1)
    click.echo(f"healthy: {summary}")


def _drift(config: ServeConfig, window: int) -> str:
    """``drift: ...`` of the audit log's last ``window`` predictions against the node's bundle."""
    from cxr_edge.bundle.folder import Bundle
    from cxr_edge.site.monitor import monitor_file

    audit = Path(config.storage.audit)
    if not audit.is_file():
        return "drift: no audit log yet"
    try:
        report = monitor_file(Bundle.load(config.triage.bundle or None), audit, window)
    except CxrEdgeError as exc:
        return f"drift: not judged ({exc})"
    flag = "DRIFT SUSPECTED" if report["drift"] else "drift"
    return f"{flag}: {report['verdict']} over {report['n']} predictions (cxr-edge site monitor)"


def _health_tls(node):
    """The C-ECHO's TLS for a node with ``[node.tls]``: its own CA (else its certificate chain) as the
    trust anchor; where client certificates are required, the node's own certificate as the client's
    (it then needs the clientAuth key usage, as a node that also delivers results has; else use
    --no-echo)."""
    from cxr_edge.serve.tls import TlsConfig

    tls = node.tls
    if tls is None:
        return None
    if tls.require_client_cert:
        return TlsConfig(cert=tls.cert, key=tls.key, ca=tls.ca)
    return TlsConfig(ca=tls.ca or tls.cert)


@serve_group.command("verify-audit")
@click.argument("log", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
@clean_errors
def verify_audit_cmd(config: ServeConfig, log, as_json):
    """Check the audit log's hash chain: exit 0 when every record links to the one before it.

    LOG defaults to the configured audit log. Prints the chain's head (the last record's hash): note
    it elsewhere to prove later that the log was whole up to now.
    """
    import json

    from cxr_edge.serve.audit import verify_chain

    path = Path(log) if log else Path(config.storage.audit)
    result = verify_chain(path)
    if as_json:
        click.echo(json.dumps(result | {"log": str(path)}, indent=2))
    broken = result["broken"]
    if broken is not None:
        if not as_json:
            click.echo(f"BROKEN at line {broken['line']} of {path}: {broken['reason']}")
        sys.exit(1)
    if not as_json:
        click.echo(
            f"intact: {result['linked']} linked records"
            + (f" after {result['unlinked']} older unlinked ones" if result["unlinked"] else "")
            + (f", {result['torn']} torn lines skipped" if result["torn"] else "")
            + f"; head {result['head']}"
        )
