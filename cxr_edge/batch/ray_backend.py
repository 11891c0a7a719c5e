"""The Ray backend: Ray Data streams inputs through CPU actors that decode and an actor pool that classifies.

Pipeline (one Ray Data job, streaming, so memory stays bounded whatever the archive size)::

    from_items(paths)                                every node reads its files (shared/object mount)
      -> map_batches(_PrepareBatch)   actors: decode (bundle's ReadOptions), segment, preprocess
      -> map_batches(_ClassifyBatch)  actor pool: the members' LiteRT interpreters, combiner, heat map
      -> write_parquet(DIR/.ray-<run>/)            moved into DIR when the run ends (or on --resume)

Ray Data restarts an actor that dies (a codec crash) and retries its batch; Python errors of one input
never reach Ray (they are that input's error row).

Both stages are actors rather than tasks because each holds interpreters loaded once (the segmenter in
stage 1, the classifiers in stage 2); a task would reload the bundle (~40 ms, sha256 checks) per batch.
Ray is imported only here, and only when the Ray backend runs.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

from cxr_edge.batch.rows import arrow_schema
from cxr_edge.batch.stages import Classifier, Preparer
from cxr_edge.batch.store import STAGING_PREFIX, adopt_staged
from cxr_edge.errors import CxrEdgeError
from cxr_edge.runtime.pipeline import PredictorSpec

#: Images per Ray Data batch: 16 cut the per-image overhead of 4 by ~13 ms on PNGs (200 kit PNGs, 2 workers:
#: 13.8 vs 16.4 s); a batch of full-size JPEG 2000 DICOMs is then ~8 s of work per actor call.
BATCH_SIZE = 16


class BackendError(CxrEdgeError):
    """The distributed engine is missing or could not run the job."""


class _PrepareBatch:
    def __init__(self, spec: PredictorSpec):
        self.stage = Preparer(spec)

    def __call__(self, batch: dict) -> dict:
        paths = [os.fsdecode(bytes(p)) for p in batch["path"]]
        payloads, errors = [], []
        for path in paths:
            item, error = self.stage.prepare(path)
            # Bytes, not objects: NumPy would turn a column of (array, info, float) tuples into a 2-D
            # object array; pickled items cross the object store as they are.
            payloads.append(None if item is None else pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
            errors.append(error)
        return {"path": [os.fsencode(p) for p in paths], "payload": payloads, "error": errors}


class _ClassifyBatch:
    def __init__(self, spec: PredictorSpec):
        self.stage = Classifier(spec)

    def __call__(self, batch: dict):
        import pyarrow as pa

        rows = []
        for path, payload, error in zip(batch["path"], batch["payload"], batch["error"], strict=True):
            item = None if payload is None else pickle.loads(payload)
            rows.append(self.stage.row(os.fsdecode(bytes(path)), item, str(error)))
        return pa.Table.from_pylist(rows, schema=arrow_schema(self.stage.labels, self.stage.members))


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise BackendError(
            "the Ray backend needs Ray Data",
            expected="pip install 'cxr-edge[scale]' (ray[data], pyarrow)",
            received=f"{type(exc).__name__}: {exc}",
        ) from exc
    return ray


def run_ray(
    paths: Sequence[str],
    out_dir: Path,
    spec: PredictorSpec,
    *,
    workers: int,
    address: str | None,
    run_id: str,
    rows_per_part: int = 1000,
    progress: bool = True,
) -> dict[str, int]:
    """Runs the batch on Ray; returns ``{"ok": n, "error": n}`` from the written parts.

    Args:
        paths: Input paths (readable on every node of a cluster).
        out_dir: The output folder (already checked by :func:`cxr_edge.batch.store.prepare_out_dir`).
        spec: How each actor builds its predictor.
        workers: Decode actors (and CPUs of a local Ray); classifier actors are a quarter of that, at
            least one: the models take ~2 % of an image's time.
        address: An existing cluster (``ray://host:10001``, ``auto``), or None to start a local Ray.
        run_id: Names the staging folder.
        rows_per_part: Fewest rows per Parquet file (Ray writes one file per block otherwise).
        progress: Show Ray Data's progress bars.
    """
    ray = _ray()
    started = False
    if not ray.is_initialized():
        # No dashboard, no worker output forwarded to this terminal: logs stay free of paths, counts only.
        kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=workers, **kwargs)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.enable_operator_progress_bars = progress
        ds = _source(ray, paths)
        classifiers = max(1, math.ceil(workers / 4))
        # (stage, actors, CPUs per actor): on a local Ray the light classifier shares the decoders' CPUs.
        for stage, actors, cpus in (
            (_PrepareBatch, workers, 1),
            (_ClassifyBatch, classifiers, 0.25 if address is None else 1),
        ):
            ds = ds.map_batches(
                stage,
                fn_constructor_kwargs={"spec": spec},
                batch_size=BATCH_SIZE,
                batch_format="numpy",
                concurrency=actors,
                num_cpus=cpus,
            )
        staging = out_dir / f"{STAGING_PREFIX}{run_id}"
        ds.write_parquet(str(staging.resolve()), try_create_dir=True, min_rows_per_file=rows_per_part)
    except CxrEdgeError:
        raise
    except Exception as exc:  # Ray's own failures (cluster lost, actor died thrice) end the run cleanly
        raise BackendError(
            "the Ray job failed (rows written so far are kept; --resume continues)",
            expected="a running Ray cluster",
            received=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
        ) from exc
    finally:
        if started:
            ray.shutdown()
    adopt_staged(out_dir)
    return _counts(out_dir, run_id)


def _source(ray, paths: Sequence[str]):
    # Paths, not file contents: each decode actor reads its own files (from a mount on a cluster), so
    # the driver never holds the archive and the object store carries only prepared inputs. Paths
    # travel as bytes (os.fsencode): Arrow strings must be UTF-8, file names need not be.
    return ray.data.from_items([{"path": os.fsencode(p)} for p in paths])


def _counts(out_dir: Path, run_id: str) -> dict[str, int]:
    import pyarrow.parquet as pq

    counts = {"ok": 0, "error": 0}
    for part in out_dir.glob(f"part-{run_id}-*.parquet"):
        for status in pq.read_table(part, columns=["status"]).column(0).to_pylist():
            counts[status] += 1
    return counts


def default_workers() -> int:
    """CPUs of this machine (the local Ray's size when ``--workers`` is not given)."""
    return os.cpu_count() or 1
