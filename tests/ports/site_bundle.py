"""A site-calibrated bundle for the ports' tests, and what the Python runtime predicts with it.

``cxr-edge site calibrate`` writes format-4 bundles whose manifest carries a ``site`` section
(:mod:`cxr_edge.ops.site`): refitted member heads on the ``features`` output, then a site temperature and
bias after the ensemble. The browser (``test_web_demo.py``) and the Android core (``test_android_core.py``
through ``android_demo/tools/golden_site.py``, which loads this file by path) must apply it exactly as
:class:`cxr_edge.runtime.pipeline.Predictor` does. Nothing here is committed: the bundle is written into a
temporary folder from the shipped default bundle, deterministically (fixed seed, fixed date):

* one head per ensemble member: the member's CAM weights (its shipped dense layer) plus seeded noise of
  the same scale, and a seeded bias, so that every member's probabilities move visibly;
* site temperature :data:`TEMPERATURE` and bias :data:`BIAS`, which turn the second golden sample's
  label (see :func:`check_visible`): a port that ignores the section fails on the label, not only on
  the probabilities.

Also here: synthetic cases of the two site operations (:func:`math_cases`) and mutated format-4
manifests with Python's verdict on each (:func:`manifest_cases`), which both ports read too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cxr_edge.bundle.folder import Bundle, bundle_sha256
from cxr_edge.bundle.manifest import BundleManifest
from cxr_edge.errors import CxrEdgeError
from cxr_edge.evaluation.golden import encode
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.site import MemberHead, SiteCalibration
from cxr_edge.runtime.pipeline import Predictor
from cxr_edge.site import calibrated

SEED = 20_250_604
TEMPERATURE = 1.7
#: Added after the site temperature, in label order (covid, normal, pneumonia for the default bundle).
BIAS = (-0.2, -0.45, 0.9)
#: Noise on the heads' weights, relative to the standard deviation of the member's CAM weights.
NOISE = 0.8
DATE = "2025-06-04"
NAME = "port-test-site"


def calibration(parent: Bundle) -> SiteCalibration:
    """The site section of the test bundle: seeded heads for every member, temperature, bias."""
    rng = np.random.default_rng(SEED)
    manifest = parent.manifest
    n = len(manifest.labels)
    heads = {}
    for name in manifest.ensemble.members:
        entry = manifest.model(name)
        k = entry.outputs["features"].shape[-1]
        cam = np.asarray(entry.cam_weights, dtype=np.float64)
        assert cam.shape == (k, n), (name, cam.shape)
        weights = cam + rng.normal(0.0, NOISE * float(cam.std()), (k, n))
        heads[name] = MemberHead(
            weights=tuple(tuple(float(v) for v in row) for row in weights),
            bias=tuple(float(v) for v in rng.normal(0.0, 0.5, n)),
        )
    return SiteCalibration(
        name=NAME,
        date=DATE,
        parent_sha256=bundle_sha256(parent),
        method="head",
        images={label: 10 + i for i, label in enumerate(manifest.labels)},
        patients=3 * n,
        temperature=TEMPERATURE,
        bias=BIAS[:n],
        heads=heads,
        metrics={"images": {label: 10 + i for i, label in enumerate(manifest.labels)}, "note": "synthetic"},
        reference={"note": "synthetic heads for the ports' tests"},
        image_digests=("0123456789abcdef",),
    )


def write_site_bundle(dest: str | Path, parent: Bundle | None = None) -> Path:
    """Writes the calibrated test bundle into the new folder ``dest`` (from the shipped default bundle)."""
    parent = parent or Bundle.load()
    # The library's writer: checksums and the site section verified, as the ports will see them.
    return calibrated.write_site_bundle(parent, calibration(parent), dest).root


def expected(bundle: Bundle, images: Iterable[Path], members: list[str] | None = None) -> dict[str, dict]:
    """What :class:`Predictor` gives on each image, by file name: label, probabilities (in label order),
    each member's probabilities (after its site head), referral, and the CAM at feature resolution."""
    predictor = Predictor(bundle, members=members)
    labels = bundle.labels
    out = {}
    for path in images:
        image, _ = read_image(path)
        pred = predictor.predict_image(image)
        out[Path(path).name] = {
            "label": pred.label,
            "probs": [pred.probs[label] for label in labels],
            "per_model": {n: [p[label] for label in labels] for n, p in pred.per_model.items()},
            "referral": pred.referral,
            "cam": encode(pred.cam.astype(np.float32)) if pred.cam is not None else None,
        }
    return out


def check_visible(calibrated: dict[str, dict], parent: dict[str, dict]) -> None:
    """The calibration must change what a port outputs: every image's probabilities and every member's
    head (on some image: a saturated member may stay at 1) move by far more than any tolerance, and at
    least one label changes, so that a port ignoring the section cannot pass."""
    moved: dict[str, float] = {}
    for name, got in calibrated.items():
        was = parent[name]
        assert np.abs(np.subtract(got["probs"], was["probs"])).max() > 0.02, name
        for member, p in got["per_model"].items():
            change = float(np.abs(np.subtract(p, was["per_model"][member])).max())
            moved[member] = max(moved.get(member, 0.0), change)
    assert min(moved.values()) > 0.01, moved
    assert any(calibrated[n]["label"] != parent[n]["label"] for n in calibrated), "no label changed"


def math_cases() -> dict:
    """The two site operations on random inputs (heads on feature maps, temperature and bias)."""
    rng = np.random.default_rng(SEED + 1)
    heads = []
    for h, w, k, n in [(4, 4, 461, 3), (2, 3, 7, 3), (1, 1, 5, 2), (5, 2, 16, 4)]:
        features = np.maximum(rng.normal(0, 1, (h, w, k)), 0).astype(np.float32)
        head = MemberHead(
            weights=tuple(map(tuple, rng.normal(0, 0.3, (k, n)).tolist())),
            bias=tuple(rng.normal(0, 0.5, n).tolist()),
        )
        heads.append(
            {
                "features": encode(features),
                "weights": [list(r) for r in head.weights],
                "bias": list(head.bias),
                "expected": head.probs(features).tolist(),
            }
        )
    applied = []
    for i in range(12):
        n = 3 if i % 4 else 2
        probs = rng.dirichlet(np.ones(n) * [0.3, 1, 3][i % 3])
        if i == 0:
            probs = np.array([1.0, 0.0])  # a zero probability: clipped to 1e-12 before the log
        temperature = float(rng.choice([0.5, 1.0, 1.7, 4.0]))
        bias = () if i % 3 == 0 else tuple(rng.normal(0, 1, n).tolist())
        site = SiteCalibration(
            name="x", date=DATE, parent_sha256="0", method="prior", images={}, patients=0,
            temperature=temperature, bias=bias,
        )  # fmt: skip
        applied.append(
            {
                "probs": probs.tolist(),
                "temperature": temperature,
                "bias": list(bias),
                "expected": site.apply(probs).tolist(),
            }
        )
    return {"heads": heads, "apply": applied}


def manifest_cases(site_root: Path) -> list[dict]:
    """Mutations of the calibrated manifest, each with Python's verdict (``python_error``: None = read).

    The manifest is large (three heads of 461 x 3 weights), so a case holds its edits, not a copy:
    ``ops`` of ``{"op": "set" | "delete" | "append", "path": [...], "value"?}`` (:func:`apply_ops`).

    Returns:
        ``[{"name", "ops", "python_error"}]``; the first case is the intact manifest.
    """
    base = json.loads((Path(site_root) / "manifest.json").read_text())
    labels, members = base["labels"], base["ensemble"]["members"]
    others = [m["name"] for m in base["models"] if m["name"] not in members]
    head = ["site", "heads", members[0]]
    copied = base["site"]["heads"][members[0]]
    point = {"normal_label": labels[1], "target_sensitivity": 0.9, "normal_shift": -0.3}

    def set_(path: list, value) -> dict:
        return {"op": "set", "path": path, "value": value}

    mutations = {
        "intact": [],
        "format 5": [set_(["format_version"], 5)],
        "format 3 with a site section": [set_(["format_version"], 3)],
        "format 4 without a site section": [{"op": "delete", "path": ["site"]}],
        "format 4 with a null site": [set_(["site"], None)],
        "no bias, no heads (method prior)": [
            set_(["site", "bias"], []),
            set_(["site", "heads"], {}),
            set_(["site", "method"], "prior"),
        ],
        "an operating point": [set_(["site", "operating_point"], point)],
        "unknown method": [set_(["site", "method"], "isotonic")],
        "temperature 0": [set_(["site", "temperature"], 0.0)],
        "negative temperature": [set_(["site", "temperature"], -1.7)],
        "temperature as a string": [set_(["site", "temperature"], "1.7")],
        "bias of the wrong length": [set_(["site", "bias"], [0.1] * (len(labels) + 1))],
        "head of a model outside the ensemble": [set_(["site", "heads", (others or ["nope"])[0]], copied)],
        "head of an unknown model": [set_(["site", "heads", "nope"], copied)],
        "head with a feature channel missing": [{"op": "delete", "path": [*head, "weights", 0]}],
        "head with a ragged row": [{"op": "append", "path": [*head, "weights", 3], "value": 0.5}],
        "head bias of the wrong length": [{"op": "append", "path": [*head, "bias"], "value": 0.5}],
        "head without its bias": [{"op": "delete", "path": [*head, "bias"]}],
        "operating point on an unknown label": [
            set_(["site", "operating_point"], point | {"normal_label": "x"})
        ],
        "operating point sensitivity 1.5": [
            set_(["site", "operating_point"], point | {"target_sensitivity": 1.5})
        ],
        "site without a name": [{"op": "delete", "path": ["site", "name"]}],
        "site without its method": [{"op": "delete", "path": ["site", "method"]}],
        "unknown key in the site": [set_(["site", "shrinkage"], 0.5)],
        "unknown key in a head": [set_([*head, "scale"], 2.0)],
        # Who signed the parent (cxr_edge.bundle.signature): a key id, or null when it was unsigned.
        "parent signed by a key": [set_(["site", "parent_signed_by"], "ed25519:0123456789abcdef")],
        "parent unsigned": [set_(["site", "parent_signed_by"], None)],
        "no parent_signed_by": [{"op": "delete", "path": ["site", "parent_signed_by"]}],
        "parent_signed_by as a number": [set_(["site", "parent_signed_by"], 7)],
        # The self-test file, pinned like a model file (absent or null: none).
        "no self-test": [{"op": "delete", "path": ["selftest"]}],
        "a null self-test": [set_(["selftest"], None)],
        "self-test without its digest": [{"op": "delete", "path": ["selftest", "sha256"]}],
        "self-test digest as a number": [set_(["selftest", "sha256"], 12)],
        "self-test as a string": [set_(["selftest"], "selftest.json")],
        "unknown key in the self-test": [set_(["selftest", "stages"], 3)],
    }
    cases = []
    for name, ops in mutations.items():
        try:
            BundleManifest.from_dict(apply_ops(base, ops))
            error = None
        except CxrEdgeError as exc:
            error = f"{type(exc).__name__}: {exc}"
        cases.append({"name": name, "ops": ops, "python_error": error})
    assert cases[0]["python_error"] is None, cases[0]["python_error"]
    return cases


def apply_ops(base: dict, ops: list[dict]) -> dict:
    """A copy of ``base`` with the edits of a :func:`manifest_cases` case (what the JVM test does too)."""
    data = copy.deepcopy(base)
    for op in ops:
        *parents, last = op["path"]
        node = data
        for key in parents:
            node = node[key]
        if op["op"] == "set":
            node[last] = copy.deepcopy(op["value"])
        elif op["op"] == "delete":
            del node[last]
        else:
            node[last].append(op["value"])
    return data
