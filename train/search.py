"""Randomised hyper-parameter search (keras-tuner), as in the paper, resumable and tabulated.

Search spaces (the paper's):

* backbones: SGD momentum in [0.85, 0.99], L2 weight decay in [1e-10, 1e-3] (log), initial
  learning rate in [1e-9, 1e-2] (log);
* custom CNN: dropout in [0.1, 0.7], optimiser (SGD with momentum, Adam), activation (ReLU, ELU).

Trials use a constant learning rate (the schedule belongs to the final training run).

Each trial trains ``epochs`` epochs with a constant learning rate and is scored on validation loss.
The output folder holds the tuner's state (a repeated command continues where it stopped),
``search_results.csv`` (one row per trial) and ``best_config.json``, a full training config that
``cxr-edge train --config`` accepts.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import keras
import keras_tuner
import numpy as np

from cxr_edge.config import from_dict
from cxr_edge.errors import SpecError
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.data import class_weights, training_data
from cxr_edge.train.fit import load_task, make_optimizer, with_policy
from cxr_edge.train.zoo import apply_weight_decay, build_model, preset

RESULTS = "search_results.csv"
BEST_CONFIG = "best_config.json"


@dataclass(frozen=True)
class SearchConfig:
    """Search budget: ``[search]`` table of a config file.

    Attributes:
        trials: Number of random trials.
        epochs: Epochs per trial.
        seed: Seed of the random sampler.
    """

    trials: int = 10
    epochs: int = 5
    seed: int = 0


def load_search_config(path: str | Path) -> tuple[TrainConfig, SearchConfig]:
    """Reads a TOML file holding a training config plus a ``[search]`` table."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("config not found", expected="a TOML file", received=str(path))
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    search = from_dict(SearchConfig, data.pop("search", {}), what=f"[search] of {path.name}")
    return from_dict(TrainConfig, data, what=f"config {path.name}"), search


def _trial_config(hp: keras_tuner.HyperParameters, base: TrainConfig) -> TrainConfig:
    """The training config of one trial."""
    if preset(base.model).application is not None:
        return dataclasses.replace(
            base,
            momentum=hp.Float("momentum", 0.85, 0.99),
            weight_decay=hp.Float("weight_decay", 1e-10, 1e-3, sampling="log"),
            learning_rate=hp.Float("learning_rate", 1e-9, 1e-2, sampling="log"),
        )
    args = dict(base.model_args) | {
        "dropout": hp.Float("dropout", 0.1, 0.7, step=0.1),
        "activation": hp.Choice("activation", ["relu", "elu"]),
    }
    return dataclasses.replace(base, model_args=args, optimizer=hp.Choice("optimizer", ["sgd", "adam"]))


def search(
    config: TrainConfig,
    budget: SearchConfig,
    manifest_path: str | Path,
    split_path: str | Path,
    out_dir: str | Path,
    *,
    root: str | Path | None = None,
    max_per_part: int | None = None,
    progress: bool = True,
) -> Path:
    """Runs (or continues) a randomised search and writes its results table and best config.

    Returns:
        The output folder.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    task = load_task(config, manifest_path, split_path, root, max_per_part)
    k = len(config.labels)
    data = training_data(config, task.parts["train"], task.parts["val"], progress=progress)
    train_seq, x_val, y_train, y_val = data.train, data.x_val, data.y_train, data.y_val

    def build(hp: keras_tuner.HyperParameters) -> keras.Model:
        cfg = _trial_config(hp, config)
        model = build_model(cfg)
        if cfg.mixed_precision:
            model = with_policy(model, "mixed_bfloat16")
        apply_weight_decay(model, cfg.weight_decay)
        model.compile(optimizer=make_optimizer(cfg), loss="categorical_crossentropy", metrics=["accuracy"])
        return model

    tuner = keras_tuner.RandomSearch(
        build,
        objective="val_loss",
        max_trials=budget.trials,
        seed=budget.seed,
        directory=str(out),
        project_name="tuner",
        overwrite=False,
    )
    tuner.search(
        train_seq,
        validation_data=(x_val, np.eye(k, dtype=np.float32)[y_val]),
        epochs=budget.epochs,
        class_weight=class_weights(y_train, k) if config.class_weights else None,
        verbose=1 if progress else 0,
    )
    trials = [t for t in tuner.oracle.trials.values() if t.score is not None]
    if not trials:
        raise SpecError("no search trial completed", expected="at least one scored trial", received="none")
    trials.sort(key=lambda t: t.score)
    names = sorted({name for t in trials for name in t.hyperparameters.values})
    with open(out / RESULTS, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["trial", "val_loss", *names])
        for t in trials:
            writer.writerow(
                [t.trial_id, f"{t.score:.5f}", *(t.hyperparameters.values.get(n, "") for n in names)]
            )
    best = _trial_config(trials[0].hyperparameters, config)
    (out / BEST_CONFIG).write_text(json.dumps(best.to_dict(), indent=2) + "\n")
    return out
