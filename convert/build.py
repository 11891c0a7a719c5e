"""Training runs -> bundle: a :class:`~cxr_edge.convert.recipe.BundleRecipe` run stage by stage.

Stages, each a function: check the runs (:func:`check_runs`), load and preprocess the images once
(:func:`load_inputs`), convert and gate each run's variants
(:func:`cxr_edge.convert.members.convert_members`), fit the ensemble on validation
(:func:`fit_ensemble`), write the manifest (:func:`assemble_manifest`), then measure what needs the
staged bundle itself: the lung-evidence threshold, the decode gate, usefulness and the model card
(:func:`measure_staged`). Everything is written into a staging folder that becomes the bundle only
when every stage has passed.

The test split is used here only to *report* each variant's metrics in the bundle's provenance and
card; nothing is chosen on it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from cxr_edge.bundle.entries import SegmenterEntry, SegmenterRole
from cxr_edge.bundle.folder import Bundle, write_manifest
from cxr_edge.bundle.manifest import FORMAT_VERSION, BundleManifest, EnsembleConfig
from cxr_edge.convert.card import in_distribution, lung_evidence_on_validation, make_card
from cxr_edge.convert.gates import usefulness
from cxr_edge.convert.members import Inputs, Members, Run, convert_members, metrics_summary, split_metrics
from cxr_edge.convert.recipe import BundleRecipe
from cxr_edge.convert.staging import staged
from cxr_edge.dataset.splits import spread
from cxr_edge.errors import SpecError
from cxr_edge.evaluation.decode_gate import decode_gate
from cxr_edge.evaluation.stats import fit_temperature
from cxr_edge.ops.ensemble import WEIGHT_FITS, accuracy_weights, fit_stacker
from cxr_edge.provenance import git_commit, now_utc, versions
from cxr_edge.runtime.segmenter import CropTable
from cxr_edge.runtime.selftest import add_selftest
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.data import crop_table, label_indices, load_images, preprocess_all
from cxr_edge.train.fit import TaskData, load_task
from cxr_edge.train.rundir import BEST_MODEL


def build_bundle(
    recipe: BundleRecipe,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
    calibration: np.ndarray | None = None,
) -> Path:
    """Builds the bundle ``recipe`` describes into ``out_dir``.

    Args:
        recipe: What to build from and how.
        out_dir: Bundle folder to create.
        overwrite: Replace an existing bundle folder.
        progress: Show progress bars.
        command: The command line, recorded in provenance.
        calibration: Preprocessed calibration inputs overriding the training-split sample (experiments).

    Returns:
        The bundle folder.

    Raises:
        GateError: A variant failed its gate; ``OUT.gate-report.json`` names the worst layers.
        SpecError: The runs are unfinished or disagree, or the segmenter does not match them.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SpecError("bundle folder is not empty", expected="a new folder (or --force)", received=str(out))
    runs = check_runs(recipe)
    first = runs[0].config
    crops = crop_table(first)
    seg_bundle, seg_entry = _segmenter_for(crops, recipe.segmenter)
    task = load_task(first, recipe.manifest, recipe.split, recipe.root, recipe.max_per_part)
    inputs = load_inputs(recipe, runs, task, crops, calibration, progress)
    with staged(out) as staging:
        members = convert_members(recipe, runs, inputs, staging, out, progress)
        val_groups = np.array([r.patient_id for r in task.parts["val"]])
        ensemble, fit_info = fit_ensemble(
            members.names,
            members.probs["val"],
            inputs.y["val"],
            val_groups,
            method=recipe.method,
            weight_rule=recipe.weight_rule,
        )
        ensemble, fit_info = _with_recipe_temperature(recipe, ensemble, fit_info)
        ensemble = dataclasses.replace(ensemble, abstain=recipe.referral)
        ensemble_probs = {p: ensemble.apply(members.probs[p]) for p in ("val", "test")}
        manifest = assemble_manifest(
            recipe, runs, task, inputs, members, ensemble, fit_info, ensemble_probs, seg_entry, command
        )
        if seg_bundle is not None:
            shutil.copyfile(
                seg_bundle.path_of(seg_bundle.manifest.segmenter), staging / manifest.segmenter.file
            )
        write_manifest(staging, manifest)
        measure_staged(recipe, staging, manifest, first, task, inputs, ensemble_probs, fit_info, progress)
    return out


def check_runs(recipe: BundleRecipe) -> tuple[Run, ...]:
    """The runs, read once every run is finished, checked to agree on labels, preprocessing and crops."""
    for r in recipe.runs:  # an unfinished run (no run.json yet) must not fail after the images are decoded
        missing = [f for f in ("config.json", BEST_MODEL, "run.json") if not (r / f).is_file()]
        if missing:
            raise SpecError(
                "not a finished training run",
                expected="config.json, best.keras and run.json",
                received=f"{r} lacks {', '.join(missing)}",
            )
    configs = tuple(TrainConfig.load(r / "config.json") for r in recipe.runs)
    first = configs[0]
    for r, c in zip(recipe.runs, configs, strict=True):
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
                received=f"{r} differs from {recipe.runs[0]}",
            )
    return tuple(
        Run(r, c, json.loads((r / "run.json").read_text())) for r, c in zip(recipe.runs, configs, strict=True)
    )


def load_inputs(
    recipe: BundleRecipe,
    runs: tuple[Run, ...],
    task: TaskData,
    crops: CropTable | None,
    calibration: np.ndarray | None,
    progress: bool,
) -> Inputs:
    """Calibration, validation and test images, decoded and preprocessed once for every stage."""
    first = runs[0].config
    # One spec per bundle; with mixed 1- and 3-channel models it yields grey, repeated per model.
    spec = dataclasses.replace(first.preprocess, channels=min(r.config.preprocess.channels for r in runs))
    calib_recs = spread(task.parts["train"], recipe.n_calibration)
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
    y = {p: label_indices(task.parts[p], first.labels) for p in ("val", "test")}
    return Inputs(
        x=x,
        y=y,
        labels=tuple(first.labels),
        test_records=tuple(task.parts["test"]),
        spec=spec,
        n_calibration=len(calib_recs),
        val_images=val_inputs.images,
    )


def assemble_manifest(
    recipe: BundleRecipe,
    runs: tuple[Run, ...],
    task: TaskData,
    inputs: Inputs,
    members: Members,
    ensemble: EnsembleConfig,
    fit_info: dict,
    ensemble_probs: dict[str, np.ndarray],
    segmenter: SegmenterEntry | None,
    command: str,
) -> BundleManifest:
    """The bundle manifest of the converted members and the fitted ensemble (provenance included)."""
    return BundleManifest(
        format_version=FORMAT_VERSION,
        name=recipe.name,
        labels=inputs.labels,
        preprocess=inputs.spec,
        models=members.entries,
        ensemble=ensemble,
        segmenter=segmenter,
        label_map=dict(runs[0].config.label_map),
        provenance={
            "created": now_utc(),
            "git_commit": git_commit(Path(__file__).parent),
            "command": command,
            "versions": versions("keras", "tensorflow-cpu", "ai-edge-litert", "numpy"),
            "data_manifest_sha256": task.manifest.sha256,
            "split_sha256": task.split.sha256,
            "n_images": {p: len(r) for p, r in task.parts.items()} | {"calibration": inputs.n_calibration},
            "max_per_part": recipe.max_per_part,
            "runs": [_run_summary(r) for r in runs],
            "weights": sorted({r.info["weights"] for r in runs}),
            "ensemble_fit": fit_info,
            "member_fallbacks": list(members.fallbacks),
            "ensemble_metrics": split_metrics(ensemble_probs, inputs.y, inputs.labels, inputs.test_records),
        },
    )


def measure_staged(
    recipe: BundleRecipe,
    staging: Path,
    manifest: BundleManifest,
    config: TrainConfig,
    task: TaskData,
    inputs: Inputs,
    ensemble_probs: dict[str, np.ndarray],
    fit_info: dict,
    progress: bool,
) -> None:
    """What is measured with the runtime on the staged bundle itself; writes its final manifest.

    The lung-evidence threshold (with a segmenter), the decode gate (``recipe.decode_gate_images``),
    the usefulness warnings and the model card. The staged manifest these read is the one
    :func:`build_bundle` wrote; the measurements stay in memory until the one final write.
    """
    y, labels = inputs.y, inputs.labels
    lung_stats = None
    if manifest.segmenter is not None:
        evidence, lung_stats, evidence_info = lung_evidence_on_validation(
            staging, inputs.val_images, task.parts["val"], y["val"], progress
        )
        manifest = dataclasses.replace(manifest, lung_evidence=evidence)
        manifest.provenance["lung_evidence"] = evidence_info
    if recipe.decode_gate_images:
        picked = spread(task.parts["val"], recipe.decode_gate_images)  # every label, like the calibration
        decode = decode_gate(staging, [r.file for r in picked], progress=progress)
        manifest = dataclasses.replace(manifest, decode=decode)
    # A model can pass every parity gate and still say nothing: said in the bundle and its card,
    # shown by `convert` and `bundle info`.
    ensemble = manifest.ensemble
    warnings = usefulness(ensemble_probs["val"], y["val"], labels, ensemble.temperature)
    manifest.provenance["warnings"] = warnings
    ind = in_distribution(ensemble, fit_info["temperature_source"], ensemble_probs, y, task.parts, labels)
    model_card, card_info = make_card(
        recipe.card, labels, config.label_map, task.parts["train"], ind, lung_stats, warnings
    )
    manifest.provenance["card"] = card_info
    write_manifest(staging, dataclasses.replace(manifest, card=model_card))
    # Last: the self-test records what the finished bundle computes, stage by stage, on this machine.
    add_selftest(staging)


def _with_recipe_temperature(
    recipe: BundleRecipe, ensemble: EnsembleConfig, fit_info: dict
) -> tuple[EnsembleConfig, dict]:
    """The recipe's temperature, when it gives one, over the fitted one (provenance says which)."""
    if recipe.temperature is not None:
        fit_info["temperature_fitted"] = fit_info["temperature"]
        ensemble = dataclasses.replace(ensemble, temperature=float(recipe.temperature))
    fit_info["temperature"] = ensemble.temperature
    fit_info["temperature_source"] = (
        "--temperature (given at conversion)"
        if recipe.temperature is not None
        else "fitted on the validation split"
    )
    return ensemble, fit_info


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
    training make it meaningless or circular for the other two). ``method`` and ``weight_rule`` are
    the ones a :class:`BundleRecipe` checked (:data:`cxr_edge.ops.ensemble.METHODS`, ``WEIGHT_FITS``).
    """
    weights = stacker = None
    info: dict = {"method": method, "fitted_on": "validation split"}
    if len(members) >= 2:
        weights = WEIGHT_FITS[weight_rule](val_probs, y_val)
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


def _segmenter_for(crops, segmenter: str | Path | None) -> tuple[Bundle | None, SegmenterEntry | None]:
    """The segmenter bundle to ship and its manifest entry, in the role the classifiers' runs decide.

    Classifiers trained on lung crops get their crop table's own segmenter (role ``crop``); classifiers
    trained on the full image may ship one to check where their evidence lies (role ``evidence``: the
    runtime never crops their input).
    """
    if segmenter is None:
        if crops is not None:
            raise SpecError(
                "lung-crop classifiers need their segmenter",
                expected="--segmenter BUNDLE_DIR",
                received="none",
            )
        return None, None
    seg_bundle = Bundle.load(segmenter)
    entry = seg_bundle.manifest.segmenter
    if entry is None:
        raise SpecError(
            "not a segmenter bundle", expected="a bundle from convert-segmenter", received=str(segmenter)
        )
    if crops is None:
        return seg_bundle, dataclasses.replace(entry, role=SegmenterRole.EVIDENCE)
    if entry.sha256 != crops.segmenter_sha256:
        raise SpecError(
            "segmenter differs from the one that made the crop table",
            expected=crops.segmenter_sha256[:16] + "...",
            received=entry.sha256[:16] + "...",
        )
    return seg_bundle, dataclasses.replace(entry, role=SegmenterRole.CROP)


def _run_summary(run: Run) -> dict:
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
    summary = {"val_metrics": metrics_summary(run.info["val_metrics"])}
    return {"run": run.folder.name} | {k: run.info.get(k) for k in keep} | summary
