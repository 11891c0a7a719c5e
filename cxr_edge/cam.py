"""Heat maps on the device: exact Grad-CAM from the exported feature map, without gradients.

Why this is exact. The toolkit's classifiers end in ``features`` (the last convolutional map
``A`` of shape ``(h, w, K)``, after its ReLU) -> global average pooling -> dropout (identity at
inference) -> dense layer -> softmax. The pre-softmax score of class ``c`` is therefore

    y_c = sum_k w_kc * (1/Z) * sum_ij A_ij^k + b_c,        Z = h * w.

Grad-CAM (Selvaraju et al. 2017) weighs each feature map by the spatial mean of the score's gradient:

    alpha_k^c = (1/Z) sum_ij dy_c / dA_ij^k = (1/Z) sum_ij w_kc / Z = w_kc / Z,

so Grad-CAM_c = ReLU(sum_k alpha_k^c A^k) = ReLU(sum_k w_kc A^k) / Z, which is the class activation
map (Zhou et al. 2016) up to the positive factor 1/Z -- identical after normalisation to [0, 1]. The
device needs only the feature map (a second model output) and the dense weights ``w`` (stored in the
bundle), not a gradient. A test checks this against Keras GradientTape Grad-CAM.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxr_edge.preprocess import CropBox


def class_activation_map(features: np.ndarray, weights: np.ndarray, class_index: int) -> np.ndarray:
    """Normalised CAM (= Grad-CAM) of one class.

    Args:
        features: ``(h, w, K)`` feature map.
        weights: ``(K, n_classes)`` dense weights after global average pooling.
        class_index: The class to explain.

    Returns:
        ``(h, w)`` float32 in [0, 1] (all zeros when nothing is positive).
    """
    cam = np.maximum(np.tensordot(features, np.asarray(weights)[:, class_index], axes=([-1], [0])), 0.0)
    peak = float(cam.max())
    return (cam / peak if peak > 0 else cam).astype(np.float32)


def average_maps(maps: list[np.ndarray]) -> np.ndarray:
    """Mean of members' maps, each resized to the finest member resolution first (backbones differ)."""
    h = max(m.shape[0] for m in maps)
    w = max(m.shape[1] for m in maps)
    same = [m if m.shape == (h, w) else cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps]
    return np.mean(same, axis=0).astype(np.float32)


def place(cam: np.ndarray, image_shape: tuple[int, int], region: CropBox) -> np.ndarray:
    """The heat map in source-image pixels: resized onto the crop region, zero elsewhere."""
    x0, y0, x1, y1 = region
    canvas = np.zeros(image_shape, dtype=np.float32)
    canvas[y0:y1, x0:x1] = cv2.resize(cam, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return canvas


def overlay(image: np.ndarray, heat: np.ndarray, label: str = "", alpha: float = 0.4) -> np.ndarray:
    """An 8-bit BGR picture: the radiograph with the heat map in the JET colour map on top."""
    base = cv2.cvtColor(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    colour = cv2.applyColorMap(np.clip(heat * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * heat)[..., None]
    out = (base * (1 - weight) + colour * weight).astype(np.uint8)
    if label:
        cv2.putText(out, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    return out
