"""Training runs -> bundle: convert each variant, check parity on validation, evaluate, write.

The test split is used here only to *report* each variant's metrics in the bundle's provenance and
card; nothing is chosen on it. Format-3 bundles also carry the runs' label map, an optional
abstention band, the lung-evidence threshold (chosen on validation, :mod:`cxr_edge.convert.card`) and a
model card.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from cxr_edge.bundle.folder import Bundle, write_manifest
from cxr_edge.bundle.manifest import FORMAT_VERSION, BundleManifest, EnsembleConfig, ModelEntry
from cxr_edge.convert.card import in_distribution, lung_evidence_on_validation, make_card
from cxr_edge.convert.gates import GateError, GateThresholds, gate, parity, quantization_report, usefulness
from cxr_edge.convert.staging import staged
from cxr_edge.convert.tflite import Quant, to_tflite_variants
from cxr_edge.dataset.manifest import Record
from cxr_edge.dataset.splits import spread
from cxr_edge.errors import SpecError
from cxr_edge.evaluation.decode_gate import decode_gate
from cxr_edge.evaluation.metrics import classification_metrics
from cxr_edge.evaluation.stats import fit_temperature
from cxr_edge.hashing import file_sha256
from cxr_edge.ops.ensemble import accuracy_weights, fit_stacker, logloss_weights
from cxr_edge.ops.quality import AbstainConfig
from cxr_edge.provenance import git_commit, now_utc, versions
from cxr_edge.runtime.engine import Engine
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.data import crop_table, label_indices, load_images, preprocess_all
from cxr_edge.train.fit import load_task
from cxr_edge.train.macs import count_macs
from cxr_edge.train.rundir import BEST_MODEL

DEFAULT_CALIBRATION = 200
DEFAULT_GATE = GateThresholds()
# Each image becomes three full-size DICOMs (JPEG 2000 encoding ~0.7 s): about 2 minutes on 2 cores.
DEFAULT_DECODE_GATE = 60


def build_bundle(
    run_dirs: Sequence[str | Path],
    manifest_path: str | Path,
    split_path: str | Path,
    out_dir: str | Path,
    *,
    quants: Sequence[str] = ("fp32", "int8"),
    member_quant: str = "int8",
    member_fallback: str | None = None,
    method: str = "mean",
    weight_rule: str = "logloss",
    segmenter: str | Path | None = None,
    root: str | Path | None = None,
    name: str = "cxr-edge",
    n_calibration: int = DEFAULT_CALIBRATION,
    max_per_part: int | None = None,
    command: str = "",
    overwrite: bool = False,
    progress: bool = True,
    thresholds: GateThresholds = DEFAULT_GATE,
    allow_degraded: bool = False,
    calibration: np.ndarray | None = None,
    abstain: AbstainConfig | None = None,
    temperature: float | None = None,
    card: str | Path | None = None,
    decode_gate_images: int = 0,
) -> Path:
    """Converts the best model of each run and writes a bundle folder.

    Args:
        run_dirs: Training run directories (same labels and preprocessing).
        manifest_path: Data manifest.
        split_path: The split the runs were trained on.
        out_dir: Bundle folder to create.
        quants: Variants to convert (``fp32``, ``int8``).
        member_quant: Which variant the ensemble runs by default.
        member_fallback: Variant a member runs when its ``member_quant`` variant fails the gate ("int8
            where the gate passes"); the failed variant is left out of the bundle and provenance
            records the fallback with the gate's failures. None: a failed gate stops the conversion.
        method: The default combiner (``vote``, ``mean``, ``weighted``, ``stacking``); with two or more
            runs, weights and the stacker are fitted on validation and stored whatever the method.
        weight_rule: ``logloss`` (optimised on the simplex) or ``accuracy`` (the paper's rule).
        segmenter: Segmenter bundle (``cxr-edge convert-segmenter``) for lung-crop runs; it must be the
            one that made the runs' crop table.
        root: Image root.
        name: Bundle name.
        n_calibration: Training images used to calibrate int8 (spread over the split).
        max_per_part: Cap images per part (quick runs and tests).
        command: The command line, recorded in provenance.
        overwrite: Replace an existing bundle folder.
        progress: Show progress bars.
        thresholds: Accuracy gate applied to every converted variant (on validation).
        allow_degraded: Keep variants that fail the gate (recorded in the manifest) instead of stopping.
        calibration: Preprocessed calibration inputs overriding the training-split sample (experiments).
        abstain: Abstention band stored in the ensemble (applied after the temperature), or None.
        temperature: Ensemble temperature overriding the one fitted on validation (e.g. one fitted on
            leave-one-source-out predictions); provenance records which was used.
        card: Card input file (TOML/JSON: intended use, failure modes, recipe, LOSO and audit paths);
            without it the card says that no LOSO evaluation was recorded.
        decode_gate_images: Validation images for the decode parity gate (reduced-resolution DICOM
            decoding, :mod:`cxr_edge.evaluation.decode_gate`); 0 skips it (the bundle then always decodes at
            full resolution).

    Returns:
        The bundle folder.

    Raises:
        GateError: A variant failed its gate; ``OUT.gate-report.json`` names the worst layers.
    """
    out = Path(out_dir)
    commit = git_commit(Path(__file__).parent)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SpecError("bundle folder is not empty", expected="a new folder (or --force)", received=str(out))
    quants = [Quant(q) for q in quants]
    if member_quant not in quants:
        raise SpecError(
            "member variant not converted (--member must be one of --quant)",
            expected=f"one of {', '.join(q.value for q in quants)}",
            received=str(Quant(member_quant).value),
        )
    if member_fallback is not None and (member_fallback not in quants or member_fallback == member_quant):
        raise SpecError(
            "member fallback not converted",
            expected=f"another of {[q.value for q in quants]}",
            received=member_fallback,
        )
    runs = [Path(r) for r in run_dirs]
    _check_method(method, len(runs))  # before minutes of conversion, not after
    for r in runs:  # an unfinished run (no run.json yet) must not fail after the images are decoded
        missing = [f for f in ("config.json", BEST_MODEL, "run.json") if not (r / f).is_file()]
        if missing:
            raise SpecError(
                "not a finished training run",
                expected="config.json, best.keras and run.json",
                received=f"{r} lacks {', '.join(missing)}",
            )
    configs = [TrainConfig.load(r / "config.json") for r in runs]
    first = configs[0]
    for r, c in zip(runs, configs, strict=True):
        same_spec = dataclasses.replace(c.preprocess, channels=1) == dataclasses.replace(
            first.preprocess, channels=1
        )
        if (
            c.labels != first.labels
            or c.label_map != first.label_map
            or not same_spec
            or c.crops != first.crops
        ):
            raise SpecError(
                "runs disagree on labels, label map, preprocessing or crops",
                expected="one spec per bundle",
                received=f"{r} differs from {runs[0]}",
            )
    crops = crop_table(first)
    seg_bundle = _segmenter_for(crops, segmenter)
    task = load_task(first, manifest_path, split_path, root, max_per_part)
    labels = first.labels
    # One spec per bundle; with mixed 1- and 3-channel models it yields grey, repeated per model.
    spec = dataclasses.replace(first.preprocess, channels=min(c.preprocess.channels for c in configs))
    calib_recs = spread(task.parts["train"], n_calibration)
    val_inputs = load_images(task.parts["val"], crops=crops, desc="val", progress=progress)
    x = {
        "calibration": calibration
        if calibration is not None
        else preprocess_all(load_images(calib_recs, crops=crops, desc="calib", progress=progress), spec),
        "val": preprocess_all(val_inputs, spec),
        "test": preprocess_all(
            load_images(task.parts["test"], crops=crops, desc="test", progress=progress), spec
        ),
    }
    y = {p: label_indices(task.parts[p], labels) for p in ("val", "test")}

    stems = member_stems(runs, configs)
    entries: list[ModelEntry] = []
    member_probs = {"val": [], "test": []}
    member_names: list[str] = []
    fallbacks: list[dict] = []
    with staged(out) as staging:
        for run, config, stem in zip(runs, configs, stems, strict=True):
            model = keras.models.load_model(run / BEST_MODEL)
            run_info = json.loads((run / "run.json").read_text())
            keras_probs = {
                p: model.predict(_channels(x[p], model), verbose=0, batch_size=32) for p in ("val", "test")
            }
            cam = cam_weights(model)
            calibrated = any(q.calibrated for q in quants)
            outputs = ("probs", "features") if cam is not None else None
            flatbuffers = to_tflite_variants(
                model, quants, _channels(x["calibration"], model) if calibrated else None, outputs=outputs
            )
            run_probs, member = {}, member_quant
            for quant in quants:
                model_name = f"{stem}-{quant}"
                file = staging / f"{model_name}.tflite"
                file.write_bytes(flatbuffers[quant])
                engine = Engine(file)
                probs = {p: _run(engine, x[p], f"{model_name} {p}", progress) for p in ("val", "test")}
                check = parity(keras_probs["val"], probs["val"], y["val"], labels)
                verdict = gate(check, thresholds)
                if not verdict["passed"] and quant == member_quant and member_fallback and not allow_degraded:
                    fallbacks.append({"run": stem, "failed": model_name, "gate": verdict})
                    file.unlink()  # not shipped: the member runs its fallback variant
                    member = member_fallback
                    continue
                if not verdict["passed"]:
                    if not allow_degraded:
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
                        metrics=_metrics(probs, y, labels, task.parts["test"]),
                    )
                )
                run_probs[quant] = (model_name, probs)
            member_names.append(run_probs[member][0])
            for p in ("val", "test"):
                member_probs[p].append(run_probs[member][1][p])
        members = tuple(member_names)
        val_groups = np.array([r.patient_id for r in task.parts["val"]])
        ensemble, fit_info = fit_ensemble(
            members,
            np.stack(member_probs["val"]),
            y["val"],
            val_groups,
            method=method,
            weight_rule=weight_rule,
        )
        if temperature is not None:
            fit_info["temperature_fitted"] = fit_info["temperature"]
            ensemble = dataclasses.replace(ensemble, temperature=float(temperature))
        fit_info["temperature"] = ensemble.temperature
        fit_info["temperature_source"] = (
            "--temperature (given at conversion)"
            if temperature is not None
            else "fitted on the validation split"
        )
        ensemble = dataclasses.replace(ensemble, abstain=abstain)
        ensemble_probs = {p: ensemble.apply(np.stack(member_probs[p])) for p in ("val", "test")}
        manifest = BundleManifest(
            format_version=FORMAT_VERSION,
            name=name,
            labels=tuple(labels),
            preprocess=spec,
            models=tuple(entries),
            ensemble=ensemble,
            segmenter=seg_bundle.manifest.segmenter if seg_bundle else None,
            label_map=dict(first.label_map),
            provenance={
                "created": now_utc(),
                "git_commit": commit,
                "command": command,
                "versions": versions("keras", "tensorflow-cpu", "ai-edge-litert", "numpy"),
                "data_manifest_sha256": task.manifest.sha256,
                "split_sha256": task.split.sha256,
                "n_images": {p: len(r) for p, r in task.parts.items()} | {"calibration": len(calib_recs)},
                "max_per_part": max_per_part,
                "runs": [_run_summary(r) for r in runs],
                "weights": sorted({json.loads((r / "run.json").read_text())["weights"] for r in runs}),
                "ensemble_fit": fit_info,
                "member_fallbacks": fallbacks,
                "ensemble_metrics": _metrics(ensemble_probs, y, labels, task.parts["test"]),
            },
        )
        if seg_bundle is not None:
            shutil.copyfile(
                seg_bundle.path_of(seg_bundle.manifest.segmenter), staging / manifest.segmenter.file
            )
        write_manifest(staging, manifest)
        # Lung evidence and the card are measured with the runtime on the staged bundle itself.
        lung_stats = None
        if seg_bundle is not None:
            evidence, lung_stats, evidence_info = lung_evidence_on_validation(
                staging, val_inputs.images, task.parts["val"], y["val"], progress
            )
            manifest = dataclasses.replace(manifest, lung_evidence=evidence)
            manifest.provenance["lung_evidence"] = evidence_info
        if decode_gate_images:
            picked = spread(task.parts["val"], decode_gate_images)  # every label, like the calibration
            decode = decode_gate(staging, [r.file for r in picked], progress=progress)
            manifest = dataclasses.replace(manifest, decode=decode)
            write_manifest(staging, manifest)
        # A model can pass every parity gate and still say nothing: said in the bundle and its card,
        # shown by `convert` and `info`.
        warnings = usefulness(ensemble_probs["val"], y["val"], labels, ensemble.temperature)
        manifest.provenance["warnings"] = warnings
        ind = in_distribution(ensemble, fit_info["temperature_source"], ensemble_probs, y, task.parts, labels)
        model_card, card_info = make_card(card, labels, first.label_map, task.parts["train"], ind, lung_stats)
        if warnings:
            useless = tuple(f"This bundle looks useless on validation: {w}." for w in warnings)
            model_card = dataclasses.replace(model_card, failure_modes=(*useless, *model_card.failure_modes))
        manifest.provenance["card"] = card_info
        write_manifest(staging, dataclasses.replace(manifest, card=model_card))
    return out


def fit_ensemble(
    members: tuple[str, ...],
    val_probs: np.ndarray,
    y_val: np.ndarray,
    val_groups: np.ndarray,
    *,
    method: str = "mean",
    weight_rule: str = "logloss",
) -> tuple[EnsembleConfig, dict]:
    """Fits every combiner's parameters on the validation split and picks ``method`` as the default.

    Weights (``weight_rule``) and the stacking meta-learner need two or more members. The temperature
    is fitted on validation for ``mean`` and ``weighted`` (vote shares and the stacker's own NLL
    training make it meaningless or circular for the other two).
    """
    _check_method(method, len(members))
    rules = {"logloss": logloss_weights, "accuracy": accuracy_weights}
    if weight_rule not in rules:
        raise SpecError("unknown weight rule", expected="logloss or accuracy", received=weight_rule)
    weights = stacker = None
    info: dict = {"method": method, "fitted_on": "validation split"}
    if len(members) >= 2:
        weights = rules[weight_rule](val_probs, y_val)
        stacker = fit_stacker(val_probs, y_val, groups=val_groups)
        info |= {
            "weight_rule": weight_rule,
            "weights": list(weights),
            "stacking_l2": stacker.l2,
            "accuracy_weights": list(accuracy_weights(val_probs, y_val)),
        }
    untempered = EnsembleConfig(method=method, members=members, weights=weights, stacking=stacker)
    temperature = 1.0
    if method in ("mean", "weighted"):
        temperature = fit_temperature(untempered.apply(val_probs), y_val)
    info["temperature"] = temperature
    return dataclasses.replace(untempered, temperature=temperature), info


def _channels(x: np.ndarray, model: keras.Model) -> np.ndarray:
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


def _fail(out: Path, name: str, quant: Quant, verdict: dict, model: keras.Model, x: dict) -> None:
    """Writes the gate report (worst layers for full-integer variants) and raises :class:`GateError`."""
    worst = (
        quantization_report(
            model, _channels(x["calibration"], model), _channels(x["val"][:32], model), quant.value
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


def _segmenter_for(crops, segmenter: str | Path | None) -> Bundle | None:
    """The segmenter bundle to ship, checked against the crops the classifiers were trained on."""
    if crops is None and segmenter is None:
        return None
    if crops is None:
        raise SpecError(
            "classifiers were trained without lung crops",
            expected="runs trained with `crops`",
            received=f"--segmenter {segmenter}: at run time they would see crops they never saw",
        )
    if segmenter is None:
        raise SpecError(
            "lung-crop classifiers need their segmenter", expected="--segmenter BUNDLE_DIR", received="none"
        )
    seg_bundle = Bundle.load(segmenter)
    entry = seg_bundle.manifest.segmenter
    if entry is None or entry.sha256 != crops.segmenter_sha256:
        raise SpecError(
            "segmenter differs from the one that made the crop table",
            expected=crops.segmenter_sha256[:16] + "...",
            received=(entry.sha256[:16] + "...") if entry else "no segmenter in the bundle",
        )
    return seg_bundle


def _check_method(method: str, n_members: int) -> None:
    if method not in ("vote", "mean", "weighted", "stacking"):
        raise SpecError(
            "unknown ensemble method", expected="vote, mean, weighted or stacking", received=method
        )
    if method in ("weighted", "stacking") and n_members < 2:
        raise SpecError(
            f"{method} needs two or more members", expected="several runs", received=f"{n_members}"
        )


def _run(engine: Engine, x: np.ndarray, desc: str, progress: bool) -> np.ndarray:
    return np.stack([engine(xi) for xi in tqdm(x, desc=desc, disable=not progress, leave=False)])


def _metrics(probs: dict, y: dict, labels, test_records: Sequence[Record]) -> dict:
    """Validation and test metrics, plus test metrics per source (the kit confounds source and label)."""
    out = {p: _summary(classification_metrics(y[p], probs[p], labels)) for p in ("val", "test")}
    sources = np.array([r.source for r in test_records])
    out["test_by_source"] = {
        s: _summary(classification_metrics(y["test"][sources == s], probs["test"][sources == s], labels))
        for s in sorted(set(sources))
    }
    return out


def _summary(m: dict) -> dict:
    return {
        "n": m["n"],
        "accuracy": m["accuracy"],
        "auc_macro": m["auc_macro"],
        "sensitivity": {k: v["sensitivity"] for k, v in m["per_class"].items()},
    }


def _run_summary(run: Path) -> dict:
    info = json.loads((run / "run.json").read_text())
    keep = (
        "created",
        "git_commit",
        "data_manifest_sha256",
        "split_sha256",
        "params",
        "epochs_run",
        "best_epoch",
        "wall_time_s",
        "weights",
        "keras_backend",
    )
    return {"run": run.name} | {k: info.get(k) for k in keep} | {"val_metrics": _summary(info["val_metrics"])}
