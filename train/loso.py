"""Leave-one-source-out training: one run per held-out source, its images predicted by that run.

``OUT/<source>/`` is an ordinary run directory (``cxr-edge convert`` can bundle it) trained with
``holdout_sources = [source]``: the source's images are in none of train, validation or test. The run
then predicts *every* image of that source (all split parts, since the model saw none of them) into
``holdout_predictions.csv``, and :mod:`cxr_edge.evaluation.loso` scores the folds. Folds that finished are
kept when the command is run again, so an interrupted experiment resumes where it stopped.

Only sources whose removal leaves every class of the task at least one other source are folds: a
model cannot be asked to find a class it has never seen.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from cxr_edge.dataset.manifest import Manifest, load_manifest
from cxr_edge.errors import SpecError
from cxr_edge.evaluation.loso import PREDICTIONS, write_predictions, write_report
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.data import crop_table, load_images, preprocess_all
from cxr_edge.train.fit import train_run
from cxr_edge.train.rundir import BEST_MODEL, LAST_MODEL


def eligible_sources(manifest: Manifest, labels: Sequence[str]) -> list[str]:
    """Sources that can be held out: every label keeps at least one other source.

    Args:
        manifest: The task's manifest (already restricted and label-mapped).
        labels: The task's classes.
    """
    sources_of: dict[str, set[str]] = defaultdict(set)
    for r in manifest.records:
        sources_of[r.label].add(r.source)
    missing = [lab for lab in labels if not sources_of[lab]]
    if missing:
        raise SpecError(
            "task classes without images", expected="images of every class", received=str(missing)
        )
    all_sources = sorted({r.source for r in manifest.records})
    return [s for s in all_sources if all(sources_of[lab] - {s} for lab in labels)]


def fold_config(config: TrainConfig, source: str, init_from_loso: str | Path | None) -> TrainConfig:
    """The fold's config: ``source`` held out (and, for two-stage recipes, that fold's stage-1 run)."""
    changes: dict = {"holdout_sources": (*config.holdout_sources, source)}
    if init_from_loso is not None:
        stage1 = Path(init_from_loso) / source
        if not (stage1 / BEST_MODEL).is_file():
            raise SpecError(
                "stage-1 fold missing",
                expected=f"a finished LOSO run {stage1} (same held-out source)",
                received="none",
            )
        changes["init_from"] = str(stage1)
    return dataclasses.replace(config, **changes)


def predict_holdout(run_dir: Path, manifest: Manifest, config: TrainConfig, source: str) -> Path:
    """Predicts every image of ``source`` with the fold's best model into ``holdout_predictions.csv``."""
    records = [r for r in manifest.records if r.source == source]
    model = keras.models.load_model(run_dir / BEST_MODEL)
    x = preprocess_all(load_images(records, crops=crop_table(config), progress=False), config.preprocess)
    probs = model.predict(x, verbose=0, batch_size=32)
    rows = [(r.path, r.source, r.label, r.raw_label) for r in records]
    return write_predictions(run_dir / PREDICTIONS, config.labels, rows, probs)


def run_loso(
    config: TrainConfig,
    manifest_path: str | Path,
    split_path: str | Path,
    out_dir: str | Path,
    *,
    sources: Sequence[str] | None = None,
    init_from_loso: str | Path | None = None,
    root: str | Path | None = None,
    max_per_part: int | None = None,
    progress: bool = True,
    command: str = "",
) -> dict:
    """Trains every fold not yet finished, predicts its held-out source, and scores the folds.

    Args:
        config: The recipe (its ``holdout_sources`` are held out in every fold as well).
        manifest_path: Data manifest.
        split_path: The patient-level split (train/val of the other sources train and select epochs).
        out_dir: LOSO folder; one run directory per held-out source.
        sources: Folds to run (default: every eligible source).
        init_from_loso: LOSO folder of a stage-1 recipe: fold ``s`` starts from its fold ``s`` (the
            stage-1 model never saw the held-out source either).
        root: Image root.
        max_per_part: Cap on images per part (tests).
        progress: Progress bars.
        command: The command line (recorded in ``loso_config.json``).

    Returns:
        The LOSO report (:func:`cxr_edge.evaluation.loso.score`).
    """
    out = Path(out_dir)
    manifest = load_manifest(manifest_path, root).select(config.labels, config.label_map)
    eligible = eligible_sources(manifest, config.labels)
    chosen = list(sources) if sources else eligible
    bad = [s for s in chosen if s not in eligible]
    if bad:
        raise SpecError(
            "source cannot be held out",
            expected=f"one of {eligible} (each class keeps a source)",
            received=str(bad),
        )
    out.mkdir(parents=True, exist_ok=True)
    _record_config(out, config, chosen, init_from_loso, command)
    for source in chosen:
        run = out / source
        if (run / PREDICTIONS).is_file() and (run / "run.json").is_file():
            continue  # finished fold
        fold = fold_config(config, source, init_from_loso)
        resume = (run / LAST_MODEL).is_file()
        if run.exists() and not resume:
            shutil.rmtree(run)  # a fold that died before its first epoch: start it again
        train_run(
            fold,
            manifest_path,
            split_path,
            run,
            root=root,
            max_per_part=max_per_part,
            progress=progress,
            resume=resume,
        )
        predict_holdout(run, manifest, fold, source)
    return write_report(out)


def _record_config(out: Path, config: TrainConfig, sources: list[str], init_from, command: str) -> None:
    """Writes ``loso_config.json`` once; a later call must use the same recipe (resume, not mix)."""
    info = {
        "config": config.to_dict(),
        "init_from_loso": str(init_from) if init_from else None,
    }
    file = out / "loso_config.json"
    if file.is_file():
        old = json.loads(file.read_text())
        if {k: old.get(k) for k in info} != json.loads(json.dumps(info)):
            raise SpecError(
                "LOSO folder holds another recipe",
                expected=f"the recipe in {file}",
                received="a changed config",
            )
        sources = sorted(set(old.get("sources", [])) | set(sources))
    file.write_text(json.dumps(info | {"sources": sources, "command": command}, indent=2) + "\n")


def fold_val_metrics(loso_dir: str | Path) -> dict[str, dict]:
    """In-distribution validation metrics of each fold (the other sources' val split), from run.json."""
    out = {}
    for run in sorted(Path(loso_dir).iterdir()):
        info = run / "run.json"
        if info.is_file():
            out[run.name] = json.loads(info.read_text())["val_metrics"]
    return out


def mean_val_accuracy(loso_dir: str | Path) -> float | None:
    """Mean in-distribution validation accuracy over the folds (reported beside the LOSO score)."""
    values = [m["accuracy"] for m in fold_val_metrics(loso_dir).values() if m.get("accuracy") is not None]
    return float(np.mean(values)) if values else None
