"""Extra golden vectors of the format-3 judgements for the Android core (used by ``golden_extra.py``).

``equalize.json``: ``cv2.equalizeHist`` cases. ``evidence.json``: lung fractions and referrals on
synthetic inputs, and a segmenter pipeline on the golden samples (a format-3 manifest, the recorded
member outputs, the expected lung fraction, flags and referral), all computed by the Python runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from cxr_edge.bundle.folder import Bundle
from cxr_edge.bundle.manifest import BundleManifest, EnsembleConfig
from cxr_edge.dataset.samples import samples_dir
from cxr_edge.evaluation.golden import encode
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.cam import FLAG_OUTSIDE_LUNGS, average_maps, class_activation_map, lung_fraction
from cxr_edge.ops.lungcrop import CropSpec, clean_mask, lung_crop
from cxr_edge.ops.preprocess import PreprocessSpec, crop_region, preprocess
from cxr_edge.ops.quality import ReferralBand, referral_reason
from cxr_edge.runtime.engine import Engine, normalise
from cxr_edge.runtime.segmenter import Segmenter

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "golden"


def _ellipse(mask: np.ndarray, cx: float, cy: float, rx: float, ry: float, value: float) -> None:
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    mask[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = value


#: The segmenter entry the JVM pipeline test adds to the default manifest (its crop threshold, 0.6, is
#: not the lung-mask threshold, so the lung mask is made separately).
SEGMENTER = {
    "name": "unet16-int8",
    "file": "unet16-int8.tflite",
    "sha256": "00",
    "quant": "int8",
    "input": {"shape": [1, 128, 128, 1], "dtype": "float32"},
    "outputs": {"mask": {"shape": [1, 128, 128, 1], "dtype": "float32"}},
    "params": 1000,
    "macs": 2000,
    "preprocess": {"input_size": [128, 128], "border": 0.0, "clahe": True, "median": 0},
    "crop": {"threshold": 0.6},
}


def equalize_cases() -> list[dict]:
    """``cv2.equalizeHist`` on random, narrow-histogram and constant images."""
    rng = np.random.default_rng(21)
    cases = []
    for h, w in [(256, 256), (37, 41), (1, 5)]:
        for src in (
            rng.integers(0, 256, (h, w), dtype=np.uint8),
            rng.integers(90, 110, (h, w), dtype=np.uint8),
            np.full((h, w), 77, np.uint8),
        ):
            cases.append({"src": encode(src), "expected": encode(cv2.equalizeHist(src))})
    return cases


def evidence_cases(bundle: Bundle) -> dict:
    """Lung fractions and referrals on synthetic inputs, and a segmenter pipeline on the golden samples.

    The pipeline case is what the JVM test runs: the default manifest with :data:`SEGMENTER`, an
    referral band and a lung-evidence threshold (format 3), the "two lungs" probability map as the
    segmenter's output, and the members' outputs recorded for the border-crop input (``samples.json``;
    the test's runner replays them whatever the input). The expected values are computed here with the
    Python functions on exactly those outputs.
    """
    rng = np.random.default_rng(22)
    fractions = []
    for i in range(30):
        h, w = int(rng.integers(2, 12)), int(rng.integers(2, 12))
        cam = (rng.random((h, w), dtype=np.float32) * (rng.random((h, w)) > 0.4)).astype(np.float32)
        H, W = int(rng.integers(300, 700)), int(rng.integers(300, 700))
        region = [
            int(rng.integers(0, W // 4)),
            int(rng.integers(0, H // 4)),
            int(rng.integers(W // 2, W + 1)),
        ]
        region.append(int(rng.integers(H // 2, H + 1)))
        seg_region = [[0, 0, W, H], [W // 10, H // 12, W - W // 10, H - H // 12]][i % 2]
        mask = ((rng.random((int(rng.integers(16, 80)), int(rng.integers(16, 80)))) > 0.5) * 255).astype(
            np.uint8
        )
        frame = [[32, 32], [64, 48], [256, 256], [h, w]][i % 4]
        fractions.append(
            {
                "cam": encode(cam),
                "region": region,
                "mask": encode(mask),
                "mask_region": seg_region,
                "frame": frame,
                "expected": lung_fraction(cam, tuple(region), mask, tuple(seg_region), tuple(frame)),
            }
        )
    fractions.append(
        {
            "cam": encode(np.zeros((4, 4), np.float32)),
            "region": [0, 0, 8, 8],
            "mask": encode(np.full((4, 4), 255, np.uint8)),
            "mask_region": [0, 0, 8, 8],
            "frame": [8, 8],
            "expected": None,
        }
    )
    referrals = []
    for i in range(40):
        probs = rng.dirichlet(np.ones(3) * [0.3, 1, 3][i % 3])
        if i % 10 == 0:
            probs = np.array([0.125, 0.375, 0.5])  # exact ties of the 2-decimal formatting
        band = ReferralBand(
            float(rng.choice([0.0, 0.375, 0.5, 0.6, 0.9])), float(rng.choice([0.0, 0.125, 0.3]))
        )
        referrals.append(
            {
                "probs": probs.tolist(),
                "band": {"min_top_prob": band.min_top_prob, "min_margin": band.min_margin},
                "expected": referral_reason(dict(zip(bundle.labels, probs.tolist(), strict=True)), band),
            }
        )
    return {"lung_fractions": fractions, "referrals": referrals, "pipeline": _segmenter_pipeline(bundle)}


def _segmenter_pipeline(bundle: Bundle) -> dict:
    lungs = np.zeros((128, 128), np.float32)
    _ellipse(lungs, 40, 64, 22, 40, 0.9)
    _ellipse(lungs, 88, 64, 22, 40, 0.8)
    seg_spec, crop_spec = (
        PreprocessSpec.from_dict(SEGMENTER["preprocess"]),
        CropSpec.from_dict(SEGMENTER["crop"]),
    )
    spec, ens = bundle.spec, bundle.manifest.ensemble
    index = json.loads((GOLDEN / "index.json").read_text())
    own_segmenter = Segmenter(bundle) if bundle.manifest.segmenter is not None else None
    found = []
    for name in index["files"]:
        stored = json.loads((GOLDEN / name).read_text())
        image, _ = read_image(samples_dir() / stored["file"])
        crop = lung_crop(lungs, image.shape, crop_spec)
        mask = clean_mask(lungs, 0.5)[0]  # the crop threshold is 0.6: the lung mask is made at 0.5
        # The input samples.json recorded the members' outputs for (and the Java runner replays): the
        # default bundle's own lung crop when it has a segmenter that crops, else the border crop.
        crops = own_segmenter is not None and own_segmenter.entry.crops
        recorded_box = own_segmenter(image).box if crops else None
        x = preprocess(image, spec, crop_box=recorded_box)
        outputs = {
            m: Engine(bundle.path_of(bundle.manifest.model(m)), bundle.manifest.model(m)).run_all(x)
            for m in ens.members
        }
        per_model = [
            normalise(o["probs"], bundle.manifest.model(m).outputs["probs"]) for m, o in outputs.items()
        ]
        probs = ens.apply(np.stack(per_model))
        cam = average_maps(
            [
                class_activation_map(
                    o["features"], np.asarray(bundle.manifest.model(m).cam_weights), int(np.argmax(probs))
                )
                for m, o in outputs.items()
            ]
        )
        region = crop_region(image.shape, spec, crop.box)
        fraction = lung_fraction(cam, region, mask, crop_region(image.shape, seg_spec), spec.input_size)
        found.append(
            {
                "file": stored["file"],
                "crop": crop.status,
                "box": list(crop.box),
                "probs": probs,
                "fraction": fraction,
            }
        )
    # Thresholds between the two samples, so that one is flagged/referred and the other not.
    tops = sorted(float(f["probs"].max()) for f in found)
    fracs = sorted(f["fraction"] for f in found)
    band = ReferralBand(min_top_prob=round((tops[0] + tops[-1]) / 2, 6))
    min_fraction = (fracs[0] + fracs[-1]) / 2
    manifest = json.loads((bundle.root / "manifest.json").read_text())
    manifest["format_version"] = 3
    manifest["segmenter"] = SEGMENTER
    manifest["ensemble"]["abstain"] = {"min_top_prob": band.min_top_prob, "min_margin": band.min_margin}
    manifest["lung_evidence"] = {"min_fraction": min_fraction, "chosen_on": "between the two golden samples"}
    manifest["label_map"] = {"bacterial": bundle.labels[-1]}
    manifest["card"] = {"intended_use": "JVM tests.", "task": {"labels": list(bundle.labels)}}
    parsed = BundleManifest.from_dict(manifest)  # Python reads it too
    tempered = EnsembleConfig(
        **{k: getattr(parsed.ensemble, k) for k in ("method", "members", "temperature", "abstain")}
    )
    samples = []
    for f in found:
        flags = [FLAG_OUTSIDE_LUNGS] if f["fraction"] is not None and f["fraction"] < min_fraction else []
        samples.append(
            {
                "file": f["file"],
                "crop": f["crop"],
                "box": f["box"],
                "probs": f["probs"].tolist(),
                "lung_fraction": f["fraction"],
                "flags": flags,
                "referral": tempered.referral(bundle.labels, f["probs"]),
            }
        )
    return {"manifest": manifest, "mask_probabilities": encode(lungs), "samples": samples}
