"""Mild, CXR-appropriate training augmentation, applied through the preprocessing hook.

What and why:

* small rotation (+-7 deg), scale (0.9-1.1) and shift (+-6%): patient positioning varies;
* gamma (0.7-1.4) and contrast/brightness jitter (+-10%): exposure and detector response differ
  between hospitals, one of the cues that lets a model recognise the source instead of the disease;
* occasional blur and resolution loss, and mild noise: the kit mixes 1024 px NIH PNGs with small,
  re-compressed journal figures, so sharpness itself predicts the label unless it is varied.

No horizontal flips: the heart lies on the patient's left, and a flipped film is an anatomically
different (situs inversus) image; the paper does not flip either.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxr_edge.preprocess import Augment


def make_augment(rng: np.random.Generator) -> Augment:
    """Returns a function that augments one resized float image in [0, 1] using ``rng``."""

    def augment(image: np.ndarray) -> np.ndarray:
        h, w = image.shape
        angle = rng.uniform(-7.0, 7.0)
        scale = rng.uniform(0.9, 1.1)
        matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
        matrix[:, 2] += rng.uniform(-0.06, 0.06, size=2) * (w, h)
        out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = np.clip(out, 0.0, 1.0) ** rng.uniform(0.7, 1.4)
        out = (out - 0.5) * rng.uniform(0.9, 1.1) + 0.5 + rng.uniform(-0.1, 0.1)
        if rng.random() < 0.3:
            factor = rng.uniform(0.4, 0.9)
            small = cv2.resize(
                out, (max(8, int(w * factor)), max(8, int(h * factor))), interpolation=cv2.INTER_AREA
            )
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.3:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.2))
        if rng.random() < 0.3:
            out = out + rng.normal(0.0, rng.uniform(0.005, 0.02), size=out.shape)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    return augment
