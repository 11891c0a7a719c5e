"""The architecture study of the training issue: stage 1, stage 2 from stage 1, stage 2 from scratch.

Run (resumable: completed runs are skipped, interrupted ones continue)::

    python -m cxr_edge.train.study --manifest ../shared/data/manifest.csv --split splits/kit.csv \\
        --out runs/zoo \\
        --models custom_cnn,mobilenet_v2,inception_v3,vgg16,vgg19 --report docs/zoo_results.md

For each model it trains ``configs/zoo_stage1.toml`` (normal vs pneumonia), then
``configs/zoo_stage2.toml`` twice (3 classes: from the stage-1 weights, and from scratch), evaluates
every run on the test split (reporting only; selection is on validation) and rewrites the report
after each run, so a partial study is still a readable table.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import click

from cxr_edge.train.config import TrainConfig
from cxr_edge.train.evaluate import COLUMNS, EVALUATION, evaluate_run
from cxr_edge.train.fit import train_run
from cxr_edge.train.zoo import preset

#: Mixed precision where it was measured faster on this CPU (VGG 2x, Inception-V3 1.2x); it slows
#: MobileNet-V2 and the custom CNN here.
MIXED = frozenset({"vgg16", "vgg19", "inception_v3", "xception", "inception_resnet_v2", "densenet201"})
KINDS = ("stage1", "stage2", "scratch")


def study_config(base: Path, model: str, init_from: Path | None = None) -> TrainConfig:
    """A zoo config with the model's input channels, mixed precision where it helps, and transfer."""
    config = TrainConfig.load(base)
    p = preset(model)
    return dataclasses.replace(
        config,
        model=model,
        preprocess=dataclasses.replace(config.preprocess, channels=p.channels),
        mixed_precision=model in MIXED,
        init_from=str(init_from) if init_from else None,
    )


def config_file(configs: Path, stage: str, model: str) -> Path:
    """The recipe file: ``zoo_{stage}_{model}.toml``, else ``zoo_{stage}_{family}.toml`` (``vgg``), else
    ``zoo_{stage}.toml``.

    One recipe for every architecture is the fair comparison, but a recipe that leaves a model at
    chance compares nothing: a model-specific file records the exception and its reason.
    """
    family = model.rstrip("0123456789_")
    for name in (f"zoo_{stage}_{model}.toml", f"zoo_{stage}_{family}.toml", f"zoo_{stage}.toml"):
        if (configs / name).is_file():
            return configs / name
    raise FileNotFoundError(configs / f"zoo_{stage}.toml")


def command(config_file: Path, model: str, data: str, split: str, out: Path, init_from: Path | None) -> str:
    """The equivalent ``cxr-edge train`` command line (for the report)."""
    args = [
        "cxr-edge",
        "train",
        "--config",
        str(config_file),
        "--model",
        model,
        "--manifest",
        data,
        "--split",
        split,
        "--out",
        str(out),
    ]
    if model in MIXED:
        args.append("--mixed-precision")
    if init_from:
        args += ["--init-from", str(init_from)]
    return shlex.join(args)


def run_model(
    model: str,
    data: str,
    split: str,
    out: Path,
    configs: Path,
    max_per_part: int | None = None,
    progress: bool = True,
    scratch: bool = True,
) -> list[dict]:
    """Trains (or continues) the three runs of one model and evaluates them.

    Args:
        max_per_part: Cap images per split part (tests only; recorded in each run).
        scratch: Also train stage 2 from scratch (the comparison run).
    """
    plan = [
        ("stage1", config_file(configs, "stage1", model), None),
        ("stage2", config_file(configs, "stage2", model), out / f"{model}-stage1"),
        ("scratch", config_file(configs, "stage2", model), None),
    ][: 3 if scratch else 2]
    rows = []
    for kind, recipe, init_from in plan:
        run = out / f"{model}-{kind}"
        if not (run / "run.json").is_file() or (run / "last.keras").is_file():
            config = study_config(recipe, model, init_from)
            train_run(
                config, data, split, run, resume=run.exists(), max_per_part=max_per_part, progress=progress
            )
        evaluation = (
            json.loads((run / EVALUATION).read_text()) if (run / EVALUATION).is_file() else evaluate_run(run)
        )
        info = json.loads((run / "run.json").read_text())
        rows.append(
            {
                "model": model,
                "kind": kind,
                "run": str(run),
                "info": info,
                "evaluation": evaluation,
                "command": command(recipe, model, data, split, run, init_from),
            }
        )
    return rows


def report(rows: list[dict]) -> str:
    """The Markdown results table (test split) with validation metrics, epochs and wall time."""
    lines = [
        "# Architecture study: stage 1, stage 2 from stage 1, stage 2 from scratch",
        "",
        "Written by `python -m cxr_edge.train.study` (commands below). `stage1`: normal vs "
        "pneumonia_unknown (2 classes); `stage2` (from the stage-1 weights) and `scratch`: the three kit "
        "classes. Models are chosen on validation; the test split is reported only. Wall times are upper "
        "bounds (the 2-core machine was shared with other jobs).",
        "",
        "| model | run | params | epochs (best) | wall time | val acc | val AUC | test acc | test AUC | "
        "sensitivity | precision | F1 | MCC |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        info, test, val = r["info"], r["evaluation"]["test"], r["evaluation"]["val"]
        cells = [
            r["model"],
            r["kind"],
            f"{info['params']:,}",
            f"{info['epochs_run']} ({info['best_epoch']})",
            f"{info['wall_time_s'] / 60:.1f} min",
            _f(val.get("accuracy")),
            _f(val.get("auc_macro")),
            *(_f(test.get(c)) for c in COLUMNS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Commands:", "", "```sh", *(r["command"] for r in rows), "```"]
    return "\n".join(lines) + "\n"


def _f(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


@click.command()
@click.option("--manifest", "data", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--split", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--models", default="custom_cnn,mobilenet_v2,inception_v3,vgg16,vgg19", show_default=True)
@click.option("--configs", default="configs", show_default=True, type=click.Path(file_okay=False))
@click.option(
    "--scratch-models",
    default=None,
    help="Models that also get the from-scratch stage-2 run (default: all); the rest get two runs.",
)
@click.option(
    "--report",
    "report_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Markdown file for the results table (rewritten after every run).",
)
def main(data, split, out, models, configs, scratch_models, report_path):
    """Run the stage-1 / stage-2 / scratch study for each model and tabulate it."""
    rows: list[dict] = []
    for model in [m.strip() for m in models.split(",")]:
        scratch = scratch_models is None or model in scratch_models.split(",")
        rows += run_model(model, data, split, Path(out), Path(configs), scratch=scratch)
        if report_path:
            Path(report_path).parent.mkdir(parents=True, exist_ok=True)
            Path(report_path).write_text(report(rows))
        click.echo(report(rows))


if __name__ == "__main__":
    main()
