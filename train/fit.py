"""The training loop: one run directory per run, best-on-validation checkpoint, resumable, provenance.

A run directory holds::

    config.json     the TrainConfig
    split.csv       only when no split was given (then this run's own patient-level split)
    history.csv     per-epoch loss, accuracy, validation loss/accuracy/macro AUC
    last.keras      the latest epoch (for --resume); removed when the run completes
    best.keras      the best model on validation loss (float32, also after mixed-precision training)
    run.json        provenance and validation metrics, written when the run completes
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from cxr_edge.dataset.manifest import Manifest, Record, load_manifest
from cxr_edge.dataset.splits import Split, make_split, read_split, write_split
from cxr_edge.errors import SpecError
from cxr_edge.evaluation.metrics import classification_metrics
from cxr_edge.hashing import file_sha256
from cxr_edge.provenance import git_commit, now_utc, versions
from cxr_edge.train import adversary
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.data import (
    class_weights,
    crop_table,
    label_indices,
    load_images,
    preprocess_all,
    training_data,
)
from cxr_edge.train.distribute import Distribute, plan_devices
from cxr_edge.train.rundir import (
    BEST_MODEL,
    HISTORY,
    LAST_MODEL,
    best_epoch,
    checkpoint_callbacks,
    history_state,
    prepare_run_dir,
)
from cxr_edge.train.zoo import apply_weight_decay, build_model, transfer_model

RUN_SPLIT = "split.csv"


@dataclass(frozen=True)
class TaskData:
    """A task's manifest, split, records per part, and the held-out sources' records."""

    manifest: Manifest
    split: Split
    parts: dict[str, list[Record]]
    holdout: list[Record] = field(default_factory=list)


def load_task(
    config: TrainConfig,
    manifest_path: str | Path,
    split_path: str | Path,
    root: str | Path | None = None,
    max_per_part: int | None = None,
) -> TaskData:
    """Reads the manifest (restricted to the config's labels), the split, and the held-out sources.

    Args:
        max_per_part: Keep at most this many images per part (quick runs and tests).
    """
    manifest = load_manifest(manifest_path, root).select(config.labels, config.label_map)
    split = read_split(split_path, manifest)
    held = set(config.holdout_sources)
    parts = {
        p: [r for r in split.records(manifest, p) if r.source not in held] for p in ("train", "val", "test")
    }
    holdout = [r for r in manifest.records if r.source in held]
    if held and not holdout:
        raise SpecError(
            "held-out sources have no images", expected="sources in the manifest", received=str(sorted(held))
        )
    if max_per_part is not None:
        parts = {p: _spread(recs, max_per_part) for p, recs in parts.items()}
        holdout = _spread(holdout, max_per_part)
    return TaskData(manifest, split, parts, holdout)


def _spread(records: list[Record], n: int) -> list[Record]:
    """An evenly spaced subset (keeps the label mix of label-sorted manifests)."""
    if len(records) <= n:
        return records
    return [records[i] for i in np.linspace(0, len(records) - 1, n).round().astype(int)]


class _ValidationAUC(keras.callbacks.Callback):
    """Adds the validation macro AUC (one-vs-rest) to the epoch logs."""

    def __init__(self, x: np.ndarray, y: np.ndarray, labels, batch_size: int = 32):
        super().__init__()
        self.x, self.y, self.labels, self.batch_size = x, y, labels, batch_size

    def on_epoch_end(self, epoch, logs=None):
        probs = self.model.predict(self.x, verbose=0, batch_size=self.batch_size)
        if isinstance(probs, dict):  # a model with a source adversary
            probs = probs["probs"]
        logs = logs if logs is not None else {}
        logs["val_auc_macro"] = classification_metrics(self.y, probs, self.labels)["auc_macro"] or 0.0


def with_policy(model: keras.Model, policy: str) -> keras.Model:
    """A copy of ``model`` whose layers compute in ``policy`` (``probs`` stays float32), same weights."""

    def clone(layer):
        config = layer.get_config()
        if layer.name != "probs":
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def train_run(
    config: TrainConfig,
    manifest_path: str | Path,
    split_path: str | Path | None,
    out_dir: str | Path,
    *,
    root: str | Path | None = None,
    max_per_part: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    callbacks: list[keras.callbacks.Callback] | None = None,
    distribute: Distribute = "none",
) -> Path:
    """Trains one model and writes its run directory.

    Args:
        config: The training configuration.
        manifest_path: Data manifest CSV.
        split_path: Split CSV from ``cxr-edge split``; None makes a seeded patient-level split and
            stores it in the run directory.
        out_dir: Run directory to create (or to continue with ``resume``).
        root: Image root (default: the manifest's folder).
        max_per_part: Cap on images per part (for quick checks; recorded in run.json).
        progress: Show progress bars.
        overwrite: Allow writing into an existing non-empty run directory (starts afresh).
        resume: Continue an interrupted run from ``last.keras`` (same config required). The
            early-stopping patience restarts; the best checkpoint keeps its best validation loss.
        callbacks: Extra Keras callbacks, run after the toolkit's (checkpoints are written first).
        distribute: ``none`` (one device) or ``data-parallel`` (Keras' ``DataParallel`` over every
            device, JAX backend only; see :mod:`cxr_edge.train.distribute`). Recorded in run.json.

    Returns:
        The run directory.

    Raises:
        SpecError: Bad data or config, or a ``distribute`` mode this backend or batch size cannot run
            (checked before the run directory is touched).
    """
    out = Path(out_dir)
    started = time.perf_counter()
    plan = plan_devices(distribute, config.batch_size)
    commit = git_commit(Path(__file__).parent)  # the code the run starts with, not what it ends with
    resuming = resume and (out / LAST_MODEL).is_file()
    prepare_run_dir(out, config, overwrite=overwrite, resume=resume)
    if split_path is None:
        split_path = out / RUN_SPLIT
        if not split_path.is_file():
            manifest = load_manifest(manifest_path, root)
            write_split(split_path, manifest, make_split(manifest, seed=config.seed))
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
    adversarial = config.source_adversary > 0
    sources = adversary.training_sources(train_recs)
    targets = (lambda c, recs: adversary.source_targets(c, recs, sources)) if adversarial else None
    data = training_data(config, train_recs, val_recs, progress=progress, extra_targets=targets)
    train_seq, x_val, y_train, y_val = data.train, data.x_val, data.y_train, data.y_val
    val_targets = np.eye(k, dtype=np.float32)[y_val]
    monitor = "val_probs_loss" if adversarial else "val_loss"
    if adversarial:
        val_targets = {"probs": val_targets, **adversary.source_targets(config, val_recs, sources)}
    # A distributed step splits every batch evenly across the devices, so the in-fit batches and
    # validation arrays are cut to multiples of the device count (unchanged on one device); the
    # final metrics below use the whole validation part.
    train_batches = plan.batches(train_seq, len(train_recs), config.batch_size)
    fit_val = (plan.trim(x_val), plan.trim(val_targets))
    eval_batch = plan.batch_size(32)  # Keras' default for arrays, rounded up to the devices

    # Model variables must be created under the distribution (replicated on every device), so
    # building, loading, compiling and fitting all happen inside its scope; nothing leaks out.
    with plan.scope():
        initial_epoch, best_so_far = 0, None
        if resuming:
            model = keras.models.load_model(out / LAST_MODEL)
            initial_epoch, best_so_far = history_state(out / HISTORY, monitor)
        else:
            model = _initial_model(config)
            if config.mixed_precision:
                model = with_policy(model, "mixed_bfloat16")
            loss, metrics = "categorical_crossentropy", ["accuracy"]
            if adversarial:
                model = adversary.with_source_adversary(model, k, len(sources), config.source_adversary)
                loss = {"probs": loss, adversary.OUTPUT: adversary.ConditionalSourceLoss(k, len(sources))}
                metrics = {"probs": metrics}
            model.compile(
                optimizer=make_optimizer(config, steps_per_epoch=len(train_batches)),
                loss=loss,
                metrics=metrics,
            )
        apply_weight_decay(model, config.weight_decay)  # variable-level: redo after every load

        toolkit_callbacks = [
            _ValidationAUC(fit_val[0], plan.trim(y_val), labels, batch_size=eval_batch),
            *checkpoint_callbacks(
                out, resuming=resuming, best_so_far=best_so_far, patience=config.patience, monitor=monitor
            ),
        ]
        if config.lr_schedule == "plateau":
            toolkit_callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    monitor=monitor, mode="min", factor=0.1, patience=config.lr_patience
                )
            )
        weigh_classes = config.class_weights and config.sampling != "balanced"  # balanced draws do it
        if initial_epoch < config.epochs:
            model.fit(
                train_batches,
                validation_data=fit_val,
                validation_batch_size=eval_batch,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                class_weight=class_weights(y_train, k) if weigh_classes and not adversarial else None,
                callbacks=toolkit_callbacks + list(callbacks or []),
                verbose=1 if progress else 0,
            )
    best = keras.models.load_model(out / BEST_MODEL)  # outside the scope: evaluated on one device
    if adversarial:
        best = adversary.classifier_of(best)
        best.save(out / BEST_MODEL)
    if config.mixed_precision:
        best = with_policy(best, "float32")
        best.save(out / BEST_MODEL)
    val_metrics = classification_metrics(y_val, best.predict(x_val, verbose=0, batch_size=32), labels)
    epochs_run, _ = history_state(out / HISTORY, monitor)
    run = {
        "created": now_utc(),
        "git_commit": commit,
        "versions": versions("keras", "tensorflow-cpu", "jax", "numpy", "opencv-python-headless"),
        "keras_backend": keras.backend.backend(),
        **plan.metadata(len(train_recs), len(val_recs), config.batch_size),
        "data_manifest": str(Path(manifest_path)),
        "data_manifest_sha256": task.manifest.sha256,
        "split": str(Path(split_path)),
        "split_sha256": task.split.sha256,
        "max_per_part": max_per_part,
        "n_images": {p: len(r) for p, r in task.parts.items()} | {"holdout": len(task.holdout)},
        "weights": _weights_origin(config),
        "init_from": _init_origin(config),
        "params": int(best.count_params()),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch(out / HISTORY, monitor),
        "resumed": resuming,
        "wall_time_s": round(time.perf_counter() - started, 1),
        "val_metrics": val_metrics,
        "holdout_metrics": _holdout_metrics(best, task.holdout, config) if task.holdout else None,
    }
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    (out / LAST_MODEL).unlink(missing_ok=True)
    return out


def _initial_model(config: TrainConfig) -> keras.Model:
    if config.init_from is None:
        return build_model(config)
    source_file = Path(config.init_from) / BEST_MODEL
    if not source_file.is_file():
        raise SpecError(
            "stage-1 run not found",
            expected=f"a run directory with {BEST_MODEL}",
            received=str(config.init_from),
        )
    return transfer_model(keras.models.load_model(source_file), config)


def make_optimizer(config: TrainConfig, steps_per_epoch: int | None = None) -> keras.optimizers.Optimizer:
    """The config's optimiser; with ``steps_per_epoch`` and ``lr_schedule="cosine"``, a cosine decay."""
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine" and steps_per_epoch:
        learning_rate = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=config.epochs * steps_per_epoch, alpha=0.01
        )
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=config.momentum)


def _weights_origin(config: TrainConfig) -> str:
    if config.init_from is not None:
        return "modality-specific transfer (see init_from)"
    if config.weights is None:
        return "random initialisation"
    if config.weights == "imagenet":
        return "ImageNet (keras.applications download)"
    from cxr_edge.train.tfjs_weights import read_provenance  # only runs given a weights file

    digest = file_sha256(config.weights)
    origin = f"local file {config.weights} (sha256 {digest[:16]}...)"
    made = read_provenance(config.weights)  # beside files made by `cxr-edge import-weights`
    if made is None:
        return origin
    if made.get("weights_sha256") != digest:
        return f"{origin}; its provenance JSON describes another file (stale), ignored"
    # A string, not a dict: convert/build.py collects the runs' origins in a set.
    sha = made.get("source", {}).get("tarball_sha256") or "unknown"
    return (
        f"{origin}; imported from {made.get('package')} {made.get('version')} (source sha256 {sha}): "
        "ImageNet-initialised, top blocks possibly fine-tuned by the package authors "
        f"(see {config.weights}.provenance.json)"
    )


def _init_origin(config: TrainConfig) -> dict | None:
    if config.init_from is None:
        return None
    source = Path(config.init_from)
    info = json.loads((source / "run.json").read_text()) if (source / "run.json").is_file() else {}
    return {
        "run": str(source),
        "best_model_sha256": file_sha256(source / BEST_MODEL),
        "labels": TrainConfig.load(source / "config.json").labels,
        "git_commit": info.get("git_commit"),
        "val_metrics": {k: info.get("val_metrics", {}).get(k) for k in ("accuracy", "auc_macro")},
    }


def _holdout_metrics(model: keras.Model, records: list[Record], config: TrainConfig) -> dict:
    """Metrics on the held-out sources (cross-source check): per-label sensitivity where defined."""
    x = preprocess_all(load_images(records, crops=crop_table(config), progress=False), config.preprocess)
    y = label_indices(records, config.labels)
    m = classification_metrics(y, model.predict(x, verbose=0, batch_size=32), config.labels)
    return {
        "sources": sorted({r.source for r in records}),
        "n": m["n"],
        "accuracy": m["accuracy"],
        "auc_macro": m["auc_macro"],
        "sensitivity": {lab: v["sensitivity"] for lab, v in m["per_class"].items() if v["n"]},
    }
