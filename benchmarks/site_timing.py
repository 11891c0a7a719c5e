"""``python -m cxr_edge.benchmarks.site_timing``: how long ``cxr-edge site calibrate`` takes on one core.

A site calibrates on a cart: one core, no TensorFlow. This writes a site of ``--per-class`` images per
class from one kit source twice -- as the kit's PNGs and as full-size DICOMs (2560 x 2130, 12-bit,
uncompressed, what a cart's detector writes) -- with labels swapped between the two classes, so that
the calibration is accepted and the new bundle written (the whole path: read, segment, classify,
cross-validate every method, fit, write, verify). Each run is ``taskset -c 0 <venv>/bin/cxr-edge site
calibrate ...`` in a fresh process (start-up included), timed, with its peak RSS::

    python -m cxr_edge.benchmarks.site_timing --python build/runtime-venv/bin/python \\
        --out benchmarks/results/site_timing.json --results-md benchmarks/RESULTS.md
"""

from __future__ import annotations

import csv
import json
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import click
import numpy as np

from cxr_edge.dataset.manifest import load_manifest
from cxr_edge.imaging.synth import stored_from_image, write_radiograph

FULL_SIZE = (2130, 2560)  # rows, columns
SWAP = {"normal": "pneumonia"}


def write_site(folder: Path, manifest: Path, source: str, per_class: int, dicom: bool, seed: int) -> Path:
    """``folder/labels.csv`` and its images: ``per_class`` normal and abnormal images, labels swapped."""
    records = [r for r in load_manifest(manifest).records if r.source == source]
    rng = np.random.default_rng(seed)
    normal = [r for r in records if r.label == "normal"]
    abnormal = [r for r in records if r.label != "normal"]
    chosen = [normal[i] for i in rng.choice(len(normal), per_class, replace=False)]
    chosen += [abnormal[i] for i in rng.choice(len(abnormal), per_class, replace=False)]
    folder.mkdir(parents=True, exist_ok=True)
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "patient_id"])
        for i, r in enumerate(chosen):
            if dicom:
                name = f"{i:04d}.dcm"
                write_radiograph(folder / name, stored_from_image(r.file, size=FULL_SIZE, bits=12))
            else:
                name = str(Path(r.file).resolve())
            w.writerow([name, "pneumonia" if r.label == "normal" else "normal", r.patient_id])
    return labels


def timed(python: str, labels: Path, out: Path) -> dict:
    """Wall seconds and peak RSS of one ``site calibrate`` on core 0."""
    cli = str(Path(python).parent / "cxr-edge")
    cmd = ["taskset", "-c", "0", cli, "site", "calibrate", str(labels), "--site", "timing", "--out", str(out)]
    t0 = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    # The largest child so far: the PNG run comes first, so each run's figure is its own unless an
    # earlier run was larger (the DICOM run is the larger one).
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if result.returncode != 0:
        raise click.ClickException(f"site calibrate failed: {result.stderr[-2000:]}")
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak / 1024, 1),
        "not_used": sum(line.startswith("not used:") for line in result.stderr.splitlines()),
    }


@click.command()
@click.option(
    "--python", default=".venv/bin/python", show_default=True, help="Interpreter of the install to time."
)
@click.option("--manifest", "manifest_path", default="../shared/data/manifest.csv", show_default=True)
@click.option("--source", default="kermany", show_default=True)
@click.option("--per-class", default=100, show_default=True, type=int)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--results-md", default=None, type=click.Path(dir_okay=False))
def main(python, manifest_path, source, per_class, out, results_md) -> None:
    """Time site calibration on PNGs and on full-size DICOMs, one core."""
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("png", "dicom"):
            labels = write_site(
                Path(tmp) / kind, Path(manifest_path), source, per_class, kind == "dicom", seed=0
            )
            runs[kind] = timed(python, labels, Path(tmp) / f"bundle_{kind}")
            click.echo(f"{kind}: {runs[kind]}")
    has_tf = subprocess.run([python, "-c", "import tensorflow"], capture_output=True).returncode == 0
    result = {
        "images": 2 * per_class,
        "source": source,
        "python": python,
        "tensorflow_installed": has_tf,
        "machine": platform.processor() or platform.machine(),
        "runs": runs,
    }
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    if results_md:
        from cxr_edge.benchmarks.results_md import section_markers, write_section

        begin, end = section_markers("site-timing")
        lines = [
            begin,
            "## Site calibration on a cart (`cxr-edge site calibrate`)",
            "",
            f"`site calibrate` on {2 * per_class} labelled images ({source}, labels swapped so the new "
            f"bundle is written), one core (`taskset -c 0`), fresh process, "
            f"{'with' if has_tf else 'without'} TensorFlow installed:",
            "",
            "| images | wall s | peak RSS MiB | images refused by the input checks |",
            "|---|---:|---:|---:|",
            f"| kit PNGs | {runs['png']['seconds']} | {runs['png']['peak_rss_mib']} | "
            f"{runs['png']['not_used']} |",
            f"| full-size DICOMs (2560 x 2130, 12 bit, uncompressed) | {runs['dicom']['seconds']} | "
            f"{runs['dicom']['peak_rss_mib']} | {runs['dicom']['not_used']} |",
            "",
            "Command: `python -m cxr_edge.benchmarks.site_timing --python build/runtime-venv/bin/python "
            "--out benchmarks/results/site_timing.json --results-md benchmarks/RESULTS.md`.",
            end,
        ]
        write_section(Path(results_md), "\n".join(lines), "site-timing")


if __name__ == "__main__":
    main()
