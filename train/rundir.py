"""Run directories shared by every training loop: creation, resume checks, history, checkpoints.

A run directory holds ``config.json``, ``history.csv`` (one row per epoch), ``last.keras`` (the latest
epoch, for ``--resume``; removed when the run completes), ``best.keras`` (best validation loss) and
``run.json`` (provenance and metrics, written when the run completes).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import keras
import numpy as np

from cxr_edge.errors import SpecError
from cxr_edge.train.config import TrainConfig

BEST_MODEL = "best.keras"
LAST_MODEL = "last.keras"
HISTORY = "history.csv"


def prepare_run_dir(out: Path, config: TrainConfig, *, overwrite: bool, resume: bool) -> None:
    config_file = out / "config.json"
    if resume and config_file.is_file():
        if TrainConfig.load(config_file) != config:
            raise SpecError(
                "cannot resume with a different config",
                expected=f"the config in {config_file}",
                received="a changed config",
            )
        if (out / "run.json").is_file() and not (out / LAST_MODEL).is_file():
            raise SpecError("run already complete", expected="an interrupted run", received=str(out))
        return
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SpecError(
            "run directory is not empty", expected="a new folder (or --force, or --resume)", received=str(out)
        )
    out.mkdir(parents=True, exist_ok=True)
    for name in (LAST_MODEL, BEST_MODEL, "history.csv", "run.json"):
        (out / name).unlink(missing_ok=True)
    config_file.write_text(json.dumps(config.to_dict(), indent=2) + "\n")


def history_state(path: Path, monitor: str = "val_loss") -> tuple[int, float | None]:
    """Epochs completed and best validation loss (``monitor``) so far, from history.csv."""
    if not path.is_file():
        return 0, None
    with open(path, newline="") as fh:
        losses = [float(row[monitor]) for row in csv.DictReader(fh)]
    return len(losses), (min(losses) if losses else None)


def best_epoch(path: Path, monitor: str = "val_loss") -> int | None:
    with open(path, newline="") as fh:
        losses = [float(row[monitor]) for row in csv.DictReader(fh)]
    return int(np.argmin(losses)) + 1 if losses else None


def checkpoint_callbacks(
    out: Path, *, resuming: bool, best_so_far: float | None, patience: int, monitor: str = "val_loss"
) -> list:
    """Best and last checkpoints, early stopping on validation loss (``monitor``), and the history log.

    ``monitor`` is the classifier's own loss (``val_probs_loss``) when the model has further
    outputs, such as the source adversary, whose loss is not the thing to minimise.
    """
    return [
        keras.callbacks.ModelCheckpoint(
            str(out / BEST_MODEL),
            monitor=monitor,
            mode="min",
            save_best_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.ModelCheckpoint(str(out / LAST_MODEL)),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=patience),
        keras.callbacks.CSVLogger(str(out / HISTORY), append=resuming),
    ]
