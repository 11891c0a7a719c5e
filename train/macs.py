"""Multiply-accumulate counts of Keras models (convolutions and dense layers), for reports and pruning."""

from __future__ import annotations

import keras
import numpy as np


def count_macs(model: keras.Model) -> int:
    """MACs of one forward pass (batch 1): Conv2D, SeparableConv2D, DepthwiseConv2D, Conv2DTranspose, Dense.

    Element-wise layers (activations, BatchNorm, pooling, additions) are not counted; they are a few
    percent of the total and do not change with channel pruning in a way that matters for ranking.
    """
    total = 0
    for layer in _layers(model):
        if isinstance(
            layer,
            (
                keras.layers.SeparableConv2D,
                keras.layers.DepthwiseConv2D,
                keras.layers.Conv2D,
                keras.layers.Conv2DTranspose,
                keras.layers.Dense,
            ),
        ):
            total += _layer_macs(layer)
    return int(total)


def _layer_macs(layer) -> int:
    out_shape = layer.output.shape
    in_shape = layer.input.shape
    spatial_out = int(np.prod(out_shape[1:-1])) if len(out_shape) > 2 else 1
    c_in = int(in_shape[-1])
    if isinstance(layer, keras.layers.SeparableConv2D):
        k = int(np.prod(layer.kernel_size))
        mid = c_in * layer.depth_multiplier
        return spatial_out * (k * mid + mid * layer.filters)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return spatial_out * int(np.prod(layer.kernel_size)) * c_in * layer.depth_multiplier
    if isinstance(layer, keras.layers.Conv2DTranspose):
        spatial_in = int(np.prod(in_shape[1:-1]))
        return spatial_in * int(np.prod(layer.kernel_size)) * c_in * layer.filters
    if isinstance(layer, keras.layers.Conv2D):
        groups = getattr(layer, "groups", 1)
        return spatial_out * int(np.prod(layer.kernel_size)) * (c_in // groups) * layer.filters
    return int(np.prod(in_shape[1:])) * int(layer.units)  # Dense


def _layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer
