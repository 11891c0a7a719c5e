"""``cxr-edge loso``: leave-one-source-out, the measure of a recipe on hospitals it has not seen.

``loso train`` trains a recipe with each source held out ([train]); ``loso report`` scores and compares
experiments from their held-out predictions; ``loso score-bundle`` scores a shipped bundle on sources
it never saw; ``loso ensemble`` scores an ensemble of experiments; ``loso prune`` chooses a pruning
level by held-out score ([train]). The old commands (``loso --config ...``, ``loso-report``,
``loso-bundle``, ``loso-ensemble``, ``prune-loso``) still work for one release and say the new name.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path

import click

from cxr_edge.cli.common import (
    bundle_option,
    clean_errors,
    config_option,
    manifest_option,
    max_per_part_option,
    model_option,
    needs_train_extra,
    root_option,
    select_model,
    split_option,
)
from cxr_edge.evaluation import loso as scoring
from cxr_edge.evaluation import loso_select


class _LosoGroup(click.Group):
    """``cxr-edge loso --config ...`` (the command this group replaced) runs ``loso train``, with a note."""

    def parse_args(self, ctx, args):
        if args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
            click.echo(
                "note: `cxr-edge loso --config ...` is now `cxr-edge loso train --config ...`", err=True
            )
            args = ["train", *args]
        return super().parse_args(ctx, args)


@click.group("loso", cls=_LosoGroup)
def loso_group() -> None:
    """Leave-one-source-out: train with each source held out, score held-out sources, compare recipes."""


@loso_group.command("train")
@config_option("Training recipe (TOML), e.g. configs/triage/baseline.toml.")
@model_option
@manifest_option()
@split_option(required=True)
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="LOSO folder (one run per fold)."
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="Fold(s) to run (repeatable); default: every source whose removal leaves each class a source.",
)
@click.option("--epochs", default=None, type=click.IntRange(1), help="Override the recipe's epochs.")
@click.option(
    "--seed", default=None, type=int, help="Override the recipe's seed (training-noise replicates)."
)
@click.option(
    "--init-from-loso",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="LOSO folder of a stage-1 recipe: each fold starts from the stage-1 fold that held out the same "
    "source.",
)
@click.option(
    "--crops",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Crop table from `cxr-edge segment --manifest` (lung-crop recipe).",
)
@max_per_part_option
@root_option
@clean_errors
def loso_train_cmd(
    config_path,
    model,
    manifest_path,
    split_path,
    out,
    sources,
    epochs,
    seed,
    init_from_loso,
    crops,
    max_per_part,
    root,
):
    """Leave-one-source-out: train with each source held out, predict it, score per source and pooled.

    Finished folds are kept: run the same command again to resume an interrupted experiment. Writes
    OUT/<source>/ (a run directory with holdout_predictions.csv) and OUT/loso.json, OUT/loso.md.
    """
    config_mod = needs_train_extra("cxr_edge.train.config")
    loso = needs_train_extra("cxr_edge.train.loso")
    config = select_model(config_mod.TrainConfig.load(config_path), model)
    overrides = {"epochs": epochs, "crops": crops, "seed": seed}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    report = loso.run_loso(
        config,
        manifest_path,
        split_path,
        out,
        sources=sources or None,
        init_from_loso=init_from_loso,
        root=root,
        max_per_part=max_per_part,
        command=shlex.join(["cxr-edge", *sys.argv[1:]]),
    )
    click.echo(scoring.source_report(report))
    click.echo(f"{scoring.score_line(report)}; see {out}/loso.md")


@loso_group.command("report")
@click.argument("loso_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--name",
    "names",
    multiple=True,
    help="Row name for each LOSO folder, in order (default: the folder name).",
)
@click.option(
    "--baseline",
    default=None,
    help="Row name to compare every other row with (paired bootstrap of the score difference).",
)
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Write the table (Markdown) here.")
@click.option(
    "--json", "json_out", default=None, type=click.Path(dir_okay=False), help="Write all reports as JSON."
)
@clean_errors
def loso_report_cmd(loso_dirs, names, baseline, out, json_out):
    """Compare LOSO experiments: accuracy per held-out source, pooled, and the selection score."""
    if names and len(names) != len(loso_dirs):
        raise click.UsageError(f"--name given {len(names)} times for {len(loso_dirs)} folders")
    rows, held = {}, {}
    for i, folder in enumerate(loso_dirs):
        name = names[i] if names else Path(folder).name
        held[name] = scoring.load_loso(folder)
        rows[name] = scoring.write_report(folder, held[name])
    deltas = None
    if baseline is not None:
        from cxr_edge.evaluation.loso_select import paired_difference

        if baseline not in held:
            raise click.UsageError(f"--baseline {baseline!r} is not one of the rows {list(held)}")
        deltas = {
            n: paired_difference(h, held[baseline])
            for n, h in held.items()
            if n != baseline and set(h.sources.tolist()) == set(held[baseline].sources.tolist())
        }
        for name, d in deltas.items():
            rows[name]["vs_" + baseline] = d
    table = scoring.markdown_table(rows, deltas=deltas)
    click.echo(table)
    if out:
        Path(out).write_text(table)
    if json_out:
        Path(json_out).write_text(json.dumps(rows, indent=2) + "\n")


@loso_group.command("prune")
@click.argument("loso_dir", type=click.Path(exists=True, file_okay=False))
@manifest_option()
@split_option(required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the folds' pruning.")
@click.option("--step", default=0.02, show_default=True, type=float, help="Fraction removed per step.")
@click.option(
    "--max", "max_fraction", default=0.5, show_default=True, type=float, help="Fraction to stop at."
)
@click.option("--epochs", "finetune_epochs", default=1, show_default=True, type=click.IntRange(1))
@click.option(
    "--tolerance",
    default=0.01,
    show_default=True,
    type=float,
    help="Drop of the pooled LOSO selection score allowed at the chosen level.",
)
@root_option
@clean_errors
def loso_prune_cmd(
    loso_dir, manifest_path, split_path, out, step, max_fraction, finetune_epochs, tolerance, root
):
    """Choose a pruning level by leave-one-source-out: prune every fold, score each level on held-out sources.

    Then prune the deployed run to that level: cxr-edge prune RUN --select fraction --fraction F.
    """
    loop = needs_train_extra("cxr_edge.train.prune.loop")
    prune_loso = needs_train_extra("cxr_edge.train.prune.loso")
    cfg = loop.PruneConfig(
        step=step, max_fraction=max_fraction, finetune_epochs=finetune_epochs, latency=False
    )
    summary = prune_loso.prune_folds(
        loso_dir, manifest_path, split_path, out, cfg, tolerance=tolerance, root=root
    )
    click.echo((Path(out) / "loso_prune.csv").read_text())
    chosen = summary["chosen"]
    click.echo(
        f"chosen level: {chosen['fraction']:.0%} of prunable channels "
        f"(pooled LOSO score {chosen['score']:.3f}, "
        f"unpruned {summary['levels'][0]['score']:.3f}); prune the deployed run with "
        f"--select fraction --fraction {chosen['fraction']}"
    )


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key or not value:
            raise click.UsageError(f"{what} takes FROM=TO, got {v!r}")
        out[key] = value
    return out


@loso_group.command("score-bundle")
@bundle_option
@manifest_option()
@click.option(
    "--source", "sources", multiple=True, required=True, help="Source the bundle never saw (repeat)."
)
@click.option("--label", "labels", multiple=True, required=True, help="Task label, in order (repeat).")
@click.option("--map", "label_map", multiple=True, help="Manifest label -> task label, FROM=TO (repeat).")
@click.option("--rename", multiple=True, help="Bundle label -> task label, FROM=TO (repeat).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="LOSO-style folder to write.")
@root_option
@clean_errors
def loso_score_bundle_cmd(bundle_dir, manifest_path, sources, labels, label_map, rename, out, root):
    """Score a shipped bundle on sources it was never trained on, in the LOSO format (loso report reads it).

    Example (the first release's default bundle, trained on hannover, montreal and nih):
    cxr-edge loso score-bundle --source kermany --source shenzhen --source cxnet --label covid --label normal
    --label pneumonia --map bacterial=pneumonia --map viral=pneumonia --map pneumonia_unknown=pneumonia
    --rename pneumonia_unknown=pneumonia --manifest ../shared/data/manifest.csv --out runs/loso/old_default
    """
    from cxr_edge.bundle.folder import Bundle
    from cxr_edge.dataset.manifest import load_manifest
    from cxr_edge.runtime.pipeline import Predictor

    manifest = load_manifest(manifest_path, root).select(labels, _pairs(label_map, "--map"))
    records = [r for r in manifest.records if r.source in set(sources)]
    missing = sorted(set(sources) - {r.source for r in records})
    if missing:
        raise click.UsageError(f"no images of the task in source(s) {missing}")
    held = scoring.bundle_heldout(
        # Scored like the LOSO folds: every held-out image, none refused by the input checks.
        Predictor(Bundle.load(bundle_dir), checks=None),
        records,
        labels,
        _pairs(rename, "--rename"),
    )
    scoring.write_heldout(out, held)
    report = scoring.write_report(out, held)
    click.echo(scoring.source_report(report))


@loso_group.command("ensemble")
@click.argument("loso_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--method",
    default="mean",
    show_default=True,
    type=click.Choice(loso_select.METHODS),
    help="Combiner; `weighted` fits weights leave-one-fold-out (log-loss on the other folds' held-out "
    "images).",
)
@click.option("--no-temperature", is_flag=True, help="Do not fit a temperature (leave-one-fold-out).")
@click.option(
    "--temperature-rule",
    default="pooled",
    show_default=True,
    type=click.Choice([r.replace("_", "-") for r in loso_select.TEMPERATURE_RULES]),
    help="pooled: minimise the log-loss of all held-out images; source-median: the median of each held-out "
    "source's own optimum (one source the models are confidently wrong on does not flatten every output).",
)
@click.option(
    "--max-referred",
    default=0.2,
    show_default=True,
    type=float,
    help="Referral band: the highest minimum top probability that refers at most this share of held-out "
    "images.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="LOSO-style folder to write.")
@clean_errors
def loso_ensemble_cmd(loso_dirs, method, no_temperature, temperature_rule, max_referred, out):
    """Score an ensemble of LOSO experiments image by image, fit its temperature and referral band by LOSO.

    Writes OUT/<source>/holdout_predictions.csv, OUT/loso.json (loso report and convert --card read it)
    and OUT/ensemble.json (members, weights, temperature and referral threshold for convert).
    """
    experiments = [scoring.load_loso(d) for d in loso_dirs]
    if method == "vote":
        held = loso_select.ensemble(experiments, "vote")
        fit = {"weights": None, "temperature": 1.0, "per_fold": {}}
    else:
        fit = loso_select.fitted_ensemble(
            experiments,
            weighted=method == "weighted",
            temperature=not no_temperature,
            temperature_rule=temperature_rule.replace("-", "_"),
        )
        held = fit["held"]
    curve = loso_select.referral_curve(held)
    band = loso_select.choose_referral(curve, max_referred)
    scoring.write_heldout(out, held)
    report = scoring.write_report(out, held)
    info = {
        "members": [str(d) for d in loso_dirs],
        "method": method,
        "weights": fit["weights"],
        "temperature": fit["temperature"],
        "temperature_rule": fit.get("temperature_rule"),
        "temperature_by_source": fit.get("temperature_by_source"),
        "per_fold": fit["per_fold"],
        "referral": {"rule": f"highest threshold referring <= {max_referred:.0%} of held-out images"} | band,
        "referral_curve": curve,
        "selection_score": report["selection_score"],
    }
    (Path(out) / "ensemble.json").write_text(json.dumps(info, indent=2) + "\n")
    click.echo(scoring.source_report(report))
    click.echo(
        f"selection score {report['selection_score']:.3f}; temperature {fit['temperature']:.3f}; "
        f"referral below top probability {band['threshold']:.2f} refers {1 - band['reported']:.0%} "
        f"(accuracy of the rest {band['accuracy_reported']:.3f})"
    )
