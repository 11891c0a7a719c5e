"""``cxr-edge runs``: what training runs (Keras folders, before conversion) score (``[train]``).

A bundle is scored by ``cxr-edge evaluate``; training run folders by ``cxr-edge runs report``.
"""

from __future__ import annotations

import click

from cxr_edge.cli.common import (
    clean_errors,
    manifest_option,
    needs_train_extra,
    root_option,
    run_folders,
    runs_argument,
)


@click.group("runs")
def runs_group() -> None:
    """Training runs (the Keras folders of `train`, `prune`, `loso train`): their scores ([train])."""


@runs_group.command("report")
@runs_argument
@manifest_option(required=False, help="Data manifest (default: the one recorded in run.json).")
@click.option(
    "--split",
    "split_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Split (default: the one recorded in run.json; must be the same file).",
)
@root_option
@clean_errors
def runs_report_cmd(run_dirs, run_options, manifest_path, split_path, root):
    """Print a Table III/IV-style row per run (test split; validation and held-out sources beside)."""
    run_dirs = run_folders(run_dirs, run_options, "cxr-edge runs report RUN...")
    evaluate = needs_train_extra("cxr_edge.train.evaluate")
    click.echo(evaluate.table_header())
    for run in run_dirs:
        result = evaluate.evaluate_run(run, manifest_path, split_path, root)
        click.echo(evaluate.table_row(result, "test"))
        click.echo(evaluate.table_row(result, "val"))
        if result["holdout"]:
            click.echo(evaluate.table_row(result, "holdout"))
