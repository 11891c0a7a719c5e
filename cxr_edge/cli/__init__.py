"""The ``cxr-edge`` command line: every command imported when it runs (runtime ones never need TensorFlow)."""

from __future__ import annotations

import copy
import functools
import importlib
import logging

import click

#: Every command, as ``name: "module:attribute"``. A command's module is imported only when that command
#: runs (or ``--help`` lists them all): ``cxr-edge predict`` never imports the statistics (scipy,
#: statsmodels, pandas: ~0.8 s) that ``loso report`` needs, nor TensorFlow.
COMMANDS = {
    # Runtime: classify, evaluate, serve (the runtime install).
    "predict": "cxr_edge.cli.runtime:predict_cmd",
    "batch": "cxr_edge.cli.batch:batch_cmd",
    "demo": "cxr_edge.cli.runtime:demo_cmd",
    "segment": "cxr_edge.cli.runtime:segment_cmd",
    "evaluate": "cxr_edge.cli.runtime:evaluate_cmd",
    "split": "cxr_edge.cli.runtime:split_cmd",
    "serve": "cxr_edge.cli.serve:serve_group",
    "bench": "cxr_edge.benchmarks.latency:main",
    "bundle": "cxr_edge.cli.bundle:bundle_group",
    "loso": "cxr_edge.cli.loso:loso_group",
    "site": "cxr_edge.cli.site:site_group",
    # Learning: need the [train] extra (TensorFlow + Keras), imported when they run.
    "train": "cxr_edge.cli.training:train_cmd",
    "search": "cxr_edge.cli.training:search_cmd",
    "zoo": "cxr_edge.cli.training:zoo_cmd",
    "runs": "cxr_edge.cli.runs:runs_group",
    "prune": "cxr_edge.cli.pruning:prune_cmd",
    "convert": "cxr_edge.cli.conversion:convert_cmd",
    "convert-segmenter": "cxr_edge.cli.conversion:convert_segmenter_cmd",
    "import-weights": "cxr_edge.cli.weights:import_weights_cmd",
}
#: Names of one release ago: hidden, they run the new command after saying its name.
ALIASES = {
    "info": ("bundle", "info"),
    "decode-gate": ("bundle", "decode-gate"),
    "loso-report": ("loso", "report"),
    "loso-bundle": ("loso", "score-bundle"),
    "loso-ensemble": ("loso", "ensemble"),
    "prune-loso": ("loso", "prune"),
    "evaluate-run": ("runs", "report"),
}


class _LazyGroup(click.Group):
    """A click group whose commands are imported on first use (see :data:`COMMANDS`, :data:`ALIASES`)."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name in ALIASES:
            return _alias(name, *ALIASES[name], self.get_command(ctx, ALIASES[name][0]))
        if name not in COMMANDS:
            return super().get_command(ctx, name)
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)


def _alias(old: str, group: str, command: str, parent: click.Group) -> click.Command:
    """A hidden copy of ``parent``'s ``command`` under its old name, which says the new one first."""
    target = parent.get_command(click.Context(parent), command)
    alias = copy.copy(target)
    alias.hidden = True
    run = target.callback

    @functools.wraps(run)
    def callback(*args, **kwargs):
        click.echo(f"note: `cxr-edge {old}` is now `cxr-edge {group} {command}`", err=True)
        return run(*args, **kwargs)

    alias.callback = callback
    return alias


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cxr-edge")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Debug log on standard error: why a codec or a library failed on an input (its own text, which "
    "may quote DICOM values: not for shared logs).",
)
def main(verbose: bool) -> None:
    """cxr-edge: chest X-ray classifiers from training to the edge.

    Runtime commands need only the runtime install: predict, batch (Parquet: the [scale] extra), demo,
    segment, evaluate, split, serve, bench (its Keras baseline: [train]), bundle (info, card,
    decode-gate) and loso report / score-bundle / ensemble. Learning commands need the [train] extra
    (TensorFlow + Keras), imported only when they run: train, search, zoo, runs report, prune,
    convert, convert-segmenter, import-weights, loso train / prune.
    """
    if verbose:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("cxr_edge")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)


__all__ = ["main"]
