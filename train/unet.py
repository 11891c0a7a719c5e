"""Dropout U-Net for lung segmentation (the paper's segmenter), with widths for edge use.

Gaussian dropout (rate 0.2) follows every convolution of the encoder, as in the paper; it is the
identity at inference, so the converted model is a plain U-Net. The base width is configurable:
64 as in the paper (about 55 GMACs at 256x256), 32 or 16 for devices.
"""

from __future__ import annotations

import keras
from keras import layers, ops


def build_unet(
    input_shape: tuple[int, int, int] = (256, 256, 1),
    *,
    width: int = 16,
    depth: int = 4,
    dropout: float = 0.2,
    name: str | None = None,
) -> keras.Model:
    """Builds a U-Net with ``depth`` down-sampling steps and a sigmoid lung-probability output ``mask``.

    Args:
        input_shape: ``(H, W, C)``; H and W must be divisible by ``2**depth``.
        width: Filters of the first level (doubling per level).
        depth: Number of 2x2 max-pooling steps.
        dropout: Gaussian dropout rate after every encoder convolution.
        name: Model name (default ``unet<width>``).
    """

    def conv(x, filters, label, drop):
        for i in (1, 2):
            x = layers.Conv2D(
                filters,
                3,
                padding="same",
                activation="relu",
                kernel_initializer="he_normal",
                name=f"{label}_conv{i}",
            )(x)
            if drop:
                x = layers.GaussianDropout(dropout, name=f"{label}_drop{i}")(x)
        return x

    inputs = keras.Input(shape=input_shape, name="image")
    skips, x = [], inputs
    for level in range(depth):
        x = conv(x, width * 2**level, f"enc{level + 1}", drop=True)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"enc{level + 1}_pool")(x)
    x = conv(x, width * 2**depth, "bottleneck", drop=True)
    for level in reversed(range(depth)):
        x = layers.Conv2DTranspose(width * 2**level, 2, strides=2, name=f"dec{level + 1}_up")(x)
        x = layers.Concatenate(name=f"dec{level + 1}_concat")([x, skips[level]])
        x = conv(x, width * 2**level, f"dec{level + 1}", drop=False)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="mask")(x)
    return keras.Model(inputs, outputs, name=name or f"unet{width}")


@keras.saving.register_keras_serializable(package="cxr_edge")
def masked_bce_dice(y_true, y_pred):
    """Binary cross-entropy plus soft Dice over the *valid* pixels only.

    ``y_true`` has two channels: the lung target (0/1) and a validity weight (0 where the kit's
    masks say "ignore", i.e. value 127: devices lying over the lung).
    """
    target, valid = y_true[..., :1], y_true[..., 1:2]
    p = ops.clip(y_pred, 1e-6, 1.0 - 1e-6)
    bce = -(target * ops.log(p) + (1.0 - target) * ops.log(1.0 - p))
    bce = ops.sum(bce * valid, axis=(1, 2, 3)) / (ops.sum(valid, axis=(1, 2, 3)) + 1.0)
    inter = ops.sum(p * target * valid, axis=(1, 2, 3))
    denom = ops.sum((p + target) * valid, axis=(1, 2, 3))
    dice = 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)
    return bce + dice
