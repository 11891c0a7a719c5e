"""The iterative APoZ pruning loop: measure, remove, fine-tune, evaluate, save -- step after step.

Output folder::

    step_00/ ... step_25/    model.keras, metrics.json (fraction, params, MACs, validation metrics,
                             int8 TFLite latency), channels.json (original indices kept per layer)
    prune_results.csv        one row per step
    prune_plot.png           validation AUC and latency against the pruned fraction
    best/                    a run directory (config.json, best.keras, run.json) of the step chosen
                             on validation -- `cxr-edge convert PRUNE_DIR/best` bundles it

Everything is measured on the validation split; the test split is not touched. A repeated command
continues after the last completed step.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import keras
import numpy as np
from tqdm import tqdm

from cxr_edge.errors import SpecError
from cxr_edge.evaluation.loso import PREDICTIONS, read_predictions, score, write_predictions
from cxr_edge.evaluation.metrics import classification_metrics
from cxr_edge.provenance import git_commit, now_utc
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.data import class_weights, crop_table, load_images, preprocess_all, training_data
from cxr_edge.train.fit import load_task
from cxr_edge.train.macs import count_macs
from cxr_edge.train.prune.apoz import measure, prunable_layers, select
from cxr_edge.train.prune.graph import prune_channels
from cxr_edge.train.rundir import BEST_MODEL
from cxr_edge.train.zoo import apply_weight_decay

RESULTS = "prune_results.csv"


@dataclass(frozen=True)
class PruneConfig:
    """Settings of the loop.

    Attributes:
        step: Fraction of each layer's original channels removed per step (the paper: 2%).
        max_fraction: Stop when this fraction has been removed (the paper: 50%).
        ranking: ``layer`` (the paper's text) or ``global`` (the authors' code).
        finetune_epochs: Epochs of fine-tuning after each removal.
        finetune_lr: Learning rate of fine-tuning (default: a tenth of the run's initial rate).
        latency: Measure int8 TFLite latency at each step (one conversion per step).
        latency_runs: Timed invocations per measurement (median reported).
    """

    step: float = 0.02
    max_fraction: float = 0.5
    ranking: Literal["layer", "global"] = "layer"
    finetune_epochs: int = 1
    finetune_lr: float | None = None
    latency: bool = True
    latency_runs: int = 30

    def __post_init__(self) -> None:
        if not (0 < self.step < 1 and self.step <= self.max_fraction < 1):
            raise SpecError(
                "invalid pruning schedule",
                expected="0 < step <= max < 1",
                received=f"step={self.step}, max={self.max_fraction}",
            )
        if self.ranking not in ("layer", "global"):
            raise SpecError("unknown ranking", expected="layer or global", received=self.ranking)


def prune_run(
    run_dir,
    manifest_path,
    split_path,
    out_dir,
    cfg: PruneConfig,
    *,
    root=None,
    max_per_part: int | None = None,
    progress: bool = True,
    selection: str = "no_loss",
    tolerance: float = 0.0,
    fraction: float | None = None,
    latency_ms: Callable[[keras.Model, np.ndarray, np.ndarray, int], float] | None = None,
) -> Path:
    """Runs (or continues) iterative APoZ pruning of a training run.

    The choice of the exported step (``selection``, ``tolerance``: see :func:`choose`) is not part of
    the pruning settings: re-running with another rule re-chooses without pruning again.

    ``latency_ms(model, calibration, sample, runs)`` measures a step's deployed latency when
    ``cfg.latency`` is on (``cxr_edge.convert.latency.int8_latency_ms``: conversion is a later stage, so the
    caller hands it in and training never imports it).

    Returns:
        The output folder (its ``best`` sub-folder is a run directory).
    """
    run, out = Path(run_dir), Path(out_dir)
    if cfg.latency and latency_ms is None:
        raise SpecError(
            "latency measurement needs a converter",
            expected="latency_ms (cxr_edge.convert.latency.int8_latency_ms), or cfg.latency off",
            received="none",
        )
    level = fraction  # the loop below reuses the name for each step's fraction
    config = TrainConfig.load(run / "config.json")
    if config.task != "classify":
        raise SpecError(
            "only classifiers are pruned here", expected='task = "classify"', received=config.task
        )
    source_info = json.loads((run / "run.json").read_text())
    split_path = split_path or source_info["split"]
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "prune_config.json"
    if settings.exists() and json.loads(settings.read_text()) != asdict(cfg) | {"run": str(run)}:
        raise SpecError(
            "cannot continue with different settings",
            expected=f"the settings in {settings}",
            received="changed settings",
        )
    settings.write_text(json.dumps(asdict(cfg) | {"run": str(run)}, indent=2) + "\n")
    keras.utils.set_random_seed(config.seed)
    task = load_task(config, manifest_path, split_path, root, max_per_part)
    labels, k = config.labels, len(config.labels)
    data = training_data(config, task.parts["train"], task.parts["val"], progress=progress)
    train_seq, x_val, y_train, y_val = data.train, data.x_val, data.y_train, data.y_val
    n_train = len(data.train_inputs)
    calibration = preprocess_all(
        data.train_inputs.take(range(0, n_train, max(1, n_train // 64))[:64]), config.preprocess
    )

    # A LOSO fold (its run held sources out): every step also predicts the held-out source, so the
    # pruning level can be chosen on a source the model never saw (cxr_edge.train.prune.loso).
    holdout = task.holdout
    x_hold = (
        preprocess_all(load_images(holdout, crops=crop_table(config), progress=False), config.preprocess)
        if holdout
        else None
    )
    model = keras.models.load_model(run / BEST_MODEL)
    layers = prunable_layers(model)
    if not layers:
        raise SpecError(
            "nothing to prune", expected="conv/dense layers followed by ReLU", received=model.name
        )
    original = {p.producer: int(model.get_layer(p.producer).output.shape[-1]) for p in layers}
    current = {p: np.arange(n) for p, n in original.items()}
    n_steps = round(cfg.max_fraction / cfg.step)
    rows = []

    def record(step: int, fraction: float, m: keras.Model, report=None) -> dict:
        probs = m.predict(x_val, verbose=0, batch_size=32)
        metrics = classification_metrics(y_val, probs, labels)
        row = {
            "step": step,
            "fraction": round(fraction, 4),
            "params": int(m.count_params()),
            "macs": count_macs(m),
            "val_accuracy": metrics["accuracy"],
            "val_auc_macro": metrics["auc_macro"],
            "val_mcc": metrics["mcc"],
            "int8_latency_ms": latency_ms(m, calibration, x_val[0], cfg.latency_runs)
            if cfg.latency
            else None,
            "folded_constants": report.folded if report else 0,
        }
        folder = out / f"step_{step:02d}"
        folder.mkdir(exist_ok=True)
        if x_hold is not None:
            held_probs = m.predict(x_hold, verbose=0, batch_size=32)
            rows_out = [(r.path, r.source, r.label, r.raw_label) for r in holdout]
            write_predictions(folder / PREDICTIONS, labels, rows_out, held_probs)
            held = score(read_predictions([folder / PREDICTIONS]))
            row["holdout_accuracy"] = held["pooled"]["accuracy"]["value"]
            row["holdout_score"] = held["selection_score"]
        m.save(folder / "model.keras")
        (folder / "channels.json").write_text(json.dumps({p: c.tolist() for p, c in current.items()}) + "\n")
        (folder / "metrics.json").write_text(json.dumps(row | {"val_metrics": metrics}, indent=2) + "\n")
        return row

    for step in tqdm(range(n_steps + 1), desc="prune", disable=not progress):
        folder = out / f"step_{step:02d}"
        if (folder / "metrics.json").is_file():  # done earlier: continue from its model
            rows.append(
                {
                    k2: v
                    for k2, v in json.loads((folder / "metrics.json").read_text()).items()
                    if k2 != "val_metrics"
                }
            )
            model = keras.models.load_model(folder / "model.keras")
            current = {p: np.array(c) for p, c in json.loads((folder / "channels.json").read_text()).items()}
            continue
        if step == 0:
            rows.append(record(0, 0.0, model))
            continue
        fraction = step * cfg.step
        stats = measure(model, layers, x_val)
        keep = select(layers, stats, current, original, fraction, cfg.ranking)
        model, report = prune_channels(model, keep, constants=stats.constants())
        current = {p: current[p][keep[p]] for p in current}
        lr = cfg.finetune_lr or config.learning_rate * 0.1
        model.compile(
            optimizer=keras.optimizers.SGD(lr, momentum=config.momentum),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
        apply_weight_decay(model, config.weight_decay)
        model.fit(
            train_seq,
            epochs=cfg.finetune_epochs,
            verbose=0,
            class_weight=class_weights(y_train, k)
            if config.class_weights and config.sampling != "balanced"
            else None,
        )
        rows.append(record(step, fraction, model, report))

    _write_results(out, rows)
    best = choose(rows, selection, tolerance, level)
    rule = {"rule": selection, "tolerance": tolerance} | (
        {"fraction": level} if selection == "fraction" else {}
    )
    _export_best(out, run, config, source_info, rows, best, rule)
    return out


def choose(
    rows: list[dict], rule: str = "no_loss", tolerance: float = 0.0, fraction: float | None = None
) -> dict:
    """The step to export.

    Args:
        rows: One per step, step 0 (unpruned) first.
        rule: ``no_loss`` -- the most pruned step whose validation macro AUC is at least the
            unpruned model's minus ``tolerance`` (the question a deployer asks: how much can go at
            no loss); ``best`` -- the step with the best validation macro AUC, ties to the more
            pruned one (the paper's choice, which on ~90 validation images often picks noise);
            ``fraction`` -- the most pruned step at or below ``fraction`` (a level chosen elsewhere,
            e.g. by leave-one-source-out pruning of the recipe's folds: ``cxr-edge loso prune``).
        tolerance: Allowed AUC drop for ``no_loss``.
        fraction: The level for ``fraction``.
    """
    auc = [r["val_auc_macro"] or 0.0 for r in rows]
    if rule == "fraction":
        if fraction is None:
            raise SpecError("no pruning level given", expected="--fraction F", received="none")
        below = [r for r in rows if r["fraction"] <= fraction + 1e-9]
        return max(below, key=lambda r: r["fraction"])
    if rule == "best":
        return max(rows, key=lambda r: (r["val_auc_macro"] or 0.0, r["fraction"]))
    if rule != "no_loss":
        raise SpecError("unknown selection rule", expected="no_loss or best", received=rule)
    fine = [r for r, a in zip(rows, auc, strict=True) if a >= auc[0] - tolerance]
    return max(fine, key=lambda r: r["fraction"])


def _write_results(out: Path, rows: list[dict]) -> None:
    with open(out / RESULTS, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fractions = [r["fraction"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(fractions, [r["val_auc_macro"] for r in rows], "o-", label="validation macro AUC")
    ax.plot(fractions, [r["val_accuracy"] for r in rows], "s-", label="validation accuracy")
    ax.set(xlabel="fraction of prunable channels removed", ylabel="metric")
    if rows[0]["int8_latency_ms"] is not None:
        ax2 = ax.twinx()
        ax2.plot(fractions, [r["int8_latency_ms"] for r in rows], "r^--", label="int8 latency (ms)")
        ax2.set_ylabel("int8 TFLite latency, 1 thread (ms)", color="r")
    ax.legend(loc="lower left", fontsize=8)
    fig.savefig(out / "prune_plot.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _export_best(
    out: Path,
    run: Path,
    config: TrainConfig,
    source_info: dict,
    rows: list[dict],
    best: dict,
    selection: dict,
) -> None:
    folder = out / "best"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    shutil.copyfile(out / f"step_{best['step']:02d}" / "model.keras", folder / BEST_MODEL)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    metrics = json.loads((out / f"step_{best['step']:02d}" / "metrics.json").read_text())["val_metrics"]
    unpruned = rows[0]
    info = {
        k: source_info.get(k)
        for k in (
            "data_manifest",
            "data_manifest_sha256",
            "split",
            "split_sha256",
            "max_per_part",
            "n_images",
            "weights",
            "init_from",
            "keras_backend",
        )
    }
    info |= {
        "created": now_utc(),
        "git_commit": git_commit(Path(__file__).parent),
        "pruned_from": str(run),
        "pruned_fraction": best["fraction"],
        "pruning_step": best["step"],
        "pruning_selection": selection,
        "params": best["params"],
        "params_unpruned": unpruned["params"],
        "macs": best["macs"],
        "macs_unpruned": unpruned["macs"],
        "epochs_run": source_info.get("epochs_run"),
        "best_epoch": source_info.get("best_epoch"),
        "wall_time_s": source_info.get("wall_time_s"),
        "val_metrics": metrics,
        "holdout_metrics": None,
    }
    (folder / "run.json").write_text(json.dumps(info, indent=2) + "\n")
