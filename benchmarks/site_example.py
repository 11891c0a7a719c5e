"""``python -m cxr_edge.benchmarks.site_example``: one kit source as a hospital's labels files.

The worked example of ``docs/site.md`` (``make site-example``) treats a held-out source as a new
hospital. This writes its ``LABELS.csv`` three ways: ``all.csv`` (every image, for the validation
study), ``labelled.csv`` (``--per-class`` images per label drawn at random: what the site labels for
``site calibrate``) and ``future.csv`` (every image of the other patients: what the calibrated bundle
is validated on). Paths are absolute (the kit is read-only); labels are the manifest's.
"""

from __future__ import annotations

import csv
from pathlib import Path

import click
import numpy as np

from cxr_edge.dataset.manifest import load_manifest


def _write(path: Path, records) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "patient_id"])
        for r in records:
            w.writerow([str(Path(r.file).resolve()), r.manifest_label, r.patient_id])


@click.command()
@click.option("--manifest", "manifest_path", default="../shared/data/manifest.csv", show_default=True)
@click.option("--source", default="kermany", show_default=True)
@click.option(
    "--per-class", default=50, show_default=True, type=int, help="Labelled images per bundle label."
)
@click.option(
    "--map",
    "label_map",
    multiple=True,
    default=("bacterial=pneumonia", "viral=pneumonia", "pneumonia_unknown=pneumonia"),
    show_default=True,
    help="Manifest label -> label drawn by.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", required=True, type=click.Path(file_okay=False))
def main(manifest_path, source, per_class, label_map, seed, out) -> None:
    """Write OUT/all.csv, OUT/labelled.csv and OUT/future.csv for one source."""
    mapping = dict(pair.split("=", 1) for pair in label_map)
    records = [r for r in load_manifest(manifest_path).records if r.source == source]
    rng = np.random.default_rng(seed)
    labelled = []
    for label in sorted({mapping.get(r.manifest_label, r.manifest_label) for r in records}):
        pool = [r for r in records if mapping.get(r.manifest_label, r.manifest_label) == label]
        labelled += [pool[i] for i in sorted(rng.choice(len(pool), min(per_class, len(pool)), replace=False))]
    patients = {r.patient_id for r in labelled}
    future = [r for r in records if r.patient_id not in patients]
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "all.csv", records)
    _write(folder / "labelled.csv", labelled)
    _write(folder / "future.csv", future)
    click.echo(f"{source}: {len(records)} images; {len(labelled)} labelled; {len(future)} of other patients")


if __name__ == "__main__":
    main()
