"""Accuracy gates: a converted model must behave like its Keras source on the validation split.

int8 models are known to collapse onto one class after a bad calibration. Every converted variant is
compared with the Keras model on the validation images: argmax agreement, maximum and mean
probability difference, and the macro-AUC change with a paired DeLong test per class. A variant that
misses the thresholds stops the conversion (unless degraded models are explicitly allowed, which is
then recorded in the bundle) and, for full-integer variants, TensorFlow's quantization debugger names
the layers with the largest quantisation error.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from cxr_edge.errors import CxrEdgeError
from cxr_edge.metrics import classification_metrics
from cxr_edge.stats import delong_paired


class GateError(CxrEdgeError):
    """A converted model failed its accuracy gate."""


@dataclass(frozen=True)
class GateThresholds:
    """Defaults: at least 99% argmax agreement and at most 0.01 macro-AUC loss."""

    min_agreement: float = 0.99
    max_auc_drop: float = 0.01


def parity(
    reference: np.ndarray, converted: np.ndarray, y_true: Sequence[int], labels: Sequence[str]
) -> dict:
    """Compares class probabilities of a converted model with the Keras reference.

    Returns:
        ``{"n", "argmax_agreement", "max_abs_diff", "mean_abs_diff", "auc_macro_reference",
        "auc_macro_converted", "auc_macro_drop", "paired_delong_p": {label: p}}``.
    """
    reference, converted = np.asarray(reference, np.float64), np.asarray(converted, np.float64)
    y_true = np.asarray(y_true)
    diff = np.abs(reference - converted)
    auc_ref = classification_metrics(y_true, reference, labels)["auc_macro"]
    auc_conv = classification_metrics(y_true, converted, labels)["auc_macro"]
    paired = {}
    for c, label in enumerate(labels):
        positive = y_true == c
        if positive.sum() >= 2 and (~positive).sum() >= 2:
            paired[label] = delong_paired(reference[:, c], converted[:, c], positive)["p_value"]
    return {
        "n": len(reference),
        "argmax_agreement": float(np.mean(reference.argmax(1) == converted.argmax(1))),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "auc_macro_reference": auc_ref,
        "auc_macro_converted": auc_conv,
        "auc_macro_drop": None if auc_ref is None or auc_conv is None else auc_ref - auc_conv,
        "paired_delong_p": paired,
    }


def gate(result: dict, thresholds: GateThresholds | None = None) -> dict:
    """Applies the thresholds to a :func:`parity` result.

    Returns:
        ``{"passed": bool, "failures": [str], **thresholds}``.
    """
    thresholds = thresholds or GateThresholds()
    failures = []
    if result["argmax_agreement"] < thresholds.min_agreement:
        failures.append(f"argmax agreement {result['argmax_agreement']:.3f} < {thresholds.min_agreement}")
    drop = result["auc_macro_drop"]
    if drop is not None and drop > thresholds.max_auc_drop:
        failures.append(f"macro-AUC drop {drop:.4f} > {thresholds.max_auc_drop}")
    return {"passed": not failures, "failures": failures, **asdict(thresholds)}


def quantization_report(
    model, calibration: np.ndarray, debug_inputs: np.ndarray, quant: str = "int8", top: int = 10
) -> list[dict]:
    """Layers with the largest quantisation error (TensorFlow's quantization debugger).

    The error of a layer is the root-mean-square difference between its float and quantised outputs
    on ``debug_inputs``, divided by the quantisation scale (in "quantisation steps").
    """
    import tensorflow as tf

    from convert.tflite import converter_for

    shape = (1, *model.input_shape[1:])
    debug = [np.asarray(x, np.float32).reshape(shape) for x in debug_inputs]
    with tempfile.TemporaryDirectory() as tmp:
        converter = converter_for(model, quant, calibration, tmp)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([x] for x in debug)
        )
        debugger.run()
        buffer = io.StringIO()
        debugger.layer_statistics_dump(buffer)
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    for row in rows:
        scale = float(row.get("scale") or 0) or 1.0
        row["rmse_per_step"] = float(np.sqrt(float(row.get("mean_squared_error") or 0.0))) / scale
    rows.sort(key=lambda r: -r["rmse_per_step"])
    return [
        {
            "op": r.get("op_name"),
            "tensor": r.get("tensor_name"),
            "rmse_per_step": round(r["rmse_per_step"], 4),
        }
        for r in rows[:top]
    ]
