"""Archive-scale classification: ``cxr-edge batch`` on one process or on Ray Data, Parquet out.

Public API::

    from cxr_edge.batch import Backend, run_batch
    summary = run_batch(["archive/"], "results/", backend=Backend.RAY, workers=8)

The same bundle, preprocessing and decode gate as ``cxr-edge predict``; rows hold ``predict``'s
columns plus per-model probabilities, the bundle's sha256 and timings (:mod:`cxr_edge.batch.rows`).
See ``docs/scale.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cxr_edge.batch.backend import Backend
from cxr_edge.batch.inputs import resolve_inputs
from cxr_edge.batch.rows import arrow_schema, batch_row, column_names
from cxr_edge.batch.store import new_run_id, prepare_out_dir
from cxr_edge.errors import InputError, printable_path
from cxr_edge.runtime.pipeline import PredictorSpec

__all__ = [
    "Backend",
    "BatchSummary",
    "PredictorSpec",
    "arrow_schema",
    "batch_row",
    "column_names",
    "run_batch",
]


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did (counts only: no paths, so it can be logged).

    Attributes:
        inputs: Inputs named (after expanding folders and manifests).
        skipped: Inputs that already had a row (``resume``).
        ok: Inputs classified in this run.
        errors: Inputs that got an error row in this run.
        seconds: Wall time of this run, backend start-up included.
        not_images: Files in input folders skipped as certainly not images (``.md``, ``.csv``...:
            :data:`cxr_edge.runtime.pipeline.NOT_IMAGES`); they get no row.
    """

    inputs: int
    skipped: int
    ok: int
    errors: int
    seconds: float
    not_images: int = 0

    @property
    def images_per_second(self) -> float:
        """Rows written per second of wall time."""
        return (self.ok + self.errors) / self.seconds if self.seconds > 0 else 0.0


def _check_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401 - Parquet output needs it
    except ImportError as exc:
        raise InputError(
            "batch output is Parquet, which needs pyarrow",
            expected="pip install 'cxr-edge[scale]'",
            received="no pyarrow in this environment",
        ) from exc


def run_batch(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    backend: Backend | str = Backend.LOCAL,
    spec: PredictorSpec | None = None,
    workers: int | None = None,
    address: str | None = None,
    resume: bool = False,
    rows_per_part: int = 1000,
    progress: bool = True,
) -> BatchSummary:
    """Classifies every input into Parquet parts under ``out_dir``.

    Args:
        inputs: Files, folders (searched recursively) and manifest CSVs (``path`` column). On a
            cluster, paths every node can read (a shared or object-storage mount).
        out_dir: Output folder: new or empty, or (``resume``) one an earlier run of the same bundle
            wrote into.
        backend: ``local`` (this process) or ``ray`` (Ray Data).
        spec: Bundle, members and threads (default: the shipped bundle, 1 thread).
        workers: Ray decode actors (default: the CPUs of a local Ray, or of this machine).
        address: An existing Ray cluster (default: a local Ray started and stopped for this run).
        resume: Skip inputs that already have a row in ``out_dir``.
        rows_per_part: Rows per part file (local backend: exactly, the most a crash recomputes; Ray: at
            least, per write task).
        progress: Show a progress bar.

    Raises:
        InputError: Bad output folder, manifest or options; missing pyarrow.
        BackendError: Ray is missing or its job failed (rows written so far are kept).
    """
    backend = Backend(backend)
    spec = spec or PredictorSpec()
    _check_pyarrow()
    t0 = time.perf_counter()
    not_images: list[str] = []
    paths = resolve_inputs([str(i) for i in inputs], skipped=not_images)
    # The predictor decides the columns (labels, members): build one to check the folder against.
    predictor = spec.build()
    done = prepare_out_dir(out_dir, predictor.labels, predictor.member_names, resume=resume)
    # Rows hold printable paths (a name that is not UTF-8 with \xNN escapes): compare in that form.
    todo = [p for p in paths if printable_path(os.path.abspath(p)) not in done]
    out = Path(out_dir)
    if not todo:
        counts = {"ok": 0, "error": 0}
    elif backend is Backend.LOCAL:
        from cxr_edge.batch.local import run_local

        counts = run_local(todo, out, spec, rows_per_part, progress, predictor=predictor)
    else:
        from cxr_edge.batch.ray_backend import default_workers, run_ray

        counts = run_ray(
            todo,
            out,
            spec,
            workers=workers or default_workers(),
            address=address,
            run_id=new_run_id(),
            rows_per_part=rows_per_part,
            progress=progress,
        )
    return BatchSummary(
        inputs=len(paths),
        skipped=len(paths) - len(todo),
        ok=counts["ok"],
        errors=counts["error"],
        seconds=time.perf_counter() - t0,
        not_images=len(not_images),
    )
