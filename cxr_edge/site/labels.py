"""A site's labelled images: ``LABELS.csv`` with ``path,label`` and an optional ``patient_id``.

Paths are relative to the CSV's folder (absolute ones are kept). Labels are mapped to the bundle's
labels through the bundle's own label map (``bacterial -> pneumonia``...) and the site's ``--map``
pairs; a label that maps to none of the bundle's labels is an error naming every such label, because
silently dropping a class would bias every number the study reports. Patient identifiers group
images for cross-validation and are never written to a report (only their count is).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cxr_edge.errors import InputError, printable_path

REQUIRED_COLUMNS = ("path", "label")


@dataclass(frozen=True)
class SiteImage:
    """One labelled image of the site.

    Attributes:
        path: The file.
        label: Its bundle label.
        patient: Patient key for grouping (the image's row number when the CSV has no ``patient_id``).
        raw_label: The label as the CSV wrote it.
    """

    path: Path
    label: str
    patient: str
    raw_label: str


@dataclass(frozen=True)
class SiteLabels:
    """The labelled images of one site, in CSV order.

    Attributes:
        images: The images.
        source: The CSV they came from.
        has_patients: Whether the CSV gave patient identifiers (otherwise every image is its own patient,
            which cross-validation must assume and the report says).
    """

    images: tuple[SiteImage, ...]
    source: Path
    has_patients: bool


def parse_map(pairs: Sequence[str]) -> dict[str, str]:
    """``RAW=LABEL`` pairs (``--map``) as a dict.

    Raises:
        InputError: A pair without ``=`` or with an empty side.
    """
    out = {}
    for pair in pairs:
        raw, sep, label = pair.partition("=")
        if not sep or not raw.strip() or not label.strip():
            raise InputError("invalid --map pair", expected="RAW=LABEL", received=repr(pair))
        out[raw.strip()] = label.strip()
    return out


def read_labels(
    csv_path: str | Path,
    labels: Sequence[str],
    *,
    label_map: Mapping[str, str] | None = None,
) -> SiteLabels:
    """Reads and checks a site's ``LABELS.csv`` against a bundle's labels.

    Args:
        csv_path: The CSV.
        labels: The bundle's labels.
        label_map: CSV label -> bundle label (the bundle's map updated with the site's ``--map``).

    Raises:
        InputError: The file is missing or empty, lacks a column, has an empty path or label, or has
            labels the bundle does not know (all of them named, with how many rows each).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError("labels file not found", expected="a CSV with path,label", received=str(csv_path))
    mapping = dict(label_map or {})
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = tuple(reader.fieldnames or ())
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise InputError(
                f"labels file lacks column(s) {', '.join(missing)}",
                expected="columns path,label[,patient_id]",
                received=", ".join(columns) or "no header",
            )
        has_patients = "patient_id" in columns
        images, unknown = [], Counter()
        for row_no, row in enumerate(reader, start=2):
            path, raw = (row.get("path") or "").strip(), (row.get("label") or "").strip()
            if not path or not raw:
                raise InputError(
                    f"labels file row {row_no} has an empty path or label",
                    expected="a path and a label on every row",
                    received=f"row {row_no}",
                )
            label = mapping.get(raw, raw)
            if label not in labels:
                unknown[raw] += 1
                continue
            patient = (row.get("patient_id") or "").strip() if has_patients else ""
            file = Path(path) if Path(path).is_absolute() else csv_path.parent / path
            images.append(SiteImage(file, label, patient or f"row{row_no}", raw))
    if unknown:
        names = ", ".join(f"{k!r} ({v} rows)" for k, v in sorted(unknown.items()))
        raise InputError(
            "labels the bundle does not know",
            expected=f"labels among {list(labels)}, or --map RAW=LABEL for each other name",
            received=names,
        )
    if not images:
        raise InputError(
            "labels file has no rows", expected="one row per labelled image", received=str(csv_path)
        )
    return SiteLabels(tuple(images), csv_path, has_patients)


def display(path: Path, root: Path) -> str:
    """A labelled image's name for rows and reports: relative to the CSV's folder when inside it."""
    try:
        return printable_path(path.relative_to(root))
    except ValueError:
        return printable_path(path)
