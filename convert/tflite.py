"""Keras 3 model -> TFLite flatbuffer, batch size 1, built-in ops only.

The path is Keras ExportArchive -> SavedModel -> ``TFLiteConverter.from_saved_model`` (the one the
TensorFlow team documents for Keras 3; ``from_concrete_functions`` leaves Keras 3 variables unfrozen
and calibration fails). Only TFLite built-in ops are allowed, so the file runs in LiteRT, LiteRT.js
and on Android without the Flex delegate. The batch dimension is fixed at 1 because LiteRT.js
rejects dynamic shapes.
"""

from __future__ import annotations

import enum
import functools
import tempfile
from collections.abc import Iterable

import keras
import numpy as np
import tensorflow as tf

from cxr_edge.errors import SpecError


class Quant(enum.StrEnum):
    """Conversion variants."""

    FP32 = "fp32"
    INT8 = "int8"  # full-integer: int8 weights and activations, int8 input and output


def to_tflite(
    model: keras.Model, quant: Quant | str = Quant.FP32, calibration: Iterable[np.ndarray] | None = None
) -> bytes:
    """Converts a Keras model to a TFLite flatbuffer.

    Args:
        model: A functional Keras model with one image input.
        quant: ``fp32`` or ``int8`` (full integer).
        calibration: For ``int8``: preprocessed inputs ``(H, W, C)`` drawn from the training split
            (a few hundred suffice); required.

    Returns:
        The ``.tflite`` bytes.
    """
    quant = Quant(quant)
    shape = (1, *model.input_shape[1:])
    with tempfile.TemporaryDirectory() as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            functools.partial(model.__call__, training=False),
            input_signature=[tf.TensorSpec(shape, tf.float32, name="image")],
        )
        archive.write_out(saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quant is Quant.INT8:
            samples = [
                np.asarray(x, dtype=np.float32).reshape(shape)
                for x in (calibration if calibration is not None else [])
            ]
            if not samples:
                raise SpecError(
                    "int8 conversion needs calibration images",
                    expected="preprocessed training inputs",
                    received="none",
                )
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([s] for s in samples)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return converter.convert()
