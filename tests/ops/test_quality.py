"""Input checks before classification and the referral band (cxr_edge.ops.quality)."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest
from conftest import KIT

from cxr_edge.dataset.samples import load_samples
from cxr_edge.errors import SpecError
from cxr_edge.imaging.reader import ImageInfo, read_image
from cxr_edge.ops.quality import (
    QualityConfig,
    ReferralBand,
    check,
    check_header,
    check_pixels,
    referral_reason,
)

CONFIG = QualityConfig()


def info(**kw) -> ImageInfo:
    base = dict(
        source_file="x.dcm", format="dicom", width=512, height=512, bits_stored=12, photometric="MONOCHROME2"
    )
    base.update(kw)
    return ImageInfo(**base)


def lateral_phantom(size: int = 512) -> np.ndarray:
    """A lateral-like picture: one lung field in the middle, the bright spine at one side."""
    img = np.full((size, size), 0.45, np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    img[((xx - 0.45 * size) / (0.25 * size)) ** 2 + ((yy - 0.45 * size) / (0.35 * size)) ** 2 < 1] = 0.15
    img[:, int(0.72 * size) : int(0.82 * size)] = 0.8
    img[:, : int(0.08 * size)] = img[:, int(0.92 * size) :] = 0.0
    return img


@pytest.mark.parametrize(
    ("kw", "failed"),
    [
        ({"modality": "DX", "view_position": "LL"}, "view"),
        ({"modality": "CR", "view_position": "RL"}, "view"),
        ({"modality": "DX", "view_position": "LATERAL"}, "view"),
        ({"modality": "OT"}, "modality"),
        ({"modality": None}, "modality"),
        ({"modality": "DX", "body_part": "ABDOMEN"}, "body_part"),
        ({"modality": "DX", "converted_from": "RGB"}, "colour"),
        ({"modality": "DX", "view_position": "PA", "body_part": "CHEST"}, None),
        ({"modality": "CR", "view_position": "ap", "body_part": "thorax"}, None),
        ({"modality": "DX"}, None),  # no view, no body part: the pixel checks decide
        ({"format": "png", "modality": None}, None),  # PNG/JPEG have no header facts
    ],
)
def test_header_checks(kw, failed):
    rejection = check_header(info(**kw), CONFIG)
    assert (rejection.check if rejection else None) == failed
    if rejection:
        assert rejection.reason


def test_pixel_checks_refuse_small_blank_and_lateral_like_images():
    rng = np.random.default_rng(0)
    assert check_pixels(rng.random((100, 300), dtype=np.float32), CONFIG).check == "resolution"
    blank = np.full((512, 512), 0.5, np.float32) + rng.normal(0, 0.003, (512, 512)).astype(np.float32)
    assert check_pixels(blank, CONFIG).check == "blank"
    rejection = check_pixels(lateral_phantom(), CONFIG)
    assert rejection.check == "frontal_pattern" and "lateral" in rejection.reason
    off = QualityConfig(min_frontal_score=float("-inf"), min_side=64)
    assert check_pixels(lateral_phantom(), off) is None


def test_shipped_samples_pass_and_inverted_ones_are_caught():
    caught = 0
    samples = load_samples()
    for sample in samples:
        image, image_info = read_image(sample.file)
        assert check(image, image_info, CONFIG) is None, sample.file.name
        inverted = check_pixels(1.0 - image, CONFIG)
        caught += inverted is not None and inverted.check == "frontal_pattern"
    assert caught >= len(samples) // 2  # measured on the whole kit: about 70 %


def test_false_rejection_rate_on_the_kit_stays_low(kit_manifest):
    """Every kit image is frontal: refusals are false rejections.

    Measured on the whole extended kit with the defaults (`python -m cxr_edge.benchmarks.quality`): about 1 %
    (the first release: 9 of 1044). Here a seeded sample of 50 images per source keeps the test fast
    and still covers every source, including Kermany's 224-px re-saves, which a 256-px minimum refused.
    """
    with open(kit_manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    rng = random.Random(0)
    sample = [r for recs in by_source.values() for r in rng.sample(recs, min(50, len(recs)))]
    refused = [r["path"] for r in sample if check_pixels(read_image(KIT / r["path"])[0], CONFIG) is not None]
    assert len(refused) / len(sample) <= 0.03, refused


def test_abstention_band():
    probs = {"covid": 0.55, "normal": 0.30, "pneumonia_unknown": 0.15}
    assert "below 0.60" in referral_reason(probs, ReferralBand(min_top_prob=0.6))
    assert referral_reason(probs, ReferralBand(min_top_prob=0.5)) is None
    assert "margin" in referral_reason(probs, ReferralBand(min_top_prob=0.5, min_margin=0.3))
    assert referral_reason(probs, ReferralBand(min_top_prob=0.0)) is None


def test_config_validation_and_normalisation():
    assert QualityConfig(frontal_views=("pa", " ap ")).frontal_views == ("PA", "AP")
    with pytest.raises(SpecError, match="min_side"):
        QualityConfig(min_side=0)
    with pytest.raises(SpecError, match="referral"):
        ReferralBand(min_top_prob=1.5)
