"""What ``cxr-edge batch`` reads: files, folders (recursively) and manifest CSVs with a ``path`` column."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from cxr_edge.errors import InputError
from cxr_edge.pipeline import expand_inputs


def is_remote(item: str) -> bool:
    """Whether an input names object storage (``s3://``, ``gs://``...), read by Ray Data itself."""
    return "://" in item and not item.startswith("file://")


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
    return [p if is_remote(p) or os.path.isabs(p) else str(csv_path.parent / p) for p in rows]


def resolve_inputs(items: Iterable[str]) -> list[str]:
    """Every input file, each once, in the order given (folders sorted, as ``predict`` lists them).

    A ``.csv`` file is a manifest (its ``path`` column); folders are searched recursively (hidden files
    skipped); anything else is an input file (missing ones are kept so they get an error row).
    """
    out: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = path if is_remote(path) else os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)

    for item in items:
        item = str(item)
        if is_remote(item):
            add(item)
        elif item.lower().endswith(".csv") and Path(item).is_file():
            for p in manifest_paths(Path(item)):
                add(p)
        else:
            for p in expand_inputs([item]):
                add(str(p))
    return out
