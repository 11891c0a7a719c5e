"""The paper's custom CNN: strided 5x5 separable convolutions, doubling filters, GAP, dropout, softmax."""

from __future__ import annotations

import keras
from keras import layers


def build_custom_cnn(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    depth: int = 5,
    base_filters: int = 32,
    kernel_size: int = 5,
    dropout: float = 0.5,
    activation: str = "relu",
    weight_decay: float = 0.0,
    name: str = "custom_cnn",
) -> keras.Model:
    """Builds the custom CNN of Rajaraman et al. (2020).

    Each block is a stride-2 ``kernel_size`` separable convolution (``base_filters`` doubling per
    block) followed by batch normalisation and the activation; then global average pooling, dropout
    and a dense softmax. The last block's output (``features``) is the map Grad-CAM uses later.

    Args:
        input_shape: ``(H, W, C)``.
        n_classes: Number of output classes.
        depth: Number of convolution blocks.
        base_filters: Filters of the first block.
        kernel_size: Convolution kernel size.
        dropout: Dropout rate before the classifier.
        activation: Activation after each block.
        weight_decay: L2 penalty on kernels.
        name: Model name.

    Returns:
        An uncompiled functional Keras model with a softmax output named ``probs``.
    """
    reg = keras.regularizers.L2(weight_decay) if weight_decay > 0 else None
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i in range(depth):
        x = layers.SeparableConv2D(
            base_filters * 2**i,
            kernel_size,
            strides=2,
            padding="same",
            use_bias=False,
            depthwise_regularizer=reg,
            pointwise_regularizer=reg,
            name=f"block{i + 1}_sepconv",
        )(x)
        # momentum 0.9: with ~50 steps per epoch on the kit, Keras' default 0.99 leaves the
        # inference statistics lagging and validation loss swinging from epoch to epoch.
        x = layers.BatchNormalization(momentum=0.9, name=f"block{i + 1}_bn")(x)
        x = layers.Activation(activation, name="features" if i == depth - 1 else f"block{i + 1}_act")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", kernel_regularizer=reg, name="probs")(x)
    return keras.Model(inputs, outputs, name=name)
