"""A pruning step's deployed latency: the Keras model converted to full-integer int8 TFLite and timed."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from cxr_edge.convert.tflite import to_tflite
from cxr_edge.runtime.engine import Engine


def int8_latency_ms(model: keras.Model, calibration: np.ndarray, sample: np.ndarray, runs: int) -> float:
    """Median single-thread latency of the model converted to full-integer int8 TFLite."""
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "model.tflite"
        file.write_bytes(to_tflite(model, "int8", calibration))
        engine = Engine(file, threads=1)
        for _ in range(3):
            engine(sample)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            engine(sample)
            times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times))
