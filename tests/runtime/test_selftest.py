"""The bundle self-test (cxr_edge.runtime.selftest): golden stages re-run on this machine's kernels."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.bundle.folder import Bundle
from cxr_edge.bundle.presets import PRESETS
from cxr_edge.cli import main
from cxr_edge.errors import BundleError
from cxr_edge.runtime import selftest
from cxr_edge.serve.config import TriageConfig
from cxr_edge.serve.triage import Triage


@pytest.fixture()
def bundle_copy(tmp_path):
    root = tmp_path / "paper"
    shutil.copytree(PRESETS["paper"].path, root)
    return root


def test_every_shipped_bundle_passes_its_self_test():
    for preset in PRESETS.values():
        bundle = Bundle.load(preset.name)
        assert bundle.manifest.selftest is not None, preset.name
        results = selftest.run(bundle)
        stages = {r.stage for r in results}
        assert {"decode", "preprocess", "output"} <= stages and all(r.passed for r in results)
        if bundle.manifest.segmenter is not None:
            assert {"segment input", "segment", "crop"} <= stages


def test_a_kernel_that_differs_is_named_by_its_stage(bundle_copy, monkeypatch):
    real = selftest.preprocess_u8

    def shifted(image, spec, crop_box=None, augment=None):
        u8 = real(image, spec, crop_box)
        return np.clip(u8.astype(np.int16) + 2, 0, 255).astype(np.uint8)  # "another resize"

    monkeypatch.setattr(selftest, "preprocess_u8", shifted)
    failed = {r.stage for r in selftest.run(Bundle.load(bundle_copy)) if not r.passed}
    assert failed == {"segment input", "preprocess"}  # the models ran on the stored inputs: they pass
    result = CliRunner().invoke(main, ["bundle", "selftest", "--bundle", str(bundle_copy)])
    assert result.exit_code == 1 and "DIFFERS" in result.output and "preprocess" in result.output
    with pytest.raises(BundleError, match="self-test failed at stage 'segment input'"):
        selftest.check(Bundle.load(bundle_copy))
    # The node refuses to start on such a machine.
    with pytest.raises(BundleError, match="self-test failed"):
        Triage(TriageConfig(bundle=str(bundle_copy)))
    assert Triage(TriageConfig(bundle=str(bundle_copy), selftest=False)).predictor is not None


def test_a_member_output_that_differs_is_named(bundle_copy, monkeypatch):
    real = selftest._member_probs

    def off(bundle, x):
        out = real(bundle, x)
        name = sorted(out)[0]
        out[name] = out[name] + np.array([0.05, -0.05, 0.0], dtype=np.float32)
        return out

    monkeypatch.setattr(selftest, "_member_probs", off)
    failed = [r for r in selftest.run(Bundle.load(bundle_copy)) if not r.passed]
    first = sorted(e.name for e in Bundle.load(bundle_copy).manifest.models)[0]
    assert {r.stage for r in failed} == {f"member {first}"}
    assert all(abs(r.difference - 0.05) < 1e-6 for r in failed)


def test_the_self_test_file_is_pinned_by_the_manifest(bundle_copy):
    path = bundle_copy / selftest.SELFTEST_NAME
    data = json.loads(path.read_text())
    data["cases"][0]["output"] = [1.0, 0.0, 0.0]  # a forged expectation
    path.write_text(json.dumps(data) + "\n")
    with pytest.raises(BundleError, match=r"checksum mismatch for selftest\.json"):
        Bundle.load(bundle_copy)


def test_a_bundle_without_a_self_test_says_so(bundle_copy):
    data = json.loads((bundle_copy / "manifest.json").read_text())
    data.pop("selftest")
    (bundle_copy / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    bundle = Bundle.load(bundle_copy)
    assert selftest.check(bundle) == 0
    with pytest.raises(BundleError, match="no self-test"):
        selftest.run(bundle)
