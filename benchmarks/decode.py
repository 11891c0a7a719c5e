"""Full-size DICOMs end to end, per transfer syntax: the fast path against the naive decode and the old path.

    python -m cxr_edge.benchmarks.decode --corpus build/dicom_corpus [--bundle DIR] [--threads 1] [--runs 5]
                                [--variant m2_window_12] --out benchmarks/results/decode.json
    (``cxr-edge bench --corpus DIR`` is the same command)

The corpus comes from ``python -m cxr_edge.benchmarks.dicom_corpus``. For every syntax, four paths run in
fresh interpreters (so each has its own peak RSS), over the same files, in one invocation:

* ``naive``: ``pydicom.dcmread(f).pixel_array`` alone (decode only: the bar the issue sets);
* ``previous``: the first release's reader (pydicom ``pixel_array`` + float64 LUTs), full resolution,
  then the bundle's pipeline (``ReadOptions(decoder="pydicom")``);
* ``fast_full``: the fast codec path and table LUT at full resolution;
* ``fast``: the fast path as the bundle runs it (reduced resolution when its decode gate passed).

Each reports decode / segment+preprocess / model / end-to-end p50 and p95 and peak RSS. ``cold``
measures a fresh process's import + bundle load + first prediction, per input kind.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click

from cxr_edge.benchmarks.measure import machine, peak_rss_mb, percentiles
from cxr_edge.benchmarks.results_md import section_markers, write_section
from cxr_edge.dataset.samples import samples_dir
from cxr_edge.provenance import now_utc, versions

PATHS = ("naive", "previous", "fast_full", "fast")


def measure_path(path_kind: str, bundle_dir: str | None, files: list[str], threads: int, runs: int) -> dict:
    """One path over ``files`` in this process (run it in a fresh one): stage percentiles and peak RSS."""
    import dataclasses

    from cxr_edge.bundle.folder import Bundle
    from cxr_edge.imaging.reader import ReadOptions
    from cxr_edge.runtime.pipeline import Predictor

    if path_kind == "naive":
        import pydicom

        def once(f):
            t = time.perf_counter()
            pydicom.dcmread(f).pixel_array  # noqa: B018 - the decode is the measurement
            return {"decode": (time.perf_counter() - t) * 1000.0}

    else:
        bundle = Bundle.load(bundle_dir)
        if path_kind != "fast":
            bundle = dataclasses.replace(bundle, manifest=dataclasses.replace(bundle.manifest, decode=None))
        options = ReadOptions(decoder="pydicom" if path_kind == "previous" else "fast")
        predictor = Predictor(bundle, threads=threads, read_options=options)
        model_stages = set(predictor.member_names) | {"combine", "heatmap"}

        def once(f):
            pred = predictor.predict_file(f)
            t = pred.timings_ms
            return {
                "decode": t["decode"],
                "prepare": t.get("segment", 0.0) + t.get("preprocess", 0.0),
                "model": sum(v for k, v in t.items() if k in model_stages),
                "total": t["total"],
                "reduction": pred.info.reduction,
                "decoder": pred.info.decoder,
            }

    for f in files:  # warm-up: imports, codec initialisation, LiteRT allocation
        once(f)
    stages: dict[str, list[float]] = {}
    meta: dict[str, set] = {"reduction": set(), "decoder": set()}
    for _ in range(runs):
        for f in files:
            for key, value in once(f).items():
                if key in meta:
                    meta[key].add(value)
                else:
                    stages.setdefault(key, []).append(value)
    if "total" not in stages:
        stages["total"] = stages["decode"]
    return {
        "stages": {k: percentiles(v) for k, v in stages.items()},
        "peak_rss_mb": peak_rss_mb(),
        "reduction": sorted(meta["reduction"]),
        "decoder": sorted(meta["decoder"]),
    }


def cold_start(bundle_dir: str | None, file: str, python: str | None = None) -> dict:
    """Wall time of a fresh ``python`` that imports the runtime, loads the bundle and predicts ``file``.

    ``python`` is the interpreter (default this one): a runtime-only install (``pip install -e .``, as
    a cart has) imports less than the full development one (requests, pulled in by TensorFlow, adds
    ~60 ms to pydicom's import).
    """
    code = (
        "import sys, time; t0 = time.perf_counter(); from cxr_edge.runtime.pipeline import Predictor; "
        "from cxr_edge.bundle.folder import Bundle; t1 = time.perf_counter(); "
        "p = Predictor(Bundle.load(sys.argv[1] or None)); t2 = time.perf_counter(); "
        "p.predict_file(sys.argv[2]); t3 = time.perf_counter(); "
        "print(f'{(t1-t0)*1e3:.1f} {(t2-t1)*1e3:.1f} {(t3-t2)*1e3:.1f}')"
    )
    walls, parts = [], []
    for _ in range(3):
        t = time.perf_counter()
        out = subprocess.run(
            [python or sys.executable, "-c", code, bundle_dir or "", file],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        walls.append((time.perf_counter() - t) * 1000.0)
        parts.append([float(v) for v in out.stdout.split()[-3:]])
    best = min(range(3), key=lambda i: walls[i])
    imp, load, first = parts[best]
    # What a cart operator waits for: the whole `cxr-edge predict FILE` process (the CLI's own imports,
    # option parsing and the CSV row included).
    cli = Path(python or sys.executable).parent / "cxr-edge"
    command = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([str(cli), "predict", file], capture_output=True, check=True)
        command.append((time.perf_counter() - t) * 1000.0)
    return {
        "wall_ms": walls[best],
        "import_ms": imp,
        "bundle_load_ms": load,
        "first_image_ms": first,
        "command_ms": min(command),
        "python": "runtime-only install" if python else "development install",
    }


def _child(payload: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "cxr_edge.benchmarks.decode", "--child", json.dumps(payload)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if proc.returncode != 0:
        raise click.ClickException(f"decode measurement failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_corpus(
    corpus: Path,
    bundle_dir: str | None,
    *,
    threads: int = 1,
    runs: int = 5,
    variants: tuple[str, ...] = (),
    cold_python: str | None = None,
) -> dict:
    """Every syntax of the corpus through every path; the ratios the issue's targets are stated in."""
    with (corpus / "corpus.csv").open(newline="") as f:
        index = [r for r in csv.DictReader(f) if not r["syntax"].startswith("pydicom:")]
    by_syntax: dict[str, list[str]] = {}
    for row in index:
        if not variants or row["variant"] in variants:
            by_syntax.setdefault(row["syntax"], []).append(str(corpus / row["path"]))
    result: dict = {
        "created": now_utc(),
        "machine": machine(),
        "versions": versions("pydicom", "imagecodecs", "glymur", "opencv-python-headless", "ai-edge-litert"),
        "corpus": str(corpus),
        "bundle": bundle_dir or "default",
        "threads": threads,
        "runs": runs,
        "variants": list(variants),
        "syntaxes": {},
    }
    for syntax, files in by_syntax.items():
        row = {}
        for kind in PATHS:
            row[kind] = _child(
                {"path": kind, "bundle": bundle_dir, "files": files, "threads": threads, "runs": runs}
            )
        naive = row["naive"]["stages"]["decode"]["p50_ms"]
        previous = row["previous"]["stages"]["total"]["p50_ms"]
        fast = row["fast"]["stages"]["total"]["p50_ms"]
        row["files"] = len(files)
        row["mean_mib"] = sum(Path(f).stat().st_size for f in files) / len(files) / 2**20
        row["fast_vs_naive_decode"] = naive / fast
        row["fast_vs_previous"] = previous / fast
        result["syntaxes"][syntax] = row
        click.echo(
            f"{syntax:18s} naive decode {naive:7.1f} ms | previous {previous:7.1f} | fast e2e {fast:6.1f} "
            f"(1/{'/'.join(map(str, row['fast']['reduction']))}) | x{previous / fast:.1f} vs previous",
            err=True,
        )
    sample_png = sorted(samples_dir().glob("*.png"))[0]
    first_dicom = next(iter(by_syntax.values()))[0]
    cases = {"png_sample": str(sample_png)} | {
        f"dicom_{k}": by_syntax.get(k, [first_dicom])[0] for k in ("explicit_le", "j2k_lossless")
    }
    result["cold_start"] = {k: cold_start(bundle_dir, f) for k, f in cases.items()}
    if cold_python:
        result["cold_start"] |= {
            f"{k} (runtime-only)": cold_start(bundle_dir, f, cold_python) for k, f in cases.items()
        }
    return result


SECTION_BEGIN, SECTION_END = section_markers("decode")
TARGETS = {"explicit_le": 25, "implicit_le": 25, "rle": 50, "j2k_lossless": 80, "jpeg_baseline": 25,
           "jpeg_extended": 25}  # fmt: skip


def render(result: dict) -> str:
    """The RESULTS.md section: one row per syntax, the targets of issue 15 beside the numbers."""
    m = result["machine"]
    lines = [
        SECTION_BEGIN,
        "## Full-size DICOM, per transfer syntax (decode -> segment -> crop -> classify)",
        "",
        f"{m['cpu']}, {result['threads']} thread(s); bundle `{result['bundle']}`; "
        f"corpus `{result['corpus']}` "
        f"(2560 x 2130 unless stated, variants {', '.join(result['variants']) or 'all'}); "
        f"{result['runs']} passes after a warm-up, each path in a fresh process, all in one run "
        f"({result['created'][:10]}). **naive** = `pydicom.dcmread(f).pixel_array` alone; **previous** = "
        "the first release's reader (pixel_array + float64 LUTs) and the same pipeline; **fast (full)** = "
        "the new codecs and table LUT at full resolution; **fast** = as the bundle runs it (reduced "
        "resolution where its decode gate passed). Milliseconds, p50 unless stated.",
        "",
        "| syntax | MiB | naive decode | previous e2e | fast (full) e2e | fast e2e (p95) | fast: decode / "
        "prepare / model | reduction, decoder | RSS prev / fast (MiB) | vs previous | <= naive | target |",
        "|---|---:|---:|---:|---:|---:|---|---|---:|---:|---|---:|",
    ]
    for syntax, r in result["syntaxes"].items():
        fast = r["fast"]["stages"]
        naive = r["naive"]["stages"]["decode"]["p50_ms"]
        e2e = fast["total"]["p50_ms"]
        target = TARGETS.get(syntax)
        lines.append(
            f"| {syntax} | {r.get('mean_mib', 0):.1f} | {naive:.1f} | "
            f"{r['previous']['stages']['total']['p50_ms']:.1f} | "
            f"{r['fast_full']['stages']['total']['p50_ms']:.1f} | "
            f"{e2e:.1f} ({fast['total']['p95_ms']:.1f}) | {fast['decode']['p50_ms']:.1f} / "
            f"{fast['prepare']['p50_ms']:.1f} / {fast['model']['p50_ms']:.1f} | "
            f"1/{'/'.join(map(str, r['fast']['reduction']))}, {', '.join(r['fast']['decoder'])} | "
            f"{r['previous']['peak_rss_mb']:.0f} / {r['fast']['peak_rss_mb']:.0f} | "
            f"{r['fast_vs_previous']:.1f}x | {'yes' if e2e <= naive else 'no'} | "
            + (f"{target} {'met' if e2e <= target else 'missed'}" if target else "-")
            + " |"
        )
    cold = result["cold_start"]
    lines += [
        "",
        "Cold start (a fresh `python`: import, bundle load, first prediction; wall time, best of 3): "
        + "; ".join(
            f"{k} {v['wall_ms']:.0f} ms (import {v['import_ms']:.0f}, load {v['bundle_load_ms']:.0f}, "
            f"first image {v['first_image_ms']:.0f}"
            + (f"; the whole `cxr-edge predict` process {v['command_ms']:.0f}" if "command_ms" in v else "")
            + ")"
            for k, v in cold.items()
        )
        + ". Target: 400 ms.",
        "",
        f"Command: `{result.get('command', '')}`",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--bundle", "bundle_dir", default=None, type=click.Path(file_okay=False))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1))
@click.option("--variant", "variants", multiple=True, help="Only these corpus variants.")
@click.option("--out", default=None, type=click.Path(dir_okay=False))
@click.option(
    "--results-md",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the per-syntax table into this RESULTS.md (its decode section).",
)
@click.option(
    "--cold-python",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Also measure the cold start with this interpreter (a runtime-only install, as a cart has).",
)
@click.option("--child", default=None, hidden=True)
def main(corpus, bundle_dir, threads, runs, variants, out, results_md, cold_python, child):
    """Benchmark full-size DICOM decoding per transfer syntax (see the module docstring)."""
    if child:
        p = json.loads(child)
        click.echo(json.dumps(measure_path(p["path"], p["bundle"], p["files"], p["threads"], p["runs"])))
        return
    if corpus is None:
        raise click.UsageError(
            "--corpus is required (make one with python -m cxr_edge.benchmarks.dicom_corpus)"
        )
    result = bench_corpus(
        corpus, bundle_dir, threads=threads, runs=runs, variants=tuple(variants), cold_python=cold_python
    )
    result["command"] = shlex.join(["python", "-m", "cxr_edge.benchmarks.decode", *sys.argv[1:]])
    text = json.dumps(result, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    if results_md:
        write_section(results_md, render(result), "decode")
    cold = ", ".join(f"{k} {v['wall_ms']:.0f} ms" for k, v in result["cold_start"].items())
    click.echo(f"cold start (fresh process, wall): {cold}")


if __name__ == "__main__":
    main()
