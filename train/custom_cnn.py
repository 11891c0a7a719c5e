"""The paper's custom CNN: strided 5x5 separable convolutions, doubling filters, GAP, dropout, softmax."""

from __future__ import annotations

import keras
from keras import layers


def custom_head(x, n_classes: int, *, dropout: float = 0.5):
    """The custom CNN's classifier: global average pooling -> dropout -> dense softmax."""
    x = layers.GlobalAveragePooling2D(name="head_gap")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(n_classes, activation="softmax", dtype="float32", name="probs")(x)


def build_custom_cnn(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    depth: int = 5,
    base_filters: int = 32,
    kernel_size: int = 5,
    dropout: float = 0.5,
    activation: str = "relu",
    name: str = "custom_cnn",
) -> keras.Model:
    """Builds the custom CNN of Rajaraman et al. (2020).

    Each block is a stride-2 ``kernel_size`` separable convolution (``base_filters`` doubling per
    block) followed by batch normalisation and the activation; then global average pooling, dropout
    and a dense softmax. The last block's output (``features``) is the map Grad-CAM uses later.
    Weight decay is attached afterwards by :func:`cxr_edge.train.zoo.apply_weight_decay`, as for every model.

    Args:
        input_shape: ``(H, W, C)``.
        n_classes: Number of output classes.
        depth: Number of convolution blocks.
        base_filters: Filters of the first block.
        kernel_size: Convolution kernel size.
        dropout: Dropout rate before the classifier.
        activation: Activation after each block.
        name: Model name.

    Returns:
        An uncompiled functional Keras model with a softmax output named ``probs``.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i in range(depth):
        x = layers.SeparableConv2D(
            base_filters * 2**i,
            kernel_size,
            strides=2,
            padding="same",
            use_bias=False,
            name=f"block{i + 1}_sepconv",
        )(x)
        # momentum 0.9: with ~50 steps per epoch on the kit, Keras' default 0.99 leaves the
        # inference statistics lagging and validation loss swinging from epoch to epoch.
        x = layers.BatchNormalization(momentum=0.9, name=f"block{i + 1}_bn")(x)
        x = layers.Activation(activation, name="features" if i == depth - 1 else f"block{i + 1}_act")(x)
    return keras.Model(inputs, custom_head(x, n_classes, dropout=dropout), name=name)
