"""Data manifests: the CSV that lists every image with its source, patient and label.

The format is that of ``../shared/data/manifest.csv``::

    path,source,patient_id,label,view,license,original_path,mask_path

``path`` and ``mask_path`` are relative to the manifest's folder (or to ``root``). Loading validates
the whole file and reports every problem at once (by row number, never by patient id).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cxr_edge.errors import ManifestError
from cxr_edge.hashing import file_sha256

REQUIRED_COLUMNS = ("path", "source", "patient_id", "label")
OPTIONAL_COLUMNS = ("view", "license", "original_path", "mask_path")
#: Labels the data kit's format defines (all but ``other`` occur in the extended kit).
KNOWN_LABELS = ("bacterial", "covid", "normal", "other", "pneumonia_unknown", "tb", "viral")
_MAX_LISTED = 10


@dataclass(frozen=True)
class Record:
    """One manifest row.

    Attributes:
        path: Image path as written in the manifest (relative to the root).
        source: Collection the image comes from.
        patient_id: Namespaced patient id (used for splitting; never logged).
        label: Class label string.
        view: View position (``PA``, ``AP``, ``unknown``...).
        license: Licence of the image.
        original_path: Upstream location.
        mask_path: Lung mask path relative to the root, or empty.
        root: Folder the relative paths start from.
        raw_label: The manifest's own label when a task's label map renamed it (e.g. ``bacterial``
            for a record of the triage task's ``pneumonia`` class), else empty.
    """

    path: str
    source: str
    patient_id: str
    label: str
    view: str = ""
    license: str = ""
    original_path: str = ""
    mask_path: str = ""
    root: Path = field(default=Path("."), compare=False)
    raw_label: str = ""

    @property
    def manifest_label(self) -> str:
        """The label as written in the manifest (before any task label map)."""
        return self.raw_label or self.label

    @property
    def file(self) -> Path:
        """Absolute path of the image."""
        return self.root / self.path

    @property
    def mask_file(self) -> Path | None:
        """Absolute path of the lung mask, or None."""
        return self.root / self.mask_path if self.mask_path else None


@dataclass(frozen=True)
class Manifest:
    """A validated manifest.

    Attributes:
        records: Rows in file order.
        csv_path: The manifest file.
        sha256: Hash of the manifest file's bytes (recorded in provenance).
    """

    records: tuple[Record, ...]
    csv_path: Path
    sha256: str

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels present, sorted."""
        return tuple(sorted({r.label for r in self.records}))

    def select(self, labels: Iterable[str], label_map: Mapping[str, str] | None = None) -> Manifest:
        """Returns the manifest restricted to a task: its ``labels``, after ``label_map``.

        Args:
            labels: The task's classes.
            label_map: Manifest label -> task label (e.g. ``{"bacterial": "pneumonia"}``); mapped
                records keep the manifest's label in ``raw_label``. Unmapped labels stay as they are.
        """
        wanted, mapping = set(labels), dict(label_map or {})
        out = []
        for r in self.records:
            task_label = mapping.get(r.label, r.label)
            if task_label not in wanted:
                continue
            out.append(r if task_label == r.label else replace(r, label=task_label, raw_label=r.label))
        return Manifest(tuple(out), self.csv_path, self.sha256)

    def counts(self) -> dict[str, Counter]:
        """Image counts per source and label: ``{source: Counter(label)}``."""
        out: dict[str, Counter] = {}
        for r in self.records:
            out.setdefault(r.source, Counter())[r.label] += 1
        return out


def load_manifest(
    csv_path: str | Path,
    root: str | Path | None = None,
    *,
    labels: Sequence[str] | None = None,
    check_files: bool = True,
) -> Manifest:
    """Reads and validates a manifest CSV.

    Args:
        csv_path: The manifest file.
        root: Folder that ``path`` entries are relative to (default: the manifest's folder).
        labels: Allowed labels (default: :data:`KNOWN_LABELS`). Rows with other labels are errors.
        check_files: Whether to require every image (and mask) to exist.

    Returns:
        The validated :class:`Manifest`.

    Raises:
        ManifestError: Listing every problem found (up to ten, then a count).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ManifestError("manifest not found", expected="a CSV file", received=str(csv_path))
    root = Path(root) if root is not None else csv_path.parent
    allowed = set(labels) if labels is not None else set(KNOWN_LABELS)
    problems: list[str] = []
    records: list[Record] = []
    seen: dict[str, int] = {}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ManifestError(
                "manifest lacks required columns",
                expected=", ".join(REQUIRED_COLUMNS),
                received=", ".join(columns) or "no header",
            )
        for line, row in enumerate(reader, start=2):
            values = {k: (row.get(k) or "").strip() for k in REQUIRED_COLUMNS + OPTIONAL_COLUMNS}
            empty = [k for k in REQUIRED_COLUMNS if not values[k]]
            if empty:
                problems.append(f"line {line}: empty {', '.join(empty)}")
                continue
            if values["label"] not in allowed:
                problems.append(
                    f"line {line}: unknown label {values['label']!r} (allowed: {sorted(allowed)})"
                )
                continue
            if values["path"] in seen:
                problems.append(
                    f"line {line}: duplicate path {values['path']!r} (first on line {seen[values['path']]})"
                )
                continue
            seen[values["path"]] = line
            record = Record(**values, root=root)
            if check_files and not record.file.is_file():
                problems.append(f"line {line}: image not found: {values['path']}")
                continue
            if check_files and record.mask_file is not None and not record.mask_file.is_file():
                problems.append(f"line {line}: mask not found: {values['mask_path']}")
                continue
            records.append(record)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise ManifestError(f"{len(problems)} invalid manifest rows in {csv_path}:\n  {listed}{more}")
    if not records:
        raise ManifestError("manifest has no rows", expected="at least one image", received="an empty table")
    return Manifest(tuple(records), csv_path, file_sha256(csv_path))
