"""The ``cxr-edge`` command line: runtime commands here, learning commands imported lazily."""

from __future__ import annotations

import logging

import click

from cxr_edge.cli import batch, decode, learning, loso, runtime, weights


class _Group(click.Group):
    """Adds ``bench``, which lives in ``benchmarks`` and is imported only when it is run."""

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), "bench"])

    def get_command(self, ctx, name):
        if name == "bench":
            from benchmarks.latency import main as bench  # the runtime never imports benchmarks otherwise

            return bench
        return super().get_command(ctx, name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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

    Runtime commands (predict, batch, info, demo, segment, evaluate, split, serve, loso-report, loso-bundle,
    loso-ensemble, decode-gate) need only the runtime install; train, loso, prune-loso, search,
    evaluate-run, prune, convert, convert-segmenter, import-weights and zoo need the [train] extra
    (TensorFlow + Keras), which they import only when run.
    """
    if verbose:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("cxr_edge")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)


RUNTIME_COMMANDS = (
    runtime.predict_cmd,
    batch.batch_cmd,
    runtime.info_cmd,
    runtime.demo_cmd,
    runtime.segment_cmd,
    runtime.evaluate_cmd,
    runtime.split_cmd,
    runtime.serve_group,
    decode.decode_gate_cmd,
    loso.loso_report_cmd,
    loso.loso_bundle_cmd,
    loso.loso_ensemble_cmd,
)
LEARNING_COMMANDS = (
    learning.train_cmd,
    learning.search_cmd,
    learning.evaluate_run_cmd,
    learning.prune_cmd,
    learning.convert_cmd,
    learning.convert_segmenter_cmd,
    learning.zoo_cmd,
    loso.loso_cmd,
    loso.prune_loso_cmd,
    weights.import_weights_cmd,
)
for command in RUNTIME_COMMANDS + LEARNING_COMMANDS:
    main.add_command(command)

__all__ = ["main"]
