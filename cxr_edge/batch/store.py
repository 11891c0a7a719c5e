"""The output folder of a batch: Parquet part files, written whole or not at all, and resumable.

Layout of ``DIR``:

* ``part-<run>-<n>.parquet``: finished parts (one row per input, :mod:`cxr_edge.batch.rows`). The local
  engine writes each part to a hidden temporary file and renames it, so a part is either complete or
  absent; ``pyarrow.parquet.read_table(DIR)`` reads the results (hidden files are skipped).
* ``.ray-<run>/``: where the Ray backend's ``write_parquet`` writes; its readable files are moved into
  ``DIR`` when the run ends, or by the next ``--resume`` after an interruption.
* ``.incomplete/``: parts that could not be read back (a crash mid-write), moved aside, never deleted.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from cxr_edge.batch.rows import arrow_schema, to_table
from cxr_edge.errors import InputError

PART_GLOB = "part-*.parquet"
STAGING_PREFIX = ".ray-"
INCOMPLETE = ".incomplete"


def new_run_id() -> str:
    """A short id that keeps part names of successive runs (and resumes) apart."""
    return uuid.uuid4().hex[:8]


def _readable(path: Path):
    """The opened Parquet file, or None when it cannot be read (its footer is read once, here)."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception:  # truncated or foreign file: pyarrow raises ArrowInvalid, OSError...
        return None


def _set_aside(path: Path, out_dir: Path) -> None:
    aside = out_dir / INCOMPLETE
    aside.mkdir(exist_ok=True)
    os.replace(path, aside / f"{path.parent.name}-{path.name}")


def adopt_staged(out_dir: Path) -> None:
    """Moves readable files of Ray staging folders into ``out_dir`` (unreadable ones aside)."""
    for staging in sorted(out_dir.glob(STAGING_PREFIX + "*")):
        if not staging.is_dir():
            continue
        for f in sorted(staging.glob("*.parquet")):
            if _readable(f) is None:
                _set_aside(f, out_dir)
                continue
            os.replace(f, out_dir / f"part-{staging.name[len(STAGING_PREFIX) :]}-{f.name}")
        shutil.rmtree(staging, ignore_errors=True)  # only Ray's own bookkeeping files are left


def prepare_out_dir(
    out_dir: str | os.PathLike, labels: Sequence[str], members: Sequence[str], *, resume: bool
) -> set[str]:
    """Checks (or creates) the output folder; returns the absolute paths already written.

    Args:
        out_dir: The batch's ``--out``.
        labels: The bundle's labels (to check the existing parts' columns).
        members: The models run (ditto).
        resume: Keep the parts already there and skip their inputs.

    Raises:
        InputError: ``out_dir`` is a file, holds results without ``resume``, or holds parts with other
            columns (another bundle or ``--models``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("output is not a folder", expected="a folder for Parquet parts", received=str(out))
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        if any(out.iterdir()):
            raise InputError(
                "output folder is not empty",
                expected="a new or empty folder (or --resume to continue a run there)",
                received=str(out),
            )
        return set()
    adopt_staged(out)
    for tmp in sorted(out.glob(".part-*.tmp")):  # a local run killed while writing a part
        _set_aside(tmp, out)
    expected = arrow_schema(labels, members)
    done: set[str] = set()
    for part in sorted(out.glob(PART_GLOB)):
        parquet = _readable(part)
        if parquet is None:
            _set_aside(part, out)
            continue
        names = parquet.schema_arrow.names
        if names != expected.names:
            missing = [n for n in expected.names if n not in names]
            raise InputError(
                "output holds parts with other columns",
                expected="parts of the same bundle and models (or a new folder)",
                received=f"{part.name}" + (f" without {', '.join(missing[:4])}" if missing else ""),
            )
        done.update(os.path.abspath(p) for p in parquet.read(columns=["path"]).column(0).to_pylist())
    return done


class PartWriter:
    """Buffers rows and writes them as whole part files (temporary file, then rename).

    Args:
        out_dir: The output folder.
        labels: The bundle's labels.
        members: The models run.
        rows_per_part: Rows per part file: at most this many are recomputed after a crash.
    """

    def __init__(self, out_dir: Path, labels: Sequence[str], members: Sequence[str], rows_per_part: int):
        self.out_dir = Path(out_dir)
        self.labels, self.members = tuple(labels), tuple(members)
        self.rows_per_part = rows_per_part
        self.run = new_run_id()
        self._rows: list[dict] = []
        self._parts = 0

    def add(self, row: dict) -> None:
        """Adds one row; a full buffer is written out."""
        self._rows.append(row)
        if len(self._rows) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        """Writes the buffered rows as one part (nothing when empty)."""
        if not self._rows:
            return
        import pyarrow.parquet as pq

        name = f"part-{self.run}-{self._parts:05d}.parquet"
        tmp = self.out_dir / f".{name}.tmp"
        pq.write_table(to_table(self._rows, self.labels, self.members), tmp)
        os.replace(tmp, self.out_dir / name)
        self._parts += 1
        self._rows = []
