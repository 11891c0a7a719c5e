"""The pruning level chosen by leave-one-source-out: prune every fold, score each level on held-out sources.

In-distribution validation cannot say how much pruning a model survives *in another hospital*: the
channels APoZ removes first may be exactly the ones that carried what generalises, while the
hospital-specific ones stay. So the recipe's LOSO folds are pruned with the same schedule
(:func:`cxr_edge.train.prune.loop.prune_run` records each step's predictions on the fold's held-out source),
the held-out predictions of all folds at each level are pooled, and the chosen level is the most
pruned one whose pooled LOSO selection score stays within ``tolerance`` of the unpruned folds'. The
deployed model, trained on every source, is then pruned with the same schedule to that level
(``cxr-edge prune --select fraction --fraction F``).

Output (``OUT``)::

    <source>/            the fold's pruning folder (step_NN/ with holdout_predictions.csv)
    loso_prune.csv       per level: fraction, params, pooled accuracy, selection score, per-source accuracy
    loso_prune.json      the same, the chosen level and the rule
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from cxr_edge.errors import SpecError
from cxr_edge.evaluation.loso import PREDICTIONS, read_predictions, score
from cxr_edge.train.prune.loop import PruneConfig, prune_run


def prune_folds(
    loso_dir: str | Path,
    manifest_path: str | Path,
    split_path: str | Path,
    out_dir: str | Path,
    cfg: PruneConfig,
    *,
    tolerance: float = 0.01,
    root: str | Path | None = None,
    max_per_part: int | None = None,
    progress: bool = True,
    latency_ms: Callable | None = None,
) -> dict:
    """Prunes every finished fold of a LOSO folder and chooses the level on the pooled held-out score.

    Args:
        loso_dir: A ``cxr-edge loso`` folder (``<source>/best.keras`` per fold).
        manifest_path: Data manifest.
        split_path: The split the folds used.
        out_dir: Output folder (resumable: finished steps are kept).
        cfg: Pruning schedule (``latency`` is best off here: it is measured on the deployed model).
        tolerance: Allowed drop of the pooled LOSO selection score.
        root: Image root.
        max_per_part: Cap on images per part (tests).
        progress: Progress bars.
        latency_ms: Each step's latency measurement when ``cfg.latency`` is on (see
            :func:`cxr_edge.train.prune.loop.prune_run`).

    Returns:
        The summary written to ``loso_prune.json``.
    """
    loso_dir, out = Path(loso_dir), Path(out_dir)
    folds = sorted(p.parent.name for p in loso_dir.glob(f"*/{PREDICTIONS}"))
    if not folds:
        raise SpecError(
            "no finished LOSO folds", expected=f"<source>/{PREDICTIONS} in the folder", received=str(loso_dir)
        )
    for source in folds:
        prune_run(
            loso_dir / source,
            manifest_path,
            split_path,
            out / source,
            cfg,
            root=root,
            max_per_part=max_per_part,
            progress=progress,
            latency_ms=latency_ms,
            selection="best",  # the fold's own export is not used; the level is chosen across folds
        )
    return summarise(out, folds, tolerance)


def summarise(out: str | Path, folds: list[str], tolerance: float) -> dict:
    """Pools the folds' held-out predictions per pruning step and chooses the level."""
    out = Path(out)
    steps = sorted({p.name for f in folds for p in (out / f).glob("step_*") if (p / PREDICTIONS).is_file()})
    rows = []
    for step in steps:
        files = [out / f / step / PREDICTIONS for f in folds]
        if not all(f.is_file() for f in files):
            continue  # a level not every fold reached
        report = score(read_predictions(files))
        metrics = [json.loads((out / f / step / "metrics.json").read_text()) for f in folds]
        rows.append(
            {
                "step": int(step.split("_")[1]),
                "fraction": metrics[0]["fraction"],
                "params_mean": round(sum(m["params"] for m in metrics) / len(metrics)),
                "pooled_accuracy": report["pooled"]["accuracy"]["value"],
                "score": report["selection_score"],
            }
            | {f"acc_{s}": b["accuracy"]["value"] for s, b in report["by_source"].items()}
        )
    if not rows or rows[0]["step"] != 0:
        raise SpecError("unpruned step missing", expected="step_00 in every fold", received=str(steps[:3]))
    base = rows[0]["score"]
    chosen = max((r for r in rows if r["score"] >= base - tolerance), key=lambda r: r["fraction"])
    with open(out / "loso_prune.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        "folds": folds,
        "rule": f"most pruned level with pooled LOSO score >= unpruned - {tolerance}",
        "tolerance": tolerance,
        "chosen": chosen,
        "levels": rows,
    }
    (out / "loso_prune.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
