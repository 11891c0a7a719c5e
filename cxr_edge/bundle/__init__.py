"""The bundle: what a device receives. Its manifest (format, schema, checksums) and its model card."""

from cxr_edge.bundle.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    SCHEMA_FILE,
    Bundle,
    BundleManifest,
    EnsembleConfig,
    ModelEntry,
    default_bundle_path,
    manifest_schema,
    write_manifest,
)

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SCHEMA_FILE",
    "Bundle",
    "BundleManifest",
    "EnsembleConfig",
    "ModelEntry",
    "default_bundle_path",
    "manifest_schema",
    "write_manifest",
]
