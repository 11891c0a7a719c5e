"""``cxr-edge batch``: archive-scale classification into Parquet, in this process or on Ray Data."""

from __future__ import annotations

import sys

import click

from cxr_edge.batch.backend import Backend
from cxr_edge.cli.common import (
    AliasedOption,
    bundle_option,
    checks_option,
    clean_errors,
    models_option,
    threads_option,
)


@click.command("batch")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(path_type=str), help="Folder for the Parquet parts."
)
@click.option(
    "--backend",
    "--engine",
    "backend",
    cls=AliasedOption,
    hidden_aliases=("--engine",),
    type=click.Choice([b.value for b in Backend]),
    default="local",
    show_default=True,
    help="local: this process. ray: Ray Data (decode actors, classifier actor pool, write_parquet).",
)
@click.option(
    "--address", default=None, help="Existing Ray cluster (e.g. ray://head:10001); default: a local Ray."
)
@click.option(
    "--workers",
    default=None,
    type=click.IntRange(1, 4096),
    help="Ray decode actors (and the CPUs of a local Ray). Default: this machine's CPUs.",
)
@bundle_option
@models_option
@threads_option
@checks_option
@click.option("--resume", is_flag=True, help="Continue in --out: skip inputs that already have a row.")
@click.option(
    "--rows-per-part",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="Rows per Parquet part (local: exactly, the most an interruption recomputes; ray: at least).",
)
@clean_errors
def batch_cmd(
    inputs, out_dir, backend, address, workers, bundle_dir, models, threads, checks, resume, rows_per_part
):
    """Classify an archive: files, folders, manifest CSVs (`path` column) -> Parquet rows under --out.

    One row per input with the columns of `cxr-edge predict` (unrounded), each member's probabilities
    (member_<model>_<label>), bundle_sha256 and decode/prepare/model timings. Bad files become error
    rows; the job goes on. --out must be new or empty unless --resume continues a run there (inputs
    with a row are skipped; an interrupted part is set aside in .incomplete/). Read the result with
    pyarrow.parquet.read_table(OUT) or any Parquet reader. Logs hold counts, never paths. Exits 0 when
    every input succeeded and 2 when any failed. Needs the [scale] extra (pyarrow; ray for --backend ray).
    """
    from cxr_edge.batch import PredictorSpec, run_batch

    if address and backend != "ray":
        raise click.UsageError("--address needs --backend ray")
    spec = PredictorSpec(bundle_dir=bundle_dir, members=models, threads=threads, checks=checks)
    summary = run_batch(
        inputs,
        out_dir,
        backend=Backend(backend),
        spec=spec,
        workers=workers,
        address=address,
        resume=resume,
        rows_per_part=rows_per_part,
    )
    click.echo(
        f"{summary.ok + summary.errors} of {summary.inputs} inputs written"
        + (f" ({summary.skipped} already had a row)" if summary.skipped else "")
        + f": {summary.ok} classified, {summary.errors} errors"
        + (f"; {summary.not_images} non-image file(s) in folders skipped" if summary.not_images else "")
        + f"; {summary.seconds:.1f} s "
        f"({summary.images_per_second:.1f} img/s, backend {backend}); rows in {out_dir}",
        err=True,
    )
    sys.exit(2 if summary.errors else 0)
