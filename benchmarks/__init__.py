"""Benchmarks: latency, memory and size of bundles (``python -m benchmarks.latency``), RESULTS.md."""
