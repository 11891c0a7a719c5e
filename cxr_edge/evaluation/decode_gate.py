"""The decode parity gate: may a bundle decode full-size DICOMs at reduced resolution?

A cart's 2-3k-pixel radiograph is decoded for a 128- or 256-pixel model input. Decoding at 1/2, 1/4
or 1/8 resolution (:mod:`cxr_edge.imaging.pixels`) removes most of the decode cost but changes the
pixels the model sees, so, like quantisation, it has a gate: the bundle's full pipeline (segmenter,
crop, members, combiner) predicts the validation images twice, from full-size DICOMs decoded at full
and at reduced resolution, once per reduction kind:

* ``area``: uncompressed (and RLE, JPEG-LS, lossless and 12-bit JPEG) files, averaged in the integer
  domain after a full decode;
* ``jpeg_dct``: 8-bit JPEG baseline, DCT-domain scaling in libjpeg-turbo;
* ``j2k_levels``: JPEG 2000, decoding only the wavelet levels needed (OpenJPEG; HTJ2K's levels are
  the same transform);
* ``jpeg_dct_half`` / ``j2k_levels_half``: the codec reduces half as much and a 2 x 2 box average
  does the rest.

Each kind is gated on its own; the runtime uses, per syntax, the fastest kind that passed.

The gate passes when every kind keeps the argmax of at least ``min_agreement`` of the images whose
full-resolution prediction lies outside the bundle's referral band: inside it the prediction is
referred to a radiologist whatever its argmax, and near-ties flip under any perturbation. Measured on
the default bundle, the same validation image flips on 3% of images between the kit's PNG and its
full-size DICOM, and on 5% between an uncompressed and a JPEG-q90 copy at full resolution, always at
margins below 0.06. So the gate also reports agreement over all images and a **reference**: the
lossy JPEG copy at full resolution, the perturbation a cart's export already applies. The result is
stored in the manifest (``decode``) and runtimes decode reduced only when it passed.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr_edge.bundle.folder import Bundle
from cxr_edge.bundle.manifest import BundleManifest, DecodeConfig
from cxr_edge.imaging.reader import ReadOptions, read_image

#: Short side of the lung box as a fraction of the image's, at its 2nd percentile on the kit (0.56 at
#: the 5th, 0.46 at the 1st, measured on 400 crops of build/crops_kit2): the reduced image must keep
#: twice the classifier's input size inside the lung box of nearly every image.
LUNG_BOX_FRACTION = 0.5
#: Detector size of the synthetic DICOMs (rows, columns): a 43 x 35 cm plate at ~0.17 mm.
GATE_SIZE = (2130, 2560)
#: The reduction kinds and the transfer syntax each is measured on.
KINDS = {
    "area": "explicit_le",
    "jpeg_dct": "jpeg_baseline",
    "jpeg_dct_half": "jpeg_baseline",
    "j2k_levels": "j2k_lossless",
    "j2k_levels_half": "j2k_lossless",
}
#: Reference: a lossy full-resolution decode (JPEG q90) against the uncompressed full-resolution one.
REFERENCE = "jpeg_full"


@dataclass(frozen=True)
class DecodeGateThresholds:
    """At least 99% argmax agreement with the full-resolution path outside the referral band."""

    min_agreement: float = 0.99


def min_side_for(manifest: BundleManifest) -> int:
    """The short side a reduced decode must keep: twice the pixels every resize of the bundle needs.

    Without a segmenter the classifier sees the image less its border; with one, the segmenter sees
    the whole image and the classifier sees the lung box (:data:`LUNG_BOX_FRACTION` of the side).
    """
    spec = manifest.preprocess
    need = 2 * max(spec.input_size)
    if manifest.segmenter is None:
        return math.ceil(need / (1.0 - 2.0 * spec.border))
    seg_need = 2 * max(manifest.segmenter.preprocess.input_size)
    return max(seg_need, math.ceil(need / LUNG_BOX_FRACTION))


def decode_gate(
    bundle_root: str | Path,
    files: Sequence[str | Path],
    *,
    thresholds: DecodeGateThresholds | None = None,
    size: tuple[int, int] = GATE_SIZE,
    progress: bool = False,
) -> DecodeConfig:
    """Measures reduced against full-resolution decoding on full-size DICOMs made from ``files``.

    Args:
        bundle_root: The bundle (its manifest may already hold a ``decode`` entry; it is ignored).
        files: Validation images (any readable format); each becomes one DICOM per reduction kind.
        thresholds: The pass rule.
        size: Detector size of the synthetic DICOMs (rows, columns).
        progress: Show a progress bar.

    Returns:
        The :class:`DecodeConfig` to store in the manifest.
    """
    from tqdm import tqdm

    from cxr_edge.imaging.synth import VARIANTS, build_dataset, encode, stored_values
    from cxr_edge.runtime.pipeline import Predictor

    thresholds = thresholds or DecodeGateThresholds()
    bundle = Bundle.load(bundle_root)
    manifest = dataclasses.replace(bundle.manifest, decode=None)
    min_side = min_side_for(manifest)
    bundle = dataclasses.replace(bundle, manifest=manifest)
    # Parity of decodes, not triage: every image is classified (checks=None), as before the checks.
    full = Predictor(bundle, read_options=ReadOptions(min_side=None), checks=None)
    reduced = {
        k: Predictor(bundle, read_options=ReadOptions(min_side=min_side, reductions=(k,)), checks=None)
        for k in KINDS
    }
    variant = VARIANTS[0]  # 12-bit MONOCHROME2 with a window: the common DX export
    kinds = [*KINDS, REFERENCE]
    records: dict[str, list] = {kind: [] for kind in kinds}
    factors: dict[str, set] = {kind: set() for kind in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for n, file in enumerate(tqdm(files, desc="decode gate", disable=not progress, leave=False)):
            image, _ = read_image(file)
            stored = stored_values(image, size, variant, seed=n)
            at_full = {}
            for syntax in dict.fromkeys(KINDS.values()):
                ds = build_dataset(stored, variant, n)
                encode(ds, syntax)
                path = Path(tmp) / f"{syntax}.dcm"
                ds.save_as(path, enforce_file_format=True)
                at_full[syntax] = a = full.predict_file(path)
                for kind in (k for k, s in KINDS.items() if s == syntax):
                    b = reduced[kind].predict_file(path)
                    records[kind].append((a, b))
                    factors[kind].add(b.info.reduction)
            records[REFERENCE].append((at_full["explicit_le"], at_full["jpeg_baseline"]))
            factors[REFERENCE].add(1)
    gate: dict = {"images": len(files), "size": list(size), **dataclasses.asdict(thresholds)}
    for kind in kinds:
        gate[kind] = _compare(records[kind], bundle.labels, thresholds) | {
            "syntax": KINDS.get(kind, "jpeg_baseline vs explicit_le, both full resolution"),
            "reduction": sorted(factors[kind]),
        }
    passed = tuple(k for k in KINDS if gate[k]["passed"])
    return DecodeConfig(min_side=min_side, reduced=bool(passed), kinds=passed, gate=gate)


def _compare(pairs: list, labels: Sequence[str], thresholds: DecodeGateThresholds) -> dict:
    """Agreement of (reference, candidate) predictions: overall and outside the referral band."""
    if not pairs:
        return {"argmax_agreement": 0.0, "passed": False}
    ref = np.asarray([[a.probs[k] for k in labels] for a, _ in pairs])
    got = np.asarray([[b.probs[k] for k in labels] for _, b in pairs])
    same = ref.argmax(1) == got.argmax(1)
    confident = np.asarray([a.referral is None for a, _ in pairs])
    diff = np.abs(ref - got)
    outside = float(same[confident].mean()) if confident.any() else 1.0
    return {
        "argmax_agreement": float(same.mean()),
        "argmax_agreement_outside_band": outside,
        "images_outside_band": int(confident.sum()),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "passed": outside >= thresholds.min_agreement,
    }
