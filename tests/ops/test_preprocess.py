"""The one preprocessing implementation: spec round trip, each step's effect, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cxr_edge.errors import InputError, SpecError
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.preprocess import PreprocessSpec, crop, preprocess, quantize

RNG = np.random.default_rng(0)


def image(h=120, w=100) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (0.2 + 0.6 * (xx / w) * (yy / h) + RNG.normal(0, 0.01, (h, w))).clip(0, 1).astype(np.float32)


def test_spec_json_round_trip():
    spec = PreprocessSpec(
        input_size=(64, 48), channels=3, border=0.05, clahe=False, median=5, normalize="unit"
    )
    data = json.loads(spec.to_json())
    assert data["input_size"] == [64, 48]
    assert PreprocessSpec.from_dict(data) == spec


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"input_size": [4, 4]}, "input_size"),
        ({"channels": 2}, "channels"),
        ({"median": 4}, "median"),
        ({"border": 0.5}, "border"),
        ({"normalize": "imagenet"}, "normalize"),
        ({"colour": True}, "unknown keys"),
        ({"clahe": "yes"}, "clahe"),
        ({"version": 2}, "version"),
    ],
)
def test_spec_rejects_bad_values(change, match):
    data = PreprocessSpec().to_dict() | change
    with pytest.raises(SpecError, match=match):
        PreprocessSpec.from_dict(data)


def test_output_shape_dtype_and_standardisation():
    spec = PreprocessSpec(input_size=(32, 40), channels=3)
    x = preprocess(image(), spec)
    assert x.shape == (32, 40, 3) and x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_unit_normalisation_without_enhancement_is_the_resized_image():
    spec = PreprocessSpec(input_size=(60, 50), clahe=False, median=0, normalize="unit")
    img = image()
    x = preprocess(img, spec)[..., 0]
    # Halving the size with area averaging = mean of 2x2 blocks, then 8-bit quantisation.
    blocks = img.reshape(60, 2, 50, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(x, quantize(blocks) / 255.0, atol=1 / 255 + 1e-6)


def test_quantize_rounds_half_up():
    np.testing.assert_array_equal(
        quantize(np.array([0.0, 0.5 / 255, 1.5 / 255, 1.0, 1.2, -0.1])), [0, 1, 2, 255, 255, 0]
    )


def test_clahe_and_median_change_the_pixels_deterministically():
    img = image()
    plain = preprocess(img, PreprocessSpec(input_size=(64, 64), clahe=False, median=0))
    enhanced = preprocess(img, PreprocessSpec(input_size=(64, 64), clahe=True, median=3))
    assert not np.allclose(plain, enhanced)
    np.testing.assert_array_equal(enhanced, preprocess(img, PreprocessSpec(input_size=(64, 64), median=3)))


def test_border_and_crop_box():
    img = np.zeros((100, 200), np.float32)
    assert crop(img, PreprocessSpec(border=0.1)).shape == (80, 160)
    assert crop(img, PreprocessSpec(border=0.1), crop_box=(10, 20, 110, 70)).shape == (50, 100)
    with pytest.raises(InputError, match="crop box"):
        crop(img, PreprocessSpec(), crop_box=(0, 0, 300, 50))
    with pytest.raises(InputError, match="2-D"):
        crop(np.zeros((4, 4, 3), np.float32), PreprocessSpec())


def test_border_removes_burned_in_corner_text():
    img = np.full((200, 200), 0.3, np.float32)
    img[:10, :40] = 1.0  # a marker in the corner
    spec = PreprocessSpec(input_size=(32, 32), clahe=False, median=0, normalize="unit")
    assert preprocess(img, spec).max() > 0.9
    assert (
        preprocess(
            img, PreprocessSpec(input_size=(32, 32), clahe=False, median=0, normalize="unit", border=0.08)
        ).max()
        < 0.31
    )


def test_constant_image_does_not_divide_by_zero():
    x = preprocess(np.full((50, 50), 0.4, np.float32), PreprocessSpec(input_size=(16, 16)))
    assert np.isfinite(x).all() and np.allclose(x, 0)


def test_augment_hook_runs_before_quantisation():
    seen = []

    def augment(resized):
        seen.append(resized.shape)
        return resized * 0 + 0.25

    x = preprocess(
        image(), PreprocessSpec(input_size=(16, 16), clahe=False, median=0, normalize="unit"), augment=augment
    )
    assert seen == [(16, 16)]
    np.testing.assert_allclose(x, quantize(np.array(0.25)) / 255.0)


def test_real_image_upscaled_and_downscaled(kit_png):
    img, _ = read_image(kit_png)
    for size in ((16, 16), (1024, 1024)):
        assert preprocess(img, PreprocessSpec(input_size=size)).shape == (*size, 1)
