"""One measurement in a fresh interpreter: ``python -m cxr_edge.benchmarks._child KIND JSON`` prints JSON.

Nothing heavy is imported at module level, so the runtime's own import cost can be measured here.
"""

from __future__ import annotations

import json
import sys
import time


def run(kind: str, payload: dict) -> dict:
    """Measures ``bundle`` (the runtime) or ``baseline`` (Keras) and returns the result."""
    if kind == "bundle":
        t0 = time.perf_counter()
        import cxr_edge.runtime.pipeline  # noqa: F401 - the import cost of the runtime is part of the result

        import_ms = (time.perf_counter() - t0) * 1000.0
        from cxr_edge.benchmarks.latency import measure_bundle
        from cxr_edge.benchmarks.measure import peak_rss_mb

        rss = peak_rss_mb()
        result = measure_bundle(
            payload["bundle"],
            payload["images"],
            threads=payload["threads"],
            runs=payload["runs"],
            members=payload.get("members"),
        )
        return result | {"import_ms": import_ms, "rss_after_import_mb": rss}
    from cxr_edge.benchmarks.latency import measure_baseline

    return measure_baseline(payload["runs_dirs"], payload["images"], runs=payload["runs"])


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], json.loads(sys.argv[2]))))
