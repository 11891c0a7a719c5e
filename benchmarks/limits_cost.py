"""What the input limits cost on normal files: each full-size corpus file read in this process and through
the isolated decoder (:mod:`cxr_edge.imaging.isolated`), at full and at reduced resolution, and a worker's
start.

    python -m cxr_edge.benchmarks.limits_cost --corpus build/dicom_corpus [--runs 5] [--min-side 256]
                                              [--out benchmarks/results/limits_cost.json]

The corpus is ``python -m cxr_edge.benchmarks.dicom_corpus``'s (2560 x 2130, every transfer syntax); the
shipped PNG samples are read too. Both ways must give the same pixels and info (checked). The limits
themselves (sizes, pixels and components declared, frames) are header reads: they are inside both
columns. Reported in docs/security.md ("Input limits").
"""

from __future__ import annotations

import csv
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from cxr_edge.imaging import isolated
from cxr_edge.imaging.image import ReadOptions
from cxr_edge.imaging.reader import read_image

SAMPLES = Path(__file__).resolve().parents[1] / "cxr_edge" / "data" / "samples"


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 2)


def measure(files: list[tuple[str, Path]], runs: int, min_side: int | None, timeout_s: float) -> list[dict]:
    """In-process and isolated read times (median of ``runs``) of each file."""
    plain = ReadOptions(min_side=min_side, decode_timeout_s=None)
    guarded = replace(plain, decode_timeout_s=timeout_s)
    isolated.prewarm(guarded)
    rows = []
    for name, path in files:
        a, info_a = read_image(path, plain)
        b, info_b = read_image(path, guarded)
        if not (np.array_equal(a, b) and info_a == info_b):
            raise AssertionError(f"{path}: the isolated decode differs")
        here = _median_ms(lambda p=path: read_image(p, plain), runs)
        there = _median_ms(lambda p=path: read_image(p, guarded), runs)
        rows.append(
            {
                "file": name,
                "size": list(a.shape),
                "in_process_ms": here,
                "isolated_ms": there,
                "overhead_ms": round(there - here, 2),
            }
        )
    return rows


def worker_start_ms(runs: int) -> float:
    """Median time from spawning a decode worker to its first answer (imports included)."""
    code = (
        "import time; t=time.perf_counter(); from cxr_edge.imaging.isolated import _Worker; "
        "w=_Worker(2048); print(1000*(time.perf_counter()-t)); w.close()"
    )
    out = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        for _ in range(runs)
    ]
    return round(statistics.median(out), 1)


@click.command()
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--runs", default=5, show_default=True)
@click.option("--min-side", default=256, show_default=True, help="Reduced decode (a bundle's gate).")
@click.option("--timeout-s", default=20.0, show_default=True, help="The deadline (never reached here).")
@click.option("--out", type=click.Path(path_type=Path), default=None)
def main(corpus: Path, runs: int, min_side: int, timeout_s: float, out: Path | None) -> None:
    """Measures the isolated decoder's cost on full-size files of every syntax."""
    with open(corpus / "corpus.csv", newline="") as fh:
        files = [
            (r["syntax"], corpus / r["path"])
            for r in csv.DictReader(fh)
            if not r["path"].startswith("pydicom")
        ]
    files += [(f"png {p.name[:24]}", p) for p in sorted(SAMPLES.glob("*.png"))[:2]]
    full = measure(files, runs, None, timeout_s)
    reduced = measure(files, runs, min_side, timeout_s)
    dicom_full = [r["overhead_ms"] for r in full if not r["file"].startswith("png")]
    result = {
        "runs": runs,
        "full": full,
        f"reduced_min_side_{min_side}": reduced,
        "median_overhead_ms": {
            "full_size_dicom": round(statistics.median(dicom_full), 2),
            "reduced": round(statistics.median(r["overhead_ms"] for r in reduced), 2),
        },
        "worker_start_ms": worker_start_ms(3),
        "python": platform.python_version(),
        "cpus": __import__("os").cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }
    text = json.dumps(result, indent=2) + "\n"
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    for label, rows in (("full", full), ("reduced", reduced)):
        for r in rows:
            click.echo(
                f"{label:8s} {r['file']:28s} {r['in_process_ms']:8.1f} ms -> {r['isolated_ms']:8.1f} ms"
            )
    click.echo(json.dumps(result["median_overhead_ms"]) + f"; worker start {result['worker_start_ms']} ms")


if __name__ == "__main__":
    main()
