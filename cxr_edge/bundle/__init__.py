"""The bundle: what a device receives. Its manifest (format, schema, checksums) and its model card."""

from cxr_edge.bundle.entries import ModelEntry
from cxr_edge.bundle.folder import Bundle, bundle_sha256, default_bundle_path, write_manifest
from cxr_edge.bundle.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    SCHEMA_FILE,
    BundleManifest,
    EnsembleConfig,
    manifest_schema,
)

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SCHEMA_FILE",
    "Bundle",
    "BundleManifest",
    "EnsembleConfig",
    "ModelEntry",
    "bundle_sha256",
    "default_bundle_path",
    "manifest_schema",
    "write_manifest",
]
