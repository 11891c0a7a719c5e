"""Thin wrapper over the LiteRT interpreter: one model, float in, float probabilities out.

Quantised models (int8/uint8 input or output) are handled here, at the boundary, with the scale and
zero point read from the model itself; the bundle manifest's copy is checked against them so that a
manifest that lies about its model is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from cxr_edge.bundle import ModelEntry, SegmenterEntry, TensorSpec
from cxr_edge.errors import BundleError, ModelRuntimeError

_DTYPES = {np.float32: "float32", np.int8: "int8", np.uint8: "uint8"}


class Engine:
    """Runs one ``.tflite`` classifier.

    Args:
        path: The model file.
        entry: Its bundle entry (checked against the file's tensors), or None to trust the file.
        threads: Interpreter threads (1 gives the most repeatable latency).
        output: The entry's output role this file's output tensor is (``probs`` or ``mask``).
    """

    def __init__(
        self,
        path: str | Path,
        entry: ModelEntry | SegmenterEntry | None = None,
        threads: int = 1,
        output: str = "probs",
    ):
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelRuntimeError(
                "LiteRT cannot load the model",
                expected="a valid .tflite file",
                received=f"{Path(path).name}: {exc}",
            ) from exc
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.input_spec = _spec(self._input)
        self.output_spec = _spec(self._output)
        if entry is not None:
            _check_matches(entry.name, "input", entry.input, self.input_spec)
            _check_matches(entry.name, f"{output} output", entry.outputs[output], self.output_spec)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Runs one preprocessed input and returns the dequantised output without its batch axis.

        Args:
            x: float32 ``(H, W, C)`` or ``(1, H, W, C)`` model input.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == len(self.input_spec.shape) - 1:
            x = x[None]
        if tuple(x.shape) != tuple(self.input_spec.shape):
            raise ModelRuntimeError(
                "input tensor has the wrong shape", expected=str(self.input_spec.shape), received=str(x.shape)
            )
        self._interpreter.set_tensor(self._input["index"], quantize(x, self.input_spec))
        self._interpreter.invoke()
        return dequantize(self._interpreter.get_tensor(self._output["index"]), self.output_spec)[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of one preprocessed input (a classifier's ``(n_classes,)`` output).

        Returns:
            float32 probabilities summing to 1 (quantised outputs are renormalised).
        """
        probs = self.run(x)
        if self.output_spec.quantized:
            # An 8-bit softmax has steps of 1/256, so its rows miss 1 by up to a few steps; renormalise so
            # that every consumer (combiners, calibration, reports) receives probabilities.
            total = float(probs.sum())
            probs = probs / total if total > 0 else np.full_like(probs, 1.0 / probs.size)
        return probs


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float -> the tensor's storage type (round half to even, as TFLite's reference kernels)."""
    if not spec.quantized:
        return x.astype(np.float32)
    info = np.iinfo(spec.dtype)
    q = np.round(x / spec.scale) + spec.zero_point
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def dequantize(q: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """The tensor's storage type -> float32."""
    if not spec.quantized:
        return q.astype(np.float32)
    return ((q.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)


def _spec(detail: dict) -> TensorSpec:
    dtype = _DTYPES.get(detail["dtype"])
    if dtype is None:
        raise ModelRuntimeError(
            "unsupported tensor type", expected="float32, int8 or uint8", received=str(detail["dtype"])
        )
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(tuple(int(d) for d in detail["shape"]), dtype, float(scale), int(zero_point))


def _check_matches(name: str, which: str, declared: TensorSpec, actual: TensorSpec) -> None:
    same = (
        tuple(declared.shape) == tuple(actual.shape)
        and declared.dtype == actual.dtype
        and np.isclose(declared.scale, actual.scale, rtol=1e-6, atol=0)
        and declared.zero_point == actual.zero_point
    )
    if not same:
        raise BundleError(
            f"model {name}: manifest {which} does not match the model file",
            expected=str(actual),
            received=str(declared),
        )
