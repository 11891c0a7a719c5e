"""Benchmarks: latency, memory and size of bundles (``python -m cxr_edge.benchmarks.latency``), RESULTS.md."""
