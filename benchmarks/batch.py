"""Images per second of ``predict``, ``batch --backend local`` and ``batch --backend ray`` (1 and 2 workers).

    python -m cxr_edge.benchmarks.batch [--dicoms 72] [--pngs 600] [--out FILE.json] [--results-md RESULTS.md]

Two input sets, made once and used by every configuration in the same run: full-size JPEG 2000 lossless
DICOMs (2560 x 2130, 12 bit, made from kit images by :mod:`cxr_edge.imaging.synth`: what an archive
holds) and kit PNGs. Every configuration is the CLI in a fresh process, timed by wall clock (what a user
waits for), twice: on one input (the fixed cost: imports, bundle load, Ray start and shutdown) and on
all of them. Steady throughput is ``(n - 1) / (t_n - t_1)``; the Ray overhead per image is Ray's
steady time per image minus the local engine's. The scaling ratio is Ray with 2 workers over Ray with 1.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from cxr_edge.benchmarks.results_md import section_markers, write_section

KIT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "manifest.csv"
CONFIGS = {
    "predict": ["predict", "{inputs}", "--out", "{out}/rows.csv"],
    "batch local": ["batch", "{inputs}", "--out", "{out}/rows", "--backend", "local"],
    "batch ray, 1 worker": ["batch", "{inputs}", "--out", "{out}/rows", "--backend", "ray", "--workers", "1"],
    "batch ray, 2 workers": [
        "batch",
        "{inputs}",
        "--out",
        "{out}/rows",
        "--backend",
        "ray",
        "--workers",
        "2",
    ],
}


def make_inputs(folder: Path, manifest: Path, dicoms: int, pngs: int) -> dict[str, Path]:
    """Writes ``folder/dicom`` (full-size JPEG 2000 lossless) and ``folder/png`` (kit PNGs)."""
    from cxr_edge.benchmarks.dicom_corpus import make_corpus
    from cxr_edge.imaging.synth import VARIANTS

    dicom_dir = folder / "dicom"
    make_corpus(
        dicom_dir, images=dicoms, manifest=manifest, syntaxes=("j2k_lossless",), variants=VARIANTS[:1]
    )
    (dicom_dir / "corpus.csv").unlink()  # the index is not an input
    png_dir = folder / "png"
    png_dir.mkdir(parents=True)
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, row in enumerate(rows[:: max(1, len(rows) // pngs)][:pngs]):
        src = manifest.parent / row["path"]
        shutil.copy(src, png_dir / f"{i:04d}{src.suffix}")
    return {"dicom": dicom_dir, "png": png_dir}


def _inputs_of(folder: Path, n: int | None, scratch: Path) -> Path:
    """``folder`` itself, or a folder holding only its first file (the fixed-cost run)."""
    if n is None:
        return folder
    one = scratch / "one"
    one.mkdir(exist_ok=True)
    first = sorted(p for p in folder.rglob("*") if p.is_file())[0]
    shutil.copy(first, one / first.name)
    return one


def time_cli(args: list[str]) -> float:
    """Wall seconds of ``cxr-edge ARGS`` in a fresh process (exit 0 or 2 = rows written)."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "from cxr_edge.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "RAY_DEDUP_LOGS": "0"},
    )
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 2):
        raise RuntimeError(f"cxr-edge {args[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def measure(folder: Path, configs: dict[str, list[str]]) -> dict[str, dict]:
    """Fixed cost and steady throughput of each configuration on the files of ``folder``."""
    n = sum(1 for p in folder.rglob("*") if p.is_file())
    out: dict[str, dict] = {}
    for name, template in configs.items():
        times = {}
        for key, count in (("one", 1), ("all", None)):
            with tempfile.TemporaryDirectory() as scratch:
                inputs = _inputs_of(folder, count, Path(scratch))
                args = [a.format(inputs=inputs, out=scratch) for a in template]
                times[key] = time_cli(args)
        # Too few inputs (or a noisy machine) can leave the difference within the noise: say so.
        spent = times["all"] - times["one"]
        steady = (n - 1) / spent if spent > 0.05 * times["all"] else None
        out[name] = {
            "images": n,
            "wall_s": round(times["all"], 2),
            "fixed_s": round(times["one"], 2),
            "img_per_s": round(n / times["all"], 2),
            "steady_img_per_s": None if steady is None else round(steady, 2),
            "steady_ms_per_img": None if steady is None else round(1000.0 / steady, 1),
        }
        click.echo(f"  {name}: {out[name]}", err=True)
    return out


def render(result: dict) -> str:
    """The batch section of RESULTS.md."""
    begin, end = section_markers("batch")
    lines = [
        begin,
        "## Batch throughput: predict, batch local, batch on Ray Data",
        "",
        f"{result['machine']}; bundle `default` (3 members + segmenter), 1 LiteRT thread per worker. "
        "Wall clock of the CLI in a fresh process; fixed = the same command on one input (imports, bundle "
        "load, Ray start/stop); steady = (n - 1) / (wall - fixed).",
        "",
        "| inputs | configuration | images | wall (s) | fixed (s) | img/s (wall) | img/s (steady) "
        "| ms/img (steady) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, rows in result["inputs"].items():
        for name, r in rows.items():
            lines.append(
                f"| {kind} | {name} | {r['images']} | {r['wall_s']} | {r['fixed_s']} | {r['img_per_s']} "
                f"| {_cell(r['steady_img_per_s'])} | {_cell(r['steady_ms_per_img'])} |"
            )
    lines.append("")
    for kind, s in result["summary"].items():
        lines.append(
            f"- {kind}: Ray 2 workers / 1 worker = **{_cell(s['scaling'])}x** (steady); Ray overhead per "
            f"image {_cell(s['ray_overhead_ms'])} ms over the local engine; Ray's fixed cost "
            f"{s['ray_fixed_s']} s."
        )
    lines += ["", f"Command: `{result['command']}`", end, ""]
    return "\n".join(lines)


def _cell(value) -> str:
    return "-" if value is None else str(value)  # "-": within the noise of the fixed cost


def summarise(rows: dict[str, dict]) -> dict:
    """Scaling ratio, Ray's per-image overhead and fixed cost."""
    one, two, local = rows["batch ray, 1 worker"], rows["batch ray, 2 workers"], rows["batch local"]
    measured = all(r["steady_img_per_s"] for r in (one, two, local))
    return {
        "scaling": round(two["steady_img_per_s"] / one["steady_img_per_s"], 2) if measured else None,
        "ray_overhead_ms": (
            round(one["steady_ms_per_img"] - local["steady_ms_per_img"], 1) if measured else None
        ),
        "ray_fixed_s": one["fixed_s"],
    }


@click.command()
@click.option("--dicoms", default=72, show_default=True, type=click.IntRange(2))
@click.option("--pngs", default=600, show_default=True, type=click.IntRange(2))
@click.option("--manifest", default=str(KIT), show_default=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--work", default="build/batch_bench", show_default=True, type=click.Path(file_okay=False))
@click.option("--out", default="benchmarks/results/batch.json", show_default=True, type=click.Path())
@click.option("--results-md", default=None, type=click.Path(dir_okay=False, path_type=Path))
def main(dicoms, pngs, manifest, work, out, results_md):
    """Measure predict / batch local / batch ray (1, 2 workers) on full-size DICOMs and PNGs."""
    work = Path(work)
    if work.exists():
        shutil.rmtree(work)
    click.echo(f"making {dicoms} full-size JPEG 2000 DICOMs and {pngs} PNGs in {work}", err=True)
    folders = make_inputs(work, Path(manifest), dicoms, pngs)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python -m cxr_edge.benchmarks.batch " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "inputs": {},
        "summary": {},
    }
    for kind, label in (("dicom", f"{dicoms} JPEG 2000 DICOMs 2560x2130"), ("png", f"{pngs} kit PNGs")):
        click.echo(label, err=True)
        result["inputs"][label] = measure(folders[kind], CONFIGS)
        result["summary"][label] = summarise(result["inputs"][label])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    if results_md:
        write_section(results_md, render(result), name="batch")
    click.echo(render(result))


if __name__ == "__main__":
    main()
