"""Extra golden vectors for the Android core's JUnit tests, computed by the Python runtime.

The committed golden files (``tests/golden``) hold the 8-bit preprocessed image, model input statistics,
member probabilities, ensemble probabilities and the heat map. The JVM tests also need what they leave
out -- every intermediate stage of the two golden samples (decoded image, resized float image, CLAHE
output, full model input, quantised inputs, raw and dequantised model outputs including ``features``,
the placed heat map) -- and expected values on synthetic inputs that exercise code paths the default
bundle never reaches (integer-scale and bilinear resizes, CLAHE on sizes that are not a tile multiple,
other median kernels, every ensemble method, the lung-crop gate, heat maps of several resolutions,
histogram equalisation), the format-3 judgements (``evidence.json``: lung fractions, referrals,
and a segmenter pipeline on the golden samples with its expected lung fraction, flags and referral),
a site-calibrated format-4 bundle (``site.json``, ``golden_site.py``), a segmenter of role
"evidence", whose classifiers see the full image (``role.json``, ``golden_role.py``), and signed bundles
with the verdicts of Python's trust policy on them (``signed.json``, ``golden_signature.py``: the key pairs
and bundle copies it names are written beside it).

Nothing here is committed: the test suite writes these files into a temporary folder and passes it to
the JVM with ``-Dcxr.golden.extra=<folder>``. Arrays use the encoding of :mod:`cxr_edge.evaluation.golden`.

Usage: ``python android_demo/tools/golden_extra.py OUT_DIR``
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from cxr_edge.bundle.folder import Bundle
from cxr_edge.bundle.manifest import BundleManifest
from cxr_edge.dataset.samples import samples_dir
from cxr_edge.errors import CxrEdgeError
from cxr_edge.evaluation.golden import encode
from cxr_edge.imaging.reader import decode_image, read_image
from cxr_edge.ops.cam import average_maps, class_activation_map, overlay, place
from cxr_edge.ops.ensemble import Stacker, apply_temperature, combine
from cxr_edge.ops.lungcrop import CropSpec, lung_crop
from cxr_edge.ops.preprocess import (
    PreprocessSpec,
    crop,
    crop_region,
    normalize,
    preprocess,
    preprocess_u8,
    resize,
)
from cxr_edge.ops.preprocess import quantize as quantize_u8
from cxr_edge.runtime.engine import Engine, dequantize, normalise, quantize
from cxr_edge.runtime.pipeline import Predictor
from cxr_edge.runtime.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
#: The first release's format-2 bundle: the base of the manifest refusal cases (tests/data).
FIRST_RELEASE_BUNDLE = REPO / "tests" / "data" / "first_release_bundle"
#: The crop box lungcrop_cases() finds for "two lungs" on a 512x479 image (inside both samples).
LUNG_BOX = (53, 74, 463, 409)


def _sibling(name: str):
    """A module beside this file (loaded by path: the tests load this file by path too)."""
    import importlib.util

    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evidence():
    """``golden_evidence.py``: the format-3 judgements."""
    return _sibling("golden_evidence")


def write(folder: str | Path) -> list[Path]:
    """Writes every extra golden file into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bundle = Bundle.load()
    files = {
        "samples.json": samples(bundle),
        "resize.json": resize_cases(),
        "clahe.json": clahe_cases(),
        "median.json": median_cases(),
        "normalize.json": normalize_cases(),
        "quantization.json": quantization_cases(),
        "ensemble.json": ensemble_cases(),
        "cam.json": cam_cases(),
        "lungcrop.json": lungcrop_cases(),
        "manifest.json": manifest_cases(bundle, Bundle.load(FIRST_RELEASE_BUNDLE)),
        "colour.json": colour_cases(folder),
        "equalize.json": _evidence().equalize_cases(),
        "evidence.json": _evidence().evidence_cases(bundle),
        "site.json": _sibling("golden_site").site_cases(),
        "role.json": _sibling("golden_role").role_cases(_record),
        "signed.json": _sibling("golden_signature").write(folder),
    }
    written = []
    for name, data in files.items():
        path = folder / name
        path.write_text(json.dumps(data) + "\n")
        written.append(path)
    return written


# ------------------------------------------------------------------------------------------ golden samples


def samples(bundle: Bundle) -> dict:
    """Every stage of the pipeline on the golden samples, with each model's raw outputs."""
    index = json.loads((GOLDEN / "index.json").read_text())
    predictor = Predictor(bundle)
    spec = bundle.spec
    seg = bundle.manifest.segmenter
    segmenter = Segmenter(bundle) if seg is not None else None
    seg_engine = Engine(bundle.path_of(seg), seg) if seg is not None else None
    out = []
    for name in index["files"]:
        stored = json.loads((GOLDEN / name).read_text())
        image, _ = read_image(samples_dir() / stored["file"])
        region = crop_region(image.shape, spec)
        resized = resize(crop(image, spec), spec.input_size)
        # The stages above and `preprocessed_u8` / `model_input` below are the border-crop path; the
        # models are recorded on what the pipeline feeds them: the lung crop when there is a segmenter
        # that crops (role "crop"), else the full image (no segmenter, or one of role "evidence").
        models, box = {}, None
        if seg is not None:
            box = segmenter(image).box if seg.crops else None
            models[seg.name] = _record(seg_engine, preprocess(image, seg.preprocess))
        x = preprocess(image, spec)
        x_model = preprocess(image, spec, crop_box=box)
        for entry in bundle.manifest.models:
            models[entry.name] = _record(Engine(bundle.path_of(entry), entry), x_model)
        pred = predictor.predict_image(image)
        out.append(
            {
                "file": stored["file"],
                "golden": name,
                "image": encode(image),
                "region": list(region),
                "resized": encode(resized),
                "quantized": encode(quantize_u8(resized)),
                "preprocessed_u8": encode(preprocess_u8(image, spec)),
                "model_input": encode(x),
                "pipeline_box": list(box) if box is not None else None,
                "models": models,
                "ensemble": {"label": pred.label, "probs": [pred.probs[label] for label in bundle.labels]},
                "cam": encode(pred.cam),
                "heatmap": encode(pred.heatmap(image.shape)),
                # A lung-style crop box instead of the border crop (what a segmenter bundle does).
                "box": list(LUNG_BOX),
                "box_u8": encode(preprocess_u8(image, spec, crop_box=LUNG_BOX)),
                "overlay_bgr": encode(overlay(image, pred.heatmap(image.shape))),
            }
        )
    return {"bundle_models": index["bundle_models"], "samples": out}


def _record(engine: Engine, x: np.ndarray) -> dict:
    """One model's quantised input and raw / dequantised outputs (what the Java runner replays)."""
    outputs = engine.run_all(x)
    raw = {role: quantize(v[None], engine.output_specs[role])[0] for role, v in outputs.items()}
    out = {
        "input": encode(quantize(x[None], engine.input_spec)[0]),
        "raw": {role: encode(v) for role, v in raw.items()},
        "dequantized": {role: encode(v) for role, v in outputs.items()},
    }
    if "probs" in outputs:
        out["probs_normalised"] = encode(normalise(outputs["probs"], engine.output_specs["probs"]))
    return out


# ------------------------------------------------------------------------------------------ preprocessing


def resize_cases() -> list[dict]:
    """Float resizes: every cv2 kernel the runtime reaches, on random images."""
    rng = np.random.default_rng(11)
    cases = []
    plans = [
        ((403, 430), (256, 256), "auto"),  # fractional shrink (the golden samples' case)
        ((512, 512), (256, 256), "auto"),  # exact 2x: area "fast" kernel
        ((301, 515), (150, 257), "auto"),  # 2x with odd remainders
        ((384, 387), (128, 129), "auto"),  # exact 3x
        ((300, 256), (256, 256), "auto"),  # one side kept
        ((256, 256), (256, 256), "auto"),  # same size: copy
        ((200, 180), (256, 256), "auto"),  # enlarge: bilinear
        ((300, 200), (256, 256), "auto"),  # mixed: bilinear
        ((8, 8), (430, 403), "linear"),  # heat map placement
        ((8, 8), (16, 16), "linear"),  # member maps of different resolution
        ((7, 5), (33, 21), "linear"),
        ((1, 3), (4, 2), "linear"),
        ((8, 8), (100, 100), "linear"),
        ((64, 64), (32, 32), "linear"),  # exact 2x with INTER_LINEAR: cv2 uses the area kernel
        ((50, 40), (31, 17), "linear"),  # linear shrink
    ]
    for (h, w), (dh, dw), kind in plans:
        src = rng.random((h, w), dtype=np.float32)
        if kind == "auto":
            expected = resize(src, (dh, dw))
        else:
            expected = cv2.resize(src, (dw, dh), interpolation=cv2.INTER_LINEAR)
        case = {"kind": kind, "src": encode(src), "width": dw, "height": dh, "expected": encode(expected)}
        if kind == "linear" or not (h >= dh and w >= dw):
            # OpenCV's own bilinear kernel (what builds without Intel IPP compute).
            use_ipp = cv2.ipp.useIPP()
            cv2.ipp.setUseIPP(False)
            try:
                native = cv2.resize(src, (dw, dh), interpolation=cv2.INTER_LINEAR)
            finally:
                cv2.ipp.setUseIPP(use_ipp)
            case["expected_opencv"] = encode(native)
        cases.append(case)
    return cases


def clahe_cases() -> list[dict]:
    """cv2 CLAHE on random images: tile multiples or not, several clip limits and grids."""
    rng = np.random.default_rng(12)
    cases = []
    for (h, w), clip, tiles in [
        ((256, 256), 2.0, 8),
        ((255, 250), 3.0, 8),
        ((100, 77), 2.0, 4),
        ((256, 256), 40.0, 8),
        ((64, 64), 1.0, 3),
        ((33, 65), 0.5, 5),
        ((256, 256), 2.0, 1),
        ((96, 96), 2.0, 16),
    ]:
        src = (rng.random((h, w)) ** 2 * 255).astype(np.uint8)
        expected = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(src)
        cases.append({"src": encode(src), "clip": clip, "tiles": tiles, "expected": encode(expected)})
    return cases


def median_cases() -> list[dict]:
    """cv2.medianBlur on random 8-bit images."""
    rng = np.random.default_rng(13)
    cases = []
    for (h, w), k in [((64, 80), 3), ((31, 17), 3), ((40, 40), 5), ((33, 29), 7), ((5, 4), 3), ((20, 30), 9)]:
        src = rng.integers(0, 256, (h, w), dtype=np.uint8)
        cases.append({"src": encode(src), "ksize": k, "expected": encode(cv2.medianBlur(src, k))})
    return cases


def normalize_cases() -> list[dict]:
    """Step 7-8 on random 8-bit images: standardize (numpy float32 statistics) and unit, 1 or 3 channels."""
    rng = np.random.default_rng(14)
    cases = []
    for (h, w), norm, channels in [
        ((256, 256), "standardize", 1),
        ((224, 224), "standardize", 3),
        ((100, 37), "standardize", 1),
        ((64, 64), "unit", 1),
        ((9, 9), "unit", 3),
    ]:
        u8 = rng.integers(0, 256, (h, w), dtype=np.uint8)
        spec = PreprocessSpec(input_size=(max(h, 8), max(w, 8)), channels=channels, normalize=norm)
        cases.append(
            {
                "u8": encode(u8),
                "normalize": norm,
                "channels": channels,
                "expected": encode(normalize(u8, spec)),
            }
        )
    # A constant image: std 0 hits the 1e-6 floor.
    flat = np.full((16, 16), 77, dtype=np.uint8)
    spec = PreprocessSpec(input_size=(16, 16))
    cases.append(
        {
            "u8": encode(flat),
            "normalize": "standardize",
            "channels": 1,
            "expected": encode(normalize(flat, spec)),
        }
    )
    return cases


def colour_cases(folder: Path) -> list[dict]:
    """Colour PNGs (RGB, RGBA, grey as RGB) written to ``folder`` and what the Python reader makes of them."""
    rng = np.random.default_rng(19)
    cases = []
    grey = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    images = {
        "rgb.png": rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
        "rgba.png": rng.integers(0, 256, (20, 30, 4), dtype=np.uint8),
        "grey_as_rgb.png": np.repeat(grey[..., None], 3, axis=2),
        "grey_as_rgba.png": np.dstack(
            [np.repeat(grey[..., None], 3, axis=2), rng.integers(0, 256, (20, 30))]
        ).astype(np.uint8),
    }
    for name, bgr in images.items():
        ok, data = cv2.imencode(".png", bgr)
        assert ok
        (folder / name).write_bytes(data.tobytes())
        image, info = decode_image(data.tobytes(), name=name)
        cases.append({"file": name, "converted_from": info.converted_from, "expected": encode(image)})
    return cases


# ------------------------------------------------------------------------------------------ model boundary


def quantization_cases() -> list[dict]:
    """Quantise/dequantise/renormalise with int8 and uint8 specs, including values half-way between steps."""
    from cxr_edge.bundle.entries import TensorSpec

    rng = np.random.default_rng(15)
    cases = []
    for dtype, scale, zero in [
        ("int8", 0.03525834158062935, 30),
        ("uint8", 1 / 255, 0),
        ("int8", 0.00390625, -128),
    ]:
        spec = TensorSpec((1, 64), dtype, scale, zero)
        x = np.concatenate(
            [
                rng.normal(0, 3, 48).astype(np.float32),
                (np.arange(-8, 8, dtype=np.float32) + 0.5) * np.float32(scale),  # ties
            ]
        ).astype(np.float32)
        q = quantize(x[None], spec)[0]
        cases.append(
            {
                "dtype": dtype,
                "scale": scale,
                "zero_point": zero,
                "x": encode(x),
                "q": encode(q),
                "dequantized": encode(dequantize(q[None], spec)[0]),
            }
        )
    probs_spec = TensorSpec((1, 3), "int8", 0.00390625, -128)
    renorm = []
    for raw in ([127, -128, -128], [100, -120, -108], [-128, -128, -128], [0, 0, 0]):
        q = np.array(raw, dtype=np.int8)
        p = dequantize(q[None], probs_spec)[0]
        renorm.append({"q": encode(q), "expected": encode(normalise(p, probs_spec))})
    return [{"tensor_cases": cases, "renormalise": renorm}]


def ensemble_cases() -> list[dict]:
    """Every combiner, with and without temperature, on random member probabilities."""
    rng = np.random.default_rng(16)
    cases = []
    k = 3
    for n_models in (1, 2, 3, 4):
        logits = rng.normal(0, 2, (n_models, k))
        probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
        weights = rng.random(n_models) + 0.1
        hidden = 9
        stacker = Stacker(
            w1=tuple(map(tuple, rng.normal(0, 1, (n_models * k, hidden)).tolist())),
            b1=tuple(rng.normal(0, 0.1, hidden).tolist()),
            w2=tuple(map(tuple, rng.normal(0, 1, (hidden, k)).tolist())),
            b2=tuple(rng.normal(0, 0.1, k).tolist()),
            l2=0.01,
        )
        for method in ("mean", "weighted", "vote", "stacking"):
            for temperature in (1.0, 1.7):
                combined = combine(probs, method, weights, stacker)
                if temperature != 1.0:
                    combined = apply_temperature(combined, temperature)
                cases.append(
                    {
                        "probs": encode(probs),
                        "method": method,
                        "weights": weights.tolist(),
                        "stacking": {"w1": stacker.w1, "b1": stacker.b1, "w2": stacker.w2, "b2": stacker.b2},
                        "temperature": temperature,
                        "expected": combined.tolist(),
                    }
                )
    # Vote ties: two members disagree, the mean probability breaks the tie.
    tie = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]], dtype=np.float32)
    cases.append(
        {
            "probs": encode(tie),
            "method": "vote",
            "weights": None,
            "stacking": None,
            "temperature": 1.0,
            "expected": combine(tie, "vote").tolist(),
        }
    )
    return cases


def cam_cases() -> list[dict]:
    """CAM of random features, averages of maps of several resolutions, placement on an image."""
    rng = np.random.default_rng(17)
    cams = []
    for h, w, k, n in [(8, 8, 16, 3), (4, 6, 5, 2), (3, 3, 4, 3)]:
        features = np.maximum(rng.normal(0, 1, (h, w, k)), 0).astype(np.float32)
        weights = rng.normal(0, 1, (k, n))
        for c in range(n):
            cams.append(
                {
                    "features": encode(features),
                    "weights": weights.tolist(),
                    "class_index": c,
                    "expected": encode(class_activation_map(features, weights, c)),
                }
            )
    negative = np.ones((2, 2, 3), dtype=np.float32)
    cams.append(
        {
            "features": encode(negative),
            "weights": [[-1.0], [-1.0], [-1.0]],
            "class_index": 0,
            "expected": encode(class_activation_map(negative, np.full((3, 1), -1.0), 0)),
        }
    )
    averages = []
    for shapes in ([(8, 8)], [(8, 8), (8, 8)], [(8, 8), (16, 16)], [(4, 4), (7, 9), (8, 8)]):
        maps = [rng.random(s, dtype=np.float32) for s in shapes]
        averages.append({"maps": [encode(m) for m in maps], "expected": encode(average_maps(maps))})
    placements = []
    for (h, w), shape, region in [
        ((8, 8), (479, 512), (41, 38, 471, 441)),
        ((5, 7), (100, 90), (0, 0, 90, 100)),
    ]:
        cam = rng.random((h, w), dtype=np.float32)
        placements.append(
            {
                "cam": encode(cam),
                "width": shape[1],
                "height": shape[0],
                "region": list(region),
                "expected": encode(place(cam, shape, region)),
            }
        )
    return [{"cams": cams, "averages": averages, "placements": placements}]


# ------------------------------------------------------------------------------------------ lung crop


def _ellipse(mask: np.ndarray, cx: float, cy: float, rx: float, ry: float, value: float) -> None:
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    mask[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = value


def lungcrop_cases() -> list[dict]:
    """Synthetic lung-probability maps covering every branch of the crop rule and its gate."""
    rng = np.random.default_rng(18)
    cases = []

    def add(name: str, prob: np.ndarray, image_shape: tuple[int, int], spec: CropSpec | None = None) -> None:
        spec = spec or CropSpec()
        result = lung_crop(prob.astype(np.float32), image_shape, spec)
        cases.append(
            {
                "name": name,
                "prob": encode(prob.astype(np.float32)),
                "image_width": image_shape[1],
                "image_height": image_shape[0],
                "spec": spec.to_dict(),
                "box": [int(v) for v in result.box],
                "status": result.status,
                "reason": result.reason,
                "mask": encode(result.mask),
            }
        )

    lungs = np.zeros((128, 128), np.float32)
    _ellipse(lungs, 40, 64, 22, 40, 0.9)
    _ellipse(lungs, 88, 64, 22, 40, 0.8)
    add("two lungs", lungs, (479, 512))
    add("two lungs, square image", lungs, (1024, 1024))
    noisy = lungs + rng.normal(0, 0.05, lungs.shape).astype(np.float32)
    add("two lungs with noise", noisy, (600, 500))
    holed = lungs.copy()
    _ellipse(holed, 40, 64, 6, 8, 0.1)  # a hole inside the left lung
    add("lung with a hole", holed, (479, 512))
    three = lungs.copy()
    _ellipse(three, 64, 115, 6, 6, 0.95)  # a third, small component is dropped
    add("third component dropped", three, (479, 512))
    add("nothing found", np.zeros((64, 64), np.float32), (300, 300))
    small = np.zeros((128, 128), np.float32)
    _ellipse(small, 64, 64, 10, 10, 0.9)
    add("area too small", small, (479, 512))
    add("area too large", np.full((64, 64), 0.9, np.float32), (479, 512))
    frag = np.zeros((100, 100), np.float32)
    for i in range(6):
        _ellipse(frag, 10 + 16 * i, 50, 7, 40, 0.9)
    add("fragmented", frag, (400, 400), CropSpec(max_area=0.95))
    wide = np.zeros((128, 128), np.float32)
    _ellipse(wide, 64, 64, 60, 12, 0.9)
    add("too wide", wide, (479, 512), CropSpec(min_area=0.01))
    tall = np.zeros((128, 128), np.float32)
    _ellipse(tall, 64, 64, 12, 60, 0.9)
    add("too tall", tall, (479, 512), CropSpec(min_area=0.01))
    edge = np.zeros((64, 80), np.float32)
    _ellipse(edge, 5, 32, 20, 30, 0.7)
    _ellipse(edge, 75, 32, 20, 30, 0.7)
    add("box at the image edge", edge, (333, 517), CropSpec(margin=0.2))
    add("threshold", lungs, (479, 512), CropSpec(threshold=0.85))
    return cases


# ------------------------------------------------------------------------------------------ manifests


def _set(data: dict, path: list, value) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def _delete(data: dict, path: list) -> None:
    for key in path[:-1]:
        data = data[key]
    del data[path[-1]]


def manifest_cases(bundle: Bundle, base_bundle: Bundle) -> dict:
    """What Python reads from the real manifest, and mutated manifests it refuses (applied by the JVM too)."""
    manifest = bundle.manifest
    summary = {
        "format_version": manifest.format_version,
        "name": manifest.name,
        "labels": list(manifest.labels),
        "preprocess": manifest.preprocess.to_dict(),
        "members": list(manifest.ensemble.members),
        "method": manifest.ensemble.method,
        "temperature": manifest.ensemble.temperature,
        "models": [
            {
                "name": m.name,
                "file": m.file,
                "sha256": m.sha256,
                "input": {
                    "shape": list(m.input.shape),
                    "dtype": m.input.dtype,
                    "scale": m.input.scale,
                    "zero_point": m.input.zero_point,
                },
                "outputs": sorted(m.outputs),
                "cam_weights_shape": list(np.asarray(m.cam_weights).shape) if m.cam_weights else None,
                "cam_weights_sum": float(np.asarray(m.cam_weights).sum()) if m.cam_weights else None,
            }
            for m in manifest.models
        ],
    }
    # The refusal cases mutate the first release's format-2 manifest (one CNN, no segmenter): each case
    # names the one thing it breaks, which a format-3 base with a segmenter would mask.
    base = json.loads((base_bundle.root / "manifest.json").read_text())
    mutations = [
        ("format version 4 without a site section", [("set", ["format_version"], 4)]),
        ("format version 5", [("set", ["format_version"], 5)]),
        ("label map in a format 2 manifest", [("set", ["label_map"], {"bacterial": "pneumonia_unknown"})]),
        (
            "label map to an unknown label",
            [("set", ["format_version"], 3), ("set", ["label_map"], {"bacterial": "pneumonia"})],
        ),
        (
            "lung evidence without a segmenter",
            [
                ("set", ["format_version"], 3),
                ("set", ["lung_evidence"], {"min_fraction": 0.4, "chosen_on": "x"}),
            ],
        ),
        (
            "referral band above 1",
            [("set", ["format_version"], 3), ("set", ["ensemble", "abstain"], {"min_top_prob": 1.5})],
        ),
        (
            "card without the disclaimer",
            [
                ("set", ["format_version"], 3),
                (
                    "set",
                    ["card"],
                    {"intended_use": "x", "task": {"labels": list(bundle.labels)}, "disclaimer": "ok"},
                ),
            ],
        ),
        (
            "card about other labels",
            [
                ("set", ["format_version"], 3),
                ("set", ["card"], {"intended_use": "x", "task": {"labels": ["a", "b"]}}),
            ],
        ),
        ("format version as a string", [("set", ["format_version"], "2")]),
        ("unknown top-level key", [("set", ["colour"], "blue")]),
        ("missing labels", [("delete", ["labels"])]),
        ("labels not a list", [("set", ["labels"], "covid")]),
        ("duplicate labels", [("set", ["labels"], ["covid", "covid", "normal"])]),
        ("input_size with three items", [("set", ["preprocess", "input_size"], [256, 256, 1])]),
        ("clahe_tiles as a float", [("set", ["preprocess", "clahe_tiles"], 8.0)]),
        ("clahe as a number", [("set", ["preprocess", "clahe"], 1)]),
        ("even median kernel", [("set", ["preprocess", "median"], 4)]),
        ("border too large", [("set", ["preprocess", "border"], 0.5)]),
        ("unknown normalisation", [("set", ["preprocess", "normalize"], "zscore")]),
        ("unknown dtype", [("set", ["models", 0, "input", "dtype"], "float16")]),
        ("missing sha256", [("delete", ["models", 0, "sha256"])]),
        ("probs shape does not match labels", [("set", ["models", 0, "outputs", "probs", "shape"], [1, 4])]),
        ("input shape does not match spec", [("set", ["models", 0, "input", "shape"], [1, 128, 128, 1])]),
        ("unknown ensemble member", [("set", ["ensemble", "members"], ["nope"])]),
        ("no ensemble members", [("set", ["ensemble", "members"], [])]),
        ("unknown ensemble method", [("set", ["ensemble", "method"], "median")]),
        ("weighted without weights", [("set", ["ensemble", "method"], "weighted")]),
        ("negative temperature", [("set", ["ensemble", "temperature"], -1.0)]),
        ("stacking without meta-learner", [("set", ["ensemble", "method"], "stacking")]),
        ("duplicate model names", [("set", ["models", 1, "name"], "custom_cnn-fp32")]),
        # A segmenter's role is "crop" or "evidence" (absent: "crop"); anything else is refused.
        ("unknown segmenter role", [("set", ["segmenter"], _evidence().SEGMENTER | {"role": "lungs"})]),
        ("segmenter role null", [("set", ["segmenter"], _evidence().SEGMENTER | {"role": None})]),
    ]
    bad = []
    for name, ops in mutations:
        data = copy.deepcopy(base)
        for op in ops:
            if op[0] == "set":
                _set(data, op[1], op[2])
            else:
                _delete(data, op[1])
        try:
            BundleManifest.from_dict(data)
            python_error = None
        except CxrEdgeError as exc:
            python_error = f"{type(exc).__name__}: {exc}"
        bad.append(
            {
                "name": name,
                "ops": [
                    {"op": op[0], "path": op[1], **({"value": op[2]} if op[0] == "set" else {})} for op in ops
                ],
                "python_error": python_error,
            }
        )
    return {"summary": summary, "bad": bad}


def main() -> None:
    """``python android_demo/tools/golden_extra.py OUT_DIR``."""
    if len(sys.argv) != 2:
        raise SystemExit("usage: golden_extra.py OUT_DIR")
    for path in write(sys.argv[1]):
        print(path)


if __name__ == "__main__":
    main()
