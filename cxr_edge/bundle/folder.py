"""A bundle folder on disk: loaded and verified (every model file's sha256), written, and hashed.

What the folder holds is described by :mod:`cxr_edge.bundle.manifest`; the shipped default bundle
lives in the package (``cxr_edge/data/default_bundle``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cxr_edge.bundle.manifest import (
    MANIFEST_NAME,
    BundleManifest,
    ModelEntry,
    SegmenterEntry,
)
from cxr_edge.bundle.presets import PRESETS, resolve
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
    """

    root: Path
    manifest: BundleManifest

    @classmethod
    def load(cls, path: str | Path | None = None, *, verify: bool = True) -> Bundle:
        """Loads a bundle, checking its manifest and the sha256 of every model file.

        Args:
            path: Bundle folder (or its ``manifest.json``), or a preset's name
                (:mod:`cxr_edge.bundle.presets`: ``default``, ``paper``); ``None`` loads the default.
            verify: Check file checksums (leave on; off only for tools that repair bundles).

        Raises:
            BundleError: Missing folder or files, malformed manifest, unknown version, bad checksum.
        """
        root = resolve(path) if path is not None else default_bundle_path()
        if root.is_file() and root.name == MANIFEST_NAME:
            root = root.parent
        manifest_file = root / MANIFEST_NAME
        if not manifest_file.is_file():
            raise BundleError(
                "not a bundle", expected=f"a folder holding {MANIFEST_NAME}", received=str(root)
            )
        try:
            data = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError("bundle manifest is not valid JSON", received=f"{exc}") from exc
        try:
            manifest = BundleManifest.from_dict(data, schema=False)
        except BundleError:
            manifest = BundleManifest.from_dict(data)  # the schema names the field, when it can
            raise
        bundle = cls(root, manifest)
        entries = [*manifest.models, *([manifest.segmenter] if manifest.segmenter else [])]
        for entry in entries:
            file = bundle.path_of(entry)
            if not file.is_file():
                raise BundleError(
                    "bundle is incomplete", expected=f"model file {entry.file}", received="missing"
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

    def path_of(self, entry: ModelEntry | SegmenterEntry) -> Path:
        """Absolute path of a model's file (refusing names that escape the bundle folder)."""
        file = (self.root / entry.file).resolve()
        if file.parent != self.root.resolve():
            raise BundleError(
                "model file outside the bundle", expected="a plain file name", received=entry.file
            )
        return file

    def size_bytes(self) -> int:
        """Total size of the manifest and model files."""
        seg = [self.manifest.segmenter] if self.manifest.segmenter else []
        files = [self.root / MANIFEST_NAME, *(self.path_of(m) for m in [*self.manifest.models, *seg])]
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
