"""What every benchmark records: the machine, peak memory, and percentiles of timings."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB).

    Linux's ``VmHWM`` is used where available: ``ru_maxrss`` of a child that was forked from a large
    parent (pytest with TensorFlow loaded) starts at the parent's size and would overstate the runtime.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def percentiles(values: list[float]) -> dict:
    """p50/p95/p99 and mean of a list of milliseconds."""
    a = np.asarray(values, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "n": len(a),
    }


def machine() -> dict:
    """CPU model, ISA flags relevant to int8/bf16 speed, cores, platform."""
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", "unknown", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma")))
    return {"cpu": model, "isa": isa, "cores": os.cpu_count(), "platform": platform.platform()}
