"""The training loop: one run directory per run, best-on-validation checkpoint, provenance.

A run directory holds::

    config.json     the TrainConfig
    run.json        provenance: data manifest and split hashes, seed, versions, git commit, wall time,
                    weights origin, and the validation metrics of the best checkpoint
    history.csv     per-epoch loss, accuracy, validation loss/accuracy/macro AUC, learning rate
    best.keras      the best model on validation loss
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from cxr_edge.errors import SpecError
from cxr_edge.manifest import Manifest, Record, load_manifest
from cxr_edge.metrics import classification_metrics
from cxr_edge.provenance import git_commit, now_utc, versions
from cxr_edge.splits import Split, read_split
from train.config import TrainConfig
from train.data import CxrSequence, class_weights, label_indices, load_images, preprocess_all
from train.zoo import build_model

BEST_MODEL = "best.keras"


@dataclass(frozen=True)
class TaskData:
    """A task's manifest, split and records per part."""

    manifest: Manifest
    split: Split
    parts: dict[str, list[Record]]


def load_task(
    config: TrainConfig,
    manifest_path: str | Path,
    split_path: str | Path,
    root: str | Path | None = None,
    max_per_part: int | None = None,
) -> TaskData:
    """Reads the manifest (restricted to the config's labels) and the split.

    Args:
        max_per_part: Keep at most this many images per part (quick runs and tests).
    """
    manifest = load_manifest(manifest_path, root).select(config.labels)
    split = read_split(split_path, manifest)
    parts = {p: split.records(manifest, p) for p in ("train", "val", "test")}
    if max_per_part is not None:
        parts = {p: _spread(recs, max_per_part) for p, recs in parts.items()}
    return TaskData(manifest, split, parts)


def _spread(records: list[Record], n: int) -> list[Record]:
    """An evenly spaced subset (keeps the label mix of label-sorted manifests)."""
    if len(records) <= n:
        return records
    return [records[i] for i in np.linspace(0, len(records) - 1, n).round().astype(int)]


class _ValidationAUC(keras.callbacks.Callback):
    """Adds the validation macro AUC (one-vs-rest) to the epoch logs."""

    def __init__(self, x: np.ndarray, y: np.ndarray, labels):
        super().__init__()
        self.x, self.y, self.labels = x, y, labels

    def on_epoch_end(self, epoch, logs=None):
        probs = self.model.predict(self.x, verbose=0, batch_size=32)
        logs = logs if logs is not None else {}
        logs["val_auc_macro"] = classification_metrics(self.y, probs, self.labels)["auc_macro"] or 0.0


def train_run(
    config: TrainConfig,
    manifest_path: str | Path,
    split_path: str | Path,
    out_dir: str | Path,
    *,
    root: str | Path | None = None,
    max_per_part: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Trains one model and writes its run directory.

    Args:
        config: The training configuration.
        manifest_path: Data manifest CSV.
        split_path: Split CSV from ``cxr-edge split``.
        out_dir: Run directory to create.
        root: Image root (default: the manifest's folder).
        max_per_part: Cap on images per part (for quick checks; recorded in run.json).
        progress: Show progress bars.
        overwrite: Allow writing into an existing non-empty run directory.

    Returns:
        The run directory.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SpecError("run directory is not empty", expected="a new folder (or --force)", received=str(out))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    commit = git_commit(Path(__file__).parent)  # the code the run starts with, not what it ends with
    keras.utils.set_random_seed(config.seed)
    task = load_task(config, manifest_path, split_path, root, max_per_part)
    train_recs, val_recs = task.parts["train"], task.parts["val"]
    if not train_recs or not val_recs:
        raise SpecError(
            "empty training or validation part",
            expected="images in both",
            received=f"train={len(train_recs)}, val={len(val_recs)}",
        )
    labels, k = config.labels, len(config.labels)
    y_train, y_val = label_indices(train_recs, labels), label_indices(val_recs, labels)
    train_images = load_images(train_recs, desc="decode train", progress=progress)
    x_val = preprocess_all(load_images(val_recs, desc="decode val", progress=progress), config.preprocess)

    train_seq = CxrSequence(
        train_images,
        y_train,
        config.preprocess,
        k,
        batch_size=config.batch_size,
        augment=config.augment,
        shuffle=True,
        seed=config.seed,
    )
    model = build_model(config)
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * len(train_seq), alpha=0.01
        )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate, momentum=config.momentum),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = [
        _ValidationAUC(x_val, y_val, labels),
        keras.callbacks.ModelCheckpoint(str(out / BEST_MODEL), monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        keras.callbacks.CSVLogger(str(out / "history.csv")),
    ]
    if config.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.1, patience=config.lr_patience)
        )
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    history = model.fit(
        train_seq,
        validation_data=(x_val, np.eye(k, dtype=np.float32)[y_val]),
        epochs=config.epochs,
        class_weight=class_weights(y_train, k) if config.class_weights else None,
        callbacks=callbacks,
        verbose=1 if progress else 0,
    )
    best = keras.models.load_model(out / BEST_MODEL)
    val_metrics = classification_metrics(y_val, best.predict(x_val, verbose=0, batch_size=32), labels)
    val_losses = history.history["val_loss"]
    run = {
        "created": now_utc(),
        "git_commit": commit,
        "versions": versions("keras", "tensorflow-cpu", "numpy", "opencv-python-headless"),
        "keras_backend": keras.backend.backend(),
        "data_manifest": str(Path(manifest_path)),
        "data_manifest_sha256": task.manifest.sha256,
        "split": str(Path(split_path)),
        "split_sha256": task.split.sha256,
        "max_per_part": max_per_part,
        "n_images": {p: len(r) for p, r in task.parts.items()},
        "weights": "random initialisation",
        "params": int(best.count_params()),
        "epochs_run": len(val_losses),
        "best_epoch": int(np.argmin(val_losses)) + 1,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "val_metrics": val_metrics,
    }
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    return out
