"""Thin wrapper over the LiteRT interpreter: one model, float in, named float outputs out.

Quantised tensors (int8/uint8) are (de)quantised here, at the boundary, with the scale and zero point
read from the model itself; the bundle manifest's copy is checked against them so that a manifest that
lies about its model is refused. A model may have several outputs (a classifier's ``probs`` and
``features``); they are told apart by shape, because TFLite does not keep Keras output order.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from cxr_edge.bundle.entries import ModelEntry, SegmenterEntry, TensorSpec
from cxr_edge.errors import BundleError, ModelRuntimeError
from cxr_edge.quiet import LITERT_NOTICES, without_notices

_DTYPES = {np.float32: "float32", np.int8: "int8", np.uint8: "uint8"}
_first_load = True  # LiteRT prints its XNNPACK notice once per process, at the first model


class Engine:
    """Runs one ``.tflite`` model.

    Args:
        path: The model file.
        entry: Its bundle entry (tensors checked against the file), or None to trust the file; without
            an entry, outputs are named by shape: 2-D ``probs``, 4-D with one channel ``mask``, other
            4-D ``features``.
        threads: Interpreter threads (1 gives the most repeatable latency).
    """

    def __init__(self, path: str | Path, entry: ModelEntry | SegmenterEntry | None = None, threads: int = 1):
        global _first_load
        # LiteRT prints its delegate notice once per process: quieted on the first load only.
        quiet = without_notices(LITERT_NOTICES) if _first_load else contextlib.nullcontext()
        try:
            with quiet:
                self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self._interpreter.allocate_tensors()
            _first_load = False
        except (ValueError, RuntimeError) as exc:
            raise ModelRuntimeError(
                "LiteRT cannot load the model",
                expected="a valid .tflite file",
                received=f"{Path(path).name}: {exc}",
            ) from exc
        self._input = self._interpreter.get_input_details()[0]
        self.input_spec = _spec(self._input)
        details = self._interpreter.get_output_details()
        name = entry.name if entry is not None else Path(path).name
        if entry is not None:
            _check_matches(name, "input", entry.input, self.input_spec)
            self._outputs = _match_outputs(name, details, entry.outputs)
        else:
            self._outputs = {_role_by_shape(d): d for d in details}
        self.output_specs = {role: _spec(d) for role, d in self._outputs.items()}

    @property
    def output_spec(self) -> TensorSpec:
        """Spec of the primary output (``probs``, or ``mask`` for a segmenter)."""
        return (
            self.output_specs.get("probs")
            or self.output_specs.get("mask")
            or next(iter(self.output_specs.values()))
        )

    def run_all(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Runs one preprocessed input; every output dequantised, without its batch axis.

        Args:
            x: float32 ``(H, W, C)`` or ``(1, H, W, C)`` model input.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == len(self.input_spec.shape) - 1:
            x = x[None]
        if x.shape[-1] == 1 and self.input_spec.shape[-1] == 3:
            x = np.repeat(x, 3, axis=-1)  # grey repeated for backbones that take three channels
        if tuple(x.shape) != tuple(self.input_spec.shape):
            raise ModelRuntimeError(
                "input tensor has the wrong shape", expected=str(self.input_spec.shape), received=str(x.shape)
            )
        self._interpreter.set_tensor(self._input["index"], quantize(x, self.input_spec))
        self._interpreter.invoke()
        return {
            role: dequantize(self._interpreter.get_tensor(d["index"]), self.output_specs[role])[0]
            for role, d in self._outputs.items()
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        """The primary output of one input (see :meth:`run_all`)."""
        outputs = self.run_all(x)
        role = "probs" if "probs" in outputs else "mask" if "mask" in outputs else next(iter(outputs))
        return outputs[role]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of one preprocessed input, summing to 1.

        Quantised probabilities are renormalised: an 8-bit softmax has steps of 1/256, so its rows
        miss 1 by up to a few steps, and every consumer (combiners, calibration, reports) expects
        probabilities.
        """
        return normalise(self.run(x), self.output_spec)


def normalise(probs: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Renormalises quantised probabilities (no-op for float outputs)."""
    if not spec.quantized:
        return probs
    total = float(probs.sum())
    return probs / total if total > 0 else np.full_like(probs, 1.0 / probs.size)


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


def _role_by_shape(detail: dict) -> str:
    shape = tuple(detail["shape"])
    if len(shape) == 2:
        return "probs"
    return "mask" if shape[-1] == 1 else "features"


def _match_outputs(name: str, details: list[dict], declared: dict[str, TensorSpec]) -> dict[str, dict]:
    """Pairs the manifest's output roles with the file's output tensors by shape (then checks them)."""
    if len(details) != len(declared):
        raise BundleError(
            f"model {name}: manifest and file disagree on outputs",
            expected=f"{len(declared)} outputs ({', '.join(declared)})",
            received=f"{len(details)}",
        )
    remaining = list(details)
    matched = {}
    for role, spec in declared.items():
        hit = next((d for d in remaining if tuple(int(s) for s in d["shape"]) == tuple(spec.shape)), None)
        if hit is None:
            raise BundleError(
                f"model {name}: no output of the declared {role} shape",
                expected=str(spec.shape),
                received=str([tuple(d["shape"]) for d in remaining]),
            )
        remaining.remove(hit)
        _check_matches(name, f"{role} output", spec, _spec(hit))
        matched[role] = hit
    return matched


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
