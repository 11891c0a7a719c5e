"""Learning commands (train, convert). They import TensorFlow/Keras only when run."""

from __future__ import annotations

import shlex
import sys
from importlib import import_module

import click

from cxr_edge.cli.common import clean_errors, data_option, max_per_part_option, root_option, split_option


def _needs_train_extra(module: str):
    """Imports a training-side module, or explains how to install what it needs."""
    try:
        return import_module(module)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in {"tensorflow", "keras", "keras_tuner", "matplotlib"}:
            raise click.ClickException(
                f"this command needs {exc.name}, which the runtime install does not include: "
                "pip install 'cxr-edge[train]'"
            ) from exc
        raise


@click.command("train")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Training config (TOML), e.g. configs/custom_cnn.toml.",
)
@data_option
@split_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create.")
@click.option("--epochs", default=None, type=click.IntRange(1), help="Override the config's epochs.")
@max_per_part_option
@root_option
@click.option("--force", is_flag=True, help="Write into a non-empty run directory.")
@clean_errors
def train_cmd(config_path, manifest_path, split_path, out, epochs, max_per_part, root, force):
    """Train a classifier; writes config, history, metrics and the best model to --out."""
    config_mod = _needs_train_extra("train.config")
    fit = _needs_train_extra("train.fit")
    config = config_mod.TrainConfig.load(config_path)
    if epochs is not None:
        import dataclasses

        config = dataclasses.replace(config, epochs=epochs)
    run = fit.train_run(
        config, manifest_path, split_path, out, root=root, max_per_part=max_per_part, overwrite=force
    )
    click.echo(f"run written to {run}")


@click.command("convert")
@click.option(
    "--runs",
    "run_dirs",
    required=True,
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Training run directory (repeat for an ensemble).",
)
@data_option
@split_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to create.")
@click.option(
    "--quant", default="fp32,int8", show_default=True, help="Variants to convert (comma-separated)."
)
@click.option(
    "--member",
    "member_quant",
    default="int8",
    show_default=True,
    help="Variant the ensemble runs by default.",
)
@click.option("--name", default="cxr-edge", show_default=True, help="Bundle name.")
@max_per_part_option
@root_option
@click.option("--force", is_flag=True, help="Replace an existing bundle folder.")
@clean_errors
def convert_cmd(
    run_dirs, manifest_path, split_path, out, quant, member_quant, name, max_per_part, root, force
):
    """Convert trained runs to TFLite (fp32, int8), check parity on validation and write a bundle."""
    build = _needs_train_extra("convert.build")
    bundle = build.build_bundle(
        run_dirs,
        manifest_path,
        split_path,
        out,
        quants=[q.strip() for q in quant.split(",")],
        member_quant=member_quant,
        root=root,
        name=name,
        max_per_part=max_per_part,
        command=shlex.join(["cxr-edge", *sys.argv[1:]]),
        overwrite=force,
    )
    from cxr_edge.bundle import Bundle
    from cxr_edge.cli.runtime import model_lines

    for line in model_lines(Bundle.load(bundle)):
        click.echo(line)
    click.echo(f"bundle written to {bundle}; inspect it with: cxr-edge info --bundle {bundle}")
