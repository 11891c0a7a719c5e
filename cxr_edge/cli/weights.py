"""``cxr-edge import-weights``: ImageNet-initialised backbone weights from a TF.js layers model (npm)."""

from __future__ import annotations

import click

from cxr_edge.cli.common import clean_errors, needs_train_extra

#: Zoo backbones with a TF.js import (cxr_edge.train.tfjs_weights.SUPPORTED_MODELS; not imported here:
#: TensorFlow).
TFJS_MODELS = ("mobilenet_v2", "inception_v3")


@click.command("import-weights")
@click.option(
    "--tfjs",
    "source",
    required=True,
    type=click.Path(exists=True),
    help="TF.js layers model: an npm tarball (e.g. nsfwjs-4.4.0.tgz), its extracted package folder, or a "
    "folder with model.json and .bin shards.",
)
@click.option("--model", required=True, type=click.Choice(TFJS_MODELS), help="Zoo backbone to build.")
@click.option(
    "--input-size",
    default=None,
    type=click.IntRange(1),
    help="Input side the Keras backbone is built and checked at (default: the TF.js model's). The weights "
    "do not depend on it: the file loads at any input side the architecture accepts.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Weights file to write (name ending in .weights.h5); <out>.provenance.json goes beside it.",
)
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@clean_errors
def import_weights_cmd(source, model, input_size, out, force):
    """Convert a TF.js model's backbone into a Keras .weights.h5 for `train --weights` / `weights = "..."`.

    Only the convolutional backbone (include_top=False) is exported; the TF.js model's own head is
    dropped. Bundled .min.js model files are evaluated with node (vm context, permission model on):
    convert only packages you trust.
    """
    tfjs = needs_train_extra("cxr_edge.train.tfjs_weights")
    made = tfjs.import_tfjs_weights(source, model, out, input_size=input_size, overwrite=force)
    checks = made["checks"]
    click.echo(
        f"{out}: {made['layers']['imported']} layers, {checks['imported_variables']} of "
        f"{checks['keras_variables']} Keras variables imported from {made['package'] or 'TF.js'} "
        f"{made['version'] or ''}".rstrip()
    )
    click.echo(f"checked at input {tuple(made['input_shape_checked'])}; loads at {made['loads_at']}")
    tuned = made["source_trainable_layers"]
    if tuned:
        click.echo(
            f"note: {len(tuned)} layers from {tuned[0]!r} on were trainable in the source and may be "
            "fine-tuned away from ImageNet"
        )
    click.echo(f"provenance: {tfjs.provenance_path(out)}")
