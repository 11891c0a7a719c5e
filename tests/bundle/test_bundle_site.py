"""The manifest's ``site`` section: format 4 exactly when present, and heads that fit their members."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from cxr_edge.bundle.folder import default_bundle_path
from cxr_edge.bundle.manifest import SITE_FORMAT_VERSION, BundleManifest
from cxr_edge.errors import BundleError


def _data_with_site(**site_fields) -> dict:
    data = json.loads((default_bundle_path() / "manifest.json").read_text())
    member = data["ensemble"]["members"][0]
    k = next(m for m in data["models"] if m["name"] == member)["outputs"]["features"]["shape"][-1]
    rng = np.random.default_rng(0)
    site = {
        "name": "st-elsewhere",
        "date": "2026-12-07",
        "parent_sha256": "0" * 64,
        "method": "head",
        "images": {"normal": 20, "pneumonia": 20},
        "patients": 40,
        "temperature": 1.5,
        "bias": [0.0, 0.2, -0.2],
        "heads": {member: {"weights": rng.normal(size=(k, 3)).tolist(), "bias": [0.0, 0.1, -0.1]}},
    }
    site.update(site_fields)
    data["format_version"] = SITE_FORMAT_VERSION
    data["site"] = site
    return data


def test_a_site_section_parses_with_format_4_and_is_applied_by_output():
    manifest = BundleManifest.from_dict(_data_with_site())
    assert manifest.site.name == "st-elsewhere" and manifest.site.method == "head"
    probs = np.full((3, 1, 3), 1 / 3)
    out = manifest.output(probs)[0]
    expected = np.exp(np.log(1 / 3) / 1.5 + np.array([0.0, 0.2, -0.2]))
    np.testing.assert_allclose(out, expected / expected.sum(), rtol=1e-9)


def test_site_and_format_version_must_agree():
    data = _data_with_site()
    data["format_version"] = 3
    with pytest.raises(BundleError, match="site calibration and format version disagree"):
        BundleManifest.from_dict(data)
    plain = copy.deepcopy(data)
    del plain["site"]
    plain["format_version"] = SITE_FORMAT_VERSION
    with pytest.raises(BundleError, match="format_version 4, no site section"):
        BundleManifest.from_dict(plain)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(bias=[0.0, 0.1]), "site bias does not fit the labels"),
        (lambda s: s.update(heads={"nobody": next(iter(s["heads"].values()))}), "not an ensemble member"),
        (lambda s: next(iter(s["heads"].values()))["weights"].pop(), "does not fit the model"),
        (lambda s: s.update(method="magic"), "unknown site calibration method"),
        (
            lambda s: s.update(
                operating_point={"normal_label": "healthy", "target_sensitivity": 0.9, "normal_shift": 1}
            ),
            "operating point names an unknown label",
        ),
    ],
)
def test_inconsistent_site_sections_are_refused(change, message):
    data = _data_with_site()
    change(data["site"])
    with pytest.raises(BundleError, match=message):
        BundleManifest.from_dict(data)
