"""Shared CLI plumbing: library errors become one clean line and a non-zero exit."""

from __future__ import annotations

import functools
from collections.abc import Callable

import click

from cxr_edge.errors import CxrEdgeError


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
        help="Bundle folder (default: the bundle shipped with cxr-edge).",
    )(func)


#: ``--data MANIFEST``: the data manifest CSV (shared by split, train, convert).
data_option = click.option(
    "--data",
    "manifest_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Data manifest CSV.",
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

#: ``--checks/--no-checks``: the input checks before classification (predict, batch; the node's config).
checks_option = click.option(
    "--checks/--no-checks",
    default=True,
    show_default=True,
    help="Refuse what the model must not judge before classifying it, as the DICOM node does: "
    "non-projection modality, another body part, a lateral view, colour, under 128 px, blank, no frontal "
    "chest pattern (an error row `InputRejectedError: <check>: <reason>`).",
)
