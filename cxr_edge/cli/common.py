"""Shared CLI plumbing: clean errors, the options every command names the same way, and the lazy import
of the learning side.

Library errors become one clean line and a non-zero exit. A concept has one option name in every
command (``--manifest`` for the data CSV, positional ``RUN...`` for training runs); renamed options
keep their old names for one release, hidden from help. The learning commands import TensorFlow and
Keras (``cxr_edge.train``, ``cxr_edge.convert``) only when they run (:func:`needs_train_extra`), so
the runtime commands never pay for them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from importlib import import_module

import click

from cxr_edge.errors import CxrEdgeError
from cxr_edge.quiet import TENSORFLOW_NOTICES, verbose, without_notices


def clean_errors(func: Callable) -> Callable:
    """Turns :class:`CxrEdgeError` raised by the library into ``Error: ...`` and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except CxrEdgeError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper


def bundle_option(func: Callable) -> Callable:
    """``--bundle DIR`` (default: the shipped bundle)."""
    return click.option(
        "--bundle",
        "bundle_dir",
        type=click.Path(path_type=str),
        default=None,
        help="Bundle folder, or a shipped preset's name (`cxr-edge bundle list`; default: default).",
    )(func)


class AliasedOption(click.Option):
    """An option whose old names still work for one release after a rename but are not shown in help.

    Args:
        hidden_aliases: The old names (``--data`` for ``--manifest``...).
    """

    def __init__(self, *args, hidden_aliases: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_help_record(self, ctx):
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def manifest_option(
    required: bool = True, help: str = "Data manifest CSV (the data kit's columns)."
) -> Callable:
    """``--manifest CSV``: the data manifest, one name in every command (``--data`` still works)."""
    return click.option(
        "--manifest",
        "--data",
        "manifest_path",
        cls=AliasedOption,
        hidden_aliases=("--data",),
        required=required,
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help=help,
    )


def runs_argument(func: Callable) -> Callable:
    """``RUN...``: training run folders, positional in every command (``--runs``/``--run`` still work)."""
    func = click.argument(
        "run_dirs", nargs=-1, metavar="RUN...", type=click.Path(exists=True, file_okay=False)
    )(func)
    return click.option(
        "--runs",
        "--run",
        "run_options",
        multiple=True,
        hidden=True,
        type=click.Path(exists=True, file_okay=False),
    )(func)


def run_folders(run_dirs: tuple[str, ...], run_options: tuple[str, ...], usage: str) -> tuple[str, ...]:
    """The run folders given positionally or through the old options; a usage error without any."""
    runs = tuple(run_dirs) + tuple(run_options)
    if not runs:
        raise click.UsageError(f"give the training run folder(s): {usage}")
    return runs


def config_option(help: str, required: bool = True) -> Callable:
    """``--config FILE``: the TOML a command runs from (a training config, a LOSO recipe, serve.toml)."""
    return click.option(
        "--config",
        "config_path",
        required=required,
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help=help,
    )


def split_option(required: bool = True) -> Callable:
    """``--split SPLIT``: the split CSV every learning stage reads (optional where a stage can make one)."""
    extra = "" if required else " Default: a seeded patient-level split saved in the run directory."
    return click.option(
        "--split",
        "split_path",
        required=required,
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help=f"Split CSV written by `cxr-edge split` (the same for every stage).{extra}",
    )


#: ``--root DIR``: where manifest paths start.
root_option = click.option(
    "--root",
    default=None,
    type=click.Path(file_okay=False),
    help="Image root (default: the manifest's folder).",
)
#: ``--max-per-part N``: quick runs on a subset.
max_per_part_option = click.option(
    "--max-per-part",
    default=None,
    type=click.IntRange(1),
    help="Use at most N images per split part (quick checks).",
)


def _members(ctx, param, value: str | None) -> tuple[str, ...] | None:
    return tuple(m.strip() for m in value.split(",")) if value else None


#: ``--models A,B``: models to run instead of the ensemble members (predict, batch), as a tuple or None.
models_option = click.option(
    "--models",
    default=None,
    callback=_members,
    help="Comma-separated model names to run instead of the ensemble members.",
)
#: ``--threads N``: LiteRT and DICOM decoder threads of a predictor (predict, batch).
threads_option = click.option(
    "--threads", default=1, show_default=True, type=click.IntRange(1, 64), help="LiteRT/decoder threads."
)

#: ``--checks/--no-checks``: the input checks before classification (predict, batch; the node's config).
checks_option = click.option(
    "--checks/--no-checks",
    default=True,
    show_default=True,
    help="Refuse what the model must not judge before classifying it, as the DICOM node does: "
    "non-projection modality, another body part, a lateral view, colour, under 128 px, blank, no frontal "
    "chest pattern (an error row `InputRejectedError: <check>: <reason>`).",
)


def select_model(config, name: str | None):
    """``--model NAME``: swaps the architecture and sets the input channels it needs."""
    if name is None:
        return config
    p = needs_train_extra("cxr_edge.train.zoo").preset(name)
    spec = dataclasses.replace(config.preprocess, channels=p.channels)
    return dataclasses.replace(config, model=name, preprocess=spec)


def needs_train_extra(module: str):
    """Imports a training-side module, or explains how to install what it needs.

    TensorFlow's start-up notices (oneDNN, absl, CPU features) and its INFO log stay off the
    terminal unless ``cxr-edge --verbose``; warnings and errors still show.
    """
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with without_notices(TENSORFLOW_NOTICES):
            return import_module(module)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in {"tensorflow", "keras", "keras_tuner", "matplotlib"}:
            raise click.ClickException(
                f"this command needs {exc.name}, which the runtime install does not include: "
                "pip install 'cxr-edge[train]'"
            ) from exc
        raise


def weights_value(ctx, param, value):
    """``--weights``: ``imagenet`` (passed to keras.applications) or an existing file."""
    if value is None or value == "imagenet":
        return value
    return click.Path(exists=True, dir_okay=False).convert(value, param, ctx)


model_option = click.option(
    "--model",
    default=None,
    help="Architecture (see `cxr-edge zoo`); overrides the config and sets its input channels.",
)
