"""The DICOM node's configuration: frozen dataclasses read from TOML through :mod:`cxr_edge.config`.

Relative paths are taken from the directory ``cxr-edge serve`` runs in (not the config file's folder),
so ``configs/serve.toml`` can be used from the repository root as it is.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cxr_edge.config import from_dict
from cxr_edge.errors import SpecError
from cxr_edge.imaging.image import ReadOptions
from cxr_edge.ops.quality import QualityConfig, ReferralBand
from cxr_edge.serve.outbox import Backoff
from cxr_edge.serve.tls import TlsConfig

#: The band used when neither ``[triage.abstain]`` nor the bundle sets one (chosen on the default
#: bundle's validation split, docs/serve.md).
DEFAULT_REFERRAL = ReferralBand(min_top_prob=0.6, min_margin=0.0)
_AE_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-. ")


def check_ae_title(title: str, what: str) -> str:
    """Returns ``title`` stripped, or raises :class:`SpecError` if it is not a valid AE title."""
    stripped = title.strip()
    if not 1 <= len(stripped) <= 16 or not set(stripped) <= _AE_CHARS:
        raise SpecError(
            f"invalid {what}", expected="1-16 letters, digits, space, '_', '-' or '.'", received=repr(title)
        )
    return stripped


@dataclass(frozen=True)
class NodeConfig:
    """Where the Storage SCP listens and who may send to it.

    Attributes:
        ae_title: This node's AE title (called AE title the modality must use).
        host: Address to bind; ``127.0.0.1`` (loopback) unless a network is configured on purpose.
        port: TCP port (11112 is the registered DICOM port; 104 needs root).
        allow: Calling AE titles allowed to associate; empty accepts any caller.
        heartbeat_s: How often the status file is rewritten.
        drain_s: On shutdown, how long associations already open may finish before they are aborted.
        tls: ``[node.tls]``: accept TLS connections only (certificate, key; optional client
            certificates), see :mod:`cxr_edge.serve.tls`. None: plain TCP.
    """

    ae_title: str = "CXR_EDGE"
    host: str = "127.0.0.1"
    port: int = 11112
    allow: tuple[str, ...] = ()
    heartbeat_s: float = 2.0
    drain_s: float = 5.0
    tls: TlsConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "node.ae_title"))
        object.__setattr__(self, "allow", tuple(check_ae_title(a, "node.allow entry") for a in self.allow))
        if not 0 <= self.port <= 65535:
            raise SpecError(
                "invalid node.port", expected="0-65535 (0: any free port)", received=str(self.port)
            )
        if self.heartbeat_s <= 0 or self.drain_s < 0:
            raise SpecError(
                "invalid node timing",
                expected="heartbeat_s > 0 and drain_s >= 0",
                received=f"{self.heartbeat_s}, {self.drain_s}",
            )


@dataclass(frozen=True)
class StorageConfig:
    """The durable inbox, the audit log and back-pressure limits.

    Attributes:
        inbox: Folder holding ``incoming/`` (partial writes), ``pending/`` (received, acknowledged,
            not yet triaged) and ``done/`` (triaged).
        audit: Append-only JSONL audit log (the source of truth for what was triaged).
        status_file: JSON status rewritten every heartbeat; empty: ``<inbox>/status.json``.
        queue_size: Capacity of the in-memory work queue. When it is full, received instances are still
            stored and acknowledged; the worker finds them by rescanning ``pending/``.
        max_pending: Refuse new instances with status 0xA700 (out of resources) while this many wait.
        min_free_mb: Refuse new instances with 0xA700 when the inbox disk has less free space than this.
    """

    inbox: str = "build/serve/inbox"
    audit: str = "build/serve/audit.jsonl"
    status_file: str = ""
    queue_size: int = 64
    max_pending: int = 10_000
    min_free_mb: int = 256

    def __post_init__(self) -> None:
        if self.queue_size < 1 or self.max_pending < 1 or self.min_free_mb < 0:
            raise SpecError(
                "invalid storage limits",
                expected="queue_size >= 1, max_pending >= 1, min_free_mb >= 0",
                received=f"{self.queue_size}, {self.max_pending}, {self.min_free_mb}",
            )

    @property
    def status_path(self) -> Path:
        """The status file (default: ``status.json`` in the inbox)."""
        return Path(self.status_file) if self.status_file else Path(self.inbox) / "status.json"


@dataclass(frozen=True)
class TriageConfig:
    """Which bundle judges the images and when it must refer instead.

    Attributes:
        bundle: Bundle folder; empty: the bundle shipped with cxr-edge.
        models: Model names to run instead of the bundle's ensemble (empty: the ensemble).
        threads: LiteRT threads.
        abstain: The referral band (refer to a radiologist below it). Unset (no ``[triage.abstain]``):
            the bundle's own band (``ensemble.abstain``, format 3), else :data:`DEFAULT_REFERRAL`.
        quality: Input checks.
        trusted_keys: A public key PEM or a folder of them: the node refuses to start with a bundle
            not signed by one of them (``cxr-edge bundle sign``). Empty: ``CXR_EDGE_TRUSTED_KEYS``
            when set, else no policy (unsigned bundles run).
        selftest: Run the bundle's self-test at start-up and refuse to start when a stage differs
            (:mod:`cxr_edge.runtime.selftest`; a bundle without one starts with a warning).
    """

    bundle: str = ""
    models: tuple[str, ...] = ()
    threads: int = 1
    abstain: ReferralBand | None = None
    quality: QualityConfig = field(default_factory=QualityConfig)
    trusted_keys: str = ""
    selftest: bool = True


@dataclass(frozen=True)
class DestinationConfig:
    """Where DICOM results are sent (optional).

    Attributes:
        ae_title: Called AE title of the destination (PACS, viewer, router).
        host: Its address.
        port: Its port.
        kind: ``sr`` (Basic Text SR), ``sc`` (Secondary Capture with heat map and text) or ``both``.
        send_rejections: Also send a short "not triaged: <reason>" result for images refused by the
            quality checks (never for objects that are not readable images).
        timeout_s: Network timeout of one delivery.
        retry_s: After a failed delivery the results wait in the durable outbox
            (``<inbox>/outbox``) this long before the next try, doubling after each failure ...
        retry_max_s: ... up to this wait.
        max_tries: Tries (the first included) before the results are dead-lettered in
            ``<inbox>/outbox/dead`` with an audit record.
        tls: ``[destination.tls]``: deliver over TLS (the destination's certificate verified
            against ``ca``; a client certificate when the PACS asks for one). None: plain TCP.
    """

    ae_title: str
    host: str = "127.0.0.1"
    port: int = 11113
    kind: Literal["sr", "sc", "both"] = "sr"
    send_rejections: bool = True
    timeout_s: float = 30.0
    retry_s: float = 10.0
    retry_max_s: float = 600.0
    max_tries: int = 20
    tls: TlsConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", check_ae_title(self.ae_title, "destination.ae_title"))
        if not (0 < self.retry_s <= self.retry_max_s and self.max_tries >= 1 and self.timeout_s > 0):
            raise SpecError(
                "invalid destination retry settings",
                expected="0 < retry_s <= retry_max_s, max_tries >= 1, timeout_s > 0",
                received=f"{self.retry_s}, {self.retry_max_s}, {self.max_tries}, {self.timeout_s}",
            )

    @property
    def backoff(self) -> Backoff:
        """The outbox's retry schedule."""
        return Backoff(first_s=self.retry_s, max_s=self.retry_max_s, max_tries=self.max_tries)


@dataclass(frozen=True)
class LimitsConfig:
    """What one input, one association and one peer may cost the node (docs/security.md, "Input limits").

    Attributes:
        max_file_mb: Largest instance received (its dataset is counted as it arrives: the association
            is aborted past it) and largest file read (``ReadOptions.max_bytes``).
        max_inflated_mb: Largest size a deflated dataset may inflate to.
        max_pixels: Most pixels a header or a codestream may declare.
        decode_timeout_s: Each image is decoded in a worker process that is stopped after this many
            seconds (the instance is rejected with ``check`` ``read``); 0: decode in the node's process,
            without a deadline.
        decode_memory_mb: Address-space ceiling of the decode worker.
        max_associations: Associations open at once, all peers together.
        max_associations_per_peer: Associations open at once from one address, or with one calling
            AE title; more are rejected (A-ASSOCIATE-RJ, transient, local limit exceeded).
        max_instances_per_association: Instances one association may send; later ones are answered
            0xA700 (the modality sends them on a new association).
        max_association_mb: Bytes one association may send; past it the association is aborted.
        max_pdu_kb: Largest PDU accepted (the node announces 16 KiB for data; an association request
            with every storage class fits in 128 KiB); a larger one closes the connection.
    """

    max_file_mb: int = 128
    max_inflated_mb: int = 128
    max_pixels: int = 36_000_000
    decode_timeout_s: float = 20.0
    decode_memory_mb: int = 2048
    max_associations: int = 16
    max_associations_per_peer: int = 4
    max_instances_per_association: int = 2000
    max_association_mb: int = 8192
    max_pdu_kb: int = 1024

    def __post_init__(self) -> None:
        counts = (
            self.max_file_mb,
            self.max_inflated_mb,
            self.max_pixels,
            self.decode_memory_mb,
            self.max_associations,
            self.max_associations_per_peer,
            self.max_instances_per_association,
            self.max_association_mb,
            self.max_pdu_kb,
        )
        if min(counts) < 1 or self.decode_timeout_s < 0 or self.max_pdu_kb < 64:
            raise SpecError(
                "invalid limits",
                expected="every [limits] value >= 1, decode_timeout_s >= 0, max_pdu_kb >= 64",
                received=", ".join(str(v) for v in (*counts, self.decode_timeout_s)),
            )

    def read_options(self, options: ReadOptions) -> ReadOptions:
        """``options`` with these limits (a bundle's reduced decoding and threads are kept)."""
        return dataclasses.replace(
            options,
            max_bytes=self.max_file_mb << 20,
            max_inflated_bytes=self.max_inflated_mb << 20,
            max_pixels=self.max_pixels,
            decode_timeout_s=self.decode_timeout_s or None,
            decode_memory_mb=self.decode_memory_mb,
        )


@dataclass(frozen=True)
class ServeConfig:
    """The whole ``serve.toml``: ``[node]``, ``[storage]``, ``[triage]`` (with ``[triage.abstain]`` and
    ``[triage.quality]``), ``[limits]`` and an optional ``[destination]``."""

    node: NodeConfig = field(default_factory=NodeConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    triage: TriageConfig = field(default_factory=TriageConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    destination: DestinationConfig | None = None


def load_config(path: str | Path | None = None) -> ServeConfig:
    """Reads a ``serve.toml`` (or returns the defaults when ``path`` is None).

    Raises:
        SpecError: The file is missing, not TOML, or holds unknown keys or invalid values.
    """
    if path is None:
        return ServeConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpecError("config file not found", expected="an existing TOML file", received=str(p)) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError("config is not valid TOML", expected="TOML", received=f"{p}: {exc}") from exc
    return from_dict(ServeConfig, data, what="serve config")


def override(config: ServeConfig, **changes) -> ServeConfig:
    """Applies command-line overrides given as ``section__field=value`` (None values are ignored)."""
    sections: dict[str, dict] = {}
    for key, value in changes.items():
        if value is None or value == ():
            continue
        section, name = key.split("__", 1)
        sections.setdefault(section, {})[name] = value
    for section, values in sections.items():
        config = dataclasses.replace(
            config, **{section: dataclasses.replace(getattr(config, section), **values)}
        )
    return config
