"""``cxr-edge runs report``: a Table III/IV-style row for one run on the test split.

The test split is touched here for *reporting* only; nothing is selected on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from cxr_edge.errors import SpecError
from cxr_edge.evaluation.metrics import classification_metrics
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.data import crop_table, label_indices, load_images, preprocess_all
from cxr_edge.train.fit import load_task
from cxr_edge.train.rundir import BEST_MODEL

COLUMNS = ("accuracy", "auc_macro", "sensitivity_macro", "precision_macro", "f1_macro", "mcc")
EVALUATION = "evaluation.json"


def evaluate_run(
    run_dir: str | Path,
    manifest_path: str | Path | None = None,
    split_path: str | Path | None = None,
    root: str | Path | None = None,
) -> dict:
    """Evaluates a run's best model on its test split and writes ``evaluation.json`` beside it.

    Args:
        run_dir: A completed run directory.
        manifest_path: Data manifest (default: the one recorded in ``run.json``).
        split_path: Split (default: the one recorded in ``run.json``; its hash must match).
        root: Image root.

    Returns:
        ``{"run", "model", "labels", "params", "test": metrics, "val": metrics, "holdout": ...}``.
    """
    run = Path(run_dir)
    if not (run / "run.json").is_file():
        raise SpecError("not a completed run", expected=f"{run}/run.json", received="missing")
    info = json.loads((run / "run.json").read_text())
    config = TrainConfig.load(run / "config.json")
    task = load_task(
        config,
        manifest_path or info["data_manifest"],
        split_path or info["split"],
        root,
        info.get("max_per_part"),
    )
    if task.split.sha256 != info["split_sha256"]:
        raise SpecError(
            "split differs from the one the run was trained on",
            expected=info["split_sha256"][:16],
            received=task.split.sha256[:16],
        )
    model = keras.models.load_model(run / BEST_MODEL)
    test = task.parts["test"]
    x = preprocess_all(load_images(test, crops=crop_table(config), desc="decode test"), config.preprocess)
    metrics = classification_metrics(
        label_indices(test, config.labels), model.predict(x, verbose=0, batch_size=32), config.labels
    )
    result = {
        "run": str(run),
        "model": config.model,
        "labels": list(config.labels),
        "params": info["params"],
        "weights": info["weights"],
        "test": metrics,
        "val": info["val_metrics"],
        "holdout": info.get("holdout_metrics"),
    }
    (run / EVALUATION).write_text(json.dumps(result, indent=2) + "\n")
    return result


def table_header() -> str:
    """Markdown header matching :func:`table_row`."""
    names = ("run", "split", "accuracy", "AUC", "sensitivity", "precision", "F1", "MCC", "params")
    return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)


def table_row(result: dict, part: str = "test") -> str:
    """One Markdown row: accuracy, macro AUC, macro sensitivity/precision/F1, MCC, parameters."""
    m = result[part]
    cells = [Path(result["run"]).name, part, *(_fmt(m.get(c)) for c in COLUMNS), f"{result['params']:,}"]
    return "| " + " | ".join(cells) + " |"


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
