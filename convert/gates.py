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
from cxr_edge.evaluation.metrics import classification_metrics
from cxr_edge.evaluation.stats import TEMPERATURE_BOUNDS, delong_paired


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

    from cxr_edge.convert.tflite import converter_for

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


def usefulness(
    probs: np.ndarray, y_true: Sequence[int], labels: Sequence[str], temperature: float
) -> list[str]:
    """Why a converted ensemble looks useless on validation (empty when nothing looks wrong).

    A model can pass every parity gate (its TFLite copy agrees with Keras) and still say nothing: a
    one-epoch run that answers "covid" for every image. Three signs, each a sentence:

    * accuracy at or below the majority-class rate (what always answering the commonest label gets);
    * near-constant outputs: one label for at least 98 % of the images, or probabilities that vary by
      less than 0.01 across images;
    * the temperature at an end of its search range (the outputs carry no information to calibrate).

    Args:
        probs: ``(n, k)`` the ensemble's (tempered) validation probabilities.
        y_true: ``(n,)`` true class indices.
        labels: The label names.
        temperature: The ensemble's temperature.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    if len(y) == 0:
        return []
    found = []
    counts = np.bincount(y, minlength=len(labels))
    majority = counts.max() / len(y)
    accuracy = float(np.mean(probs.argmax(axis=1) == y))
    if accuracy <= majority + 1e-9:
        commonest = labels[int(counts.argmax())]
        found.append(
            f"validation accuracy {accuracy:.3f} is at or below the majority-class rate {majority:.3f} "
            f"(always answering {commonest!r})"
        )
    predicted = np.bincount(probs.argmax(axis=1), minlength=len(labels))
    if predicted.max() >= 0.98 * len(y):
        found.append(
            f"near-constant outputs: {labels[int(predicted.argmax())]!r} for {predicted.max()} of {len(y)} "
            "validation images"
        )
    elif float(probs.std(axis=0).max()) < 0.01:
        found.append(
            f"near-constant outputs: probabilities vary by {float(probs.std(axis=0).max()):.4f} at most"
        )
    lo, hi = TEMPERATURE_BOUNDS
    if not lo * 1.01 < temperature < hi * 0.99:
        found.append(f"temperature {temperature:.3g} sits on its search bound [{lo}, {hi}]")
    return found
