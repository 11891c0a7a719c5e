"""Extra golden vectors of a site-calibrated bundle (format 4) for the Android core (``golden_extra.py``).

``site.json`` holds what ``SiteTest.java`` compares against, all computed by the Python runtime:

* ``manifest``: the calibrated manifest of ``tests/ports/site_bundle.py`` (the default bundle with seeded
  member heads, site temperature and bias; the bundle itself is written to a temporary folder and
  removed: its model files are the default bundle's, whose outputs ``samples.json`` records);
* ``samples``: the golden samples through :class:`cxr_edge.runtime.pipeline.Predictor` on it -- label,
  probabilities, each member's refitted-head probabilities, referral, CAM -- and the parent's label
  and probabilities (the calibration must change them); ``subset``: the same with the first two
  members (their heads apply, the site's temperature and bias do not);
* ``math``: the two site operations on random inputs; ``manifests``: mutated calibrated manifests with
  Python's verdict on each (edits as ``ops``, as in ``manifest.json``'s refusal cases).
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path

from cxr_edge.bundle.folder import Bundle
from cxr_edge.dataset.samples import samples_dir

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
#: The calibrated test bundle and its cases, shared with the browser's tests.
HELPER = REPO / "tests" / "ports" / "site_bundle.py"
#: Members of the subset run (their heads apply, the site's temperature and bias do not).
SUBSET = 2


def _helper():
    """``tests/ports/site_bundle.py``, loaded by path (it is no installed module)."""
    spec = importlib.util.spec_from_file_location("cxr_edge_site_bundle", HELPER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def site_cases() -> dict:
    """Everything of ``site.json`` (see the module docstring)."""
    helper = _helper()
    stems = [
        json.loads((GOLDEN / g).read_text())["file"]
        for g in json.loads((GOLDEN / "index.json").read_text())["files"]
    ]
    images = [samples_dir() / s for s in stems]
    with tempfile.TemporaryDirectory(prefix="cxr-site-") as tmp:
        root = helper.write_site_bundle(Path(tmp) / "bundle")
        bundle = Bundle.load(root)
        manifest = json.loads((root / "manifest.json").read_text())
        calibrated = helper.expected(bundle, images)
        subset = list(bundle.manifest.ensemble.members[:SUBSET])
        partial = helper.expected(bundle, images[:1], members=subset)
        manifests = helper.manifest_cases(root)
    parent = helper.expected(Bundle.load(), images)
    helper.check_visible(calibrated, parent)
    samples = [
        calibrated[s] | {"file": s, "parent": {k: parent[s][k] for k in ("label", "probs")}} for s in stems
    ]
    return {
        "manifest": manifest,
        "samples": samples,
        "subset": {"members": subset, "samples": [partial[stems[0]] | {"file": stems[0]}]},
        "math": helper.math_cases(),
        "manifests": manifests,
    }
