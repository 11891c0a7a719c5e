"""The DICOM node (``cxr-edge serve``): durable Storage SCP, triage worker, audit log, DICOM results.

Modules: :mod:`~cxr_edge.serve.config` (serve.toml), :mod:`~cxr_edge.serve.inbox` (durable store),
:mod:`~cxr_edge.serve.audit` (JSONL audit, source of truth), :mod:`~cxr_edge.serve.triage` (checks,
model, referral), :mod:`~cxr_edge.serve.results` (SR / Secondary Capture), :mod:`~cxr_edge.serve.scu`
(C-STORE/C-ECHO client), :mod:`~cxr_edge.serve.node` (the SCP and its worker). pynetdicom is imported
only when a node starts or a message is sent.
"""

from cxr_edge.serve.audit import AuditLog, read_records
from cxr_edge.serve.config import ServeConfig, load_config
from cxr_edge.serve.inbox import Inbox, instance_key
from cxr_edge.serve.node import Node
from cxr_edge.serve.triage import Triage

__all__ = [
    "AuditLog",
    "Inbox",
    "Node",
    "ServeConfig",
    "Triage",
    "instance_key",
    "load_config",
    "read_records",
]
