"""Extra golden vectors of a segmenter of role "evidence" for the Android core (``golden_extra.py``).

``role.json`` holds what ``SegmenterRoleTest.java`` compares against, all computed by the Python runtime:

* ``manifest``: the ``paper`` preset's manifest (a real lung segmenter, role ``crop``) with
  ``segmenter.role`` set to ``evidence`` and its lung-evidence threshold moved between the golden
  samples' lung fractions (so one is flagged), without the entries of :data:`UNUSED`; the bundle itself
  is written to a temporary folder and removed (only the manifest changes: model files are hashed, the
  manifest is not);
* ``samples``: the golden samples through :class:`cxr_edge.runtime.pipeline.Predictor` on it, with every
  model's quantised input and raw outputs (the segmenter on its own input, the members on the full
  image: what the Java runner replays, checking that it is handed exactly these inputs), and what the
  prediction says: label, probabilities, crop ``none`` with no box, the segmenter's own verdict on its
  mask, the heat map and its region, lung fraction, flags, referral, lung mask and region; ``cropping``
  is the same sample through the unchanged ``paper`` bundle (what a port that ignored the role would
  compute: the lung crop's input and probabilities).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cxr_edge.bundle.folder import Bundle
from cxr_edge.bundle.manifest import BundleManifest
from cxr_edge.dataset.samples import samples_dir
from cxr_edge.evaluation.golden import encode
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.preprocess import preprocess
from cxr_edge.runtime.engine import Engine
from cxr_edge.runtime.pipeline import Predictor

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
#: The preset whose segmenter is turned into an evidence checker (its role is ``crop``).
PRESET = "paper"
#: Manifest entries this case leaves out of ``role.json``: they pin files it does not use (the bundle's
#: self-test), so the role is tested whether or not a port reads them yet (their own tests say that).
UNUSED = ("selftest",)


def _evidence_bundle(folder: Path, min_fraction: float | None = None) -> Bundle:
    """The preset with ``segmenter.role`` "evidence" (and another lung-evidence threshold when given)."""
    root = folder / "bundle"
    if not root.exists():
        shutil.copytree(Bundle.load(PRESET).root, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["segmenter"]["role"] = "evidence"
    if min_fraction is not None:
        manifest["lung_evidence"]["min_fraction"] = min_fraction
        manifest["lung_evidence"]["chosen_on"] = "between the two golden samples"
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Bundle.load(root)


def role_cases(record: Callable[[Engine, np.ndarray], dict]) -> dict:
    """Everything of ``role.json`` (see the module docstring).

    Args:
        record: One model's quantised input and raw outputs on an input (``golden_extra._record``).
    """
    stems = [
        json.loads((GOLDEN / g).read_text())["file"]
        for g in json.loads((GOLDEN / "index.json").read_text())["files"]
    ]
    images = {s: read_image(samples_dir() / s)[0] for s in stems}
    cropping = Predictor(Bundle.load(PRESET))
    with tempfile.TemporaryDirectory(prefix="cxr-role-") as tmp:
        first = Predictor(_evidence_bundle(Path(tmp)))
        fractions = sorted(first.predict_image(images[s]).lung_fraction for s in stems)
        bundle = _evidence_bundle(Path(tmp), (fractions[0] + fractions[-1]) / 2)
        assert not bundle.manifest.segmenter.crops
        manifest = json.loads((bundle.root / "manifest.json").read_text())
        manifest = {k: v for k, v in manifest.items() if k not in UNUSED}
        BundleManifest.from_dict(manifest)  # Python reads it too
        predictor = Predictor(bundle)
        seg = bundle.manifest.segmenter
        seg_engine = Engine(bundle.path_of(seg), seg)
        members = [bundle.manifest.model(m) for m in bundle.manifest.ensemble.members]
        samples = []
        for stem in stems:
            image = images[stem]
            prepared = predictor.prepare(image)
            pred = predictor.classify(prepared)
            x = preprocess(image, bundle.spec)  # the full image: no crop box
            assert np.array_equal(prepared.x, x)
            models = {seg.name: record(seg_engine, preprocess(image, seg.preprocess))}
            for entry in members:
                models[entry.name] = record(Engine(bundle.path_of(entry), entry), x)
            other = cropping.predict_image(image)
            decision = prepared.crop
            labels = bundle.labels
            samples.append(
                {
                    "file": stem,
                    "models": models,
                    "label": pred.label,
                    "probs": [pred.probs[label] for label in bundle.labels],
                    "per_model": {n: [p[label] for label in labels] for n, p in pred.per_model.items()},
                    "crop": pred.crop,
                    "crop_reason": pred.crop_reason,
                    "crop_box": pred.crop_box,
                    # The segmenter's verdict on its mask (what the crop would have been).
                    "decision": {"status": decision.status, "reason": decision.reason}
                    | {"box": list(decision.box)},
                    "cam": encode(pred.cam.astype(np.float32)),
                    "cam_region": list(pred.cam_region),
                    "heatmap": encode(pred.heatmap(image.shape).astype(np.float32)),
                    "lung_fraction": pred.lung_fraction,
                    "flags": list(pred.flags),
                    "referral": pred.referral,
                    "lung_mask": encode(pred.lung_mask) if pred.lung_mask is not None else None,
                    "lung_region": list(pred.lung_region) if pred.lung_region is not None else None,
                    "cropping": {
                        "crop": other.crop,
                        "crop_box": list(other.crop_box),
                        "probs": [other.probs[label] for label in bundle.labels],
                    },
                }
            )
    return {"manifest": manifest, "samples": samples}
