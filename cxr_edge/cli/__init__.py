"""The ``cxr-edge`` command line: every command imported when it runs (runtime ones never need TensorFlow)."""

from __future__ import annotations

import importlib
import logging

import click

#: Every command, as ``name: "module:attribute"``. A command's module is imported only when that command
#: runs (or ``--help`` lists them all): ``cxr-edge predict`` never imports the statistics (scipy,
#: statsmodels, pandas: ~0.8 s) that ``loso-report`` needs, nor TensorFlow.
COMMANDS = {
    "predict": "cxr_edge.cli.runtime:predict_cmd",
    "batch": "cxr_edge.cli.batch:batch_cmd",
    "info": "cxr_edge.cli.info:info_cmd",
    "demo": "cxr_edge.cli.runtime:demo_cmd",
    "segment": "cxr_edge.cli.runtime:segment_cmd",
    "evaluate": "cxr_edge.cli.runtime:evaluate_cmd",
    "split": "cxr_edge.cli.runtime:split_cmd",
    "serve": "cxr_edge.cli.serve:serve_group",
    "decode-gate": "cxr_edge.cli.decode:decode_gate_cmd",
    "bench": "cxr_edge.benchmarks.latency:main",
    "loso-report": "cxr_edge.cli.loso:loso_report_cmd",
    "loso-bundle": "cxr_edge.cli.loso:loso_bundle_cmd",
    "loso-ensemble": "cxr_edge.cli.loso:loso_ensemble_cmd",
    # The learning commands need the [train] extra, which they import when run.
    "train": "cxr_edge.cli.learning:train_cmd",
    "search": "cxr_edge.cli.learning:search_cmd",
    "evaluate-run": "cxr_edge.cli.learning:evaluate_run_cmd",
    "prune": "cxr_edge.cli.learning:prune_cmd",
    "convert": "cxr_edge.cli.learning:convert_cmd",
    "convert-segmenter": "cxr_edge.cli.learning:convert_segmenter_cmd",
    "zoo": "cxr_edge.cli.learning:zoo_cmd",
    "loso": "cxr_edge.cli.loso:loso_cmd",
    "prune-loso": "cxr_edge.cli.loso:prune_loso_cmd",
    "import-weights": "cxr_edge.cli.weights:import_weights_cmd",
}


class _LazyGroup(click.Group):
    """A click group whose commands are imported on first use (see :data:`COMMANDS`)."""

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return super().get_command(ctx, name)
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)


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

    Runtime commands (predict, batch, info, demo, segment, evaluate, split, serve, bench, loso-report,
    loso-bundle, loso-ensemble, decode-gate) need only the runtime install (batch: the [scale] extra
    for Parquet and Ray; bench --baseline: [train]); train, loso, prune-loso, search, evaluate-run,
    prune, convert, convert-segmenter, import-weights and zoo need the [train] extra (TensorFlow +
    Keras), which they import only when run.
    """
    if verbose:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("cxr_edge")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)


__all__ = ["main"]
