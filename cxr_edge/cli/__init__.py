"""The ``cxr-edge`` command line: runtime commands here, learning commands imported lazily."""

from __future__ import annotations

import click

from cxr_edge.cli.learning import (
    convert_cmd,
    convert_segmenter_cmd,
    evaluate_run_cmd,
    search_cmd,
    train_cmd,
    zoo_cmd,
)
from cxr_edge.cli.runtime import demo_cmd, evaluate_cmd, info_cmd, predict_cmd, segment_cmd, split_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cxr-edge")
def main() -> None:
    """cxr-edge: chest X-ray classifiers from training to the edge.

    Runtime commands (predict, info, demo, split, evaluate) need only the runtime install; train, search,
    evaluate-run, convert and zoo need the [train] extra (TensorFlow + Keras).
    """


for command in (
    predict_cmd,
    info_cmd,
    demo_cmd,
    evaluate_cmd,
    segment_cmd,
    split_cmd,
    train_cmd,
    search_cmd,
    evaluate_run_cmd,
    convert_cmd,
    convert_segmenter_cmd,
    zoo_cmd,
):
    main.add_command(command)

__all__ = ["main"]
