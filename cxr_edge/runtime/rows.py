"""Writing prediction rows to CSV or JSONL, one row per input, never overwriting by accident.

Every file name gets its row, whatever it holds: a name that is not UTF-8 is written with its odd
bytes as ``\\xNN`` (:func:`cxr_edge.errors.printable_path`, so the file stays valid UTF-8), and a
field holding a line break is quoted, so that ``--resume`` reads back exactly the rows written.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from cxr_edge.errors import InputError, printable_path
from cxr_edge.runtime.pipeline import Outcome

FORMATS = {".csv": "csv", ".jsonl": "jsonl"}


def outcome_row(outcome: Outcome, labels: Sequence[str]) -> dict:
    """The flat row for one input.

    Columns: ``path, status, error, label, prob_<label>..., crop, lung_fraction, flags, referral,
    latency_ms``. ``lung_fraction`` is empty without a segmenter (or when the crop fell back),
    ``flags`` joins the prediction's flags with ``"; "``, ``referral`` is the referral band's reason
    (empty when the prediction stands on its own).
    """
    row: dict = {
        "path": printable_path(outcome.path),
        "status": "ok" if outcome.ok else "error",
        "error": "",
        "label": "",
    }
    row.update({f"prob_{label}": "" for label in labels})
    row.update(crop="", lung_fraction="", flags="", referral="", latency_ms="")
    if outcome.error is not None:
        row["error"] = f"{type(outcome.error).__name__}: {outcome.error}"
    if outcome.prediction is not None:
        pred = outcome.prediction
        row["label"] = pred.label
        row.update({f"prob_{label}": round(pred.probs[label], 6) for label in labels})
        row["crop"] = pred.crop if pred.crop != "fallback" else f"fallback ({pred.crop_reason})"
        row["lung_fraction"] = "" if pred.lung_fraction is None else round(pred.lung_fraction, 6)
        row["flags"] = "; ".join(pred.flags)
        row["referral"] = pred.referral or ""
        row["latency_ms"] = round(pred.timings_ms.get("total", 0.0), 2)
    return row


def written_paths(path: str | Path, labels: Sequence[str], extra: Sequence[str] = ()) -> set[str]:
    """The ``path`` of every complete row already in a CSV/JSONL output (empty when there is no file).

    Used by ``predict --resume``. The file is only read, never changed.

    Raises:
        InputError: The file ends with an incomplete row (a crash mid-write: fix or remove that line), a
            CSV header differs from this bundle's columns (and ``extra``), or a JSONL line is not a row.
    """
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return set()
    with open(p, newline="", encoding="utf-8") as fh:  # newline="": a quoted "\r" stays "\r"
        text = fh.read()
    if not text.endswith("\n"):
        raise InputError(
            "output ends with an incomplete row",
            expected="complete rows (remove or fix the last line, then resume)",
            received=f"{p}: {text.rsplit(chr(10), 1)[-1][:60]!r}",
        )
    if FORMATS.get(p.suffix.lower()) == "csv":
        # The csv module, not str.splitlines(): a quoted name may hold a line break (or U+2028, a
        # line boundary only to splitlines).
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [*outcome_row(Outcome(""), labels), *extra]
        if reader.fieldnames != fields:
            missing = [f for f in fields if f not in (reader.fieldnames or [])]
            hint = f" (missing {', '.join(missing)}: written by another bundle or an older cxr-edge?)"
            raise InputError(
                "output has other columns" + (hint if missing else ""),
                expected=",".join(fields),
                received=",".join(reader.fieldnames or []),
            )
        return {row["path"] for row in reader}
    done = set()
    for number, line in enumerate(text[:-1].split("\n"), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                "output holds a line that is not JSON", expected="JSONL rows", received=f"line {number}"
            ) from exc
        if not isinstance(row, dict) or "path" not in row:
            raise InputError(
                "output holds a line that is not a row", expected="a 'path' key", received=f"line {number}"
            )
        done.add(row["path"])
    return done


class RowWriter:
    """Streams rows to a ``.csv`` or ``.jsonl`` file.

    JSONL rows hold the CSV columns (``lung_fraction`` and ``referral`` null when absent, ``flags`` a
    list) plus per-model probabilities, timings and how the image was read.

    Args:
        path: Output file; its suffix picks the format.
        labels: Label order of the bundle.
        overwrite: Replace an existing file (otherwise refuse: outputs are never lost silently).
        append: Keep an existing file and append to it (``--resume``); its rows' paths are in
            :attr:`done_paths`. Nothing written before is changed.
        extra: Columns after predict's (``heatmap`` with ``--heatmaps``), given to :meth:`write`.
    """

    def __init__(
        self,
        path: str | Path,
        labels: Sequence[str],
        *,
        overwrite: bool = False,
        append: bool = False,
        extra: Sequence[str] = (),
    ):
        self.path = Path(path)
        self.format = FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise InputError(
                "unknown output format", expected="a .csv or .jsonl file", received=self.path.name
            )
        if overwrite and append:
            raise InputError("conflicting options", expected="either overwrite or append", received="both")
        if self.path.exists() and not (overwrite or append):
            raise InputError(
                "output file exists", expected="a new file (or --force)", received=str(self.path)
            )
        self.labels = tuple(labels)
        self.extra = tuple(extra)
        #: Paths that already had a row when the file was opened for appending (``--resume``).
        self.done_paths: set[str] = written_paths(self.path, self.labels, self.extra) if append else set()
        resuming = append and self.path.exists() and self.path.stat().st_size > 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "a" if resuming else "w"
        self._fh: IO[str] = open(self.path, mode, newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._csv = None
        if self.format == "csv":
            self._csv = CsvRows(self._fh, self.labels, header=not resuming, extra=self.extra)

    def write(self, outcome: Outcome, extra: dict | None = None) -> None:
        """Appends the row of one input and flushes (a crash loses at most the current row).

        Args:
            outcome: The input's prediction or error.
            extra: Values of the ``extra`` columns (missing ones are empty).
        """
        row = outcome_row(outcome, self.labels) | {k: (extra or {}).get(k, "") for k in self.extra}
        if self._csv is not None:
            self._csv.write(row)
        else:
            pred = outcome.prediction
            row["lung_fraction"] = pred.lung_fraction if pred is not None else None
            row["flags"] = list(pred.flags) if pred is not None else []
            row["referral"] = pred.referral if pred is not None else None
            if pred is not None:
                row["per_model"] = pred.per_model
                row["timings_ms"] = {k: round(v, 3) for k, v in pred.timings_ms.items()}
                row["image"] = pred.info.to_dict() if pred.info else None
                if row["image"] is not None:
                    row["image"]["source_file"] = printable_path(row["image"]["source_file"])
            self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Closes the file."""
        self._fh.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CsvRows:
    """Writes rows of :func:`outcome_row` as CSV to an open text stream (a file or standard output).

    Args:
        stream: Where to write (opened with ``newline=""`` for a file).
        labels: Label order of the bundle (the columns).
        header: Write the header line first.
        extra: Columns after predict's.
    """

    def __init__(
        self, stream: IO[str], labels: Sequence[str], *, header: bool = True, extra: Sequence[str] = ()
    ):
        fields = [*outcome_row(Outcome(""), labels), *extra]
        self._plain = csv.DictWriter(stream, fieldnames=fields, lineterminator="\n")
        # With "\n" as line terminator the csv module leaves a lone "\r" unquoted (it quotes only the
        # terminator's characters), and readers split the row there: such rows are written fully quoted.
        self._quoted = csv.DictWriter(stream, fieldnames=fields, lineterminator="\n", quoting=csv.QUOTE_ALL)
        if header:
            self._plain.writeheader()

    def write(self, row: dict) -> None:
        """Writes one row."""
        quoted = any(isinstance(v, str) and "\r" in v for v in row.values())
        (self._quoted if quoted else self._plain).writerow(row)
