"""Training commands: train a run, search its hyper-parameters, list the architectures (``[train]``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from cxr_edge.cli.common import (
    clean_errors,
    config_option,
    manifest_option,
    max_per_part_option,
    model_option,
    needs_train_extra,
    root_option,
    select_model,
    split_option,
    weights_value,
)


@click.command("train")
@config_option("Training config (TOML or a run's config.json), e.g. configs/custom_cnn.toml.")
@model_option
@manifest_option()
@split_option(required=False)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create.")
@click.option("--epochs", default=None, type=click.IntRange(1), help="Override the config's epochs.")
@click.option(
    "--weights",
    default=None,
    callback=weights_value,
    help="Backbone weights (include_top=False): a local .weights.h5 (see `cxr-edge import-weights`), or "
    "'imagenet' where Keras can download them; default: random initialisation.",
)
@click.option(
    "--init-from",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Stage-1 run directory to transfer from (modality-specific transfer learning).",
)
@click.option(
    "--mixed-precision/--no-mixed-precision",
    default=None,
    help="Train in mixed_bfloat16 (overrides the config).",
)
@click.option(
    "--crops",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Crop table from `cxr-edge segment --manifest` (trains a lung-crop classifier).",
)
@click.option(
    "--holdout-source",
    "holdout_sources",
    multiple=True,
    help="Leave this source out of training and report the model on it (cross-source check).",
)
@max_per_part_option
@root_option
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out (same config).")
@click.option("--force", is_flag=True, help="Start afresh in a non-empty run directory.")
@click.option(
    "--distribute",
    type=click.Choice(["none", "data-parallel"]),  # cxr_edge.train.distribute.CHOICES (not imported: Keras)
    default="none",
    show_default=True,
    help="data-parallel: split each batch across every device with Keras' DataParallel, weights "
    "replicated, gradients all-reduced; needs KERAS_BACKEND=jax.",
)
@clean_errors
def train_cmd(
    config_path,
    model,
    manifest_path,
    split_path,
    out,
    epochs,
    weights,
    init_from,
    mixed_precision,
    crops,
    holdout_sources,
    max_per_part,
    root,
    resume,
    force,
    distribute,
):
    """Train a classifier; writes config, history, metrics and the best model to --out."""
    config_mod = needs_train_extra("cxr_edge.train.config")
    fit = needs_train_extra("cxr_edge.train.fit")
    config = select_model(config_mod.TrainConfig.load(config_path), model)
    overrides = {
        "epochs": epochs,
        "weights": weights,
        "init_from": init_from,
        "mixed_precision": mixed_precision,
        "holdout_sources": tuple(holdout_sources) or None,
        "crops": crops,
    }
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if config.task == "segment":
        if split_path is None:
            raise click.UsageError("segmentation training needs --split (masks are assigned by patient)")
        if distribute != "none":
            raise click.UsageError("--distribute is wired for classifier training only, not segmentation")
        segment = needs_train_extra("cxr_edge.train.segment")
        run = segment.train_segmenter(
            config,
            manifest_path,
            split_path,
            out,
            root=root,
            overwrite=force,
            resume=resume,
            max_per_part=max_per_part,
        )
        click.echo(f"run written to {run}; held-out Dice in {run}/run.json")
        return
    run = fit.train_run(
        config,
        manifest_path,
        split_path,
        out,
        root=root,
        max_per_part=max_per_part,
        overwrite=force,
        resume=resume,
        distribute=distribute,
    )
    if distribute != "none":
        devices = json.loads((Path(run) / "run.json").read_text())["devices"]
        click.echo(f"trained {distribute} over {devices} device(s)")
    click.echo(f"run written to {run}; evaluate it with: cxr-edge runs report {run}")


@click.command("search")
@config_option("Training config with a [search] table, e.g. configs/search_custom_cnn.toml.")
@model_option
@manifest_option()
@split_option()
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Search folder (re-running the command continues the search).",
)
@click.option("--trials", default=None, type=click.IntRange(1), help="Override the number of trials.")
@click.option("--epochs", default=None, type=click.IntRange(1), help="Override the epochs per trial.")
@max_per_part_option
@root_option
@clean_errors
def search_cmd(config_path, model, manifest_path, split_path, out, trials, epochs, max_per_part, root):
    """Randomised hyper-parameter search; writes search_results.csv and best_config.json."""
    search = needs_train_extra("cxr_edge.train.search")
    config, budget = search.load_search_config(config_path)
    config = select_model(config, model)
    overrides = {"trials": trials, "epochs": epochs}
    budget = dataclasses.replace(budget, **{k: v for k, v in overrides.items() if v is not None})
    folder = search.search(
        config, budget, manifest_path, split_path, out, root=root, max_per_part=max_per_part
    )
    click.echo((folder / search.RESULTS).read_text())
    click.echo(f"best config: {folder / search.BEST_CONFIG} (train it with cxr-edge train --config ...)")


@click.command("zoo")
@clean_errors
def zoo_cmd():
    """List the registered architectures (input size, channels, truncation layer, parameters)."""
    zoo = needs_train_extra("cxr_edge.train.zoo")
    click.echo(
        f"{'model':<22} {'input':>7} {'min':>5} {'ch':>3}  {'truncated at':<16} {'params (3 classes)':>19}"
    )
    for p in zoo.PRESETS.values():
        click.echo(
            f"{p.name:<22} {p.input_size:>7} {p.min_size:>5} {p.channels:>3}  "
            f"{p.truncate_at or '(backbone output)':<16} {p.params:>19,}"
        )
