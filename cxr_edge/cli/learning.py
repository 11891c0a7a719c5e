"""Learning commands (train, convert). They import TensorFlow/Keras only when run."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from importlib import import_module
from pathlib import Path

import click

from cxr_edge.cli.common import clean_errors, data_option, max_per_part_option, root_option, split_option
from cxr_edge.quiet import TENSORFLOW_NOTICES, verbose, without_notices


def _select_model(config, name: str | None):
    """``--model NAME``: swaps the architecture and sets the input channels it needs."""
    if name is None:
        return config
    p = _needs_train_extra("cxr_edge.train.zoo").preset(name)
    spec = dataclasses.replace(config.preprocess, channels=p.channels)
    return dataclasses.replace(config, model=name, preprocess=spec)


def _needs_train_extra(module: str):
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


def _weights_value(ctx, param, value):
    """``--weights``: ``imagenet`` (passed to keras.applications) or an existing file."""
    if value is None or value == "imagenet":
        return value
    return click.Path(exists=True, dir_okay=False).convert(value, param, ctx)


model_option = click.option(
    "--model",
    default=None,
    help="Architecture (see `cxr-edge zoo`); overrides the config and sets its input channels.",
)


@click.command("train")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Training config (TOML or a run's config.json), e.g. configs/custom_cnn.toml.",
)
@model_option
@data_option
@split_option(required=False)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create.")
@click.option("--epochs", default=None, type=click.IntRange(1), help="Override the config's epochs.")
@click.option(
    "--weights",
    default=None,
    callback=_weights_value,
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
    config_mod = _needs_train_extra("cxr_edge.train.config")
    fit = _needs_train_extra("cxr_edge.train.fit")
    config = _select_model(config_mod.TrainConfig.load(config_path), model)
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
        segment = _needs_train_extra("cxr_edge.train.segment")
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
    click.echo(f"run written to {run}; evaluate it with: cxr-edge evaluate-run {run}")


@click.command("search")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Training config with a [search] table, e.g. configs/search_custom_cnn.toml.",
)
@model_option
@data_option
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
    search = _needs_train_extra("cxr_edge.train.search")
    config, budget = search.load_search_config(config_path)
    config = _select_model(config, model)
    overrides = {"trials": trials, "epochs": epochs}
    budget = dataclasses.replace(budget, **{k: v for k, v in overrides.items() if v is not None})
    folder = search.search(
        config, budget, manifest_path, split_path, out, root=root, max_per_part=max_per_part
    )
    click.echo((folder / search.RESULTS).read_text())
    click.echo(f"best config: {folder / search.BEST_CONFIG} (train it with cxr-edge train --config ...)")


@click.command("evaluate-run")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--data",
    "manifest_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Data manifest (default: the one recorded in run.json).",
)
@click.option(
    "--split",
    "split_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Split (default: the one recorded in run.json; must be the same file).",
)
@root_option
@clean_errors
def evaluate_run_cmd(run_dirs, manifest_path, split_path, root):
    """Print a Table III/IV-style row per run (test split; validation and held-out sources beside)."""
    evaluate = _needs_train_extra("cxr_edge.train.evaluate")
    click.echo(evaluate.table_header())
    for run in run_dirs:
        result = evaluate.evaluate_run(run, manifest_path, split_path, root)
        click.echo(evaluate.table_row(result, "test"))
        click.echo(evaluate.table_row(result, "val"))
        if result["holdout"]:
            click.echo(evaluate.table_row(result, "holdout"))


@click.command("zoo")
@clean_errors
def zoo_cmd():
    """List the registered architectures (input size, channels, truncation layer, parameters)."""
    zoo = _needs_train_extra("cxr_edge.train.zoo")
    click.echo(
        f"{'model':<22} {'input':>7} {'min':>5} {'ch':>3}  {'truncated at':<16} {'params (3 classes)':>19}"
    )
    for p in zoo.PRESETS.values():
        click.echo(
            f"{p.name:<22} {p.input_size:>7} {p.min_size:>5} {p.channels:>3}  "
            f"{p.truncate_at or '(backbone output)':<16} {p.params:>19,}"
        )


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
    type=click.Choice(["vote", "mean", "weighted", "stacking"]),
    help="Default combiner; with several runs, weights and the stacker are fitted on validation anyway.",
)
@click.option(
    "--weight-rule",
    default="logloss",
    show_default=True,
    type=click.Choice(["logloss", "accuracy"]),
    help="How weighted averaging is fitted: minimum validation log-loss, or the paper's accuracy rule.",
)
@click.option(
    "--segmenter",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Segmenter bundle to ship with lung-crop classifiers (the one that made their crop table).",
)
@click.option(
    "--abstain-min-prob",
    default=None,
    type=click.FloatRange(0, 1),
    help="Abstention band stored in the bundle: refer to a radiologist when the tempered top probability is "
    "below P.",
)
@click.option(
    "--abstain-min-margin",
    default=None,
    type=click.FloatRange(0, 1),
    help="Abstention band: refer when the top probability's margin over the second label is below M.",
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
    abstain_min_prob,
    abstain_min_margin,
    temperature,
    card_file,
    name,
    decode_gate_images,
    max_per_part,
    root,
    force,
):
    """Convert trained runs to TFLite (fp32, int8), check parity on validation and write a bundle.

    The bundle (format 3) also carries the runs' label map, the abstention band when given, the
    lung-evidence threshold (with --segmenter; chosen on validation), the decode gate's verdict
    (whether full-size DICOMs may be decoded at reduced resolution) and a model card.
    """
    build = _needs_train_extra("cxr_edge.convert.build")
    from cxr_edge.ops.quality import AbstainConfig

    band = None
    if abstain_min_prob is not None or abstain_min_margin is not None:
        band = AbstainConfig(min_top_prob=abstain_min_prob or 0.0, min_margin=abstain_min_margin or 0.0)
    bundle = build.build_bundle(
        run_dirs,
        manifest_path,
        split_path,
        out,
        quants=[q.strip() for q in quant.split(",")],
        member_quant=member_quant,
        member_fallback=member_fallback,
        method=method,
        weight_rule=weight_rule,
        segmenter=segmenter,
        root=root,
        name=name,
        max_per_part=max_per_part,
        command=shlex.join(["cxr-edge", *sys.argv[1:]]),
        overwrite=force,
        thresholds=build.GateThresholds(min_agreement=min_agreement, max_auc_drop=max_auc_drop),
        allow_degraded=allow_degraded,
        abstain=band,
        temperature=temperature,
        card=card_file,
        decode_gate_images=decode_gate_images,
    )
    from cxr_edge.bundle.folder import Bundle
    from cxr_edge.cli.info import model_lines

    written = Bundle.load(bundle)
    for line in model_lines(written):
        click.echo(line)
    for warning in written.manifest.provenance.get("warnings", []):
        click.echo(f"WARNING: this bundle looks useless: {warning}", err=True)
    click.echo(f"bundle written to {bundle}; inspect it with: cxr-edge info --bundle {bundle}")


@click.command("convert-segmenter")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@data_option
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
    seg = _needs_train_extra("cxr_edge.convert.segmenter")
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


@click.command("prune")
@click.option(
    "--run",
    "run_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Training run to prune (its best.keras).",
)
@data_option
@split_option(required=False)
@click.option("--step", default=0.02, show_default=True, type=float, help="Fraction removed per step.")
@click.option(
    "--max", "max_fraction", default=0.5, show_default=True, type=float, help="Fraction to stop at."
)
@click.option(
    "--ranking",
    default="layer",
    show_default=True,
    type=click.Choice(["layer", "global"]),
    help="Rank APoZ within each layer (the paper's text) or across layers (the authors' code).",
)
@click.option(
    "--epochs",
    "finetune_epochs",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Fine-tuning epochs after each step.",
)
@click.option("--no-latency", is_flag=True, help="Skip the int8 TFLite latency measurement per step.")
@click.option(
    "--select",
    default="no-loss",
    show_default=True,
    type=click.Choice(["no-loss", "best", "fraction"]),
    help="Step exported to OUT/best: the most pruned one with no loss of validation macro AUC "
    "(within --tolerance), the one with the best validation AUC (the paper's rule), or the most "
    "pruned one at or below --fraction (a level chosen by `cxr-edge prune-loso`).",
)
@click.option("--fraction", default=None, type=float, help="Pruning level for --select fraction.")
@click.option(
    "--tolerance", default=0.0, show_default=True, type=float, help="Validation AUC drop allowed by no-loss."
)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Pruning folder (re-run to continue)."
)
@max_per_part_option
@root_option
@clean_errors
def prune_cmd(
    run_dir,
    manifest_path,
    split_path,
    step,
    max_fraction,
    ranking,
    finetune_epochs,
    no_latency,
    select,
    fraction,
    tolerance,
    out,
    max_per_part,
    root,
):
    """Iterative APoZ channel pruning with fine-tuning; the chosen step goes to OUT/best.

    Re-run with the same settings to continue an interrupted run, or with another --select to
    choose again without pruning again.
    """
    loop = _needs_train_extra("cxr_edge.train.prune.loop")
    cfg = loop.PruneConfig(
        step=step,
        max_fraction=max_fraction,
        ranking=ranking,
        finetune_epochs=finetune_epochs,
        latency=not no_latency,
    )
    latency = _needs_train_extra("cxr_edge.convert.latency").int8_latency_ms if cfg.latency else None
    folder = loop.prune_run(
        run_dir,
        manifest_path,
        split_path,
        out,
        cfg,
        latency_ms=latency,
        root=root,
        max_per_part=max_per_part,
        selection=select.replace("-", "_"),
        tolerance=tolerance,
        fraction=fraction,
    )
    click.echo((Path(folder) / loop.RESULTS).read_text())
    best = json.loads((Path(folder) / "best" / "run.json").read_text())
    click.echo(
        f"chosen ({select}): step {best['pruning_step']} ({best['pruned_fraction']:.0%} of prunable "
        f"channels removed), {best['params']:,} of {best['params_unpruned']:,} parameters; "
        f"bundle it with: cxr-edge convert --runs {Path(folder) / 'best'} ..."
    )
