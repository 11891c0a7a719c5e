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

**Where the model looked** (:func:`lung_fraction`): with a segmenter in the bundle, the share of the
heat map's mass that lies inside the predicted lung mask. Everything is computed in the classifier's
crop frame at the classifier's input resolution ``(H, W)`` (e.g. 256 x 256):

1. the (averaged, normalised) CAM is resized to ``(H, W)`` bilinearly (OpenCV ``INTER_LINEAR``, the
   same resize that places the heat map on the image);
2. the lung mask is the segmenter's probability map thresholded at :data:`LUNG_THRESHOLD` and cleaned
   like the crop's mask (two largest components, holes filled; :func:`cxr_edge.ops.lungcrop.clean_mask`);
3. frame pixel ``(r, c)`` has its centre at source pixel ``x = ((c + 0.5) * (x1 - x0)) / W + x0``,
   ``y = ((r + 0.5) * (y1 - y0)) / H + y0`` (``(x0, y0, x1, y1)``: the region the classifiers saw);
   it is inside the lungs when the mask pixel ``(floor(((y - sy0) * hs) / (sy1 - sy0)),
   floor(((x - sx0) * ws) / (sx1 - sx0)))`` is set (``(sx0, sy0, sx1, sy1)``: the region the
   segmenter saw, ``(hs, ws)``: its resolution). Nearest-neighbour lookup of a binary mask in float64
   with this operation order gives the same pixels in every runtime; centres outside the segmenter's
   region count as outside the lungs;
4. ``lung_fraction = sum(heat * inside) / sum(heat)`` (float64); None when the heat map is all zero.

A lung fraction is only reported when the crop passed its quality gate (a fallback crop means the
mask is not trusted). It costs well under a millisecond at 256 x 256.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from cxr_edge.ops.preprocess import CropBox

#: Lung probability at and above which a segmenter pixel belongs to the lung mask.
LUNG_THRESHOLD = 0.5
#: The flag of a prediction whose lung fraction is below the bundle's ``lung_evidence.min_fraction``.
FLAG_OUTSIDE_LUNGS = "evidence outside the lungs"
#: Percentile of the lung fraction of correctly classified validation images chosen as ``min_fraction``.
MIN_FRACTION_PERCENTILE = 5.0


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


def overlay(
    image: np.ndarray,
    heat: np.ndarray,
    label: str | list[str] = "",
    alpha: float = 0.4,
    lungs: np.ndarray | None = None,
    scale: bool = False,
) -> np.ndarray:
    """An 8-bit BGR picture: the radiograph with the heat map in the JET colour map on top.

    Args:
        image: The radiograph (2-D, [0, 1]).
        heat: The heat map in the same pixels ([0, 1], e.g. :meth:`Prediction.heatmap`).
        label: Text lines drawn top left on a dark box (what was predicted, or the referral).
        alpha: Opacity of the heat map where it is 1.
        lungs: A lung mask in the same pixels (non-zero = lung): its outline is drawn in white.
        scale: Draw the colour scale (low to high share of the evidence) at the right edge (the
            browser and Android ports draw the plain overlay; their parity tests compare it).
    """
    base = cv2.cvtColor(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    colour = cv2.applyColorMap(np.clip(heat * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * heat)[..., None]
    out = (base * (1 - weight) + colour * weight).astype(np.uint8)
    h, w = out.shape[:2]
    size = max(0.4, min(h, w) / 900)  # text and lines grow with the picture
    thick = max(1, round(size * 2))
    if lungs is not None and lungs.any():
        contours, _ = cv2.findContours(
            (lungs > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, (255, 255, 255), thick, cv2.LINE_AA)
    if scale and h >= 64 and w >= 64:
        bar_w, bar_h = max(8, w // 50), h // 3
        x0, y0 = w - bar_w - 6, (h - bar_h) // 2
        ramp = np.linspace(255, 0, bar_h).astype(np.uint8)[:, None].repeat(bar_w, axis=1)
        out[y0 : y0 + bar_h, x0 : x0 + bar_w] = cv2.applyColorMap(ramp, cv2.COLORMAP_JET)
        for text, y in (("high", y0 - 4), ("low", y0 + bar_h + int(14 * size) + 2)):
            cv2.putText(out, text, (x0 - int(20 * size), y), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * size,
                        (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    lines = [label] if isinstance(label, str) else list(label)
    lines = [line for line in lines if line]
    line_h = int(28 * size) + 4
    if lines:
        width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * size, thick)[0][0] for t in lines)
        cv2.rectangle(out, (0, 0), (width + 16, line_h * len(lines) + 8), (0, 0, 0), -1)
    for i, text in enumerate(lines):
        cv2.putText(out, text, (8, line_h * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * size,
                    (255, 255, 255), thick, cv2.LINE_AA)  # fmt: skip
    return out


def lung_fraction(
    cam: np.ndarray,
    region: CropBox,
    mask: np.ndarray,
    mask_region: CropBox,
    frame: tuple[int, int],
) -> float | None:
    """Share of the heat map's mass inside the lung mask, in the classifier's crop frame.

    See the module docstring for the mapping.

    Args:
        cam: ``(h, w)`` normalised class activation map (non-negative) over ``region``.
        region: ``(x0, y0, x1, y1)``: the source pixels the classifiers saw.
        mask: ``(hs, ws)`` lung mask (non-zero = lung) over ``mask_region``.
        mask_region: The source pixels the segmenter saw.
        frame: ``(H, W)``: the resolution of the computation (the classifier's input size).

    Returns:
        A fraction in [0, 1], or None when the heat map is all zero.
    """
    h, w = frame
    heat = cv2.resize(np.asarray(cam, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = heat.astype(np.float64)
    total = float(heat.sum())
    if not total > 0:
        return None
    x0, y0, x1, y1 = region
    sx0, sy0, sx1, sy1 = mask_region
    hs, ws = mask.shape
    xs = ((np.arange(w, dtype=np.float64) + 0.5) * (x1 - x0)) / w + x0
    ys = ((np.arange(h, dtype=np.float64) + 0.5) * (y1 - y0)) / h + y0
    cols = np.floor(((xs - sx0) * ws) / (sx1 - sx0)).astype(np.int64)
    rows = np.floor(((ys - sy0) * hs) / (sy1 - sy0)).astype(np.int64)
    # Two 1-D takes (rows, then columns) are several times faster than a 2-D fancy index.
    lung = np.asarray(mask).take(np.clip(rows, 0, hs - 1), axis=0).take(np.clip(cols, 0, ws - 1), axis=1) > 0
    row_ok, col_ok = (rows >= 0) & (rows < hs), (cols >= 0) & (cols < ws)
    if not (row_ok.all() and col_ok.all()):
        lung &= row_ok[:, None] & col_ok[None, :]
    return float(min(1.0, (heat * lung).sum() / total))


def choose_min_fraction(
    fractions: Sequence[float | None], correct: Sequence[bool]
) -> tuple[float, int] | None:
    """The lung-evidence threshold: the 5th percentile of the lung fraction over correct predictions.

    The rule (``convert`` applies it on the **validation** split): among the correctly classified
    images that have a lung fraction, take the :data:`MIN_FRACTION_PERCENTILE`-th percentile (numpy's
    linear interpolation). About one correct validation prediction in twenty is then flagged, and a
    prediction whose heat map lies further outside the lungs than that is unusual for a right answer.

    Returns:
        ``(min_fraction, images used)``, or None when no correct prediction has a lung fraction.
    """
    values = [f for f, ok in zip(fractions, correct, strict=True) if ok and f is not None]
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), MIN_FRACTION_PERCENTILE)), len(values)
