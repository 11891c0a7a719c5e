"""Signed bundles: an Ed25519 signature over ``manifest.json``, and the trust policy of a cart.

A bundle's manifest pins every model file by its SHA-256, which catches a damaged copy but not a
tampered one: whoever edits a model can edit its hash too. A signature over the manifest's exact bytes
closes that gap, because only the holder of the private key can make one: a changed byte in any model
file breaks its pinned hash (checked on every load), a changed manifest breaks the signature.

Ed25519 (RFC 8032) through ``cryptography`` (pyca): small keys and signatures, deterministic, no
parameters to get wrong, offline, and the same algorithm the JDK (15+) and WebCrypto verify, so the
Android core and the browser check the very same ``signature.json``. Sigstore was not chosen: its
keyless flow needs an online identity provider and transparency log, which a cart without a network
cannot reach.

``signature.json`` (next to ``manifest.json``)::

    {"format": 1, "algorithm": "Ed25519", "signed_file": "manifest.json",
     "manifest_sha256": "...", "key_id": "ed25519:<16 hex>", "public_key": "<base64, 32 bytes>",
     "signature": "<base64, 64 bytes>", "signed_at": "..."}

The embedded public key only says *who claims* to have signed; trust comes from the keys the cart was
given (:class:`TrustPolicy`: ``CXR_EDGE_TRUSTED_KEYS``, a PEM file or a folder of them).

``cryptography`` is imported only when a key or a signature is used (~35 ms of start-up an unsigned
bundle without a policy does not pay).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_edge.errors import BundleError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_NAME = "signature.json"
SIGNATURE_FORMAT = 1
ALGORITHM = "Ed25519"
#: Environment variable naming the trusted public keys (a PEM file or a folder of ``*.pem``).
TRUSTED_KEYS_ENV = "CXR_EDGE_TRUSTED_KEYS"
PRIVATE_NAME, PUBLIC_NAME = "private.pem", "public.pem"


class UntrustedBundleError(BundleError):
    """A trust policy is set and the bundle is unsigned, signed by another key, or changed since signing."""


def _raw(public: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """Short, stable name of a public key: ``ed25519:`` + the first 16 hex of SHA-256 of its raw bytes."""
    return "ed25519:" + hashlib.sha256(_raw(public)).hexdigest()[:16]


@dataclass(frozen=True)
class Signature:
    """A parsed ``signature.json``.

    Attributes:
        key_id: The signer's key id (:func:`key_id`).
        public_key: The signer's raw public key (32 bytes), as the file claims it.
        signature: The 64-byte Ed25519 signature over ``manifest.json``'s bytes.
        manifest_sha256: SHA-256 of the signed manifest (for reading; the signature is what counts).
        signed_at: UTC time of signing (ISO 8601).
    """

    key_id: str
    public_key: bytes
    signature: bytes
    manifest_sha256: str
    signed_at: str

    def to_dict(self) -> dict:
        """JSON-ready form (the file's content)."""
        return {
            "format": SIGNATURE_FORMAT,
            "algorithm": ALGORITHM,
            "signed_file": "manifest.json",
            "manifest_sha256": self.manifest_sha256,
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "signed_at": self.signed_at,
        }


def generate_keys(out_dir: str | Path) -> tuple[Path, Path]:
    """Writes a new key pair: ``private.pem`` (PKCS #8, owner-only) and ``public.pem``.

    Raises:
        BundleError: Either file exists already (a key is never overwritten).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = Path(out_dir)
    private, public = out / PRIVATE_NAME, out / PUBLIC_NAME
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing:
        raise BundleError("key file exists", expected="a folder without keys", received=", ".join(existing))
    out.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created owner-only from the start: the private key is never world-readable, not even briefly.
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file.

    Raises:
        BundleError: Missing, unreadable, encrypted, or not an Ed25519 private key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def load(data: bytes):
        return serialization.load_pem_private_key(data, password=None)

    return _pem_key(path, load, Ed25519PrivateKey, "the private key", "an unencrypted Ed25519 PEM")


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file.

    Raises:
        BundleError: Missing, unreadable, or not an Ed25519 public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    load = serialization.load_pem_public_key
    return _pem_key(path, load, Ed25519PublicKey, "the public key", "an Ed25519 public key PEM")


def _pem_key(path: str | Path, load, kind: type, what: str, expected: str):
    """A key of type ``kind`` read by ``load`` from a PEM file, or the typed error of each way it fails."""
    try:
        key = load(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"cannot read {what}", expected=expected, received=f"{path}: {exc}") from exc
    if not isinstance(key, kind):
        raise BundleError("not an Ed25519 key", expected="Ed25519", received=type(key).__name__)
    return key


def sign(root: str | Path, private_key: str | Path | Ed25519PrivateKey) -> Signature:
    """Signs a bundle folder's ``manifest.json`` and writes ``signature.json`` beside it.

    The caller checks the bundle first (``Bundle.load``): a signature vouches for what it covers.
    """
    key = load_private_key(private_key) if isinstance(private_key, str | Path) else private_key
    manifest = (Path(root) / "manifest.json").read_bytes()
    public = key.public_key()
    signature = Signature(
        key_id=key_id(public),
        public_key=_raw(public),
        signature=key.sign(manifest),
        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
        signed_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    (Path(root) / SIGNATURE_NAME).write_text(json.dumps(signature.to_dict(), indent=2) + "\n")
    return signature


def read_signature(root: str | Path) -> Signature | None:
    """The bundle's signature, or None when it has none.

    Raises:
        UntrustedBundleError: ``signature.json`` exists but is malformed.
    """
    file = Path(root) / SIGNATURE_NAME
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if data.get("format") != SIGNATURE_FORMAT or data.get("algorithm") != ALGORITHM:
            raise ValueError(f"format {data.get('format')!r}, algorithm {data.get('algorithm')!r}")
        sig = Signature(
            key_id=str(data["key_id"]),
            public_key=base64.b64decode(data["public_key"], validate=True),
            signature=base64.b64decode(data["signature"], validate=True),
            manifest_sha256=str(data["manifest_sha256"]),
            signed_at=str(data.get("signed_at", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise UntrustedBundleError(
            "malformed bundle signature",
            expected=f"a format-{SIGNATURE_FORMAT} Ed25519 signature.json",
            received=str(exc),
        ) from exc
    if len(sig.public_key) != 32 or len(sig.signature) != 64:
        raise UntrustedBundleError(
            "malformed bundle signature",
            expected="a 32-byte key and a 64-byte signature",
            received=f"{len(sig.public_key)} and {len(sig.signature)} bytes",
        )
    return sig


def verify(manifest: bytes, signature: Signature | None, keys: dict[str, Ed25519PublicKey]) -> str:
    """Checks a signature over a manifest's bytes against trusted keys.

    Args:
        manifest: The exact bytes of ``manifest.json``.
        signature: The bundle's signature (None: unsigned).
        keys: Trusted public keys by key id.

    Returns:
        The key id that verified it.

    Raises:
        UntrustedBundleError: Unsigned, signed by a key not in ``keys``, or the signature does not
            match the manifest (it was changed after signing).
    """
    from cryptography.exceptions import InvalidSignature

    trusted = ", ".join(sorted(keys)) or "none"
    if signature is None:
        raise UntrustedBundleError(
            "bundle is not signed", expected=f"a signature by a trusted key ({trusted})", received="none"
        )
    key = keys.get(signature.key_id)
    if key is None:
        raise UntrustedBundleError(
            "bundle is signed by a key this device does not trust",
            expected=trusted,
            received=signature.key_id,
        )
    try:
        key.verify(signature.signature, manifest)
    except InvalidSignature as exc:
        raise UntrustedBundleError(
            "bundle signature does not match its manifest: the bundle was changed after signing",
            expected=f"manifest signed by {signature.key_id}",
            received=f"manifest sha256 {hashlib.sha256(manifest).hexdigest()[:16]}...",
        ) from exc
    return signature.key_id


@dataclass(frozen=True)
class TrustPolicy:
    """The public keys a device accepts bundles from.

    Attributes:
        keys: Trusted Ed25519 public keys by key id.
        source: Where they were read from (for messages).
    """

    keys: dict[str, Ed25519PublicKey]
    source: str

    @classmethod
    def from_path(cls, path: str | Path) -> TrustPolicy:
        """Keys from a PEM file, or from every ``*.pem`` in a folder.

        Raises:
            BundleError: The path is missing, or holds no public key (a policy that trusts nothing
                would refuse every bundle: said at start-up instead).
        """
        path = Path(path)
        if path.is_dir():
            files = sorted(path.glob("*.pem"))
        elif path.is_file():
            files = [path]
        else:
            raise BundleError("trusted keys not found", expected="a PEM file or a folder", received=str(path))
        keys = {}
        for file in files:
            key = load_public_key(file)
            keys[key_id(key)] = key
        if not keys:
            raise BundleError(
                "no trusted keys", expected="one or more public key PEM files", received=str(path)
            )
        return cls(keys, str(path))

    @classmethod
    def from_env(cls) -> TrustPolicy | None:
        """The policy named by ``CXR_EDGE_TRUSTED_KEYS``, or None when it is unset or empty."""
        value = os.environ.get(TRUSTED_KEYS_ENV, "").strip()
        return cls.from_path(value) if value else None

    def check(self, manifest: bytes, root: str | Path) -> str:
        """Verifies the bundle at ``root`` whose manifest bytes are ``manifest``; returns the key id."""
        return verify(manifest, read_signature(root), self.keys)
