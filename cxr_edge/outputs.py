"""Writing prediction rows to CSV or JSONL, one row per input, never overwriting by accident."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from cxr_edge.errors import InputError
from cxr_edge.pipeline import Outcome

FORMATS = {".csv": "csv", ".jsonl": "jsonl"}


def outcome_row(outcome: Outcome, labels: Sequence[str]) -> dict:
    """The flat row for one input: ``path, status, error, label, prob_<label>..., crop, latency_ms``."""
    row: dict = {"path": outcome.path, "status": "ok" if outcome.ok else "error", "error": "", "label": ""}
    row.update({f"prob_{label}": "" for label in labels})
    row["crop"] = ""
    row["latency_ms"] = ""
    if outcome.error is not None:
        row["error"] = f"{type(outcome.error).__name__}: {outcome.error}"
    if outcome.prediction is not None:
        pred = outcome.prediction
        row["label"] = pred.label
        row.update({f"prob_{label}": round(pred.probs[label], 6) for label in labels})
        row["crop"] = pred.crop if pred.crop != "fallback" else f"fallback ({pred.crop_reason})"
        row["latency_ms"] = round(pred.timings_ms.get("total", 0.0), 2)
    return row


class RowWriter:
    """Streams rows to a ``.csv`` or ``.jsonl`` file (JSONL rows add per-model probabilities and timings).

    Args:
        path: Output file; its suffix picks the format.
        labels: Label order of the bundle.
        overwrite: Replace an existing file (otherwise refuse: outputs are never lost silently).
    """

    def __init__(self, path: str | Path, labels: Sequence[str], *, overwrite: bool = False):
        self.path = Path(path)
        self.format = FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise InputError(
                "unknown output format", expected="a .csv or .jsonl file", received=self.path.name
            )
        if self.path.exists() and not overwrite:
            raise InputError(
                "output file exists", expected="a new file (or --force)", received=str(self.path)
            )
        self.labels = tuple(labels)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._csv = None
        if self.format == "csv":
            fields = list(outcome_row(Outcome(""), self.labels))
            self._csv = csv.DictWriter(self._fh, fieldnames=fields, lineterminator="\n")
            self._csv.writeheader()

    def write(self, outcome: Outcome) -> None:
        """Appends the row of one input and flushes (a crash loses at most the current row)."""
        row = outcome_row(outcome, self.labels)
        if self._csv is not None:
            self._csv.writerow(row)
        else:
            if outcome.prediction is not None:
                pred = outcome.prediction
                row["per_model"] = pred.per_model
                row["timings_ms"] = {k: round(v, 3) for k, v in pred.timings_ms.items()}
                row["image"] = pred.info.to_dict() if pred.info else None
            self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Closes the file."""
        self._fh.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
