"""Keras 3 model -> TFLite flatbuffer, batch size 1, built-in ops only, in four variants.

The path is Keras ExportArchive -> SavedModel -> ``TFLiteConverter.from_saved_model`` (the one the
TensorFlow team documents for Keras 3; ``from_concrete_functions`` leaves Keras 3 variables unfrozen
and calibration fails). Only TFLite built-in ops are allowed, so the file runs in LiteRT, LiteRT.js
and on Android without the Flex delegate. The batch dimension is fixed at 1 because LiteRT.js
rejects dynamic shapes.

Variants:

* ``fp32`` -- float weights and activations;
* ``fp16`` -- float16 weights (half the size), float32 compute on CPUs;
* ``dynamic_int8`` -- int8 weights, float activations (no calibration data needed);
* ``int8`` / ``uint8`` -- full integer: int8 weights and activations, with int8 or uint8 input and
  output tensors, calibrated on training images through the same preprocessing.

Classifiers can be exported with a second output, their last convolutional feature map
(``features``), from which the runtime computes class activation maps (:mod:`cxr_edge.ops.cam`).
"""

from __future__ import annotations

import enum
import functools
import tempfile
from collections.abc import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from cxr_edge.errors import SpecError


class Quant(enum.StrEnum):
    """Conversion variants."""

    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC_INT8 = "dynamic_int8"
    INT8 = "int8"
    UINT8 = "uint8"

    @property
    def calibrated(self) -> bool:
        """Whether the variant needs calibration images (full-integer variants)."""
        return self in (Quant.INT8, Quant.UINT8)


def export_model(model: keras.Model, outputs: Sequence[str]) -> keras.Model:
    """The model with the named layers' outputs as its outputs (e.g. ``("probs", "features")``)."""
    try:
        tensors = [model.get_layer(name).output for name in outputs]
    except ValueError as exc:
        raise SpecError(
            "cannot export the requested outputs", expected=f"layers named {list(outputs)}", received=str(exc)
        ) from exc
    return keras.Model(model.input, tensors if len(tensors) > 1 else tensors[0], name=model.name)


def write_saved_model(model: keras.Model, saved_model_dir: str) -> None:
    """Exports ``model`` (batch 1, inference mode) as the SavedModel every variant is converted from."""
    shape = (1, *model.input_shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        functools.partial(model.__call__, training=False),
        input_signature=[tf.TensorSpec(shape, tf.float32, name="image")],
    )
    archive.write_out(saved_model_dir, verbose=False)


def converter_for(
    model: keras.Model,
    quant: Quant | str,
    calibration: Iterable[np.ndarray] | None,
    saved_model_dir: str,
    *,
    exported: bool = False,
) -> tf.lite.TFLiteConverter:
    """A configured converter for ``model`` (exported into ``saved_model_dir`` unless ``exported``)."""
    quant = Quant(quant)
    shape = (1, *model.input_shape[1:])
    if not exported:
        write_saved_model(model, saved_model_dir)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quant is Quant.FP16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quant is Quant.DYNAMIC_INT8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant.calibrated:
        samples = [
            np.asarray(x, dtype=np.float32).reshape(shape)
            for x in (calibration if calibration is not None else [])
        ]
        if not samples:
            raise SpecError(
                f"{quant} conversion needs calibration images",
                expected="preprocessed training inputs",
                received="none",
            )
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.int8 if quant is Quant.INT8 else tf.uint8
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    return converter


def to_tflite_variants(
    model: keras.Model,
    quants: Sequence[Quant | str],
    calibration: Iterable[np.ndarray] | None = None,
    outputs: Sequence[str] | None = None,
) -> dict[Quant, bytes]:
    """Converts ``model`` to several variants from one export (the export is the slow part).

    Args:
        model: A functional Keras model with one image input.
        quants: :class:`Quant` variants.
        calibration: Preprocessed training inputs, required for ``int8``/``uint8``.
        outputs: Layer names to export as outputs (default: the model's own outputs).

    Returns:
        ``{variant: .tflite bytes}``.
    """
    source = export_model(model, outputs) if outputs else model
    calibration = list(calibration) if calibration is not None else None
    with tempfile.TemporaryDirectory() as saved_model_dir:
        write_saved_model(source, saved_model_dir)
        return {
            Quant(q): converter_for(source, q, calibration, saved_model_dir, exported=True).convert()
            for q in quants
        }


def to_tflite(
    model: keras.Model,
    quant: Quant | str = Quant.FP32,
    calibration: Iterable[np.ndarray] | None = None,
    outputs: Sequence[str] | None = None,
) -> bytes:
    """Converts a Keras model to one TFLite variant (see :func:`to_tflite_variants`)."""
    return to_tflite_variants(model, [quant], calibration, outputs)[Quant(quant)]
