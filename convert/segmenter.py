"""U-Net run -> segmenter bundle: TFLite (fp32, int8), held-out Dice per variant, crop rule.

A segmenter bundle holds only the ``segmenter`` stage. ``cxr-edge segment --bundle`` makes crop
tables with it, and ``cxr-edge convert --segmenter`` ships it with the classifiers trained on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from convert.staging import staged
from convert.tflite import Quant, to_tflite
from cxr_edge.bundle import FORMAT_VERSION, BundleManifest, EnsembleConfig, SegmenterEntry, write_manifest
from cxr_edge.engine import Engine
from cxr_edge.errors import SpecError
from cxr_edge.lungcrop import CropSpec
from cxr_edge.manifest import file_sha256, load_manifest
from cxr_edge.preprocess import preprocess
from cxr_edge.provenance import git_commit, now_utc, versions
from cxr_edge.splits import read_split
from train.config import TrainConfig
from train.data import load_images
from train.rundir import BEST_MODEL
from train.segment import dice_iou, load_pair, mask_parts


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
    heldout = [
        load_pair(r, spec.input_size)
        for r in mask_parts(manifest_path, split_path, root, config.seed)["heldout"]
    ]

    with staged(out, prefix=".segbundle-") as staging:
        variants = {}
        for q in ("fp32", "int8"):
            file = staging / f"unet{config.model_args.get('width', 16)}-{q}.tflite"
            file.write_bytes(to_tflite(model, q, x_calib if q == "int8" else None))
            engine = Engine(file)
            scores = [dice_iou(engine.run(preprocess(image, spec)), target) for image, target in heldout]
            variants[q] = {
                "file": file,
                "engine": engine,
                "dice": float(np.mean([d for d, _ in scores])),
                "iou": float(np.mean([i for _, i in scores])),
                "n": len(scores),
                "bytes": file.stat().st_size,
            }
        chosen = variants[quant]
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
            crop=crop or CropSpec(),
            metrics={"heldout_dice": chosen["dice"], "heldout_iou": chosen["iou"], "n": chosen["n"]},
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
                    q: {k: v[k] for k in ("dice", "iou", "n", "bytes")} for q, v in variants.items()
                },
                "keras_heldout_dice": info["heldout_metrics"]["dice"],
            },
        )
        write_manifest(staging, manifest_out)
    return out
