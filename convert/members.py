"""The conversion stage of a bundle build: each run's model into gated TFLite variants.

Each variant is run with the LiteRT engine on validation and test, compared with its Keras source
(the parity gate, :mod:`cxr_edge.convert.gates`) and described by a :class:`ModelEntry`; the member
variant's probabilities go on to the ensemble fit (:mod:`cxr_edge.convert.build`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from cxr_edge.bundle.entries import ModelEntry
from cxr_edge.convert.gates import GateError, gate, parity, quantization_report
from cxr_edge.convert.recipe import BundleRecipe
from cxr_edge.convert.tflite import Quant, to_tflite_variants
from cxr_edge.dataset.manifest import Record
from cxr_edge.errors import SpecError
from cxr_edge.evaluation.metrics import classification_metrics
from cxr_edge.hashing import file_sha256
from cxr_edge.ops.preprocess import PreprocessSpec
from cxr_edge.runtime.engine import Engine
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.macs import count_macs
from cxr_edge.train.rundir import BEST_MODEL


@dataclass(frozen=True)
class Run:
    """A finished training run, its files read once.

    Attributes:
        folder: The run folder.
        config: Its ``config.json``.
        info: Its ``run.json`` (metrics, weights, pruning).
    """

    folder: Path
    config: TrainConfig
    info: dict


@dataclass(frozen=True)
class Inputs:
    """The images every stage scores, loaded and preprocessed once.

    Attributes:
        x: ``calibration``, ``val``, ``test`` -> preprocessed arrays.
        y: ``val``, ``test`` -> label indices.
        labels: The task's labels.
        test_records: The test part's records (metrics per source).
        spec: The bundle's one preprocessing spec.
        n_calibration: Training images sampled for calibration (recorded in provenance).
        val_images: The validation images before preprocessing (the lung-evidence stage runs the
            whole runtime on them).
    """

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    labels: tuple[str, ...]
    test_records: tuple[Record, ...]
    spec: PreprocessSpec
    n_calibration: int
    val_images: list[np.ndarray]


@dataclass(frozen=True)
class Members:
    """What the conversion stage made.

    Attributes:
        entries: Every shipped variant of every run.
        names: The member variant of each run, in run order.
        probs: ``val``, ``test`` -> ``(members, N, C)`` member-variant probabilities.
        fallbacks: Runs whose member variant failed its gate and runs its fallback instead.
    """

    entries: tuple[ModelEntry, ...]
    names: tuple[str, ...]
    probs: dict[str, np.ndarray]
    fallbacks: tuple[dict, ...]


def convert_members(
    recipe: BundleRecipe,
    runs: Sequence[Run],
    inputs: Inputs,
    staging: Path,
    out: Path,
    progress: bool,
) -> Members:
    """Converts each run to ``recipe.quants``, gates every variant and writes the shipped ones.

    Raises:
        GateError: A variant failed its gate (and neither a fallback nor ``allow_degraded`` applies);
            ``OUT.gate-report.json`` names the worst layers.
    """
    x, y = inputs.x, inputs.y
    entries: list[ModelEntry] = []
    names: list[str] = []
    member_probs: dict[str, list[np.ndarray]] = {"val": [], "test": []}
    fallbacks: list[dict] = []
    calibrated = any(q.calibrated for q in recipe.quants)
    stems = member_stems([r.folder for r in runs], [r.config for r in runs])
    for run, stem in zip(runs, stems, strict=True):
        config, run_info = run.config, run.info
        model = keras.models.load_model(run.folder / BEST_MODEL)
        keras_probs = {
            p: model.predict(channels_for(x[p], model), verbose=0, batch_size=32) for p in ("val", "test")
        }
        cam = cam_weights(model)
        outputs = ("probs", "features") if cam is not None else None
        calibration = channels_for(x["calibration"], model) if calibrated else None
        flatbuffers = to_tflite_variants(model, recipe.quants, calibration, outputs=outputs)
        run_probs, member = {}, recipe.member_quant
        for quant in recipe.quants:
            model_name = f"{stem}-{quant}"
            file = staging / f"{model_name}.tflite"
            file.write_bytes(flatbuffers[quant])
            engine = Engine(file)
            probs = {p: _run(engine, x[p], f"{model_name} {p}", progress) for p in ("val", "test")}
            check = parity(keras_probs["val"], probs["val"], y["val"], inputs.labels)
            verdict = gate(check, recipe.thresholds)
            if (
                not verdict["passed"]
                and quant == recipe.member_quant
                and recipe.member_fallback
                and not recipe.allow_degraded
            ):
                fallbacks.append({"run": stem, "failed": model_name, "gate": verdict})
                file.unlink()  # not shipped: the member runs its fallback variant
                member = recipe.member_fallback
                continue
            if not verdict["passed"]:
                if not recipe.allow_degraded:
                    _fail(out, model_name, quant, verdict, model, x)
                verdict["allowed_degraded"] = True
            entries.append(
                ModelEntry(
                    name=model_name,
                    file=file.name,
                    sha256=file_sha256(file),
                    architecture=config.model,
                    quant=quant.value,
                    input=engine.input_spec,
                    outputs=dict(engine.output_specs),
                    params=int(model.count_params()),
                    params_unpruned=int(run_info.get("params_unpruned") or model.count_params()),
                    macs=count_macs(model),
                    pruned_fraction=float(run_info.get("pruned_fraction") or 0.0),
                    parity=check,
                    gate=verdict,
                    cam_weights=cam,
                    metrics=split_metrics(probs, y, inputs.labels, inputs.test_records),
                )
            )
            run_probs[quant] = (model_name, probs)
        names.append(run_probs[member][0])
        for p in ("val", "test"):
            member_probs[p].append(run_probs[member][1][p])
    return Members(
        entries=tuple(entries),
        names=tuple(names),
        probs={p: np.stack(v) for p, v in member_probs.items()},
        fallbacks=tuple(fallbacks),
    )


def channels_for(x: np.ndarray, model: keras.Model) -> np.ndarray:
    """Grey inputs repeated to the channels a model takes (backbones take three)."""
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 and model.input_shape[-1] == 3 else x


def cam_weights(model: keras.Model) -> tuple[tuple[float, ...], ...] | None:
    """Dense weights for class activation maps, when the head is features -> GAP -> (dropout) -> dense.

    Returns None for any other head (no heat maps are exported then).
    """
    try:
        dense = model.get_layer("probs")
        model.get_layer("features")
    except ValueError:
        return None
    layer = dense
    while True:
        source = layer.input._keras_history[0]
        if source.name == "features":
            break
        if not isinstance(source, keras.layers.GlobalAveragePooling2D | keras.layers.Dropout):
            return None
        layer = source
    kernel = dense.get_weights()[0]
    return tuple(map(tuple, kernel.astype(float).tolist()))


def member_stems(runs: Sequence[Path], configs: Sequence[TrainConfig]) -> list[str]:
    """Model names in the bundle (before ``-{quant}``): the architecture for one run, else run names.

    A pruning folder's ``best`` run is named after its folder (``mobilenet_v2-stage2-pruned``), so
    that the three pruned members of an ensemble do not all become ``best``.
    """
    if len(runs) == 1:
        return [configs[0].model]
    stems = [f"{r.parent.name}-pruned" if r.name == "best" else r.name for r in runs]
    if len(set(stems)) < len(stems):
        raise SpecError(
            "ensemble members need distinct run folder names",
            expected="distinct names",
            received=", ".join(stems),
        )
    return stems


def split_metrics(probs: dict, y: dict, labels, test_records: Sequence[Record]) -> dict:
    """Validation and test metrics, plus test metrics per source (the kit confounds source and label)."""
    out = {p: metrics_summary(classification_metrics(y[p], probs[p], labels)) for p in ("val", "test")}
    sources = np.array([r.source for r in test_records])
    out["test_by_source"] = {
        s: metrics_summary(
            classification_metrics(y["test"][sources == s], probs["test"][sources == s], labels)
        )
        for s in sorted(set(sources))
    }
    return out


def metrics_summary(m: dict) -> dict:
    """The few numbers of a metrics dict a bundle keeps per variant."""
    return {
        "n": m["n"],
        "accuracy": m["accuracy"],
        "auc_macro": m["auc_macro"],
        "sensitivity": {k: v["sensitivity"] for k, v in m["per_class"].items()},
    }


def _run(engine: Engine, x: np.ndarray, desc: str, progress: bool) -> np.ndarray:
    return np.stack([engine(xi) for xi in tqdm(x, desc=desc, disable=not progress, leave=False)])


def _fail(out: Path, name: str, quant: Quant, verdict: dict, model: keras.Model, x: dict) -> None:
    """Writes the gate report (worst layers for full-integer variants) and raises :class:`GateError`."""
    worst = (
        quantization_report(
            model, channels_for(x["calibration"], model), channels_for(x["val"][:32], model), quant.value
        )
        if quant.calibrated
        else []
    )
    report = out.parent / f"{out.name}.gate-report.json"
    report.write_text(json.dumps({"model": name, "gate": verdict, "worst_layers": worst}, indent=2) + "\n")
    layers = ", ".join(f"{w['tensor']} ({w['rmse_per_step']:.1f} steps)" for w in worst[:3])
    raise GateError(
        f"{name} failed its accuracy gate: {'; '.join(verdict['failures'])}"
        + (f"; worst layers: {layers}" if layers else "")
        + f"; report in {report}",
        expected="a converted model that behaves like its Keras source",
        received="use --allow-degraded to keep it anyway (recorded in the manifest)",
    )
