"""Fallbacks per source and label of a crop table, and a montage of overlays (successes and failures).

    .venv/bin/python docs/segmentation/kit2_report.py --crops build/crops_kit2/crops.csv \
        --manifest ../shared/data/manifest.csv --out docs/segmentation/overlays_kit2.jpg

Reads the overlays that ``cxr-edge segment`` wrote next to ``crops.csv`` (``overlays/``). Tiles are
labelled with source, label and crop status only: kit file names carry patient numbers, so they are
neither printed nor drawn.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import click
import cv2
import numpy as np

TILE = 224


def _tile(file: Path, caption: str) -> np.ndarray:
    """The overlay resized to a square tile (letterboxed) with a caption bar."""
    image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if image is None:
        image = np.zeros((TILE, TILE, 3), np.uint8)
    h, w = image.shape[:2]
    scale = TILE / max(h, w)
    image = cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    tile = np.zeros((TILE + 20, TILE, 3), np.uint8)
    y, x = (TILE - image.shape[0]) // 2 + 20, (TILE - image.shape[1]) // 2
    tile[y : y + image.shape[0], x : x + image.shape[1]] = image
    cv2.putText(tile, caption, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


@click.command()
@click.option("--crops", "crops_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--manifest", "manifest_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Montage JPEG to write.")
@click.option("--per-source", default=3, show_default=True, help="Tiles per source (failures first).")
@click.option("--seed", default=0, show_default=True)
def main(crops_path: str, manifest_path: str, out: str, per_source: int, seed: int) -> None:
    """Prints fallback counts (JSON) and writes the overlay montage."""
    with open(manifest_path, newline="", encoding="utf-8") as fh:
        meta = {r["path"]: r for r in csv.DictReader(fh)}
    with open(crops_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    total, fallback = Counter(), Counter()
    reasons: dict[str, Counter] = defaultdict(Counter)
    by_source: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        m = meta[row["path"]]
        for key in (
            ("source", m["source"]),
            ("label", m["label"]),
            ("source/label", f"{m['source']}/{m['label']}"),
        ):
            total[key] += 1
            fallback[key] += row["status"] != "lung"
        if row["status"] != "lung":
            # The reason without its number ("lung area 0.05 of ..." -> "lung area").
            reasons[m["source"]][" ".join(row["reason"].split()[:2])] += 1
        by_source[m["source"]][row["status"]].append(row)
    report = {
        "images": len(rows),
        "fallbacks": sum(r["status"] != "lung" for r in rows),
        **{
            kind: {k[1]: f"{fallback[k]}/{total[k]}" for k in sorted(total) if k[0] == kind}
            for kind in ("source", "label", "source/label")
        },
        "reasons_by_source": {s: dict(c) for s, c in sorted(reasons.items())},
    }
    click.echo(json.dumps(report, indent=2))

    rng = random.Random(seed)
    overlays = Path(crops_path).parent / "overlays"
    columns = []
    for source in sorted(by_source):
        failures = by_source[source]["fallback"]
        picks = rng.sample(failures, min(len(failures), max(1, per_source // 3)))
        lungs = by_source[source]["lung"]
        picks += rng.sample(lungs, min(len(lungs), per_source - len(picks)))
        tiles = []
        for row in picks:
            stem = row["path"].strip("/").replace("/", "__").rsplit(".", 1)[0]
            label = meta[row["path"]]["label"]
            tiles.append(_tile(overlays / f"{stem}_overlay.png", f"{source} {label}: {row['status']}"))
        while len(tiles) < per_source:
            tiles.append(np.zeros((TILE + 20, TILE, 3), np.uint8))
        columns.append(np.concatenate(tiles, axis=0))
    montage = np.concatenate(columns, axis=1)
    cv2.imwrite(out, montage, [cv2.IMWRITE_JPEG_QUALITY, 80])
    size_kib = Path(out).stat().st_size // 1024
    click.echo(f"montage {montage.shape[1]}x{montage.shape[0]} written to {out} ({size_kib} KiB)")


if __name__ == "__main__":
    main()
