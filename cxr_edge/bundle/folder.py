"""A bundle folder on disk: loaded and verified (every model file's sha256), written, and hashed.

What the folder holds is described by :mod:`cxr_edge.bundle.manifest`; the shipped default bundle
lives in the package (``cxr_edge/data/default_bundle``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cxr_edge.bundle.entries import ModelEntry, SegmenterEntry, SelfTestEntry
from cxr_edge.bundle.manifest import MANIFEST_NAME, BundleManifest
from cxr_edge.bundle.presets import PRESETS, resolve
from cxr_edge.bundle.signature import Signature, TrustPolicy, UntrustedBundleError, read_signature
from cxr_edge.errors import BundleError
from cxr_edge.hashing import file_sha256
from cxr_edge.ops.preprocess import PreprocessSpec


def default_bundle_path() -> Path:
    """Folder of the default bundle shipped inside the package (the ``default`` preset)."""
    return PRESETS["default"].path


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle.

    Attributes:
        root: The bundle folder.
        manifest: Its parsed manifest.
        signature: Its signature as ``signature.json`` claims it (None: unsigned); checked only when
            a trust policy was applied.
        trusted_by: The trusted key id that verified the signature, when a policy was applied.
    """

    root: Path
    manifest: BundleManifest
    signature: Signature | None = None
    trusted_by: str | None = None

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, verify: bool = True, trust: TrustPolicy | bool = True
    ) -> Bundle:
        """Loads a bundle, checking its manifest, the sha256 of every model file and its signature.

        Args:
            path: Bundle folder (or its ``manifest.json``), or a preset's name
                (:mod:`cxr_edge.bundle.presets`: ``default``, ``paper``); ``None`` loads the default.
            verify: Check file checksums (leave on; off only for tools that repair bundles).
            trust: The trust policy: True applies the device's (``CXR_EDGE_TRUSTED_KEYS``; none set:
                unsigned bundles load as before), a :class:`TrustPolicy` applies that one, False none
                (tools that build bundles before they can be signed).

        Raises:
            BundleError: Missing folder or files, malformed manifest, unknown version, bad checksum.
            UntrustedBundleError: A policy applies and the bundle is not signed by one of its keys,
                or was changed after signing.
        """
        root = resolve(path) if path is not None else default_bundle_path()
        if root.is_file() and root.name == MANIFEST_NAME:
            root = root.parent
        manifest_file = root / MANIFEST_NAME
        if not manifest_file.is_file():
            raise BundleError(
                "not a bundle", expected=f"a folder holding {MANIFEST_NAME}", received=str(root)
            )
        # Read once: the bytes the signature is checked on are the bytes parsed.
        raw = manifest_file.read_bytes()
        policy = TrustPolicy.from_env() if trust is True else (trust or None)
        if policy is not None:
            trusted_by = policy.check(raw, root)
            signature = read_signature(root)
        else:
            trusted_by = None
            try:
                signature = read_signature(root)
            except UntrustedBundleError:
                signature = None  # no policy: a malformed signature is as good as none (info says so)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (
            json.JSONDecodeError,
            UnicodeDecodeError,
            RecursionError,
        ) as exc:  # RecursionError: deep nesting (found by fuzzing)
            raise BundleError("bundle manifest is not valid JSON", received=f"{exc}") from exc
        try:
            manifest = BundleManifest.from_dict(data, schema=False)
        except BundleError:
            manifest = BundleManifest.from_dict(data)  # the schema names the field, when it can
            raise
        bundle = cls(root, manifest, signature, trusted_by)
        entries = [
            *manifest.models,
            *([manifest.segmenter] if manifest.segmenter else []),
            *([manifest.selftest] if manifest.selftest else []),
        ]
        for entry in entries:
            file = bundle.path_of(entry)
            if not file.is_file():
                raise BundleError(
                    "bundle is incomplete", expected=f"bundle file {entry.file}", received="missing"
                )
            if verify and file_sha256(file) != entry.sha256:
                raise BundleError(
                    f"checksum mismatch for {entry.file}: the bundle was modified or damaged",
                    expected=entry.sha256[:16] + "...",
                    received=file_sha256(file)[:16] + "...",
                )
        return bundle

    @property
    def labels(self) -> tuple[str, ...]:
        """Class labels in output order."""
        return self.manifest.labels

    @property
    def spec(self) -> PreprocessSpec:
        """The preprocessing spec."""
        return self.manifest.preprocess

    def path_of(self, entry: ModelEntry | SegmenterEntry | SelfTestEntry) -> Path:
        """Absolute path of a bundle file (refusing names that escape the bundle folder)."""
        if "\x00" in entry.file:  # no path holds one; pathlib would raise ValueError (found by fuzzing)
            raise BundleError(
                "model file name holds a NUL byte", expected="a plain file name", received=repr(entry.file)
            )
        file = (self.root / entry.file).resolve()
        if file.parent != self.root.resolve():
            raise BundleError(
                "model file outside the bundle", expected="a plain file name", received=entry.file
            )
        return file

    def size_bytes(self) -> int:
        """Total size of the manifest and model files."""
        m = self.manifest
        extra = [e for e in (m.segmenter, m.selftest) if e is not None]
        files = [self.root / MANIFEST_NAME, *(self.path_of(e) for e in [*m.models, *extra])]
        return sum(f.stat().st_size for f in files)


def bundle_sha256(bundle: Bundle) -> str:
    """SHA-256 of the bundle's ``manifest.json`` (which pins every model file by its own SHA-256)."""
    return file_sha256(bundle.root / MANIFEST_NAME)


def write_manifest(root: str | Path, manifest: BundleManifest) -> Path:
    """Writes ``manifest.json`` after checking it parses back identically.

    Returns:
        Path of the written file.
    """
    data = manifest.to_dict()
    if BundleManifest.from_dict(json.loads(json.dumps(data))) != manifest:
        raise BundleError("manifest does not round-trip through JSON")
    path = Path(root) / MANIFEST_NAME
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
