"""Golden vectors: what the Python runtime computes for a few shipped samples, stage by stage.

Other runtimes (the browser app, the Android core) load these files and prove they compute the same
thing: the 8-bit preprocessed image (exactly), the model input (float, ~1e-6), each model's outputs,
the ensemble's probabilities, the heat map and what the pipeline judges after the combiner: the
referral band's ``referral``, and with a segmenter the heat map's ``lung_fraction`` and the
``flags``. Arrays are stored as base64 of little-endian bytes
with their dtype and shape, so any language can read them without a numpy dependency.

Regenerate after rebuilding the default bundle: ``make golden`` (a test fails until you do).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cxr_edge.bundle.folder import Bundle
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.preprocess import preprocess, preprocess_u8
from cxr_edge.runtime.engine import Engine
from cxr_edge.runtime.pipeline import Predictor
from cxr_edge.runtime.segmenter import Segmenter
from cxr_edge.runtime.selftest import decode, encode


def vectors(bundle: Bundle, image_file: Path) -> dict:
    """Every intermediate result of the bundle's pipeline on one image."""
    image, info = read_image(image_file)
    spec = bundle.spec
    out: dict = {
        "file": image_file.name,
        "bundle_name": bundle.manifest.name,
        "image": {"width": info.width, "height": info.height},
    }
    box = None
    if bundle.manifest.segmenter is not None:
        segmenter = Segmenter(bundle)
        result = segmenter(image)
        # A segmenter of role "evidence" only checks the heat map: the classifiers see the full image.
        box = result.box if segmenter.entry.crops else None
        # float16 keeps the file small; compare with the stated tolerance.
        out["segmenter"] = {
            "mask_probabilities": encode(segmenter.probabilities(image).astype(np.float16)),
            "crop": {"status": result.status, "reason": result.reason, "box": list(result.box)},
            "role": str(segmenter.entry.role),
        }
    x = preprocess(image, spec, crop_box=box)
    out["preprocessed_u8"] = encode(preprocess_u8(image, spec, crop_box=box))
    # The float input is (u8 / 255 - mean) / std (or u8 / 255 for "unit"); its statistics suffice.
    out["model_input"] = {
        "shape": list(x.shape),
        "mean": float(x.mean()),
        "std": float(x.std()),
        "first": x.reshape(-1)[:16].tolist(),
    }
    members = {}
    for entry in bundle.manifest.models:
        outputs = Engine(bundle.path_of(entry), entry).run_all(x)
        members[entry.name] = {
            "probs": outputs["probs"].astype(float).tolist(),
            "features_sum": float(outputs["features"].sum()) if "features" in outputs else None,
        }
    out["models"] = members
    pred = Predictor(bundle).predict_image(image)
    out["ensemble"] = {"label": pred.label, "probs": [pred.probs[label] for label in bundle.labels]}
    out["cam"] = encode(pred.cam.astype(np.float32)) if pred.cam is not None else None
    out["referral"] = pred.referral
    if bundle.manifest.segmenter is not None:
        out["lung_fraction"] = pred.lung_fraction
        out["flags"] = list(pred.flags)
    return out


def write(bundle: Bundle, images: list[Path], folder: str | Path) -> list[Path]:
    """Writes one ``<stem>.json`` per image plus ``index.json`` (bundle checksums, tolerances)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for image in images:
        path = folder / f"{image.stem}.json"
        path.write_text(json.dumps(vectors(bundle, image)) + "\n")
        written.append(path)
    index = {
        "bundle_models": {m.name: m.sha256 for m in bundle.manifest.models},
        "segmenter": bundle.manifest.segmenter.sha256 if bundle.manifest.segmenter else None,
        "files": [p.name for p in written],
        "tolerances": {
            "preprocessed_u8": 0,
            "mask_probabilities": 1e-3,
            "model_input": 1e-5,
            "probs_float_models": 1e-5,
            "probs_quantized_models": 1 / 128,
            "cam": 1e-4,
            "lung_fraction": 1e-6,
        },
    }
    (folder / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    return written


def check(bundle: Bundle, folder: str | Path) -> list[str]:
    """Differences between stored golden vectors and what this runtime computes now ([] = identical).

    Used by the test suite; other runtimes implement the same comparison in their own language.
    """
    folder = Path(folder)
    index = json.loads((folder / "index.json").read_text())
    tol = index["tolerances"]
    problems = []
    if index["bundle_models"] != {m.name: m.sha256 for m in bundle.manifest.models}:
        return ["the bundle changed since the golden vectors were written: run `make golden`"]
    from cxr_edge.dataset.samples import samples_dir

    for name in index["files"]:
        stored = json.loads((folder / name).read_text())
        now = vectors(bundle, samples_dir() / stored["file"])
        if not np.array_equal(decode(stored["preprocessed_u8"]), decode(now["preprocessed_u8"])):
            problems.append(f"{name}: 8-bit preprocessed image differs")
        if "segmenter" in stored:
            a = decode(stored["segmenter"]["mask_probabilities"]).astype(np.float32)
            b = decode(now["segmenter"]["mask_probabilities"]).astype(np.float32)
            if np.abs(a - b).max() > tol["mask_probabilities"]:
                problems.append(f"{name}: segmenter mask differs")
            if stored["segmenter"]["crop"] != now["segmenter"]["crop"]:
                problems.append(f"{name}: crop differs")
        for key in ("mean", "std"):
            if abs(stored["model_input"][key] - now["model_input"][key]) > tol["model_input"]:
                problems.append(f"{name}: model input {key} differs")
        for model, out in stored["models"].items():
            quantized = bundle.manifest.model(model).input.quantized
            limit = tol["probs_quantized_models"] if quantized else tol["probs_float_models"]
            if np.abs(np.array(out["probs"]) - np.array(now["models"][model]["probs"])).max() > limit:
                problems.append(f"{name}: {model} probabilities differ")
        if stored["ensemble"]["label"] != now["ensemble"]["label"]:
            problems.append(f"{name}: ensemble label differs")
        cams = stored["cam"], now["cam"]
        if cams[0] is not None and np.abs(decode(cams[0]) - decode(cams[1])).max() > tol["cam"]:
            problems.append(f"{name}: heat map differs")
        # Files written before format 3 lack these keys; they are compared when present.
        if "referral" in stored and stored["referral"] != now["referral"]:
            problems.append(f"{name}: referral differs")
        if "lung_fraction" in stored:
            a, b = stored["lung_fraction"], now.get("lung_fraction")
            if (a is None) != (b is None) or (a is not None and abs(a - b) > tol.get("lung_fraction", 1e-6)):
                problems.append(f"{name}: lung fraction differs")
            if stored["flags"] != now.get("flags"):
                problems.append(f"{name}: flags differ")
    return problems


def main() -> None:
    """``python -m cxr_edge.evaluation.golden``: the default bundle's golden vectors into ``tests/golden``."""
    from cxr_edge.dataset.samples import load_samples

    samples = load_samples()
    picks = [next(s for s in samples if s.label == label).file for label in ("covid", "pneumonia_unknown")]
    target = Path(__file__).resolve().parents[2] / "tests" / "golden"
    for path in write(Bundle.load(), picks, target):
        print(path)


if __name__ == "__main__":
    main()
