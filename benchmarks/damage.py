"""How much damage the reader notices, per transfer syntax: what docs/usage.md says cannot be detected.

    python -m cxr_edge.benchmarks.damage [--size 2130x2560] [--flips 20] [--out FILE.json] [--results-md FILE]

A shipped sample is stored as a 12-bit DX (the corpus synthesiser, :mod:`cxr_edge.imaging.synth`) in
every syntax, then damaged three ways:

* **cut + end marker**: the frame (or, uncompressed, the pixel data) cut at half, with FFD9 appended
  to compressed frames, as a broken transfer or a careless repair leaves it;
* **flip (data)**: one byte XOR 0x5A at a random place in the second half of the frame (entropy-coded
  data);
* **flip (header)**: one byte XOR 0x5A in the first 2 % of the frame (marker segments: sizes, tables).

Each damaged file goes through :func:`cxr_edge.imaging.reader.decode_image` at full resolution. *Refused* is a
typed error; for files that decode, the mean absolute difference from the intact image (intensities
in [0, 1]) says how much the undetected damage changed.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click
import numpy as np

from cxr_edge.benchmarks.results_md import section_markers, write_section
from cxr_edge.dataset.samples import load_samples
from cxr_edge.errors import CxrEdgeError
from cxr_edge.imaging import synth as dicom_synth
from cxr_edge.imaging.reader import decode_image, read_image
from cxr_edge.provenance import now_utc

KINDS = ("cut + end marker", "flip (data)", "flip (header)")


def _encoded(stored: np.ndarray, syntax: str):
    ds = dicom_synth.build_dataset(stored, dicom_synth.VARIANTS[0], 0)
    return ds if dicom_synth.encode(ds, syntax) else None


def _damaged(ds, kind: str, rng: np.random.Generator) -> bytes:
    """The file of ``ds`` with its pixel data damaged one way."""
    compressed = ds.file_meta.TransferSyntaxUID.is_compressed

    def damage(data: bytes) -> bytes:
        n = len(data)
        if kind == "cut + end marker":
            return data[: n // 2] + (b"\xff\xd9" if compressed else b"")
        lo, hi = (n // 2, n - 4) if kind == "flip (data)" else (2, max(3, n // 50))
        at = int(rng.integers(lo, hi))
        return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]

    return dicom_synth.file_bytes(dicom_synth.with_pixel_data(ds, damage))


def measure(size: tuple[int, int], flips: int, seed: int = 0) -> dict:
    """Detection per syntax and kind of damage (see the module docstring)."""
    image, _ = read_image(load_samples()[0].file)
    stored = dicom_synth.stored_values(image, size, dicom_synth.VARIANTS[0], seed)
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {}
    for syntax in dicom_synth.SYNTAXES:
        ds = _encoded(stored, syntax)
        if ds is None:
            continue
        intact, _ = decode_image(dicom_synth.file_bytes(ds), "intact.dcm")
        rows = {}
        for kind in KINDS:
            tries = 1 if kind == "cut + end marker" else flips
            refused, changes = 0, []
            for _ in range(tries):
                try:
                    damaged, _ = decode_image(_damaged(ds, kind, rng), "damaged.dcm")
                except CxrEdgeError:
                    refused += 1
                    continue
                diff = np.abs(damaged - intact) if damaged.shape == intact.shape else np.ones(1)
                changes.append(float(diff.mean()))
            rows[kind] = {
                "tries": tries,
                "refused": refused,
                "undetected_changed": sum(c > 0 for c in changes),
                "undetected_mean_abs_diff": float(np.mean(changes)) if changes else None,
                "undetected_max_abs_diff": float(np.max(changes)) if changes else None,
            }
        out[syntax] = rows
    return {
        "created": now_utc(),
        "machine": platform.processor() or platform.machine(),
        "size": list(size),
        "flips": flips,
        "seed": seed,
        "syntaxes": out,
    }


def render(result: dict) -> str:
    """The RESULTS.md section: refused / tried per syntax and kind, and what undetected damage changed."""
    begin, end = section_markers("damage")
    rows, cols = result["size"]
    lines = [
        begin,
        "## Damaged DICOM pixel data: refused or not",
        "",
        f"One shipped sample as a {cols} x {rows} 12-bit DX in each syntax; `cut + end marker` = the frame "
        "cut at half with FFD9 appended (uncompressed: the pixel data cut at half); `flip` = one byte XOR "
        f"0x5A in the frame's second half (data) or first 2 % (header), {result['flips']} each (seed "
        f"{result['seed']}). Cells: refused / tried; in brackets, for the files that decoded, the mean "
        "absolute change of the image (intensities in [0, 1]). A 0 change means the byte was not used.",
        "",
        "| syntax | " + " | ".join(KINDS) + " |",
        "|---|" + "---|" * len(KINDS),
    ]
    for syntax, kinds in result["syntaxes"].items():
        cells = []
        for kind in KINDS:
            r = kinds[kind]
            cell = f"{r['refused']}/{r['tries']}"
            if r["undetected_mean_abs_diff"] is not None:
                cell += f" ({r['undetected_mean_abs_diff']:.2g})"
            cells.append(cell)
        lines.append(f"| {syntax} | " + " | ".join(cells) + " |")
    lines += ["", f"Command: `{result.get('command', '')}` ({result['created'][:10]})", end]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--size", default="2130x2560", show_default=True, help="ROWSxCOLUMNS of the image.")
@click.option("--flips", default=20, show_default=True, type=click.IntRange(1), help="Flips per kind.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", default=None, type=click.Path(dir_okay=False))
@click.option("--results-md", default=None, type=click.Path(dir_okay=False), help="Write its section here.")
def main(size: str, flips: int, seed: int, out: str | None, results_md: str | None) -> None:
    """Measure which damage the reader refuses, per transfer syntax."""
    rows, cols = (int(v) for v in size.lower().split("x"))
    t0 = time.perf_counter()
    result = measure((rows, cols), flips, seed)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["command"] = f"python -m cxr_edge.benchmarks.damage --size {size} --flips {flips} --seed {seed}"
    section = render(result)
    click.echo(section)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    if results_md:
        write_section(Path(results_md), section, "damage")


if __name__ == "__main__":
    main()
