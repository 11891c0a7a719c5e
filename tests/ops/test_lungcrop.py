"""Mask -> box: two lungs, hole filling, quality gate and fallback, scaling to source pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxr_edge.errors import SpecError
from cxr_edge.ops.lungcrop import CropSpec, clean_mask, fallback_box, lung_crop, overlay


def lungs(size=256, holes=False, speckle=0) -> np.ndarray:
    prob = np.zeros((size, size), np.float32)
    cv2.ellipse(prob, (80, 130), (40, 80), 0, 0, 360, 0.9, -1)
    cv2.ellipse(prob, (176, 130), (40, 80), 0, 0, 360, 0.9, -1)
    if holes:
        cv2.circle(prob, (80, 130), 10, 0.1, -1)
    for i in range(speckle):  # separate 30x30 blobs (1.4% of the image each) above the lungs
        prob[5:35, 5 + 50 * i : 35 + 50 * i] = 0.95
    return prob


def test_two_lungs_give_a_box_in_source_pixels():
    result = lung_crop(lungs(), (512, 1024), CropSpec(margin=0.0))
    assert result.status == "lung" and result.reason == ""
    x0, y0, x1, y1 = result.box
    # Ellipses span x 40..216, y 50..210 at 256 px; the source is 4x wider and 2x taller.
    assert abs(x0 - 160) <= 4 and abs(x1 - 868) <= 4 and abs(y0 - 100) <= 2 and abs(y1 - 422) <= 2


def test_margin_widens_the_box_within_the_image():
    tight = lung_crop(lungs(), (256, 256), CropSpec(margin=0.0)).box
    wide = lung_crop(lungs(), (256, 256), CropSpec(margin=0.1)).box
    assert wide[0] < tight[0] and wide[2] > tight[2] and wide[1] < tight[1] and wide[3] > tight[3]
    assert wide[0] >= 0 and wide[2] <= 256


def test_holes_are_filled_and_only_two_components_kept():
    mask, significant = clean_mask(lungs(holes=True), 0.5)
    assert mask[130, 80] == 255  # the hole is filled
    small = lungs()
    cv2.circle(small, (10, 10), 4, 0.9, -1)  # a third, tiny blob
    mask, _ = clean_mask(small, 0.5)
    assert mask[10, 10] == 0 and significant == 2


@pytest.mark.parametrize(
    ("prob", "reason"),
    [
        (np.zeros((256, 256), np.float32), "no lung found"),
        (np.pad(np.full((20, 20), 0.9, np.float32), 118), "lung area"),
        (np.full((256, 256), 0.9, np.float32), "lung area"),
    ],
)
def test_implausible_masks_fall_back(prob, reason):
    result = lung_crop(prob, (400, 300), CropSpec(fallback_border=0.1))
    assert result.status == "fallback" and reason in result.reason
    assert result.box == fallback_box(400, 300, 0.1) == (30, 40, 270, 360)


def test_fragmented_and_flat_masks_fall_back():
    assert "fragmented" in lung_crop(lungs(speckle=5), (256, 256), CropSpec()).reason
    flat = np.zeros((256, 256), np.float32)
    flat[100:140, 10:246] = 0.9  # a 6:1 band is not a pair of lungs
    assert "width/height" in lung_crop(flat, (256, 256), CropSpec()).reason


def test_crop_spec_validation_and_round_trip():
    spec = CropSpec(threshold=0.4, margin=0.02)
    assert CropSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SpecError):
        CropSpec(min_area=0.9, max_area=0.5)
    with pytest.raises(SpecError):
        CropSpec.from_dict({"threshold": 0.5, "colour": 1})


def test_overlay_draws_on_a_copy():
    image = np.full((300, 200), 0.5, np.float32)
    result = lung_crop(lungs(), image.shape, CropSpec())
    picture = overlay(image, result)
    assert picture.shape == (300, 200, 3) and picture.dtype == np.uint8
    assert (picture != 128).any() and image.max() == 0.5
