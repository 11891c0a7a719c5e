"""The sample chest X-rays shipped with the package (CC BY 3.0 Hannover and NIH images)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from cxr_edge.errors import InputError

SAMPLES_CSV = "samples.csv"


@dataclass(frozen=True)
class Sample:
    """One shipped sample: its file, ground-truth label, source collection and licence."""

    file: Path
    label: str
    source: str
    license: str


def samples_dir() -> Path:
    """Folder holding the shipped samples, ``samples.csv`` and ``ATTRIBUTION.md``."""
    return Path(__file__).resolve().parents[1] / "data" / "samples"


def load_samples(folder: str | Path | None = None) -> list[Sample]:
    """Reads ``samples.csv`` (``file,label,source,license``) of the shipped (or given) sample folder."""
    folder = Path(folder) if folder is not None else samples_dir()
    table = folder / SAMPLES_CSV
    if not table.is_file():
        raise InputError("sample table not found", expected=SAMPLES_CSV, received=str(folder))
    with open(table, newline="", encoding="utf-8") as fh:
        return [
            Sample(folder / row["file"], row["label"], row["source"], row["license"])
            for row in csv.DictReader(fh)
        ]
