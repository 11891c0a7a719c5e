"""The pruning level chosen by leave-one-source-out: prune every fold, score each level on held-out sources.

In-distribution validation cannot say how much pruning a model survives *in another hospital*: the
channels APoZ removes first may be exactly the ones that carried what generalises, while the
hospital-specific ones stay. So the recipe's LOSO folds are pruned with the same schedule
(:func:`cxr_edge.train.prune.loop.prune_run` records each step's predictions on the fold's held-out source),
the held-out predictions of all folds at each level are pooled, and pruning continues until the pooled
LOSO selection score drops beyond ``tolerance`` below the unpruned folds': the chosen level is the
last one before the first such drop (a later level that climbs back above is a lucky draw of a noisy
score, not evidence). Each level also carries its paired difference from the unpruned folds on the
same images, with a bootstrap interval (:func:`cxr_edge.evaluation.loso_select.paired_difference`). The
deployed model, trained on every source, is then pruned with the same schedule to that level
(``cxr-edge prune --select fraction --fraction F``).

Output (``OUT``)::

    <source>/            the fold's pruning folder (step_NN/ with holdout_predictions.csv)
    loso_prune.csv       per level: fraction, params, pooled accuracy, selection score and its two terms,
                         per-source accuracy and within-source AUC
    loso_prune.json      the same, the chosen level and the rule
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from cxr_edge.errors import SpecError
from cxr_edge.evaluation.loso import PREDICTIONS, read_predictions, score
from cxr_edge.evaluation.loso_select import paired_difference
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


def summarise(out: str | Path, folds: list[str], tolerance: float, n_boot: int = 500) -> dict:
    """Pools the folds' held-out predictions per pruning step and chooses the level.

    Args:
        out: The pruning folder (one sub-folder per fold).
        folds: The folds' held-out sources.
        tolerance: Allowed drop of the pooled LOSO selection score.
        n_boot: Bootstrap replicates of each level's paired difference from the unpruned level.
    """
    out = Path(out)
    steps = sorted({p.name for f in folds for p in (out / f).glob("step_*") if (p / PREDICTIONS).is_file()})
    rows = []
    unpruned = None
    for step in steps:
        files = [out / f / step / PREDICTIONS for f in folds]
        if not all(f.is_file() for f in files):
            continue  # a level not every fold reached
        held = read_predictions(files)
        unpruned = held if unpruned is None else unpruned
        delta = paired_difference(held, unpruned, n_boot=n_boot)
        report = score(held)
        metrics = [json.loads((out / f / step / "metrics.json").read_text()) for f in folds]
        rows.append(
            {
                "step": int(step.split("_")[1]),
                "fraction": metrics[0]["fraction"],
                "params_mean": round(sum(m["params"] for m in metrics) / len(metrics)),
                "pooled_accuracy": report["pooled"]["accuracy"]["value"],
                "score": report["selection_score"],
                "recall_score": report["recall_score"],
                "within_auc": report["within_auc"],
                "delta": delta["difference"],
                "delta_lo": delta["ci"][0],
                "delta_hi": delta["ci"][1],
            }
            | {f"acc_{s}": b["accuracy"]["value"] for s, b in report["by_source"].items()}
            | {f"auc_{s}": w["auc"] for s, w in report["within_source"].items()}
        )
    if not rows or rows[0]["step"] != 0:
        raise SpecError("unpruned step missing", expected="step_00 in every fold", received=str(steps[:3]))
    base = rows[0]["score"]
    chosen = rows[0]
    for row in rows[1:]:
        if row["score"] < base - tolerance:
            break
        chosen = row
    with open(out / "loso_prune.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        "folds": folds,
        "rule": f"last level before the pooled LOSO score first drops below unpruned - {tolerance}",
        "tolerance": tolerance,
        "chosen": chosen,
        "levels": rows,
    }
    (out / "loso_prune.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
