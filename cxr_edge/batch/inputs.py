"""What ``cxr-edge batch`` reads: files, folders (recursively) and manifest CSVs with a ``path`` column."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from cxr_edge.errors import InputError
from cxr_edge.runtime.pipeline import expand_inputs


def is_remote(item: str) -> bool:
    """Whether an input is a URI (``s3://``, ``gs://``...) rather than a path."""
    return "://" in item


def manifest_paths(csv_path: Path) -> list[str]:
    """The ``path`` column of a manifest CSV, relative paths taken from the CSV's folder.

    Raises:
        InputError: The CSV has no ``path`` column.
    """
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "path" not in (reader.fieldnames or []):
            raise InputError(
                "manifest CSV without a path column",
                expected="a 'path' column (one image per row)",
                received=f"{csv_path.name}: columns {', '.join((reader.fieldnames or [])[:8]) or 'none'}",
            )
        rows = [row["path"] for row in reader if row.get("path")]
    return [p if os.path.isabs(p) else str(csv_path.parent / p) for p in rows]


def resolve_inputs(items: Iterable[str], skipped: list[str] | None = None) -> list[str]:
    """Every input file, each once, in the order given (folders sorted, as ``predict`` lists them).

    A ``.csv`` file is a manifest (its ``path`` column); folders are searched recursively (hidden files
    skipped, and files that are certainly not images, appended to ``skipped`` when given); anything
    else is an input file (missing ones are kept so they get an error row).

    Raises:
        InputError: An input is a URI. Object storage is read through a mount (Mountpoint for S3,
            gcsfuse, a CSI volume on every node; ``docs/scale.md``): resume and atomic part files need
            a file system, and the direct reader was not testable offline.
    """
    out: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)

    for item in items:
        item = str(item)
        if is_remote(item):
            raise InputError(
                "URIs are not read directly",
                expected="paths (mount object storage on every node: docs/scale.md)",
                received=item.split("://", 1)[0] + "://...",
            )
        if item.lower().endswith(".csv") and Path(item).is_file():
            for p in manifest_paths(Path(item)):
                add(p)
        else:
            found: list[Path] = []
            for p in expand_inputs([item], skipped=found):
                add(str(p))
            if skipped is not None:
                skipped.extend(str(p) for p in found)
    return out
