"""Golden vectors of the default bundle: this runtime still computes exactly what is stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxr_edge.bundle.folder import Bundle
from cxr_edge.evaluation.golden import check, decode, encode

GOLDEN = Path(__file__).parents[1] / "golden"


def test_runtime_reproduces_the_golden_vectors():
    assert check(Bundle.load(), GOLDEN) == []


def test_encoding_round_trips_dtypes_and_shapes():
    for a in (
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
    ):
        b = decode(encode(a))
        assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)


@pytest.mark.train
def test_golden_vectors_of_a_segmenter_bundle_hold_lung_fraction_and_referral(
    tiny_segmenter_bundle, tmp_path
):
    import json

    from cxr_edge.dataset.samples import load_samples
    from cxr_edge.evaluation.golden import write

    bundle = Bundle.load(tiny_segmenter_bundle)
    images = [s.file for s in load_samples()[:4]]
    written = write(bundle, images, tmp_path)
    vectors = [json.loads(p.read_text()) for p in written]
    assert all("lung_fraction" in v and "referral" in v and "flags" in v for v in vectors)
    assert any(v["lung_fraction"] is not None for v in vectors)
    assert json.loads((tmp_path / "index.json").read_text())["tolerances"]["lung_fraction"] == 1e-6
    assert check(bundle, tmp_path) == []
    broken = json.loads(written[0].read_text())
    broken["lung_fraction"] = (broken["lung_fraction"] or 0.0) + 0.01
    broken["referral"] = "made up"
    written[0].write_text(json.dumps(broken))
    assert {p.split(": ", 1)[1] for p in check(bundle, tmp_path)} >= {
        "lung fraction differs",
        "referral differs",
    }
