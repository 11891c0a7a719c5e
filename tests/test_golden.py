"""Golden vectors of the default bundle: this runtime still computes exactly what is stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr_edge.bundle import Bundle
from cxr_edge.golden import check, decode, encode

GOLDEN = Path(__file__).parent / "golden"


def test_runtime_reproduces_the_golden_vectors():
    assert check(Bundle.load(), GOLDEN) == []


def test_encoding_round_trips_dtypes_and_shapes():
    for a in (
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
    ):
        b = decode(encode(a))
        assert b.dtype == a.dtype and b.shape == a.shape and np.array_equal(a, b)
