"""Conversion commands: training runs to a bundle (TFLite variants, gates, card) and a U-Net run to a
segmenter bundle (``[train]``)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from cxr_edge.cli.common import (
    AliasedOption,
    clean_errors,
    manifest_option,
    max_per_part_option,
    needs_train_extra,
    root_option,
    run_folders,
    runs_argument,
    split_option,
)
from cxr_edge.ops.ensemble import METHODS, WEIGHT_RULES


@click.command("convert")
@runs_argument
@manifest_option()
@split_option()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to create.")
@click.option(
    "--quant",
    default="fp32,int8",
    show_default=True,
    help="Variants to convert, comma-separated: fp32, fp16, dynamic_int8, int8, uint8.",
)
@click.option(
    "--allow-degraded",
    is_flag=True,
    help="Keep variants that fail the accuracy gate (the failure is recorded in the manifest).",
)
@click.option(
    "--min-agreement",
    default=0.99,
    show_default=True,
    type=float,
    help="Gate: argmax agreement with Keras on validation.",
)
@click.option(
    "--max-auc-drop",
    default=0.01,
    show_default=True,
    type=float,
    help="Gate: largest allowed macro-AUC loss on validation.",
)
@click.option(
    "--member",
    "member_quant",
    default="int8",
    show_default=True,
    help="Variant the ensemble runs by default.",
)
@click.option(
    "--member-fallback",
    default=None,
    help="Variant a member runs when its --member variant fails the gate (e.g. fp32: int8 where the gate "
    "passes); the failed variant is left out and provenance records it. Default: a failed gate stops.",
)
@click.option(
    "--ensemble",
    "method",
    default="mean",
    show_default=True,
    type=click.Choice(METHODS),
    help="Default combiner; with several runs, weights and the stacker are fitted on validation anyway.",
)
@click.option(
    "--weight-rule",
    default="logloss",
    show_default=True,
    type=click.Choice(WEIGHT_RULES),
    help="How weighted averaging is fitted: minimum validation log-loss, or the paper's accuracy rule.",
)
@click.option(
    "--segmenter",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Segmenter bundle to ship with lung-crop classifiers (the one that made their crop table).",
)
@click.option(
    "--referral-min-prob",
    "--abstain-min-prob",
    "referral_min_prob",
    cls=AliasedOption,
    hidden_aliases=("--abstain-min-prob",),
    default=None,
    type=click.FloatRange(0, 1),
    help="Referral band stored in the bundle: refer to a radiologist when the tempered top probability is "
    "below P.",
)
@click.option(
    "--referral-min-margin",
    "--abstain-min-margin",
    "referral_min_margin",
    cls=AliasedOption,
    hidden_aliases=("--abstain-min-margin",),
    default=None,
    type=click.FloatRange(0, 1),
    help="Referral band: refer when the top probability's margin over the second label is below M.",
)
@click.option(
    "--temperature",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Ensemble temperature instead of the one fitted on validation (e.g. fitted on leave-one-source-out "
    "predictions); provenance records which.",
)
@click.option(
    "--card",
    "card_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Model card input (TOML/JSON: intended_use, failure_modes, recipe, loso, loso_command, audit).",
)
@click.option("--name", default="cxr-edge", show_default=True, help="Bundle name.")
@click.option(
    "--decode-gate-images",
    type=click.IntRange(min=0),
    default=60,
    show_default=True,
    help="Validation images for the decode gate (reduced-resolution DICOM decoding); 0 skips it.",
)
@max_per_part_option
@root_option
@click.option("--force", is_flag=True, help="Replace an existing bundle folder.")
@clean_errors
def convert_cmd(
    run_dirs,
    run_options,
    manifest_path,
    split_path,
    out,
    quant,
    allow_degraded,
    min_agreement,
    max_auc_drop,
    member_quant,
    member_fallback,
    method,
    weight_rule,
    segmenter,
    referral_min_prob,
    referral_min_margin,
    temperature,
    card_file,
    name,
    decode_gate_images,
    max_per_part,
    root,
    force,
):
    """Convert training runs (RUN..., several for an ensemble) to TFLite, check parity, write a bundle.

    The bundle (format 3) also carries the runs' label map, the referral band when given, the
    lung-evidence threshold (with --segmenter; chosen on validation), the decode gate's verdict
    (whether full-size DICOMs may be decoded at reduced resolution) and a model card.
    """
    run_dirs = run_folders(run_dirs, run_options, "cxr-edge convert RUN... --manifest CSV --out BUNDLE")
    build = needs_train_extra("cxr_edge.convert.build")
    recipes = needs_train_extra("cxr_edge.convert.recipe")
    gates = needs_train_extra("cxr_edge.convert.gates")
    from cxr_edge.ops.quality import ReferralBand

    band = None
    if referral_min_prob is not None or referral_min_margin is not None:
        band = ReferralBand(min_top_prob=referral_min_prob or 0.0, min_margin=referral_min_margin or 0.0)
    recipe = recipes.BundleRecipe(
        runs=run_dirs,
        manifest=manifest_path,
        split=split_path,
        root=root,
        name=name,
        quants=tuple(q.strip() for q in quant.split(",") if q.strip()),
        member_quant=member_quant,
        member_fallback=member_fallback,
        method=method,
        weight_rule=weight_rule,
        segmenter=segmenter,
        thresholds=gates.GateThresholds(min_agreement=min_agreement, max_auc_drop=max_auc_drop),
        allow_degraded=allow_degraded,
        referral=band,
        temperature=temperature,
        card=card_file,
        decode_gate_images=decode_gate_images,
        max_per_part=max_per_part,
    )
    bundle = build.build_bundle(recipe, out, overwrite=force, command=shlex.join(["cxr-edge", *sys.argv[1:]]))
    from cxr_edge.bundle.folder import Bundle
    from cxr_edge.cli.bundle import model_lines

    written = Bundle.load(bundle)
    for line in model_lines(written):
        click.echo(line)
    for warning in written.manifest.provenance.get("warnings", []):
        click.echo(f"WARNING: this bundle looks useless: {warning}", err=True)
    click.echo(f"bundle written to {bundle}; inspect it with: cxr-edge bundle info --bundle {bundle}")


@click.command("convert-segmenter")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@manifest_option()
@split_option()
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Segmenter bundle folder to create."
)
@click.option(
    "--quant",
    default="int8",
    show_default=True,
    type=click.Choice(["fp32", "int8"]),
    help="Variant to ship (both are measured).",
)
@click.option(
    "--margin",
    default=0.05,
    show_default=True,
    type=float,
    help="Crop margin: fraction of the lung box's width/height added on each side.",
)
@root_option
@click.option("--force", is_flag=True, help="Replace an existing folder.")
@clean_errors
def convert_segmenter_cmd(run_dir, manifest_path, split_path, out, quant, margin, root, force):
    """Convert a U-Net run to a segmenter bundle (fp32 and int8 measured on held-out masks)."""
    seg = needs_train_extra("cxr_edge.convert.segmenter")
    from cxr_edge.ops.lungcrop import CropSpec

    bundle = seg.build_segmenter_bundle(
        run_dir,
        manifest_path,
        split_path,
        out,
        quant=quant,
        crop=CropSpec(margin=margin),
        root=root,
        overwrite=force,
        command=shlex.join(["cxr-edge", *sys.argv[1:]]),
    )
    variants = json.loads((Path(bundle) / "manifest.json").read_text())["provenance"]["variants"]
    for q, v in variants.items():
        click.echo(
            f"{q:<5} held-out Dice {v['dice']:.4f}  IoU {v['iou']:.4f}  ({v['n']} images)  "
            f"{v['bytes'] / 1024:.0f} KiB"
        )
    click.echo(f"segmenter bundle written to {bundle}")
