"""The bundle's self-test: golden inputs and outputs inside the bundle, re-run on this machine's kernels.

A bundle computes what its maker's machine computed only if every kernel on the device agrees: the
same LiteRT build, the same OpenCV resize and CLAHE (CPU-dispatched: CI once saw 2 ulp from an IPP
resize), the same PNG decoder. As ExecuTorch's bundled programs do, every bundle carries a few inputs
with the outputs of each stage (``selftest.json``, pinned in the manifest by its SHA-256); ``cxr-edge
bundle selftest`` and the DICOM node at start-up run them here and refuse the bundle when a stage
differs beyond its tolerance, naming the stage.

Each stage is fed the *stored* output of the stage before it, so a difference is found where it
arises instead of being blamed on every stage after it:

``decode`` (the case's PNG -> float image, exact) -> ``segment`` (segmenter input, then the mask on
the stored input) -> ``crop`` (the crop rule on the stored mask: the same box) -> ``preprocess``
(8-bit classifier input with the stored box) -> ``members`` (each member's probabilities on the
stored input) -> ``output`` (the bundle's output: combiner, temperature, site calibration).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_edge.bundle.entries import SelfTestEntry
from cxr_edge.bundle.folder import Bundle, write_manifest
from cxr_edge.bundle.manifest import BundleManifest
from cxr_edge.errors import BundleError
from cxr_edge.imaging.reader import decode_image, read_image
from cxr_edge.ops.lungcrop import lung_crop
from cxr_edge.ops.preprocess import normalize, preprocess_u8
from cxr_edge.runtime.engine import Engine
from cxr_edge.runtime.pipeline import Predictor

SELFTEST_NAME = "selftest.json"
SELFTEST_FORMAT = 1
#: Per-stage tolerances written into every self-test (a reader uses the file's own).
TOLERANCES = {
    # 8-bit images: at most this many grey levels apart, on at most this share of the pixels.
    "u8_levels": 1,
    "u8_share": 0.005,
    # Segmenter mask probabilities (an int8 output's step is 1/256).
    "mask": 2 / 256,
    # Class probabilities: float members / quantised members and the bundle's output.
    "probs_float": 1e-4,
    "probs_quantized": 2 / 256,
}


def encode(array: np.ndarray) -> dict:
    """``{"dtype", "shape", "base64"}`` of an array (little-endian), readable without numpy."""
    a = np.ascontiguousarray(array)
    return {
        "dtype": str(a.dtype),
        "shape": list(a.shape),
        "base64": base64.b64encode(a.astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii"),
    }


def decode(entry: dict) -> np.ndarray:
    """Inverse of :func:`encode`."""
    data = base64.b64decode(entry["base64"])
    return np.frombuffer(data, dtype=np.dtype(entry["dtype"]).newbyteorder("<")).reshape(entry["shape"])


def _digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()


def _member_probs(bundle: Bundle, x: np.ndarray) -> dict[str, np.ndarray]:
    return {e.name: Engine(bundle.path_of(e), e).run(x) for e in bundle.manifest.models}


def make(bundle: Bundle, images: list[Path]) -> dict:
    """The self-test of a bundle: each stage's outputs on ``images`` (PNG files), on this machine."""
    predictor = Predictor(bundle, checks=None)
    seg = bundle.manifest.segmenter
    cases = []
    for file in images:
        image, _ = read_image(file)
        case: dict = {"name": file.name, "png": base64.b64encode(file.read_bytes()).decode("ascii")}
        case["decoded_sha256"] = _digest(image)
        box = None
        if seg is not None:
            seg_u8 = preprocess_u8(image, seg.preprocess)
            engine = Engine(bundle.path_of(seg), seg)
            mask = engine.run(normalize(seg_u8, seg.preprocess))[..., 0]
            crop = lung_crop(mask, image.shape, seg.crop)
            box = crop.box if seg.crops else None
            # float16: far finer than the tolerance, half the size.
            case["segment"] = {"input_u8": encode(seg_u8), "mask": encode(mask.astype(np.float16))}
            case["crop"] = {"status": crop.status, "box": list(crop.box)}
        u8 = preprocess_u8(image, bundle.spec, crop_box=box)
        x = normalize(u8, bundle.spec)
        case["preprocess"] = {"box": list(box) if box is not None else None, "u8": encode(u8)}
        case["members"] = {n: p.astype(float).tolist() for n, p in _member_probs(bundle, x).items()}
        _, output = predictor.combine(predictor.run_members(x))
        case["output"] = np.asarray(output, dtype=float).tolist()
        cases.append(case)
    return {"format": SELFTEST_FORMAT, "tolerances": TOLERANCES, "cases": cases}


#: The shipped samples every self-test uses: a large adult film and a small child's (both licences
#: allow redistribution, cxr_edge/data/samples/ATTRIBUTION.md).
CASES = ("covid_hannover_006f3a8a.png", "normal_kermany_IM-0628-0001.png")


def add_selftest(root: str | Path, images: list[Path] | None = None) -> BundleManifest:
    """Writes ``selftest.json`` into a bundle folder (staged or finished) and pins it in its manifest.

    Args:
        root: The bundle folder; its manifest is rewritten with the ``selftest`` entry.
        images: PNG files to use (default: :data:`CASES` from the shipped samples).

    Returns:
        The new manifest.
    """
    from cxr_edge.dataset.samples import samples_dir

    root = Path(root)
    bundle = Bundle.load(root, trust=False)
    files = images or [samples_dir() / name for name in CASES]
    path = root / SELFTEST_NAME
    path.write_text(json.dumps(make(bundle, files)) + "\n")
    manifest = dataclasses.replace(
        bundle.manifest, selftest=SelfTestEntry(SELFTEST_NAME, hashlib.sha256(path.read_bytes()).hexdigest())
    )
    write_manifest(root, manifest)
    return manifest


@dataclass(frozen=True)
class StageResult:
    """One stage of one case: the largest difference found and whether it is within tolerance."""

    case: str
    stage: str
    difference: float
    tolerance: float
    passed: bool
    detail: str = ""


def _u8_check(case: str, stage: str, got: np.ndarray, want: np.ndarray, tol: dict) -> StageResult:
    if got.shape != want.shape:
        return StageResult(
            case, stage, float("inf"), tol["u8_levels"], False, f"shape {got.shape} != {want.shape}"
        )
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    share = float((diff > 0).mean())
    passed = int(diff.max()) <= tol["u8_levels"] and share <= tol["u8_share"]
    return StageResult(
        case, stage, float(diff.max()), tol["u8_levels"], passed, f"{share:.2%} of pixels differ"
    )


def _close(case: str, stage: str, got, want, tolerance: float) -> StageResult:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return StageResult(case, stage, float("inf"), tolerance, False, f"shape {got.shape} != {want.shape}")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    return StageResult(case, stage, diff, tolerance, diff <= tolerance)


def check(bundle: Bundle) -> int:
    """Runs the self-test and raises on the first stage that differs (for start-up checks).

    Returns:
        The number of stage checks that passed (0 when the bundle carries no self-test).

    Raises:
        BundleError: A stage differs beyond its tolerance (named with the case and the difference).
    """
    if bundle.manifest.selftest is None:
        return 0
    results = run(bundle)
    for r in results:
        if not r.passed:
            raise BundleError(
                f"bundle self-test failed at stage '{r.stage}' ({r.case}): this machine computes "
                "something else than the bundle's maker did",
                expected=f"difference <= {r.tolerance:.3g}",
                received=f"{r.difference:.3g}" + (f" ({r.detail})" if r.detail else ""),
            )
    return len(results)


def run(bundle: Bundle) -> list[StageResult]:
    """Runs the bundle's self-test on this machine.

    Raises:
        BundleError: The bundle carries no self-test, or it is malformed.
    """
    entry = bundle.manifest.selftest
    if entry is None:
        raise BundleError(
            "bundle carries no self-test",
            expected=f"a bundle with {SELFTEST_NAME}",
            received=str(bundle.root),
        )
    data = json.loads(bundle.path_of(entry).read_text(encoding="utf-8"))
    if data.get("format") != SELFTEST_FORMAT:
        raise BundleError(
            "unknown self-test format", expected=str(SELFTEST_FORMAT), received=str(data.get("format"))
        )
    tol = data["tolerances"]
    predictor = Predictor(bundle, checks=None)
    seg = bundle.manifest.segmenter
    results: list[StageResult] = []
    any_quantized = any(m.outputs["probs"].quantized for m in bundle.manifest.models)
    for case in data["cases"]:
        name = case["name"]
        image, _ = decode_image(base64.b64decode(case["png"]), name)
        same = _digest(image) == case["decoded_sha256"]
        results.append(
            StageResult(name, "decode", 0.0 if same else 1.0, 0.0, same, "" if same else "pixels differ")
        )
        if seg is not None and "segment" in case:
            want_u8 = decode(case["segment"]["input_u8"])
            results.append(
                _u8_check(name, "segment input", preprocess_u8(image, seg.preprocess), want_u8, tol)
            )
            mask = Engine(bundle.path_of(seg), seg).run(normalize(want_u8, seg.preprocess))[..., 0]
            want_mask = decode(case["segment"]["mask"])
            results.append(_close(name, "segment", mask, want_mask, tol["mask"]))
            crop = lung_crop(want_mask.astype(np.float32), image.shape, seg.crop)
            same_box = list(crop.box) == case["crop"]["box"] and crop.status == case["crop"]["status"]
            results.append(
                StageResult(name, "crop", 0.0 if same_box else 1.0, 0.0, same_box, f"box {list(crop.box)}")
            )
        box = case["preprocess"]["box"]
        want = decode(case["preprocess"]["u8"])
        got = preprocess_u8(image, bundle.spec, crop_box=tuple(box) if box is not None else None)
        results.append(_u8_check(name, "preprocess", got, want, tol))
        x = normalize(want, bundle.spec)
        for member, probs in _member_probs(bundle, x).items():
            quantized = bundle.manifest.model(member).outputs["probs"].quantized
            limit = tol["probs_quantized"] if quantized else tol["probs_float"]
            results.append(_close(name, f"member {member}", probs, case["members"][member], limit))
        _, output = predictor.combine(predictor.run_members(x))
        limit = tol["probs_quantized"] if any_quantized else tol["probs_float"]
        results.append(_close(name, "output", output, case["output"], limit))
    return results
