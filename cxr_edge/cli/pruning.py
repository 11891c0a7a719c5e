"""``cxr-edge prune``: iterative APoZ channel pruning of a training run, step by step (``[train]``)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cxr_edge.cli.common import (
    clean_errors,
    manifest_option,
    max_per_part_option,
    needs_train_extra,
    root_option,
    run_folders,
    runs_argument,
    split_option,
)


@click.command("prune")
@runs_argument
@manifest_option()
@split_option(required=False)
@click.option("--step", default=0.02, show_default=True, type=float, help="Fraction removed per step.")
@click.option(
    "--max", "max_fraction", default=0.5, show_default=True, type=float, help="Fraction to stop at."
)
@click.option(
    "--ranking",
    default="layer",
    show_default=True,
    type=click.Choice(["layer", "global"]),
    help="Rank APoZ within each layer (the paper's text) or across layers (the authors' code).",
)
@click.option(
    "--epochs",
    "finetune_epochs",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Fine-tuning epochs after each step.",
)
@click.option("--no-latency", is_flag=True, help="Skip the int8 TFLite latency measurement per step.")
@click.option(
    "--select",
    default="no-loss",
    show_default=True,
    type=click.Choice(["no-loss", "best", "fraction"]),
    help="Step exported to OUT/best: the most pruned one with no loss of validation macro AUC "
    "(within --tolerance), the one with the best validation AUC (the paper's rule), or the most "
    "pruned one at or below --fraction (a level chosen by `cxr-edge loso prune`).",
)
@click.option("--fraction", default=None, type=float, help="Pruning level for --select fraction.")
@click.option(
    "--tolerance", default=0.0, show_default=True, type=float, help="Validation AUC drop allowed by no-loss."
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Pruning folder (re-run to continue)."
)
@max_per_part_option
@root_option
@clean_errors
def prune_cmd(
    run_dirs,
    run_options,
    manifest_path,
    split_path,
    step,
    max_fraction,
    ranking,
    finetune_epochs,
    no_latency,
    select,
    fraction,
    tolerance,
    out,
    max_per_part,
    root,
):
    """Iterative APoZ channel pruning of a training RUN with fine-tuning; the chosen step goes to OUT/best.

    Re-run with the same settings to continue an interrupted run, or with another --select to
    choose again without pruning again.
    """
    runs = run_folders(run_dirs, run_options, "cxr-edge prune RUN --manifest CSV --out DIR")
    if len(runs) != 1:
        raise click.UsageError(f"prune takes one training run, not {len(runs)}")
    run_dir = runs[0]
    loop = needs_train_extra("cxr_edge.train.prune.loop")
    cfg = loop.PruneConfig(
        step=step,
        max_fraction=max_fraction,
        ranking=ranking,
        finetune_epochs=finetune_epochs,
        latency=not no_latency,
    )
    latency = needs_train_extra("cxr_edge.convert.latency").int8_latency_ms if cfg.latency else None
    folder = loop.prune_run(
        run_dir,
        manifest_path,
        split_path,
        out,
        cfg,
        latency_ms=latency,
        root=root,
        max_per_part=max_per_part,
        selection=select.replace("-", "_"),
        tolerance=tolerance,
        fraction=fraction,
    )
    click.echo((Path(folder) / loop.RESULTS).read_text())
    best = json.loads((Path(folder) / "best" / "run.json").read_text())
    click.echo(
        f"chosen ({select}): step {best['pruning_step']} ({best['pruned_fraction']:.0%} of prunable "
        f"channels removed), {best['params']:,} of {best['params_unpruned']:,} parameters; "
        f"bundle it with: cxr-edge convert {Path(folder) / 'best'} ..."
    )
