"""U-Net run -> segmenter bundle: TFLite (fp32, int8), held-out Dice per variant, crop rule.

Each variant is scored on the held-out masks as :func:`cxr_edge.train.segment.segmentation_scores` does for
Keras: Dice, IoU and crop-box IoU overall, per source and per mask convention (V7 heart-included vs
Shenzhen lungs-only), with the bundle's own crop rule for the box.

**Gate**: the shipped int8 variant must keep held-out Dice and crop-box IoU within
:class:`SegmenterGate` of fp32 (an int8 U-Net with a bad calibration cuts lungs apart); a failure stops
the conversion unless ``allow_degraded``, which is then recorded in the bundle.

A segmenter bundle holds only the ``segmenter`` stage. ``cxr-edge segment --bundle`` makes crop
tables with it, and ``cxr-edge convert --segmenter`` ships it with the classifiers trained on them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import keras

from cxr_edge.bundle.entries import SegmenterEntry
from cxr_edge.bundle.folder import write_manifest
from cxr_edge.bundle.manifest import FORMAT_VERSION, BundleManifest, EnsembleConfig
from cxr_edge.convert.gates import GateError
from cxr_edge.convert.staging import staged
from cxr_edge.convert.tflite import Quant, to_tflite
from cxr_edge.dataset.manifest import load_manifest
from cxr_edge.dataset.splits import read_split
from cxr_edge.errors import SpecError
from cxr_edge.hashing import file_sha256
from cxr_edge.ops.lungcrop import CropSpec
from cxr_edge.ops.preprocess import preprocess
from cxr_edge.provenance import git_commit, now_utc, versions
from cxr_edge.runtime.engine import Engine
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.data import load_images
from cxr_edge.train.rundir import BEST_MODEL
from cxr_edge.train.segment import load_pair, mask_parts, segmentation_scores


@dataclass(frozen=True)
class SegmenterGate:
    """Largest held-out losses of the shipped variant against fp32 (absolute, mean over images)."""

    max_dice_drop: float = 0.01
    max_box_iou_drop: float = 0.01


def segmenter_gate(reference: dict, converted: dict, thresholds: SegmenterGate | None = None) -> dict:
    """Compares :func:`~cxr_edge.train.segment.segmentation_scores` of a converted variant with fp32.

    Returns:
        ``{"passed": bool, "failures": [str], "dice_drop", "box_iou_drop", **thresholds}``.
    """
    thresholds = thresholds or SegmenterGate()
    dice_drop = reference["dice"] - converted["dice"]
    box_drop = reference["box_iou"] - converted["box_iou"]
    failures = []
    if dice_drop > thresholds.max_dice_drop:
        failures.append(f"held-out Dice drop {dice_drop:.4f} > {thresholds.max_dice_drop}")
    if box_drop > thresholds.max_box_iou_drop:
        failures.append(f"held-out box IoU drop {box_drop:.4f} > {thresholds.max_box_iou_drop}")
    return {
        "passed": not failures,
        "failures": failures,
        "dice_drop": round(dice_drop, 4),
        "box_iou_drop": round(box_drop, 4),
        **asdict(thresholds),
    }


def build_segmenter_bundle(
    run_dir,
    manifest_path,
    split_path,
    out_dir,
    *,
    quant: str = "int8",
    crop: CropSpec | None = None,
    n_calibration: int = 100,
    root=None,
    overwrite: bool = False,
    command: str = "",
    gate_thresholds: SegmenterGate | None = None,
    allow_degraded: bool = False,
) -> Path:
    """Converts a U-Net run (fp32 and int8), measures held-out Dice of each, bundles ``quant``.

    Args:
        run_dir: A segmentation run (``task = "segment"``).
        manifest_path: Data manifest (with ``mask_path``).
        split_path: The split the run used.
        out_dir: Segmenter bundle folder to create.
        quant: The variant to ship (``fp32`` or ``int8``).
        crop: Crop rule and gate (default :class:`CropSpec`).
        n_calibration: Training-split images used to calibrate int8.
        root: Image root.
        overwrite: Replace an existing folder.
        command: Command line for provenance.
        gate_thresholds: Largest allowed loss of the shipped variant against fp32.
        allow_degraded: Ship a variant that failed the gate (recorded in the bundle).

    Raises:
        GateError: The shipped variant lost more than ``gate_thresholds`` against fp32.
    """
    out, run = Path(out_dir), Path(run_dir)
    commit = git_commit(Path(__file__).parent)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise SpecError("bundle folder is not empty", expected="a new folder (or --force)", received=str(out))
    config = TrainConfig.load(run / "config.json")
    if config.task != "segment":
        raise SpecError("not a segmentation run", expected='task = "segment"', received=config.task)
    quant = Quant(quant).value
    spec = config.preprocess
    model = keras.models.load_model(run / BEST_MODEL, compile=False)
    manifest = load_manifest(manifest_path, root)
    train = read_split(split_path, manifest).records(manifest, "train")
    calib = load_images(train[:: max(1, len(train) // n_calibration)][:n_calibration], progress=False)
    x_calib = [preprocess(im, spec) for im in calib.images]
    crop = crop or CropSpec()
    heldout_records = mask_parts(manifest_path, split_path, root, config.seed)["heldout"]
    heldout = [load_pair(r, spec.input_size) for r in heldout_records]
    sources = [r.source for r in heldout_records]

    with staged(out, prefix=".segbundle-") as staging:
        variants = {}
        for q in ("fp32", "int8"):
            file = staging / f"unet{config.model_args.get('width', 16)}-{q}.tflite"
            file.write_bytes(to_tflite(model, q, x_calib if q == "int8" else None))
            engine = Engine(file)
            probs = [engine.run(preprocess(image, spec)) for image, _ in heldout]
            scores = segmentation_scores(probs, [t for _, t in heldout], sources, crop)
            variants[q] = {
                "file": file,
                "engine": engine,
                "scores": scores,
                "dice": scores["dice"],
                "iou": scores["iou"],
                "box_iou": scores["box_iou"],
                "lung_in_box": scores["lung_in_box"],
                "n": scores["n"],
                "bytes": file.stat().st_size,
            }
        chosen = variants[quant]
        gate = segmenter_gate(variants["fp32"]["scores"], chosen["scores"], gate_thresholds)
        gate["allowed_degraded"] = bool(allow_degraded and not gate["passed"])
        if not gate["passed"] and not allow_degraded:
            raise GateError(
                f"{quant} segmenter failed its gate",
                expected=f"within {gate_thresholds or SegmenterGate()} of fp32",
                received="; ".join(gate["failures"]),
            )
        for q, v in variants.items():
            if q != quant:
                v["file"].unlink()
        info = json.loads((run / "run.json").read_text())
        entry = SegmenterEntry(
            name=chosen["file"].stem,
            file=chosen["file"].name,
            sha256=file_sha256(chosen["file"]),
            quant=quant,
            input=chosen["engine"].input_spec,
            outputs={"mask": chosen["engine"].output_spec},
            params=int(model.count_params()),
            macs=int(info["macs"]),
            preprocess=spec,
            crop=crop,
            metrics={
                "heldout_dice": chosen["dice"],
                "heldout_iou": chosen["iou"],
                "heldout_box_iou": chosen["box_iou"],
                "heldout_lung_in_box": chosen["lung_in_box"],
                "n": chosen["n"],
                "by_source": chosen["scores"]["by_source"],
                "by_convention": chosen["scores"]["by_convention"],
            },
        )
        manifest_out = BundleManifest(
            format_version=FORMAT_VERSION,
            name=f"segmenter-{entry.name}",
            labels=(),
            preprocess=spec,
            models=(),
            ensemble=EnsembleConfig(members=()),
            segmenter=entry,
            provenance={
                "created": now_utc(),
                "git_commit": commit,
                "command": command,
                "versions": versions("keras", "tensorflow-cpu", "ai-edge-litert"),
                "run": str(run),
                "run_git_commit": info.get("git_commit"),
                "data_manifest_sha256": manifest.sha256,
                "split_sha256": file_sha256(split_path),
                "variants": {
                    q: {
                        **{k: v[k] for k in ("dice", "iou", "box_iou", "lung_in_box", "n", "bytes")},
                        "fallbacks": v["scores"]["fallbacks"],
                        "by_source": v["scores"]["by_source"],
                        "by_convention": v["scores"]["by_convention"],
                    }
                    for q, v in variants.items()
                },
                "gate": gate,
                "keras_heldout_dice": info["heldout_metrics"]["dice"],
                "keras_heldout_box_iou": info["heldout_metrics"].get("box_iou"),
            },
        )
        write_manifest(staging, manifest_out)
    return out
